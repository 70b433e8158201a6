"""Calibration objectives compared on cached detections (issue 10, installer calibration).

For every sequence and every calibration window of ``K`` frames (frames
``o..o+K-1`` for each offset ``o``), :func:`lobbywatch.edge.calibration.calibrate`
chooses model / input size / threshold with one objective, and the choice is
scored on every other frame of the sequence (single-frame count, no tracker,
and raw P/R at IoU 0.5, pooled). Offset 0 alone is what ``lobbywatch eval
--calibrate K`` does (there the product count with the tracker is reported);
several windows show whether an objective wins for more than one set of
snapshots. Objectives:

* ``count``: |count - n| per snapshot (counts.csv),
* ``points``: ``max(fp, fn)`` against the GT boxes' foot points (the
  ``--web`` clicks), :func:`lobbywatch.edge.calibration.located_error`,
* ``boxes``: the same against the GT boxes at IoU 0.5,
* ``points_sum``: ``fp + fn`` against the foot points (charges a misplaced box twice).

Needs the cache of ``bench/model_sweep.py --detect`` with the default's size
too (``--sizes 512``)::

    .venv/bin/python bench/model_sweep.py --detect --cache /tmp/sweep
    .venv/bin/python bench/model_sweep.py --detect --cache /tmp/sweep --sizes 512
    .venv/bin/python bench/calibration_objectives.py --cache /tmp/sweep
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_sweep import DATASET, MODELS, load

from lobbywatch.edge.calibration import (
    SIZES,
    THRESHOLDS,
    ErrorFn,
    Setting,
    above,
    calibrate,
    click_matches,
    foot_points,
    located_error,
)
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.detector import DetectorSettings
from lobbywatch.edge.evaluation import Tally, find_sequences, load_sequence

OBJECTIVES = ("count", "points", "boxes", "points_sum")


def objective_error(kind: str, gts: list[np.ndarray]) -> ErrorFn | None:
    if kind == "count":
        return None
    if kind == "points":
        return located_error([foot_points(g) for g in gts], by="points")
    if kind == "boxes":
        return located_error(gts, by="boxes")
    pts = [foot_points(g) for g in gts]

    def fp_plus_fn(det: Detections, k: int) -> float:
        tp = click_matches(det, pts[k])
        return float(len(det) + len(pts[k]) - 2 * tp)

    return fp_plus_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lobbywatch-sweep"))
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--offsets", default="0,5,10,15,20")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    args = ap.parse_args()
    default = Setting.of(DetectorSettings())  # type: ignore[call-arg]
    sizes = list(dict.fromkeys([default.size, *SIZES]))
    seqs = [load_sequence(f) for f in find_sequences(args.dataset)]
    cached = {
        s.name: {(m, z): load(args.cache, m, z, s.name)[0] for m in MODELS for z in sizes}
        for s in seqs
    }
    offsets = [int(o) for o in args.offsets.split(",")]
    print(
        "| objective | windows | "
        + " | ".join(s.name for s in seqs)
        + " | pooled 1-frame MAE | P | R |"
    )
    print("|" + "---|" * (len(seqs) + 5))
    for kind in args.objectives.split(","):
        pooled, cells, windows = Tally(), [], 0
        for seq in seqs:
            dets, n, maes = cached[seq.name], len(seq.gt), []
            for o in offsets:
                if o + args.k >= n:
                    continue
                idx = list(range(o, o + args.k))
                gts = [seq.gt[j] for j in idx]
                res = calibrate(
                    lambda m, z, i: dets[(m, z)][idx[i]],  # noqa: B023
                    [[len(g)] for g in gts], default, MODELS, sizes, THRESHOLDS,
                    error=objective_error(kind, gts),
                )  # fmt: skip
                c, t = res.chosen, Tally()
                for j in range(n):
                    if j not in idx:
                        d = above(dets[(c.model, c.size)][j], c.threshold)
                        t.add(len(d), d.xyxy, seq.gt[j])
                pooled.merge(t)
                maes.append(t.summary()["mae"])
                windows += 1
            cells.append(f"{np.mean(maes):.2f}")
        o_ = pooled.summary()
        print(f"| {kind} | {windows} | " + " | ".join(cells)
              + f" | {o_['mae']:.2f} | {o_['precision']:.2f} | {o_['recall']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
