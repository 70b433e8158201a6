"""Greyscale and edge-cut copies of the development set, and the detector on them.

Issue 10 found two held-out weaknesses: a greyscale waiting room, and people
cut by the frame edge. This script measures both on copies of *every*
development sequence (not one):

* ``make``: writes ``OUT/grey`` (BGR -> grey -> 3 equal channels, JPEG q95:
  what a monochrome / IR-night camera delivers) and ``OUT/crop`` (the central
  76 % x 80 % of each frame, so people at the new edge are cut; every GT box
  with >= 25 % of its area inside is kept at its full extent, which may now
  reach past the frame, as amodal annotations such as MOT's do).
* ``detect``: like ``bench/model_sweep.py --detect`` (score 0.1, one cache file
  per model, size, variant and sequence) with an input variant: ``none``,
  ``clahe`` (the product's ``grey_contrast: clahe``), ``noclip`` (boxes not
  clipped to the frame), ``padP`` (frame padded by P % on every side with the
  letterbox grey 114 before the network).
* ``table``: product count MAE (the product's tracker at real time stamps),
  P / R and border recall (GT boxes within 2 px of the frame edge) per sequence.

    .venv/bin/python bench/input_variants.py make --out /tmp/variants
    .venv/bin/python bench/input_variants.py detect --dataset /tmp/variants/grey \\
        --cache /tmp/variants/cache --configs bytetrack_nano:512,yolox_nano:rule --variant clahe
    .venv/bin/python bench/input_variants.py table --dataset /tmp/variants/grey \\
        --cache /tmp/variants/cache --configs bytetrack_nano:512+clahe --thresholds 0.3,0.4
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_sweep import DATASET, load

from lobbywatch.edge.calibration import above, product_counts, size_settings
from lobbywatch.edge.detector import Detector, Prepared
from lobbywatch.edge.evaluation import Tally, find_sequences, load_sequence, read_frame


def make(src: Path, out: Path) -> None:
    for seqdir in find_sequences(src):
        frames = sorted((seqdir / "frames").glob("*.jpg"))
        with (seqdir / "gt.csv").open(newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        grey, crop = out / "grey" / seqdir.name, out / "crop" / seqdir.name
        for d in (grey, crop):
            (d / "frames").mkdir(parents=True, exist_ok=True)
            shutil.copy(seqdir / "SOURCE.md", d / "SOURCE.md")
        shutil.copy(seqdir / "gt.csv", grey / "gt.csv")
        h, w = read_frame(frames[0]).shape[:2]
        x0, y0 = int(w * 0.12), int(h * 0.10)
        x1, y1 = w - x0, h - y0
        for f in frames:
            im = read_frame(f)
            g = cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            cv2.imwrite(str(grey / "frames" / f.name), g, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(
                str(crop / "frames" / f.name), im[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
        kept = [["frame", "x", "y", "w", "h"]]
        for fr, *box in rows:
            x, y, bw, bh = map(float, box)
            ix = max(0.0, min(x + bw, x1) - max(x, x0))
            iy = max(0.0, min(y + bh, y1) - max(y, y0))
            if ix * iy >= 0.25 * bw * bh:
                kept.append([fr, f"{x - x0:.2f}", f"{y - y0:.2f}", f"{bw:.2f}", f"{bh:.2f}"])
        with (crop / "gt.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(kept)
        print(
            f"{seqdir.name}: {len(frames)} frames, crop keeps {len(kept) - 1} of {len(rows)} boxes"
        )


class _NoClip(Detector):
    """Boxes not clipped to the frame (the amodal extent the network predicts)."""

    def preprocess(self, frame: np.ndarray) -> Prepared:  # type: ignore[override]
        p = super().preprocess(frame)
        p.buffers.lo[:] = -1e6
        p.buffers.hi[:] = 1e6
        return p


def detect(dataset: Path, cache: Path, configs: list[str], variant: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    tokens = variant.split("+")
    pad = next((float(t[3:]) / 100 for t in tokens if t.startswith("pad")), 0.0)
    dets = {}
    for c in configs:
        m, s = c.split(":")
        st = size_settings(m, s, 0.1)
        if "clahe" in tokens:
            st = st.model_copy(update={"grey_contrast": "clahe"})
        dets[(m, s)] = (_NoClip if "noclip" in tokens else Detector).from_settings(st)
    for folder in find_sequences(dataset):
        seq = load_sequence(folder)
        out = {k: {"xyxy": [], "scores": [], "ms": []} for k in dets}
        for path in seq.frames:
            frame = read_frame(path)
            px = py = 0
            if pad:
                py, px = int(frame.shape[0] * pad), int(frame.shape[1] * pad)
                frame = cv2.copyMakeBorder(
                    frame, py, py, px, px, cv2.BORDER_CONSTANT, value=(114, 114, 114)
                )
            for k, det in dets.items():
                t0 = time.perf_counter()
                d = det.detect(frame)
                out[k]["ms"].append(1000 * (time.perf_counter() - t0))
                out[k]["xyxy"].append(d.xyxy - np.array([px, py, px, py], np.float32))
                out[k]["scores"].append(d.scores)
        suffix = "" if variant == "none" else "+" + variant
        for (m, s), v in out.items():
            np.savez(
                cache / f"{m}__{s}{suffix}__{seq.name}.npz",
                xyxy=np.concatenate(v["xyxy"]).reshape(-1, 4),
                scores=np.concatenate(v["scores"]),
                n=np.array([len(x) for x in v["scores"]]),
                ms=np.array(v["ms"]),
            )
        print(f"{seq.name}: {len(seq.frames)} frames cached", flush=True)


def table(dataset: Path, cache: Path, configs: list[str], thresholds: list[float]) -> None:
    seqs = [load_sequence(f) for f in find_sequences(dataset)]
    wh = {
        s.name: (int(read_frame(s.frames[0]).shape[1]), int(read_frame(s.frames[0]).shape[0]))
        for s in seqs
    }
    print(
        "| config | thr | "
        + " | ".join(s.name for s in seqs)
        + " | overall | P / R | border recall |"
    )
    print("|" + "---|" * (len(seqs) + 5))
    for c in configs:
        m, s = c.split(":")
        for thr in thresholds:
            pooled, cells = Tally(), []
            for seq in seqs:
                dets = [above(d, thr) for d in load(cache, m, s, seq.name)[0]]
                counts = product_counts(dets, seq.fps, thr, frame_size=wh[seq.name])
                t = Tally()
                for n, d, g in zip(counts, dets, seq.gt, strict=True):
                    t.add(int(n), d.xyxy, g, None, wh[seq.name])
                pooled.merge(t)
                sm = t.summary()
                cells.append(f"{sm['mae']:.2f} ({sm['precision']:.2f}/{sm['recall']:.2f})")
            o = pooled.summary()
            print(f"| {m} {s} | {thr:.2f} | " + " | ".join(cells)
                  + f" | **{o['mae']:.2f}** | {o['precision']:.2f} / {o['recall']:.2f} | "
                  f"{pooled.border_recall()} ({pooled.n_gt_border}) |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("make", "detect", "table"))
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lobbywatch-variants"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lobbywatch-variants/cache"))
    ap.add_argument("--configs", default="bytetrack_nano:512")
    ap.add_argument("--variant", default="none")
    ap.add_argument("--thresholds", default="0.3,0.4")
    a = ap.parse_args()
    if a.step == "make":
        make(a.dataset, a.out)
    elif a.step == "detect":
        detect(a.dataset, a.cache, a.configs.split(","), a.variant)
    else:
        table(a.dataset, a.cache, a.configs.split(","), [float(t) for t in a.thresholds.split(",")])


if __name__ == "__main__":
    main()
