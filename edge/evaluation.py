"""Counting and detection accuracy on annotated sequences.

Data layout (one folder per sequence, as in ``shared/data/people``)::

    <dataset>/<sequence>/frames/000001.jpg ...   temporal order
    <dataset>/<sequence>/gt.csv                  frame,x,y,w,h (pixels)

For every sequence the product's configuration (detector + tracker) runs on
the frames in order; the count is the number of people the tracker counts as
present (confirmed and seen within the count grace, ``TrackedObjects.counted``,
the same definition as ``ZoneState.people``), compared with the number of
ground-truth boxes of that frame. Detection
precision / recall are measured on the raw detector output at IoU 0.5. The
plain baseline (YOLOX-Nano once at 416x416 on the whole frame, score 0.3, NMS
0.45, raw detections counted) runs in the same pass for comparison.

Timing: the tracker needs a time axis. Sequences that are real video use their
real rate, as their ``SOURCE.md`` states it (:func:`source_fps`); the
waiting-room sets are sparse time-lapses (7 s - 4 min apart),
far beyond any track timeout, so they are fed at the product's sampling rate
(2 frames/s): a 2 fps camera watching seated people sees the same scene in
consecutive frames, which is what those samples show.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from lobbywatch.edge.detections import Detections, FloatArray, iou_matrix
from lobbywatch.edge.detector import Detector, DetectorSettings
from lobbywatch.errors import SourceError

DEFAULT_FPS = 2.0  # the edge box's detection rate per camera

_FPS = r"(\d+(?:\.\d+)?)\s*(?:fps|frames?\s*(?:/|per)\s*s)"
_EFFECTIVE = re.compile(r"effective\s+(?:frame\s+)?rate(?:\s+is|:)?\s*(?:about\s+)?" + _FPS, re.I)
_RATE = re.compile(r"frame\s+rate[^\n]*?" + _FPS, re.I)
_EVERY = re.compile(r"every\s+(\d+)(?:st|nd|rd|th)\b", re.I)
_TIMELAPSE = re.compile(r"time-?lapse|not a video", re.I)


def source_fps(text: str) -> float | None:
    """Rate at which a sequence's stored frames were taken, from its ``SOURCE.md``.

    The dataset layout documents timing in prose (``- frame rate: ...``,
    ``- subsampling: ...``). In order of trust: an explicit effective rate; a
    time-lapse (frames seconds to minutes apart) is fed at the product's own
    sampling rate (:data:`DEFAULT_FPS`), as a 2 fps camera watching the same
    scene would see it; a source frame rate, divided by the ``every N-th``
    subsampling when one is stated. ``None`` when the text says nothing usable.

    Example:
        >>> source_fps("- frame rate 25 fps\\n- subsampling: none")
        25.0
        >>> source_fps("- frame rate 7 fps\\n- subsampling: every 2nd frame kept")
        3.5
    """
    if m := _EFFECTIVE.search(text):
        return float(m.group(1))
    rate_lines = [ln for ln in text.splitlines() if re.search(r"frame\s+rate", ln, re.I)]
    if any(_TIMELAPSE.search(ln) for ln in rate_lines):
        return DEFAULT_FPS
    if not (m := _RATE.search(text)):
        return None
    rate = float(m.group(1))
    sub = next((ln for ln in text.splitlines() if re.search(r"subsampl", ln, re.I)), "")
    if every := _EVERY.search(sub):
        rate /= int(every.group(1))
    return rate if rate > 0 else None


IOU_MATCH = 0.5


def baseline_settings() -> DetectorSettings:
    """The plain reference: one 416x416 pass, score 0.3, NMS 0.45."""
    return DetectorSettings(  # type: ignore[call-arg]
        input_size=416,
        fit_aspect=False,
        max_upscale=4.0,
        score_threshold=0.3,
        nms_iou=0.45,
        tiles=(1, 1),
    )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Sequence:
    """One annotated sequence.

    Attributes:
        name: folder name.
        frames: JPEG paths in temporal order.
        gt: ground-truth boxes ``(n_i, 4)`` xyxy per frame, aligned with ``frames``.
        fps: rate at which frames are fed to the tracker.
    """

    name: str
    frames: tuple[Path, ...]
    gt: tuple[FloatArray, ...]
    fps: float


def read_gt(path: Path, n_frames: int) -> tuple[FloatArray, ...]:
    """Parse ``gt.csv`` into per-frame xyxy arrays (frames are 1-based)."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise SourceError(f"cannot read ground truth {path}: {exc}") from exc
    if not rows or [c.strip() for c in rows[0]] != ["frame", "x", "y", "w", "h"]:
        raise SourceError(f"{path}: header must be 'frame,x,y,w,h'")
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], np.float64).reshape(-1, 5)
    except ValueError as exc:
        raise SourceError(f"{path}: non-numeric value ({exc})") from exc
    frame = data[:, 0].astype(np.int64)
    if len(frame) and (frame.min() < 1 or frame.max() > n_frames):
        raise SourceError(
            f"{path}: frame numbers must be 1..{n_frames}, got {frame.min()}..{frame.max()}"
        )
    xyxy = np.concatenate((data[:, 1:3], data[:, 1:3] + data[:, 3:5]), axis=1).astype(np.float32)
    order = np.argsort(frame, kind="stable")
    frame, xyxy = frame[order], xyxy[order]
    bounds = np.searchsorted(frame, np.arange(1, n_frames + 2))
    return tuple(xyxy[bounds[i] : bounds[i + 1]] for i in range(n_frames))


