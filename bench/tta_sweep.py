"""Flip test-time augmentation and the NMS IoU, replayed from cached candidates (round 8).

Step 1 (``detect``) runs every (model, input size) once per frame with
``tta: flip`` and stores, per frame, the candidates of both views *before any
NMS* (score > 0.1, mirror view already mapped back to frame pixels, clipped:
``Detector.view_candidates``) and the two-view inference time. One cache
answers every question below exactly, without running the network again:

* ``off`` at NMS IoU ``u``: greedy NMS of view 0 at ``u`` then any threshold
  ``>= 0.1`` (exact: the product decodes at its threshold and runs NMS; boxes
  below a threshold never suppress boxes above it);
* ``flip`` (the product's ``tta: flip``): ``fuse_flip`` of both views (WBF,
  ``avg`` scores) then the threshold (the product decodes both views at
  ``TTA_CANDIDATE_SCORE`` = 0.1, so this is the same computation);
* ``flip_max``: the same fusion scored by the pair's maximum (no halving of
  one-view boxes), and ``flip_nms``: both views' boxes into one greedy NMS
  (YOLOv5-style TTA) -- compared here, not shipped.

Output boxes are narrowed by the model's catalogue ``box_width_scale`` after
NMS / fusion, as the product does (``--box-width native``: as decoded).

Step 2 (``table``) prints product count MAE (tracker at real time stamps),
single-frame MAE and raw P/R at IoU 0.5 per sequence; step 3 (``windows``)
repeats installer calibration on several windows per sequence with the extra
search dimensions, as ``bench/calibration_objectives.py`` does::

    .venv/bin/python bench/tta_sweep.py detect --cache /tmp/lobbywatch-tta
    .venv/bin/python bench/tta_sweep.py table --cache /tmp/lobbywatch-tta
    .venv/bin/python bench/tta_sweep.py windows --cache /tmp/lobbywatch-tta
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_sweep import DATASET, MODELS

from lobbywatch.edge.calibration import (
    SIZES,
    THRESHOLDS,
    Setting,
    above,
    calibrate,
    foot_points,
    located_error,
    product_counts,
    size_settings,
)
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.detector import Detector, DetectorSettings, fuse_flip, nms
from lobbywatch.edge.evaluation import Tally, find_sequences, load_sequence, read_frame

MODES = ("off", "flip", "flip_max", "flip_nms")


def detect(dataset: Path, cache: Path, configs: list[tuple[str, str]]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    seqs = [load_sequence(f) for f in find_sequences(dataset)]
    for m, s in configs:
        det = Detector.from_settings(size_settings(m, s, 0.1).model_copy(update={"tta": "flip"}))
        for seq in seqs:
            out = cache / f"{m}__{s}__{seq.name}.npz"
            if out.exists():
                continue
            xy, sc, vw, n, ms = [], [], [], [], []
            for path in seq.frames:
                frame = read_frame(path)
                t0 = time.perf_counter()
                prep = det.preprocess(frame)
                raw = det.infer(prep)
                a, b, c = det.view_candidates(raw, prep)
                ms.append(1000 * (time.perf_counter() - t0))
                xy.append(a)
                sc.append(b)
                vw.append(c.astype(np.int8))
                n.append(len(b))
            np.savez(
                out,
                xyxy=np.concatenate(xy).reshape(-1, 4),
                scores=np.concatenate(sc),
                view=np.concatenate(vw),
                n=np.array(n),
                ms=np.array(ms),
            )
            print(f"{m} {s} {seq.name}: {len(n)} frames, {np.mean(ms):.0f} ms", flush=True)


Candidates = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def load(cache: Path, model: str, size: str, seq: str) -> tuple[Candidates, np.ndarray]:
    z = np.load(cache / f"{model}__{size}__{seq}.npz")
    bounds = np.concatenate(([0], np.cumsum(z["n"])))
    cands = [
        (z["xyxy"][a:b], z["scores"][a:b], z["view"][a:b].astype(np.intp))
        for a, b in itertools.pairwise(bounds)
    ]
    return cands, z["ms"]


def boxes(cand: tuple[np.ndarray, np.ndarray, np.ndarray], mode: str, nms_iou: float) -> Detections:
    """Detections above the 0.1 floor for one frame's candidates under ``mode``."""
    xyxy, scores, view = cand
    if mode == "off":
        i = np.flatnonzero(view == 0)
        k = i[nms(xyxy[i], scores[i], nms_iou)]
        return Detections(xyxy[k], scores[k])
    if mode == "flip_nms":
        k = nms(xyxy, scores, nms_iou)
        return Detections(xyxy[k], scores[k])
    b, s = fuse_flip(xyxy, scores, view, nms_iou, score="avg" if mode == "flip" else "max")
    keep = s > 0.1
    return Detections(b[keep], s[keep])


