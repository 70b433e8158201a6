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

Timing: every sequence is fed with its real time stamps, frame ``i`` at
``i * spacing`` seconds, the spacing its ``SOURCE.md`` states
(:func:`source_timing`): the frame rate (after subsampling) of a video, the
stated spacing of a time-lapse (the waiting rooms: 6.7 s and 50 s median). No
rule of the tracker or the count depends on which data set it is fed; at
time-lapse spacings no history survives between frames, which is what a real
camera sampled that sparsely would give.

Besides the product count (``mae``, also ``product_mae``) every sequence
reports the **single-frame count** (``single_frame_mae``): the same detections
through the count rules with no history, i.e. the detections that would start a
track (score >= the tracker's start score). It is the bar the product count
must clear on real-rate video. ``id_switches`` / ``id_links`` are the
identity-switch proxy of :mod:`lobbywatch.edge.id_switches` (the GT has no ids).
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

DEFAULT_FPS = 2.0  # the edge box's detection rate per camera; sequences that state no timing
#: Spacing assumed for a time-lapse whose SOURCE.md states no spacing: longer than
#: every track timeout, so no history survives between its frames, as with any
#: stated time-lapse spacing above ~10 s. Reported as ``timing: "assumed"``.
TIMELAPSE_FALLBACK_S = 60.0

_FPS = r"(\d+(?:\.\d+)?)\s*(?:fps|frames?\s*(?:/|per)\s*s)"
_EFFECTIVE = re.compile(r"effective\s+(?:frame\s+)?rate(?:\s+is|:)?\s*(?:about\s+)?" + _FPS, re.I)
_RATE = re.compile(r"frame\s+rate[^\n]*?" + _FPS, re.I)
_EVERY = re.compile(r"every\s+(\d+)(?:st|nd|rd|th)\b", re.I)
_TIMELAPSE = re.compile(r"time-?lapse|not a video", re.I)
_DUR = r"(\d+(?:\.\d+)?)[\s-]*(s|secs?|seconds?|min|mins|minutes?|h|hours?)\b"
# Spacing of a time-lapse, in order of trust: a stated median, a stated period
# ("one frame every 2 min"), a stated gap ("frames 30 s apart").
_SPACING = (
    re.compile(r"median\s*(?:of\s*)?(?:about\s*)?" + _DUR, re.I),
    re.compile(_DUR + r"[^,;()\n]{0,20}\(\s*median\s*\)", re.I),
    re.compile(r"every\s+" + _DUR, re.I),
    re.compile(r"(?:about\s*)?" + _DUR + r"\s*(?:apart|between|per\s+frame|intervals?)", re.I),
)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class SourceTiming:
    """Real time between a sequence's consecutive stored frames.

    Attributes:
        spacing_s: seconds from one stored frame to the next (> 0).
        kind: ``"video"`` (a stated frame rate), ``"time-lapse"``, or
            ``"override"`` (``lobbywatch eval --fps``).
        stated: False when the spacing is an assumption (no usable statement:
            :data:`DEFAULT_FPS` for an unstated rate,
            :data:`TIMELAPSE_FALLBACK_S` for a time-lapse without a spacing).
    """

    spacing_s: float
    kind: str
    stated: bool

    @property
    def fps(self) -> float:
        return 1.0 / self.spacing_s


def source_timing(text: str) -> SourceTiming | None:
    """Real frame spacing of a sequence, from its ``SOURCE.md`` prose.

    The dataset layout documents timing in prose (``- frame rate: ...``,
    ``- subsampling: ...``). In order of trust: an explicit effective rate; for
    a time-lapse ("time-lapse" / "not a video" on a frame-rate line) the
    spacing stated on that line (a median if given, else a period or gap, in
    s / min / h); a source frame rate, divided by the ``every N-th``
    subsampling when one is stated. ``None`` when the text says nothing usable.
    No rule names a data set: a held-out sequence is read the same way.

    Example:
        >>> source_timing("- frame rate 7 fps\\n- subsampling: every 2nd frame kept").spacing_s
        0.2857142857142857
        >>> source_timing("- frame rate: time-lapse, not a video: frames 6.7 s apart (median)")
        SourceTiming(spacing_s=6.7, kind='time-lapse', stated=True)
    """
    if m := _EFFECTIVE.search(text):
        rate = float(m.group(1))
        return SourceTiming(1.0 / rate, "video", True) if rate > 0 else None
    rate_lines = [ln for ln in text.splitlines() if re.search(r"frame\s+rate", ln, re.I)]
    lapse = [ln for ln in rate_lines if _TIMELAPSE.search(ln)]
    if lapse:
        for rx in _SPACING:
            for line in lapse:
                if (d := rx.search(line)) and float(d.group(1)) > 0:
                    spacing = float(d.group(1)) * _UNIT_S[d.group(2)[0].lower()]
                    return SourceTiming(spacing, "time-lapse", True)
        return SourceTiming(TIMELAPSE_FALLBACK_S, "time-lapse", False)
    if not (m := _RATE.search(text)):
        return None
    rate = float(m.group(1))
    # "every N-th frame kept", on the subsampling line or on the rate line itself
    lines = [ln for ln in text.splitlines() if re.search(r"subsampl", ln, re.I)] + rate_lines
    if every := next((e for ln in lines if (e := _EVERY.search(ln))), None):
        rate /= int(every.group(1))
    return SourceTiming(1.0 / rate, "video", True) if rate > 0 else None


def source_fps(text: str) -> float | None:
    """``1 / spacing`` of :func:`source_timing` (frames per second of real time).

    Example:
        >>> source_fps("- frame rate 25 fps\\n- subsampling: none")
        25.0
        >>> source_fps("- frame rate 7 fps\\n- subsampling: every 2nd frame kept")
        3.5
    """
    timing = source_timing(text)
    return None if timing is None else timing.fps


IOU_MATCH = 0.5


def baseline_settings() -> DetectorSettings:
    """The plain reference: one 416x416 pass, score 0.3, NMS 0.45."""
    return DetectorSettings(  # type: ignore[call-arg]
        name="yolox_nano",
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
        fps: rate at which frames are fed to the tracker (``1 / timing.spacing_s``).
        timing: real spacing of the frames and where it came from.
    """

    name: str
    frames: tuple[Path, ...]
    gt: tuple[FloatArray, ...]
    fps: float
    timing: SourceTiming = SourceTiming(1.0 / DEFAULT_FPS, "video", False)


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
    timing = SourceTiming(1.0 / fps, "override", True) if fps else _folder_timing(folder)
    return Sequence(folder.name, frames, gt, timing.fps, timing)


def _folder_timing(folder: Path) -> SourceTiming:
    try:
        text = (folder / "SOURCE.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return source_timing(text) or SourceTiming(1.0 / DEFAULT_FPS, "video", False)


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


def greedy_matches(
    score: npt.NDArray[np.float64], threshold: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """One-to-one greedy matching on an affinity matrix: ``(rows, cols)`` of the pairs.

    Greedy picks the highest-affinity pair (``>= threshold``), removes its row and
    column, and repeats. Every pair that is the best of both its row and its
    column would be picked by it, so all such mutual-best pairs are taken per
    round at once (rounds are bounded by the number of matches, vectorised
    inside). ``score`` is modified in place.
    """
    rows_out: list[npt.NDArray[np.intp]] = []
    cols_out: list[npt.NDArray[np.intp]] = []
    if score.size:
        score[score < threshold] = -np.inf
        rows = np.arange(score.shape[0])
        while True:
            best_col = score.argmax(axis=1)
            best_row = score.argmax(axis=0)
            mutual = (best_row[best_col] == rows) & (score[rows, best_col] >= threshold)
            if not mutual.any():
                break
            r, c = rows[mutual], best_col[mutual]
            rows_out.append(r)
            cols_out.append(c)
            score[r, :] = -np.inf
            score[:, c] = -np.inf
    empty = np.zeros(0, np.intp)
    return (
        np.concatenate(rows_out) if rows_out else empty,
        np.concatenate(cols_out) if cols_out else empty,
    )


def matched_gt(
    pred: FloatArray, gt: FloatArray, iou_threshold: float = IOU_MATCH
) -> npt.NDArray[np.bool_]:
    """Per GT box, whether a one-to-one greedy IoU matching gives it a detection."""
    hit = np.zeros(len(gt), bool)
    if len(pred) and len(gt):
        hit[greedy_matches(iou_matrix(pred, gt), iou_threshold)[1]] = True
    return hit


def match_count(pred: FloatArray, gt: FloatArray, iou_threshold: float = IOU_MATCH) -> int:
    """True positives of a one-to-one greedy matching by IoU (:func:`greedy_matches`)."""
    return int(np.count_nonzero(matched_gt(pred, gt, iou_threshold)))


#: A GT box within this many pixels of the frame's edge counts as cut by it
#: (``border_recall``): annotators clip boxes at the image edge.
BORDER_PX = 2.0


def touches_border(
    gt: FloatArray, frame_wh: tuple[int, int], margin: float = BORDER_PX
) -> npt.NDArray[np.bool_]:
    """Per box, whether it reaches (or crosses) the frame's edge: a person cut by it.

    Example:
        >>> boxes = np.array([[0, 10, 5, 20], [3, 3, 8, 8], [5, 5, 10, 19]], np.float32)
        >>> touches_border(boxes, (10, 20)).tolist()
        [True, False, True]
    """
    w, h = frame_wh
    return np.asarray(
        (gt[:, 0] <= margin)
        | (gt[:, 1] <= margin)
        | (gt[:, 2] >= w - margin)
        | (gt[:, 3] >= h - margin)
    )


@dataclass(slots=True)
class Tally:
    """Per-frame counts accumulated for one configuration."""

    abs_err: list[float] = field(default_factory=list)
    raw_err: list[float] = field(default_factory=list)
    single_err: list[float] = field(default_factory=list)
    tp: int = 0
    n_pred: int = 0
    n_gt: int = 0
    id_switches: int = 0
    id_links: int = 0
    tp_border: int = 0
    n_gt_border: int = 0

    def add(
        self,
        count: int,
        pred: FloatArray,
        gt: FloatArray,
        single_count: int | None = None,
        frame_wh: tuple[int, int] | None = None,
    ) -> None:
        """One frame: product count, raw detections, GT boxes, single-frame count
        (``None``: the raw detection count), frame size (for ``border_recall``)."""
        self.abs_err.append(abs(count - len(gt)))
        self.raw_err.append(abs(len(pred) - len(gt)))
        single = len(pred) if single_count is None else single_count
        self.single_err.append(abs(single - len(gt)))
        hit = matched_gt(pred, gt)
        self.tp += int(np.count_nonzero(hit))
        self.n_pred += len(pred)
        self.n_gt += len(gt)
        if frame_wh is not None and len(gt):
            border = touches_border(gt, frame_wh)
            self.n_gt_border += int(np.count_nonzero(border))
            self.tp_border += int(np.count_nonzero(hit & border))

    def merge(self, other: Tally) -> None:
        self.abs_err.extend(other.abs_err)
        self.raw_err.extend(other.raw_err)
        self.single_err.extend(other.single_err)
        self.id_switches += other.id_switches
        self.id_links += other.id_links
        self.tp += other.tp
        self.n_pred += other.n_pred
        self.n_gt += other.n_gt
        self.tp_border += other.tp_border
        self.n_gt_border += other.n_gt_border

    def summary(self) -> dict[str, float]:
        return {
            "mae": round(float(np.mean(self.abs_err)) if self.abs_err else 0.0, 4),
            "raw_mae": round(float(np.mean(self.raw_err)) if self.raw_err else 0.0, 4),
            "precision": round(self.tp / self.n_pred if self.n_pred else 0.0, 4),
            "recall": round(self.tp / self.n_gt if self.n_gt else 0.0, 4),
        }

    def border_recall(self) -> float | None:
        """Recall of the GT boxes cut by the frame edge (:func:`touches_border`);
        ``None`` when no frame size was given or no box touches the edge."""
        return round(self.tp_border / self.n_gt_border, 4) if self.n_gt_border else None

    def single_frame_mae(self) -> float:
        """MAE of the single-frame count (detections through the count rules, no history)."""
        return round(float(np.mean(self.single_err)) if self.single_err else 0.0, 4)


# --------------------------------------------------------------------------- counting


class Counter(Protocol):
    """Turns one frame's detections into a people count (tracker or raw)."""

    def __call__(self, detections: Detections, ts: float) -> int: ...


class TrackerCounter:
    """Count = tracks the tracker counts as present (``TrackedObjects.counted``).

    That is the product's count, the one ``ZoneState.people`` is made of.
    ``last`` holds the latest :class:`TrackedObjects` (for the id-switch proxy);
    :meth:`single_frame` is the same count rules with no history.
    """

    def __init__(self, settings: Any = None) -> None:
        from lobbywatch.edge.pipeline import PipelineSettings
        from lobbywatch.edge.tracker import TrackedObjects, Tracker

        self.tracker = Tracker(settings or PipelineSettings().tracker_settings())
        self.last: TrackedObjects = TrackedObjects.empty()

    def __call__(
        self, detections: Detections, ts: float, frame_size: tuple[int, int] | None = None
    ) -> int:
        self.last = self.tracker.update(detections, ts, frame_size)
        return int(np.count_nonzero(self.last.counted))

    def single_frame(self, detections: Detections) -> int:
        """People the count rules see in this frame alone: the detections that
        would start a track (with no history every track is new, and a new
        track is what the start-up count shows)."""
        return int(np.count_nonzero(detections.scores >= self.tracker.settings.start_score))


def tracker_counter(settings: Any = None) -> TrackerCounter:
    """The product's count (see :class:`TrackerCounter`); ``settings`` defaults to
    the tracker configuration of the default ``PipelineSettings``."""
    return TrackerCounter(settings)


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
    single_frame_mae: float | None = None
    id_switches: int | None = None
    id_links: int | None = None
    frame_spacing_s: float | None = None
    timing: str | None = None
    border_recall: float | None = None
    border_gt: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["product_mae"] = self.mae
        for key in (
            "single_frame_mae", "id_switches", "id_links", "frame_spacing_s", "timing",
            "border_recall", "border_gt",
        ):  # fmt: skip
            if out[key] is None:
                out.pop(key)
        # The baseline counts raw detections, so its raw_mae is its mae.
        out["baseline"].pop("raw_mae", None)
        return out


def _result(
    name: str,
    n: int,
    tally: Tally,
    busy: float,
    baseline: dict[str, float],
    frame_spacing_s: float | None = None,
    timing: str | None = None,
) -> SequenceResult:
    sm = tally.summary()
    return SequenceResult(
        name, n, mae=sm["mae"], raw_mae=sm["raw_mae"], precision=sm["precision"],
        recall=sm["recall"], fps=round(n / busy, 2) if busy else 0.0, baseline=baseline,
        single_frame_mae=tally.single_frame_mae(), id_switches=tally.id_switches,
        id_links=tally.id_links, frame_spacing_s=frame_spacing_s, timing=timing,
        border_recall=tally.border_recall(),
        border_gt=tally.n_gt_border if tally.border_recall() is not None else None,
    )  # fmt: skip


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
    from lobbywatch.edge.id_switches import IdSwitchCounter

    ours, base = Tally(), Tally()
    busy = 0.0
    idx = range(0, len(seq.frames), step)
    switches = IdSwitchCounter()
    spacing = 1.0 / seq.fps
    for i in idx:
        frame = read_frame(seq.frames[i])
        t0 = time.perf_counter()
        det = detector.detect(frame)
        if isinstance(counter, TrackerCounter):
            count = counter(det, i * spacing, (frame.shape[1], frame.shape[0]))
        else:
            count = counter(det, i * spacing)
        busy += time.perf_counter() - t0
        single = None
        if isinstance(counter, TrackerCounter):
            single = counter.single_frame(det)
            switches.add(seq.gt[i], counter.last)
        ours.add(count, det.xyxy, seq.gt[i], single, (frame.shape[1], frame.shape[0]))
        if baseline is not None:
            bdet = baseline.detect(frame)
            base.add(len(bdet), bdet.xyxy, seq.gt[i])
    tally = switches.tally()
    ours.id_switches, ours.id_links = tally.switches, tally.links
    n = len(idx)
    res = _result(
        seq.name, n, ours, busy, base.summary() if baseline is not None else {},
        frame_spacing_s=round(spacing * step, 4),
        timing=seq.timing.kind if seq.timing.stated else f"{seq.timing.kind} (assumed)",
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
    overall = _result(
        "overall", n, pooled, busy_total, pooled_base.summary() if base is not None else {}
    )
    seq_mean = round(float(np.mean([r.mae for r in results])), 4)
    base_mean = round(float(np.mean([r.baseline.get("mae", 0.0) for r in results])), 4)
    counter_name = "tracker" if use_tracker else "raw"
    return EvalReport(results, overall, seq_mean, base_mean, counter_name, rates)
