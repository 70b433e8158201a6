"""Count rules and association, measured per sequence: the detector runs once,
the tracker variants replay its detections at each sequence's real time stamps.

For every sequence of the dataset (``frames/*.jpg`` + ``gt.csv`` + ``SOURCE.md``)
the shipped detector runs once per frame; the detections are then fed, at the
spacing ``SOURCE.md`` states (:func:`lobbywatch.edge.evaluation.source_timing`),
to the shipped tracker and to ablations that each switch one rule off, and,
with ``--tracker FILE``, to another tracker module (e.g. an older
``edge/tracker.py`` taken from git) with its own defaults. Reported per
sequence: product count MAE, single-frame count MAE (same detections, no
history) and the identity-switch proxy (:mod:`lobbywatch.edge.id_switches`).
The shipped row equals ``lobbywatch eval`` (same code, same detections).

Run::

    .venv/bin/python bench/count_replay.py [DATASET] [--tracker OLD_TRACKER.py]

e.g. the tracker before this change:
``git show 6187eb3:edge/tracker.py > /tmp/tracker_before.py`` then
``--tracker /tmp/tracker_before.py``. Last line:
``product_vs_single_worst=X overall_product_mae=Y overall_single_mae=Z`` (the
worst per-sequence ratio of product to single-frame MAE on real-rate video, and
the pooled MAEs, shipped settings). ``--why`` instead classifies, per frame
counted worse than the raw detections, the coasting tracks counted in it (the
analysis behind the count rules, docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lobbywatch.edge.detections import Detections, iou_matrix
from lobbywatch.edge.detector import Detector
from lobbywatch.edge.evaluation import find_sequences, load_sequence, read_frame
from lobbywatch.edge.id_switches import IdSwitchCounter
from lobbywatch.edge.pipeline import PipelineSettings
from lobbywatch.edge.tracker import Tracker

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "people"


@dataclasses.dataclass
class Recorded:
    name: str
    spacing_s: float
    size: tuple[int, int]
    detections: list[Detections]
    gt: list[np.ndarray]


def record(dataset: Path) -> list[Recorded]:
    detector = Detector.from_settings()
    out = []
    for folder in find_sequences(dataset):
        seq = load_sequence(folder)
        first = read_frame(seq.frames[0])
        dets = [detector.detect(read_frame(p)) for p in seq.frames]
        size = (int(first.shape[1]), int(first.shape[0]))
        out.append(Recorded(seq.name, 1.0 / seq.fps, size, dets, list(seq.gt)))
        print(f"# {seq.name}: {len(dets)} frames, spacing {1.0 / seq.fps:g} s", file=sys.stderr)
    return out


def replay(rec: Recorded, make: Callable[[], Any], frame_size: bool = True) -> dict[str, float]:
    tracker = make()
    takes_size = "frame_size" in inspect.signature(tracker.update).parameters
    single_start = getattr(tracker.settings, "start_score", tracker.settings.high_score)
    prod, single = [], []
    ids = IdSwitchCounter()
    for i, (det, gt) in enumerate(zip(rec.detections, rec.gt, strict=True)):
        ts = i * rec.spacing_s
        if takes_size:
            out = tracker.update(det, ts, rec.size if frame_size else None)
        else:
            out = tracker.update(det, ts)
        prod.append(abs(int(out.counted.sum()) - len(gt)))
        single.append(abs(int(np.count_nonzero(det.scores >= single_start)) - len(gt)))
        ids.add(gt, out)
    tally = ids.tally()
    return {
        "frames": len(prod),
        "abs_err": float(np.sum(prod)),
        "single_abs_err": float(np.sum(single)),
        "switches": tally.switches,
        "links": tally.links,
    }


def why(rec: Recorded, make: Callable[[], Any]) -> str:
    """Frames where the count is worse than the raw detections, and what the image
    shows at each counted coasting (unseen) track in them: taken (a detection at
    IoU >= 0.5), left (box crosses the border), occluded (a detection nearer the
    camera covers >= 0.3 of it), or unexplained; and how many of each sat on a GT
    person no detection covers (IoU >= 0.5), i.e. were right to count."""
    tracker = make()
    takes_size = "frame_size" in inspect.signature(tracker.update).parameters
    w, h = rec.size
    worse = with_coast = 0
    kinds = ("taken", "left", "occluded", "unexplained")
    seen = dict.fromkeys(kinds, 0)
    right = dict.fromkeys(kinds, 0)
    for i, (det, gt) in enumerate(zip(rec.detections, rec.gt, strict=True)):
        ts = i * rec.spacing_s
        out = tracker.update(det, ts, rec.size) if takes_size else tracker.update(det, ts)
        coast = np.flatnonzero(out.counted & ~out.matched)
        if abs(int(out.counted.sum()) - len(gt)) <= abs(len(det) - len(gt)):
            continue
        worse += 1
        with_coast += len(coast) > 0
        d = det.xyxy.astype(np.float64)
        covered = (
            iou_matrix(gt, d).max(axis=1) >= 0.5 if len(gt) and len(d) else np.zeros(len(gt), bool)
        )
        for box in out.xyxy[coast].astype(np.float64):
            iou = iou_matrix(box[None], d)[0] if len(d) else np.zeros(0)
            inter = np.clip(np.minimum(box[2:], d[:, 2:]) - np.maximum(box[:2], d[:, :2]), 0, None)
            front = d[:, 3] >= box[3]
            area = max(float(np.prod(box[2:] - box[:2])), 1.0)
            cover = float((inter.prod(axis=1) * front).max()) / area if len(d) else 0.0
            if len(iou) and iou.max() >= 0.5:
                kind = "taken"
            elif box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
                kind = "left"
            elif cover >= 0.3:
                kind = "occluded"
            else:
                kind = "unexplained"
            seen[kind] += 1
            free = gt[~covered]
            right[kind] += int(len(free) > 0 and iou_matrix(box[None], free).max() >= 0.5)
    return (
        f"| {rec.name} | {worse} | {with_coast} | "
        + " / ".join(str(seen[k]) for k in kinds)
        + " | "
        + " / ".join(str(right[k]) for k in kinds)
        + " |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--tracker", type=Path, help="another tracker module file to compare")
    ap.add_argument(
        "--subsample",
        default="",
        help="comma-separated N: also replay every N-th frame of each real-rate "
        "sequence (every phase, so all frames count), i.e. the same scene at 1/N "
        "of its rate",
    )
    ap.add_argument(
        "--why",
        action="store_true",
        help="only classify the coasting tracks of frames counted worse than raw "
        "(of --tracker if given, else the shipped tracker)",
    )
    args = ap.parse_args()
    other = None
    if args.tracker is not None:
        spec = importlib.util.spec_from_file_location("other_tracker", args.tracker)
        if spec is None or spec.loader is None:
            sys.exit(f"cannot import {args.tracker}")
        other = importlib.util.module_from_spec(spec)
        sys.modules["other_tracker"] = other  # dataclasses look their module up
        spec.loader.exec_module(other)
    recs = record(args.dataset)
    shipped = PipelineSettings().tracker_settings()

    def variant(**kw: Any) -> Callable[[], Tracker]:
        return lambda: Tracker(dataclasses.replace(shipped, **kw))

    rows: list[tuple[str, Callable[[], Any], bool]] = [
        ("shipped", variant(), True),
        ("no distance gate (max_speed 0)", variant(max_speed=0.0), True),
        ("no 'taken' rule (taken_iou 1.0)", variant(taken_iou=1.0), True),
        ("no occlusion rule (occluded_cover 1.0)", variant(occluded_cover=1.0), True),
        ("no 'left the frame' rule", variant(), False),
        ("no two-sighting confirmation", variant(confirm_span_s=None), True),
        ("still grace 2 s (as before)", variant(count_stationary_grace_s=2.0), True),
        ("no warm-up (start-up nor after a gap)", variant(count_warmup=False), True),
    ]
    if other is not None and args.tracker is not None:
        mod = other
        label = f"{args.tracker.name} (its defaults)"
        rows.insert(0, (label, lambda: mod.Tracker(mod.TrackerSettings()), True))
    if args.why:
        make = rows[0][1]
        print(f"coasting tracks of {rows[0][0]} in frames counted worse than raw")
        print("| sequence | frames worse than raw | with a counted coasting track | "
              "coasting track-frames taken / left / occluded / unexplained | "
              "of which on an undetected GT person |")  # fmt: skip
        print("|---|---|---|---|---|")
        for rec in recs:
            print(why(rec, make))
        return
    if args.subsample:
        rows = rows[: 2 if other is not None else 1]  # the compared tracker and shipped
        print(
            "| sequence | rate | " + " | ".join(label for label, _, _ in rows) + " | single-frame |"
        )
        print("|---" * (len(rows) + 3) + "|")
        for rec in (r for r in recs if r.spacing_s < 1.0):
            for n in [1] + [int(v) for v in args.subsample.split(",")]:
                tot = {label: [0.0, 0] for label, _, _ in rows}
                single = 0.0
                for phase in range(n):
                    sub = Recorded(
                        rec.name, rec.spacing_s * n, rec.size,
                        rec.detections[phase::n], rec.gt[phase::n],
                    )  # fmt: skip
                    for label, make, with_size in rows:
                        r = replay(sub, make, with_size)
                        tot[label][0] += r["abs_err"]
                        tot[label][1] += r["frames"]
                    single += r["single_abs_err"]
                frames = tot[rows[0][0]][1]
                cells = " | ".join(f"{e / f:.2f}" for e, f in tot.values())
                print(f"| {rec.name} | {1.0 / (rec.spacing_s * n):.2f} fps | {cells} | "
                      f"{single / frames:.2f} |")  # fmt: skip
        return
    names = [r.name for r in recs]
    print("| variant | " + " | ".join(names) + " | overall |")
    print("|---" * (len(names) + 2) + "|")
    shipped_res: dict[str, dict[str, float]] = {}
    for label, make, with_size in rows:
        cells, tot = (
            [],
            {"frames": 0, "abs_err": 0.0, "single_abs_err": 0.0, "switches": 0, "links": 0},
        )
        for rec in recs:
            r = replay(rec, make, with_size)
            if label == "shipped":
                shipped_res[rec.name] = r
            for k in tot:
                tot[k] += r[k]
            cells.append(
                f"{r['abs_err'] / r['frames']:.2f} / {r['single_abs_err'] / r['frames']:.2f} "
                f"/ {r['switches']}"
            )
        cells.append(
            f"{tot['abs_err'] / tot['frames']:.2f} / {tot['single_abs_err'] / tot['frames']:.2f} "
            f"/ {tot['switches']}"
        )
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("cells: product MAE / single-frame MAE / id switches (proxy)")
    video = [rec for rec in recs if rec.spacing_s < 1.0]
    worst = max(
        (
            shipped_res[r.name]["abs_err"] / max(shipped_res[r.name]["single_abs_err"], 1e-9)
            for r in video
        ),
        default=float("nan"),
    )
    n = sum(r["frames"] for r in shipped_res.values())
    prod = sum(r["abs_err"] for r in shipped_res.values()) / n
    single = sum(r["single_abs_err"] for r in shipped_res.values()) / n
    print(
        f"product_vs_single_worst={worst:.3f} overall_product_mae={prod:.3f} "
        f"overall_single_mae={single:.3f}"
    )


if __name__ == "__main__":
    main()