def frame_sizes(seqs: list) -> dict[str, tuple[int, int]]:
    out = {}
    for seq in seqs:
        h, w = read_frame(seq.frames[0]).shape[:2]
        out[seq.name] = (int(w), int(h))
    return out


def table(args: argparse.Namespace) -> None:
    seqs = [load_sequence(f) for f in find_sequences(args.dataset)]
    wh = frame_sizes(seqs)
    short = [s.name.replace("cctv_cam11_waitingroom_", "wr") for s in seqs]
    print(
        "| model | size | tta | nms | thr | "
        + " | ".join(f"{n} prod / 1f" for n in short)
        + " | overall prod | 1-frame | P | R | ms |"
    )
    print("|" + "---|" * (len(seqs) + 10))
    for m, s in configs_of(args):
        data = {seq.name: load(args.cache, m, s, seq.name) for seq in seqs}
        for mode in args.modes.split(","):
            for u in [float(x) for x in args.nms.split(",")]:
                f = width_scale(m, args.box_width)
                base = {n: [_width(boxes(c, mode, u), f) for c in data[n][0]] for n in data}
                for thr in [float(t) for t in args.thresholds.split(",")]:
                    pooled, cells, ms = Tally(), [], []
                    for seq in seqs:
                        dets = [above(d, thr) for d in base[seq.name]]
                        counts = product_counts(dets, seq.fps, thr, frame_size=wh[seq.name])
                        t = Tally()
                        for c, d, gt in zip(counts, dets, seq.gt, strict=True):
                            t.add(int(c), d.xyxy, gt)
                        r = t.summary()
                        cells.append(f"{r['mae']:.2f} / {r['raw_mae']:.2f}")
                        pooled.merge(t)
                        ms.append(data[seq.name][1])
                    o = pooled.summary()
                    # One view's share of the two-view time (the cache ran both).
                    one = float(np.mean(np.concatenate(ms)))
                    cost = one if mode != "off" else one / 2
                    print(
                        f"| {m} | {s} | {mode} | {u:g} | {thr:.2f} | " + " | ".join(cells)
                        + f" | {o['mae']:.2f} | {o['raw_mae']:.2f} | {o['precision']:.2f} | "
                        f"{o['recall']:.2f} | {cost:.0f} |",
                        flush=True,
                    )  # fmt: skip


def configs_of(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(m, s) for m in args.models.split(",") for s in args.sizes.split(",")]


