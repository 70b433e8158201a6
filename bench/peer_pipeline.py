"""Ours against the pipeline a competent user would assemble from the usual libraries.

Peer: the same detector model, its output wrapped in ``supervision.Detections``,
tracked by the ``trackers`` package's ``ByteTrackTracker`` (what supervision's
documentation now points to for tracking) and counted with
``supervision.PolygonZone`` (bottom-centre anchor, as our foot point). The
peer's pre/post-processing is the straightforward one of
``bench/edge_pipeline.py`` (fresh canvas, per-frame normalisation, all-column
decode, Python NMS), since supervision has no YOLOX/ONNX loader. Library
settings are the defaults except ``frame_rate``, set to the sequence's rate.

Ours: ``Detector`` + ``Tracker`` (product defaults) + ``ZoneMap``.

1. Count MAE on the development set: both sides get the *same* detections
   per frame (one inference, the product's detector), so only the counting
   differs; count = people in a whole-frame zone (peer: tracked boxes the
   zone triggers on; ours: ``TrackedObjects.counted``), frames fed on each
   sequence's stated time axis.
2. Non-inference time per frame on vtest.avi: each side runs its whole
   pipeline (pre-processing, its own inference, post-processing, tracker,
   six zones) in one process, alternating which side goes first per frame;
   inference is timed apart and left out.

Pinned peer versions (dev dependencies): supervision 0.31.2, trackers 2.6.1.

    .venv/bin/python bench/peer_pipeline.py [--frames 150]

Last line: ``count_mae_ratio=X noninference_speedup=Y`` (peer / ours: a
ratio above 1 means the peer counts worse; a speed-up above 1 means ours is
cheaper outside inference).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge_pipeline import ZONES, ref_postprocess, ref_preprocess

from lobbywatch.edge.detector import (
    Detector,
    DetectorSettings,
    make_session,
    rewrite_input_shape,
)
from lobbywatch.edge.evaluation import find_sequences, load_sequence, read_frame
from lobbywatch.edge.tracker import Tracker
from lobbywatch.edge.zones import ZoneMap

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def peer_tracker(fps: float):  # type: ignore[no-untyped-def]
    from trackers import ByteTrackTracker

    return ByteTrackTracker(frame_rate=fps)


def to_sv(xyxy: np.ndarray, scores: np.ndarray):  # type: ignore[no-untyped-def]
    import supervision as sv

    return sv.Detections(
        xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
        confidence=np.asarray(scores, np.float32),
        class_id=np.zeros(len(scores), int),
    )


def count_mae(dataset: Path) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Frame-pooled count MAE (peer, ours) and per sequence, same detections for both."""
    import supervision as sv

    det = Detector.from_settings()
    per: dict[str, tuple[float, float]] = {}
    err_p: list[float] = []
    err_o: list[float] = []
    for folder in find_sequences(dataset):
        seq = load_sequence(folder)
        ours, peer = Tracker(), peer_tracker(seq.fps)
        zone = None
        ep: list[float] = []
        eo: list[float] = []
        for i, path in enumerate(seq.frames):
            frame = read_frame(path)
            if zone is None:
                h, w = frame.shape[:2]
                poly = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.int64)
                zone = sv.PolygonZone(polygon=poly)
            d = det.detect(frame)
            ts = i * (1.0 / seq.fps)  # as lobbywatch eval stamps frames
            size = (frame.shape[1], frame.shape[0])
            n_ours = int(np.count_nonzero(ours.update(d, ts, size).counted))
            tracked = peer.update(to_sv(d.xyxy, d.scores), timestamp=ts)
            tracked = tracked[tracked.tracker_id != -1] if len(tracked) else tracked
            n_peer = int(np.count_nonzero(zone.trigger(tracked))) if len(tracked) else 0
            gt = len(seq.gt[i])
            ep.append(abs(n_peer - gt))
            eo.append(abs(n_ours - gt))
        per[seq.name] = (float(np.mean(ep)), float(np.mean(eo)))
        err_p += ep
        err_o += eo
        print(f"{seq.name}: peer {per[seq.name][0]:.2f} ours {per[seq.name][1]:.2f}", flush=True)
    return float(np.mean(err_p)), float(np.mean(err_o)), per