def load_sequence(folder: Path, fps: float | None = None) -> Sequence:
    """Read one sequence folder (frames/*.jpg + gt.csv)."""
    frames = tuple(sorted((folder / "frames").glob("*.jpg")))
    if not frames:
        raise SourceError(f"{folder}: no frames/*.jpg")
    gt = read_gt(folder / "gt.csv", len(frames))
    rate = fps or _folder_fps(folder)
    return Sequence(folder.name, frames, gt, rate)


def _folder_fps(folder: Path) -> float:
    try:
        text = (folder / "SOURCE.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_FPS
    return source_fps(text) or DEFAULT_FPS


def find_sequences(dataset: Path) -> list[Path]:
    """Sequence folders of a dataset (each with frames/ and gt.csv), by name."""
    if not dataset.is_dir():
        raise SourceError(f"dataset folder {dataset} does not exist")
    found = sorted(
        p for p in dataset.iterdir() if (p / "gt.csv").is_file() and (p / "frames").is_dir()
    )
    if not found:
        raise SourceError(f"{dataset}: no sequence folders with frames/ and gt.csv")
    return found


def read_frame(path: Path) -> npt.NDArray[np.uint8]:
    """Decode a JPEG as BGR; a corrupt or unreadable file is a :class:`SourceError`."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot decode image {path} (missing, corrupt or not an image)")
    return np.asarray(img, dtype=np.uint8)


# --------------------------------------------------------------------------- matching


def match_count(pred: FloatArray, gt: FloatArray, iou_threshold: float = IOU_MATCH) -> int:
    """True positives of a one-to-one greedy matching by IoU.

    Greedy-by-IoU picks the highest-IoU pair, removes its row and column, and
    repeats. Every pair that is the best of both its row and its column would
    be picked by it, so we take all such mutual-best pairs per round at once
    (rounds are bounded by the number of matches, vectorised inside).
    """
    if len(pred) == 0 or len(gt) == 0:
        return 0
    iou = iou_matrix(pred, gt)
    iou[iou < iou_threshold] = -1.0
    matched = 0
    while True:
        best_col = iou.argmax(axis=1)
        best_row = iou.argmax(axis=0)
        rows = np.arange(iou.shape[0])
        mutual = (best_row[best_col] == rows) & (iou[rows, best_col] >= iou_threshold)
        if not mutual.any():
            return matched
        r, c = rows[mutual], best_col[mutual]
        matched += int(r.size)
        iou[r, :] = -1.0
        iou[:, c] = -1.0


@dataclass(slots=True)
class Tally:
    """Per-frame counts accumulated for one configuration."""

    abs_err: list[float] = field(default_factory=list)
    raw_err: list[float] = field(default_factory=list)
    tp: int = 0
    n_pred: int = 0
    n_gt: int = 0

    def add(self, count: int, pred: FloatArray, gt: FloatArray) -> None:
        self.abs_err.append(abs(count - len(gt)))
        self.raw_err.append(abs(len(pred) - len(gt)))
        self.tp += match_count(pred, gt)
        self.n_pred += len(pred)
        self.n_gt += len(gt)

    def merge(self, other: Tally) -> None:
        self.abs_err.extend(other.abs_err)
        self.raw_err.extend(other.raw_err)
        self.tp += other.tp
        self.n_pred += other.n_pred
        self.n_gt += other.n_gt

    def summary(self) -> dict[str, float]:
        return {
            "mae": round(float(np.mean(self.abs_err)) if self.abs_err else 0.0, 4),
            "raw_mae": round(float(np.mean(self.raw_err)) if self.raw_err else 0.0, 4),
            "precision": round(self.tp / self.n_pred if self.n_pred else 0.0, 4),
            "recall": round(self.tp / self.n_gt if self.n_gt else 0.0, 4),
        }


# --------------------------------------------------------------------------- counting


class Counter(Protocol):
    """Turns one frame's detections into a people count (tracker or raw)."""

    def __call__(self, detections: Detections, ts: float) -> int: ...


def tracker_counter(settings: Any = None) -> Counter:
    """Count = tracks the tracker counts as present (``TrackedObjects.counted``).

    That is the product's count, the one ``ZoneState.people`` is made of:
    confirmed and seen within the count grace. ``settings`` defaults to the
    tracker configuration of the default ``PipelineSettings``.
    """
    from lobbywatch.edge.pipeline import PipelineSettings
    from lobbywatch.edge.tracker import Tracker

    tracker = Tracker(settings or PipelineSettings().tracker_settings())

    def count(detections: Detections, ts: float) -> int:
        return int(np.count_nonzero(tracker.update(detections, ts).counted))

    return count


def raw_counter() -> Counter:
    """Count = raw detections (the baseline's definition)."""

    def count(detections: Detections, ts: float) -> int:
        return len(detections)

    return count


def tracker_available() -> bool:
    """Whether ``edge/tracker.py`` provides ``Tracker`` yet."""
    try:
        from lobbywatch.edge import tracker

        return hasattr(tracker, "Tracker")
    except ImportError:
        return False


@dataclass(frozen=True, slots=True)
class SequenceResult:
    """Scores of one sequence (or the pooled total)."""

    name: str
    frames: int
    mae: float
    raw_mae: float
    precision: float
    recall: float
    fps: float
    baseline: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        # The baseline counts raw detections, so its raw_mae is its mae.
        out["baseline"].pop("raw_mae", None)
        return out


def evaluate_sequence(
    seq: Sequence,
    detector: Detector,
    counter: Counter,
    baseline: Detector | None,
    step: int = 1,
) -> tuple[SequenceResult, Tally, Tally, float]:
    """Run detector + counter (and the baseline) over one sequence in order.

    Args:
        seq: the sequence.
        detector: the product's detector.
        counter: confirmed-count function (tracker) fed in frame order.
        baseline: the plain reference detector, or ``None`` to skip it.
        step: use every ``step``-th frame (tests subsample; timestamps keep the
            real spacing ``step / fps``).

    Returns:
        ``(result, tally, baseline tally, seconds spent in detector + counter)``.
    """
    ours, base = Tally(), Tally()
    busy = 0.0
    idx = range(0, len(seq.frames), step)
    for i in idx:
        frame = read_frame(seq.frames[i])
        t0 = time.perf_counter()
        det = detector.detect(frame)
        count = counter(det, i / seq.fps)
        busy += time.perf_counter() - t0
        ours.add(count, det.xyxy, seq.gt[i])
        if baseline is not None:
            bdet = baseline.detect(frame)
            base.add(len(bdet), bdet.xyxy, seq.gt[i])
    n = len(idx)
    res = SequenceResult(
        seq.name, n, **ours.summary(), fps=round(n / busy, 2) if busy else 0.0,
        baseline=base.summary() if baseline is not None else {},
    )  # fmt: skip
    return res, ours, base, busy


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Per-sequence and pooled results.

    ``overall`` pools frames across sequences (every frame weighs the same);
    ``mae_sequence_mean`` is the unweighted mean of the per-sequence MAEs.
    """

    sequences: list[SequenceResult]
    overall: SequenceResult
    mae_sequence_mean: float
    baseline_mae_sequence_mean: float
    counter: str
    rates: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        overall = self.overall.to_json()
        overall.pop("name")
        overall["mae_sequence_mean"] = self.mae_sequence_mean
        if overall["baseline"]:
            overall["baseline"]["mae_sequence_mean"] = self.baseline_mae_sequence_mean
        seqs = [s.to_json() for s in self.sequences]
        for seq in seqs:
            if seq["name"] in self.rates:
                seq["tracker_fps"] = self.rates[seq["name"]]
        return {"sequences": seqs, "overall": overall}


def evaluate(
    dataset: Path,
    settings: DetectorSettings | None = None,
    tracker_settings: Any = None,
    with_baseline: bool = True,
    step: int = 1,
    fps: float | None = None,
    use_tracker: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Evaluate the product's configuration on every sequence of ``dataset``.

    Args:
        dataset: folder of sequence folders.
        settings: detector settings (default: the product defaults).
        tracker_settings: passed to ``Tracker`` (default: its defaults).
        with_baseline: also run the plain 416 baseline.
        step: frame subsampling (1 = every frame).
        fps: override the per-sequence tracker rate (default: from each
            sequence's ``SOURCE.md``, see :func:`source_fps`).
        use_tracker: ``None`` = use the tracker when ``edge/tracker.py`` exists.
        progress: optional callback for a status line per sequence.
    """
    detector = Detector.from_settings(settings)
    base = Detector.from_settings(baseline_settings()) if with_baseline else None
    if use_tracker is None:
        use_tracker = tracker_available()
    results: list[SequenceResult] = []
    pooled, pooled_base = Tally(), Tally()
    busy_total = 0.0
    rates: dict[str, float] = {}
    for folder in find_sequences(dataset):
        seq = load_sequence(folder, fps)
        rates[seq.name] = seq.fps
        counter = tracker_counter(tracker_settings) if use_tracker else raw_counter()
        res, ours, bt, busy = evaluate_sequence(seq, detector, counter, base, step)
        if progress:
            progress(f"{res.name}: mae {res.mae} (baseline {res.baseline.get('mae')})")
        results.append(res)
        pooled.merge(ours)
        pooled_base.merge(bt)
        busy_total += busy
    n = sum(r.frames for r in results)
    overall = SequenceResult(
        "overall", n, **pooled.summary(), fps=round(n / busy_total, 2) if busy_total else 0.0,
        baseline=pooled_base.summary() if base is not None else {},
    )  # fmt: skip
    seq_mean = round(float(np.mean([r.mae for r in results])), 4)
    base_mean = round(float(np.mean([r.baseline.get("mae", 0.0) for r in results])), 4)
    counter_name = "tracker" if use_tracker else "raw"
    return EvalReport(results, overall, seq_mean, base_mean, counter_name, rates)