def windows(args: argparse.Namespace) -> None:
    """Calibration on several windows per sequence with TTA / NMS as extra dimensions.

    The search space is (model, size, threshold) x ``--space`` entries, each
    ``mode:nms`` (e.g. ``off:0.45,flip:0.45``). ``off:0.45`` is the default
    (label ``off``), ``flip:0.45`` is the product's ``tta: flip`` (label
    ``flip``); any other entry (another NMS IoU) is carried in ``Setting.tta``
    as its ``mode:nms`` label and charged the same one-step penalty.
    """
    seqs = [load_sequence(f) for f in find_sequences(args.dataset)]
    default = Setting.of(
        DetectorSettings(tta=args.default_tta, score_threshold=args.default_threshold)  # type: ignore[call-arg]
    )
    sizes = list(dict.fromkeys([default.size, *SIZES]))
    labels = {e: _label(e) for e in args.space.split(",")}
    offsets = [int(o) for o in args.offsets.split(",")]
    pooled, cells, windows_n, chosen_log = Tally(), [], 0, []
    for seq in seqs:
        dets: dict[tuple[str, str, str], list[Detections]] = {}
        for m in MODELS:
            for z in sizes:
                cands = load(args.cache, m, z, seq.name)[0]
                for e, lab in labels.items():
                    mode, u = e.split(":")
                    dets[(m, z, lab)] = [
                        _width(boxes(c, mode, float(u)), width_scale(m, args.box_width))
                        for c in cands
                    ]
        n, maes = len(seq.gt), []
        for o in offsets:
            if o + args.k >= n:
                continue
            idx = list(range(o, o + args.k))
            gts = [seq.gt[j] for j in idx]
            err = None if args.objective == "count" else located_error(
                [foot_points(g) for g in gts], by="points")  # fmt: skip
            res = calibrate(
                _fetch(dets, idx),
                [[len(g)] for g in gts], default, MODELS, sizes, THRESHOLDS,
                error=err, ttas=list(labels.values()),
            )  # fmt: skip
            c, t = res.chosen, Tally()
            chosen_log.append(f"{seq.name}@{o}: {c.model} {c.size} {c.tta} {c.threshold:g}")
            for j in range(n):
                if j not in idx:
                    d = above(dets[(c.model, c.size, c.tta)][j], c.threshold)
                    t.add(len(d), d.xyxy, seq.gt[j])
            pooled.merge(t)
            maes.append(t.summary()["mae"])
            windows_n += 1
        cells.append(f"{np.mean(maes):.2f}")
    o_ = pooled.summary()
    print(f"| {args.space} | {args.k} | {windows_n} | " + " | ".join(cells)
          + f" | {o_['mae']:.2f} | {o_['precision']:.3f} | {o_['recall']:.3f} |")  # fmt: skip
    if args.verbose:
        print("\n".join(chosen_log))


def width_scale(model: str, box_width: str) -> float:
    """The product's output-box narrowing for ``model`` (``native``: none)."""
    from lobbywatch.models.registry import get_spec

    return get_spec(model).output.box_width_scale if box_width == "catalogue" else 1.0


def _width(d: Detections, f: float) -> Detections:
    if f == 1.0 or len(d) == 0:
        return d
    x = d.xyxy.copy()
    c, h = (x[:, 0] + x[:, 2]) * 0.5, (x[:, 2] - x[:, 0]) * 0.5 * f
    x[:, 0], x[:, 2] = c - h, c + h
    return Detections(x, d.scores)


def _label(entry: str) -> str:
    mode, u = entry.split(":")
    if float(u) == DetectorSettings().nms_iou and mode in ("off", "flip"):  # type: ignore[call-arg]
        return mode
    return entry


def _fetch(
    dets: dict[tuple[str, str, str], list[Detections]], idx: list[int]
) -> Callable[..., Detections]:
    def f(m: str, z: str, i: int, tta: str = "off") -> Detections:
        return dets[(m, z, tta)][idx[i]]

    return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("detect", "table", "windows"))
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lobbywatch-tta"))
    ap.add_argument("--models", default="bytetrack_nano")
    ap.add_argument("--sizes", default="512")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--nms", default="0.45")
    ap.add_argument("--thresholds", default="0.2,0.25,0.3,0.35,0.4,0.45")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--offsets", default="0,5,10,15,20")
    ap.add_argument("--space", default="off:0.45,flip:0.45")
    ap.add_argument("--objective", default="points", choices=("points", "count"))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument(
        "--box-width",
        default="catalogue",
        choices=("catalogue", "native"),
        help="output boxes as the product draws them (catalogue) or as decoded (native)",
    )
    ap.add_argument("--default-tta", default="off", help="the default's tta (windows)")
    ap.add_argument("--default-threshold", type=float, default=0.4, help="(windows)")
    args = ap.parse_args()
    if args.step == "detect":
        detect(args.dataset, args.cache, configs_of(args))
    elif args.step == "table":
        table(args)
    else:
        windows(args)


if __name__ == "__main__":
    main()