def noninference_ms(video: Path, frames: int) -> tuple[float, float, float, float]:
    """Per-frame (peer, ours) non-inference and (peer, ours) inference milliseconds."""
    import supervision as sv

    settings = DetectorSettings()  # type: ignore[call-arg]
    det = Detector.from_settings(settings)
    spec = det.model.spec
    session = make_session(rewrite_input_shape(det.model.path.read_bytes(), spec), 1, 1)
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    if not ok:
        raise SystemExit(f"no frames decoded from {video}")
    h, w = first.shape[:2]
    zmap = ZoneMap.from_specs(ZONES, w, h)
    peer_zones = [sv.PolygonZone(polygon=p.astype(np.int64)) for p in zmap.polygons_px]
    input_hw = det._buffers_for((h, w)).plan.input_hw
    fps = 10.0
    ours_trk, peer_trk = Tracker(), peer_tracker(fps)
    det.detect(first)
    session.run(None, {spec.input.name: ref_preprocess(first, input_hw, spec.input)[0]})
    t = dict.fromkeys(("p_non", "p_inf", "o_non", "o_inf"), 0.0)
    clock = time.perf_counter
    n = 0
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        ts = n / fps
        for side in ("ours", "peer") if n % 2 == 0 else ("peer", "ours"):
            if side == "ours":
                t0 = clock()
                prep = det.preprocess(frame)
                t1 = clock()
                raw = det.infer(prep)
                t2 = clock()
                tracks = ours_trk.update(det.postprocess(raw, prep), ts, (w, h))
                zmap.counts(zmap.zone_of(tracks.foot_points()[tracks.counted]))
                t3 = clock()
                t["o_non"] += (t1 - t0) + (t3 - t2)
                t["o_inf"] += t2 - t1
            else:
                t0 = clock()
                blob, r = ref_preprocess(frame, input_hw, spec.input)
                t1 = clock()
                out = session.run(None, {spec.input.name: blob})[0]
                t2 = clock()
                d = ref_postprocess(out, input_hw, r, settings.score_threshold, settings.nms_iou)
                tracked = peer_trk.update(to_sv(d.xyxy, d.scores), timestamp=ts)
                if len(tracked):
                    tracked = tracked[tracked.tracker_id != -1]
                for z in peer_zones:
                    z.trigger(tracked)
                t3 = clock()
                t["p_non"] += (t1 - t0) + (t3 - t2)
                t["p_inf"] += t2 - t1
        n += 1
    cap.release()
    return (t["p_non"] / n * 1e3, t["o_non"] / n * 1e3, t["p_inf"] / n * 1e3, t["o_inf"] / n * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=SHARED / "data" / "people")
    ap.add_argument("--video", type=Path, default=SHARED / "data" / "video" / "vtest.avi")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    try:
        import supervision
        import trackers  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc}; install the pinned peer libraries (see README)", file=sys.stderr)
        return 2
    print(f"peer: supervision {supervision.__version__}, trackers ByteTrackTracker (defaults, "
          f"frame_rate = sequence rate); ours: product defaults ({DetectorSettings().name})")  # type: ignore[call-arg]  # fmt: skip
    p_mae, o_mae, _ = count_mae(args.dataset)
    print(f"count MAE (development set, frame-pooled): peer {p_mae:.2f} ours {o_mae:.2f}")
    p_non, o_non, p_inf, o_inf = noninference_ms(args.video, args.frames)
    print(f"non-inference ms/frame on {args.video.name}: peer {p_non:.2f} ours {o_non:.2f} "
          f"(inference: peer {p_inf:.1f}, ours {o_inf:.1f})")  # fmt: skip
    print(f"count_mae_ratio={p_mae / o_mae:.2f} noninference_speedup={p_non / o_non:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
