"""Both catalogue models at several input sizes on an annotated data set, from cached detections.

Step 1 (``--detect``) runs every (model, input size) once per frame at a low
score threshold (0.1) and stores the boxes and the detector time per frame in
``--cache`` (one ``.npz`` per configuration and sequence). Greedy NMS at a
threshold ``t`` equals NMS at a lower threshold followed by keeping scores
``> t`` (boxes below ``t`` can never suppress boxes above it), so step 2 can
apply any threshold ``>= 0.1`` exactly, without running the network again.

Step 2 (default) replays each configuration and threshold through the
product's tracker (``PipelineSettings`` defaults, ``track_high_score`` = the
threshold, as ``lobbywatch.edge.calibration.pipeline_for_threshold`` sets it)
on each sequence's time axis and prints count MAE per sequence, raw MAE, P/R
and ms per frame. ``lobbywatch eval`` with the same options gives the same
numbers (checked for the chosen default in docs/accuracy.md).

    .venv/bin/python bench/model_sweep.py --detect     # ~15 min on 2 shared cores
    .venv/bin/python bench/model_sweep.py              # tables, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from lobbywatch.edge.calibration import SIZES, size_settings
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.detector import Detector
from lobbywatch.edge.evaluation import Tally, find_sequences, load_sequence, read_frame

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "data" / "people"
MODELS = ("yolox_nano", "bytetrack_nano")
LOW = 0.1


def detect(dataset: Path, cache: Path, models: list[str], sizes: list[str], nms: float) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    configs = [(m, s) for m in models for s in sizes]
    dets = {
        c: Detector.from_settings(
            size_settings(c[0], c[1], LOW).model_copy(update={"nms_iou": nms})
        )
        for c in configs
    }
    for folder in find_sequences(dataset):
        seq = load_sequence(folder)
        out: dict[tuple[str, str], dict[str, list[np.ndarray]]] = {
            c: {"xyxy": [], "scores": [], "ms": []} for c in configs
        }
        for path in seq.frames:
            frame = read_frame(path)
            for c, det in dets.items():
                t0 = time.perf_counter()
                d = det.detect(frame)
                out[c]["ms"].append(np.float64(1000 * (time.perf_counter() - t0)))
                out[c]["xyxy"].append(d.xyxy)
                out[c]["scores"].append(d.scores)
        for (m, s), v in out.items():
            n = np.array([len(x) for x in v["scores"]])
            np.savez(
                cache / f"{m}__{s}__{seq.name}.npz",
                xyxy=np.concatenate(v["xyxy"]).reshape(-1, 4),
                scores=np.concatenate(v["scores"]),
                n=n,
                ms=np.array(v["ms"]),
            )
        print(f"{seq.name}: {len(seq.frames)} frames cached", flush=True)


def load(cache: Path, model: str, size: str, seq: str) -> tuple[list[Detections], np.ndarray]:
    z = np.load(cache / f"{model}__{size}__{seq}.npz")
    bounds = np.concatenate(([0], np.cumsum(z["n"])))
    dets = [Detections(z["xyxy"][a:b], z["scores"][a:b]) for a, b in itertools.pairwise(bounds)]
    return dets, z["ms"]


def replay(
    dataset: Path,
    cache: Path,
    thresholds: list[float],
    as_json: bool,
    models: list[str],
    sizes: list[str],
) -> None:
    from lobbywatch.edge.calibration import above, product_counts

    seqs = [load_sequence(f) for f in find_sequences(dataset)]
    sizes_wh = {}
    for seq in seqs:
        h, w = read_frame(seq.frames[0]).shape[:2]
        sizes_wh[seq.name] = (int(w), int(h))
    rows = []
    for m in models:
        for s in sizes:
            for thr in thresholds:
                per: dict[str, dict[str, float]] = {}
                pooled = Tally()
                ms_all = []
                for seq in seqs:
                    dets, ms = load(cache, m, s, seq.name)
                    dets = [above(d, thr) for d in dets]
                    counts = product_counts(dets, seq.fps, thr, frame_size=sizes_wh[seq.name])
                    t = Tally()
                    for c, d, gt in zip(counts, dets, seq.gt, strict=True):
                        t.add(int(c), d.xyxy, gt)
                    per[seq.name] = {**t.summary(), "ms": round(float(np.mean(ms)), 1)}
                    pooled.merge(t)
                    ms_all.append(ms)
                rows.append(
                    {
                        "model": m, "size": s, "threshold": thr, "sequences": per,
                        "overall": {**pooled.summary(),
                                    "ms": round(float(np.mean(np.concatenate(ms_all))), 1)},
                    }
                )  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    names = [seq.name for seq in seqs]
    short = [n.replace("cctv_cam11_waitingroom_", "wr") for n in names]
    print("| model | size | thr | " + " | ".join(short) + " | overall | raw | P | R | ms/frame |")
    print("|" + "---|" * (len(names) + 8))
    for r in rows:
        o = r["overall"]
        cells = " | ".join(f"{r['sequences'][n]['mae']:.2f}" for n in names)
        print(
            f"| {r['model']} | {r['size']} | {r['threshold']:.2f} | {cells} | {o['mae']:.2f} | "
            f"{o['raw_mae']:.2f} | {o['precision']:.2f} | {o['recall']:.2f} | {o['ms']:.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lobbywatch-sweep"))
    ap.add_argument("--detect", action="store_true", help="run the networks and fill the cache")
    ap.add_argument("--thresholds", default="0.2,0.25,0.3,0.35,0.4,0.45,0.5")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sizes", default=",".join(SIZES), help="long sides or 'rule'")
    ap.add_argument("--nms", type=float, default=0.45, help="NMS IoU (cache per value)")
    args = ap.parse_args()
    if args.detect:
        detect(args.dataset, args.cache, args.models.split(","), args.sizes.split(","), args.nms)
        return
    replay(
        args.dataset,
        args.cache,
        [float(t) for t in args.thresholds.split(",")],
        args.json,
        args.models.split(","),
        args.sizes.split(","),
    )


if __name__ == "__main__":
    main()
