"""How wide each catalogue model draws a person, measured without ground truth.

``yolox_nano`` (COCO) and ``bytetrack_nano`` (CrowdHuman / MOT17) box the same
people differently: the crowd model's boxes are wider. This bench runs both
on a video that is not part of the evaluation set (``vtest.avi``, every 10th
frame), pairs their confident boxes one-to-one (score > 0.5, IoU >= 0.5) and
prints the median ratio of widths and heights, ``other / reference`` with
``yolox_nano`` at 896 as the reference convention (COCO's tight person box,
the convention of the visible-part annotations ``lobbywatch eval`` scores
against). The pooled width median over the listed sizes is what
``models/catalogue.yaml`` records as ``output.box_width_scale`` of the other
model (docs/accuracy.md, round 8). No annotation is read.

    .venv/bin/python bench/box_convention.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lobbywatch.edge.calibration import size_settings
from lobbywatch.edge.detections import iou_matrix
from lobbywatch.edge.detector import Detector
from lobbywatch.edge.evaluation import greedy_matches

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video" / "vtest.avi"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--model", default="bytetrack_nano")
    ap.add_argument("--sizes", default="512,896")
    ap.add_argument("--reference", default="yolox_nano:896")
    ap.add_argument("--score", type=float, default=0.5)
    args = ap.parse_args()
    ref_name, ref_size = args.reference.split(":")
    # native boxes on both sides: the ratio is what the catalogue value corrects
    native = {"box_width": "native"}
    ref = Detector.from_settings(
        size_settings(ref_name, ref_size, args.score).model_copy(update=native)
    )
    dets = {
        z: Detector.from_settings(
            size_settings(args.model, z, args.score).model_copy(update=native)
        )
        for z in args.sizes.split(",")
    }
    ratios: dict[str, list[tuple[float, float]]] = {z: [] for z in dets}
    cap = cv2.VideoCapture(str(args.video))
    i = used = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        i += 1
        if i % args.every:
            continue
        used += 1
        r = ref.detect(frame)
        for z, det in dets.items():
            d = det.detect(frame)
            a, b = greedy_matches(iou_matrix(d.xyxy, r.xyxy), 0.5)
            wd, wr = d.xyxy[a, 2] - d.xyxy[a, 0], r.xyxy[b, 2] - r.xyxy[b, 0]
            hd, hr = d.xyxy[a, 3] - d.xyxy[a, 1], r.xyxy[b, 3] - r.xyxy[b, 1]
            ratios[z] += list(zip((wr / wd).tolist(), (hr / hd).tolist(), strict=True))
    if not used:
        raise SystemExit(f"no frames read from {args.video}")
    pooled = []
    for z, v in ratios.items():
        a = np.asarray(v).reshape(-1, 2)
        pooled.append(a)
        q = np.percentile(a[:, 0], [25, 50, 75]) if len(a) else [np.nan] * 3
        print(
            f"{args.model} {z} vs {args.reference}: {len(a)} pairs on {used} frames, "
            f"width ratio median {q[1]:.3f} (IQR {q[0]:.3f}-{q[2]:.3f}), "
            f"height ratio median {np.median(a[:, 1]):.3f}"
        )
    p = np.concatenate(pooled)
    print(f"box_width_scale={np.median(p[:, 0]):.2f} height_ratio={np.median(p[:, 1]):.2f}")


if __name__ == "__main__":
    main()
