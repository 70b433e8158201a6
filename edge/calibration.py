"""Installer calibration: choose model, input size and score threshold per camera.

A camera is commissioned from a handful of snapshots (5 is the target) with
the true number of people in each. :func:`calibrate` scores every candidate
setting on them and returns the one to use, with a prior that keeps the
shipped default unless the snapshots show a clear gain (see
:class:`CalibrationRule`).

Efficiency: each (model, input size) runs once per snapshot, at the lowest
threshold searched; every higher threshold is then exact post-hoc filtering
(:func:`above`): greedy NMS processes boxes by falling score, so boxes below a
threshold can never have suppressed boxes above it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.detector import DetectorSettings, plan_tiles

if TYPE_CHECKING:
    from pathlib import Path

    from lobbywatch.edge.evaluation import EvalReport
    from lobbywatch.edge.pipeline import PipelineSettings

#: Input sizes searched and measured: the long side of a fitted canvas with no
#: magnification cap (416 = the square training size), or ``rule`` = round 5's
#: scale rule (half the camera's resolution, 416..960). The default's own size
#: (512) is always searched too.
SIZES: tuple[str, ...] = ("416", "576", "736", "896", "1088", "rule")
#: Score thresholds searched, 0.15-0.60 in 0.05 steps: the best threshold of
#: every development sequence and both models lies in 0.2-0.5 (docs/accuracy.md).
THRESHOLDS: tuple[float, ...] = tuple(round(0.15 + 0.05 * i, 2) for i in range(10))
NO_CAP = 4.0  # max_upscale that never binds for the fixed sizes
#: The scale rule of earlier rounds (docs/accuracy.md "Input scale rule"): half
#: the camera's resolution, floor 416, cap 960.
RULE_INPUT_SIZE, RULE_MAX_UPSCALE = 960, 0.5


def size_fields(size: str) -> dict[str, int | float]:
    """``input_size`` / ``max_upscale`` / ``min_input_size`` of a size label.

    Raises:
        ValueError: not ``rule`` nor a multiple of 32 in 160..2048.
    """
    if size == "rule":
        return {"input_size": RULE_INPUT_SIZE, "max_upscale": RULE_MAX_UPSCALE}
    try:
        side = int(size)
    except ValueError:
        raise ValueError(f"input size {size!r} is neither 'rule' nor a number of pixels") from None
    if side % 32 or not 160 <= side <= 2048:
        raise ValueError(f"input size {side} must be a multiple of 32 in 160..2048")
    return {"input_size": side, "max_upscale": NO_CAP, "min_input_size": min(416, side)}


def size_label(settings: DetectorSettings) -> str:
    """Inverse of :func:`size_fields` for settings it produced (else ``custom``)."""
    if settings.input_size == RULE_INPUT_SIZE and settings.max_upscale == RULE_MAX_UPSCALE:
        return "rule"
    if settings.max_upscale >= NO_CAP:
        return str(settings.input_size)
    return "custom"


def size_settings(model: str, size: str, threshold: float) -> DetectorSettings:
    """Detector settings for one (model, size label, threshold) candidate."""
    return DetectorSettings.model_validate(
        {"name": model, "score_threshold": threshold, **size_fields(size)}
    )


def above(det: Detections, threshold: float) -> Detections:
    """Detections with score ``> threshold`` (exact re-thresholding, see module doc)."""
    keep = det.scores > threshold
    return det if keep.all() else det[keep]


def pipeline_for_threshold(pipeline: PipelineSettings, threshold: float) -> PipelineSettings:
    """``PipelineSettings`` whose tracker starts tracks from every reported detection.

    The tracker's ``track_high_score`` equals the detector's threshold by design
    (edge/pipeline.py); a calibrated threshold below it would otherwise report
    people the tracker ignores. ``track_low_score`` is kept at or below it.
    """
    high = float(threshold)
    low = min(float(pipeline.track_low_score), high)
    return pipeline.model_copy(update={"track_high_score": high, "track_low_score": low})


def product_counts(
    dets: Sequence[Detections],
    fps: float,
    threshold: float,
    pipeline: PipelineSettings | None = None,
    frame_size: tuple[int, int] | None = None,
) -> npt.NDArray[np.int64]:
    """Tracker counts (``TrackedObjects.counted``) of a detection sequence at ``fps``.

    ``frame_size`` ``(width, height)`` lets the count rules tell a person who
    left over the border from one who is hidden (as ``lobbywatch eval`` does).
    """
    from lobbywatch.edge.pipeline import PipelineSettings
    from lobbywatch.edge.tracker import Tracker

    base = pipeline if pipeline is not None else PipelineSettings()
    tracker = Tracker(pipeline_for_threshold(base, threshold).tracker_settings())
    spacing = 1.0 / fps
    return np.array(
        [
            # i * spacing, exactly as lobbywatch eval stamps frames (rules compare
            # gaps with one sampling interval; i / fps can differ in the last bit)
            np.count_nonzero(tracker.update(d, i * spacing, frame_size).counted)
            for i, d in enumerate(dets)
        ],
        np.int64,
    )


# --------------------------------------------------------------------------- search


#: Test-time augmentation modes calibration can search (``DetectorSettings.tta``;
#: the default's own mode is always searched). Only on request (``--tta``):
#: ``flip`` doubles inference and showed no robust gain (docs/accuracy.md, round 8).
TTAS: tuple[str, ...] = ("off", "flip")


@dataclass(frozen=True, slots=True)
class Setting:
    """One candidate: catalogue model, input size label (:data:`SIZES`), score
    threshold and test-time augmentation (``off`` / ``flip``)."""

    model: str
    size: str
    threshold: float
    tta: str = "off"

    def detector_settings(self, base: DetectorSettings | None = None) -> DetectorSettings:
        """``base`` (default: the product defaults) with this model, size and threshold.

        ``size == "custom"`` keeps ``base``'s own input-size fields.
        """
        base = base or DetectorSettings()  # type: ignore[call-arg]
        update: dict[str, object] = {
            "name": self.model,
            "score_threshold": self.threshold,
            "tta": self.tta,
        }
        if self.size != "custom":
            update.update(
                {"min_input_size": DetectorSettings().min_input_size, **size_fields(self.size)}  # type: ignore[call-arg]
            )
        return DetectorSettings.model_validate({**base.model_dump(), **update, "path": None})

    @classmethod
    def of(cls, settings: DetectorSettings) -> Setting:
        """The candidate describing ``settings``."""
        return cls(
            settings.name, size_label(settings), round(settings.score_threshold, 4), settings.tta
        )


#: One-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
        1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
        1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CalibrationRule:
    """The prior that keeps the shipped default unless the snapshots clearly disagree.

    A candidate ``c`` is scored by ``J(c) = E(c) + penalty(c)``, where ``E`` is
    its mean absolute count error per snapshot (summed over zones when per-zone
    counts are given) and ``penalty`` its distance from the default, in people
    per snapshot: ``model_penalty`` for another model, ``size_penalty`` for
    another input size, ``threshold_penalty`` per 0.05 of threshold,
    ``tta_penalty`` for another test-time augmentation. The
    lowest ``J`` wins (ties: the nearer to the default). It is then adopted
    only if its gain over the default is significant: a one-sided paired
    t-test on the per-snapshot gains ``g_i = e_i(default) - e_i(c)`` at the
    ``confidence`` level, i.e. ``mean(g) > t(confidence, K - 1) * std(g) /
    sqrt(K)`` (``K`` >= 2; e.g. t = 2.13 for K = 5). A gain within its own
    noise on a handful of snapshots is not evidence.

    The penalties are priors, not fitted values: about a fifth of a person
    per snapshot to switch model, a tenth to change size or threshold by a
    step, so a change needs to fix roughly one miscounted person over five
    snapshots per step it takes away from the default. Flip TTA is one step
    (``tta_penalty`` = a size step; it also doubles the camera's inference).
    """

    model_penalty: float = 0.2
    size_penalty: float = 0.1
    threshold_penalty: float = 0.1
    tta_penalty: float = 0.1
    threshold_step: float = 0.05
    confidence: float = 0.95

    def t_quantile(self, df: int) -> float:
        """One-sided Student-t quantile at ``confidence`` (0.95 tabulated, else normal)."""
        if self.confidence != 0.95:
            from statistics import NormalDist

            return NormalDist().inv_cdf(self.confidence)
        return _T95[df - 1] if df <= len(_T95) else 1.645

    def penalty(self, c: Setting, default: Setting) -> float:
        steps = abs(c.threshold - default.threshold) / self.threshold_step
        return (
            self.model_penalty * (c.model != default.model)
            + self.size_penalty * (c.size != default.size)
            + self.threshold_penalty * round(steps, 6)
            + self.tta_penalty * (c.tta != default.tta)
        )


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """What :func:`calibrate` chose and why.

    Attributes:
        chosen: the setting to use (the default when nothing beat the prior).
        default: the shipped default it was compared with.
        error_before: mean count error per snapshot of the default.
        error_after: the same for ``chosen``.
        snapshots: number of snapshots used.
        reason: one line on the decision.
        table: every candidate's ``(setting, error, J)``, best ``J`` first.
    """

    chosen: Setting
    default: Setting
    error_before: float
    error_after: float
    snapshots: int
    reason: str
    table: list[tuple[Setting, float, float]] = field(default_factory=list)


#: What an installer's snapshots tell (see :func:`evaluate_calibrated`).
Objective = Literal["points", "boxes", "count"]
#: ``detect(model, size, k)`` -> detections of snapshot ``k`` at the lowest
#: threshold searched (the caller caches networks and frames); called as
#: ``detect(model, size, k, tta)`` for a test-time augmentation other than
#: ``off`` (only when such a mode is searched).
DetectFn = Callable[..., Detections]
#: ``count(detections, k)`` -> per-snapshot count vector (total, or one per zone).
CountFn = Callable[[Detections, int], npt.NDArray[np.int64]]


#: ``error(detections, k)`` -> snapshot ``k``'s error in people (replaces the
#: count error when given, e.g. :func:`located_error`).
ErrorFn = Callable[[Detections, int], float]


def click_matches(det: Detections, points: npt.ArrayLike) -> int:
    """People clicked at their feet that a detection accounts for, one-to-one.

    A click matches a box when it lies within the box's width and within half
    the box's height of its bottom edge (above or below: feet hidden behind a
    chair or cut by the box are still the box's person), i.e. the normalised
    distance ``d = max(|px - cx| / (w/2), |py - y2| / (h/2)) <= 1`` from the
    box's foot point; pairs are taken greedily by the smallest ``d``.

    Example:
        >>> d = Detections(np.array([[0, 0, 10, 40], [100, 0, 110, 40]], np.float32),
        ...                np.array([0.9, 0.8], np.float32))
        >>> click_matches(d, [[5, 42], [6, 39], [50, 40]])  # two clicks on box 1, one on none
        1
    """
    from lobbywatch.edge.evaluation import greedy_matches

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(det) == 0 or len(pts) == 0:
        return 0
    b = det.xyxy.astype(np.float64)
    cx = (b[:, 0] + b[:, 2]) * 0.5
    half_w = np.maximum(b[:, 2] - b[:, 0], 1.0) * 0.5
    half_h = np.maximum(b[:, 3] - b[:, 1], 1.0) * 0.5
    d = np.maximum(
        np.abs(pts[None, :, 0] - cx[:, None]) / half_w[:, None],
        np.abs(pts[None, :, 1] - b[:, 3, None]) / half_h[:, None],
    )
    return len(greedy_matches(1.0 - d, 0.0)[0])


def located_error(
    truth: Sequence[npt.ArrayLike], by: Literal["points", "boxes"] = "points"
) -> ErrorFn:
    """Per-snapshot error that also counts people found in the wrong place.

    ``truth[k]`` are snapshot ``k``'s people: clicked foot points ``(n, 2)``
    (``by="points"``, :func:`click_matches`) or boxes ``(n, 4)`` xyxy
    (``by="boxes"``, one-to-one at IoU >= 0.5 as ``lobbywatch eval`` scores
    precision and recall). With ``tp`` matches, ``fp = detections - tp`` and
    ``fn = n - tp``, the error is ``max(fp, fn) = |count - n| + min(fp, fn)``:
    the count error plus one per box that stands for a person it is not on
    (a spurious box "cancelling" a missed person). It equals the count error
    when every counted box is on a person, so settings that count right for
    the wrong reasons (false boxes offsetting misses) no longer look perfect,
    and it stays in people per snapshot, the unit of the prior's penalties.
    (``fp + fn`` would charge such a swap twice; measured worse, docs/accuracy.md.)
    """
    from lobbywatch.edge.evaluation import match_count

    arrays = [np.asarray(t, np.float64).reshape(-1, 2 if by == "points" else 4) for t in truth]

    def error(det: Detections, k: int) -> float:
        gt = arrays[k]
        tp = (
            click_matches(det, gt)
            if by == "points"
            else match_count(det.xyxy, gt.astype(np.float32))
        )
        return float(max(len(det) - tp, len(gt) - tp))

    return error


def foot_points(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Bottom-centre of xyxy boxes: where an installer clicks a person's feet."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack(((b[:, 0] + b[:, 2]) * 0.5, b[:, 3]), axis=1)


def total_count(det: Detections, _k: int) -> npt.NDArray[np.int64]:
    """The whole frame's count, as a length-1 vector."""
    return np.array([len(det)], np.int64)


def calibrate(
    detect: DetectFn,
    truth: Sequence[npt.ArrayLike],
    default: Setting,
    models: Sequence[str],
    sizes: Sequence[str] = SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    count: CountFn = total_count,
    rule: CalibrationRule | None = None,
    error: ErrorFn | None = None,
    ttas: Sequence[str] = ("off",),
) -> CalibrationResult:
    """Choose the setting that minimises count error on ``K`` snapshots, under the prior.

    Args:
        detect: detections per (model, size, snapshot) at ``min(thresholds)``
            or lower; called once per (model, size, snapshot).
        truth: per snapshot the true count vector (length 1 for a total, one
            entry per zone for per-zone counts, matching ``count``).
        default: the shipped default setting (always a candidate).
        models, sizes, thresholds: the search grid.
        ttas: test-time augmentations searched (the default's is always).
        count: how a snapshot's detections become a count vector.
        rule: the prior (default :class:`CalibrationRule`).
        error: per-snapshot error in people replacing the count error (then
            ``truth`` only gives the number of snapshots), e.g. a
            localisation-aware one, :func:`located_error`.

    Returns:
        The decision, with the before/after error per snapshot.

    Raises:
        ValueError: no snapshots, or the default's threshold is not searched.
    """
    rule = rule or CalibrationRule()
    k = len(truth)
    if k == 0:
        raise ValueError("calibration needs at least one snapshot with a known count")
    gt = [np.asarray(t, np.int64).reshape(-1) for t in truth]
    thr = sorted(set(thresholds) | {default.threshold})
    grid_models = list(dict.fromkeys([default.model, *models]))
    grid_sizes = list(dict.fromkeys([default.size, *sizes]))
    grid_ttas = list(dict.fromkeys([default.tta, *ttas]))
    errors: dict[Setting, npt.NDArray[np.float64]] = {}
    for m, s, a in itertools.product(grid_models, grid_sizes, grid_ttas):
        dets = [detect(m, s, i) if a == "off" else detect(m, s, i, a) for i in range(k)]
        for t in thr:
            if error is not None:
                err = np.array([error(above(d, t), i) for i, d in enumerate(dets)], np.float64)
            else:
                err = np.array(
                    [np.abs(count(above(d, t), i) - gt[i]).sum() for i, d in enumerate(dets)],
                    np.float64,
                )
            errors[Setting(m, s, t, a)] = err
    base = errors[default]

    def key(c: Setting) -> tuple[float, float, float]:
        e = float(errors[c].mean())
        return (round(e + rule.penalty(c, default), 9), rule.penalty(c, default), e)

    ranked = sorted(errors, key=key)
    table = [(c, float(errors[c].mean()), key(c)[0]) for c in ranked]
    best = ranked[0]
    e0, e1 = float(base.mean()), float(errors[best].mean())
    if best == default:
        return CalibrationResult(
            default, default, e0, e0, k, "the default is best under the prior", table
        )
    gain = base - errors[best]
    se = float(gain.std(ddof=1) / math.sqrt(k)) if k >= 2 else math.inf
    need = rule.t_quantile(k - 1) * se if k >= 2 else math.inf
    if e0 - e1 <= need:
        return CalibrationResult(
            default, default, e0, e0, k,
            f"best candidate gains {e0 - e1:.2f} per snapshot, not significant "
            f"(needs > {need:.2f}, t-test on {k} snapshots): keeping the default",
            table,
        )  # fmt: skip
    return CalibrationResult(
        best, default, e0, e1, k,
        f"gain {e0 - e1:.2f} per snapshot is significant (> {need:.2f}) and beats the prior",
        table,
    )  # fmt: skip


# --------------------------------------------------------------------------- eval --calibrate


@dataclass(frozen=True, slots=True)
class SequenceCalibration:
    """Per-sequence calibration record for ``lobbywatch eval --calibrate K``."""

    frames_used: int
    frames_scored: int
    model: str
    input_size: str
    input_hw: tuple[int, int] | None
    threshold: float
    error_before: float
    error_after: float
    reason: str
    objective: str = "count"
    tta: str = "off"

    def to_json(self) -> dict[str, object]:
        return {
            "frames_used": self.frames_used,
            "objective": self.objective,
            "model": self.model,
            "input_size": self.input_size,
            "input_hw": list(self.input_hw) if self.input_hw else None,
            "threshold": self.threshold,
            "tta": self.tta,
            "snapshot_mae_before": round(self.error_before, 4),
            "snapshot_mae_after": round(self.error_after, 4),
            "reason": self.reason,
        }


def evaluate_calibrated(
    dataset: Path,
    k: int,
    settings: DetectorSettings | None = None,
    models: Sequence[str] | None = None,
    sizes: Sequence[str] = SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    with_baseline: bool = True,
    fps: float | None = None,
    progress: Callable[[str], None] | None = None,
    rule: CalibrationRule | None = None,
    objective: Objective = "points",
    ttas: Sequence[str] = ("off",),
) -> tuple[EvalReport, dict[str, SequenceCalibration]]:
    """``lobbywatch eval --calibrate K``: calibrate on each sequence's first ``k`` frames.

    For every sequence: :func:`calibrate` on frames ``0..k-1`` (their
    ground-truth counts stand in for the installer's), then the chosen setting
    (detector + tracker, ``track_high_score`` = its threshold) runs on frames
    ``k..`` only, through :func:`lobbywatch.edge.evaluation.evaluate_sequence`,
    and only those frames are scored; the baseline is scored on the same
    frames. A sequence with no frame left after ``k`` is an error.

    ``objective`` is what the installer's input is taken to be: ``points``
    (default) = the foot point of every GT box, as ``lobbywatch calibrate
    --web`` clicks give them, scored by :func:`located_error`; ``boxes`` = the
    GT boxes themselves (IoU 0.5, :func:`located_error`); ``count`` = only
    the number of people per frame (counts.csv). ``ttas``: test-time
    augmentations searched (as ``lobbywatch calibrate`` does).

    Returns:
        ``(EvalReport over the scored frames, {sequence name: calibration})``.

    Raises:
        SourceError: a sequence has ``k`` frames or fewer.
    """
    import dataclasses

    from lobbywatch.edge import evaluation as ev
    from lobbywatch.edge.detector import Detector
    from lobbywatch.errors import SourceError
    from lobbywatch.models.registry import load_catalogue

    base_settings = settings or DetectorSettings()  # type: ignore[call-arg]
    default = Setting.of(base_settings)
    models = list(models) if models is not None else list(load_catalogue())
    low = min(min(thresholds), default.threshold)
    detectors: dict[tuple[str, str, str], Detector] = {}

    def detector_for(model: str, size: str, tta: str = "off") -> Detector:
        if (model, size, tta) not in detectors:
            cand = Setting(model, size, low, tta).detector_settings(base_settings)
            if model == base_settings.name and base_settings.path is not None:
                cand = cand.model_copy(update={"path": base_settings.path})
            detectors[(model, size, tta)] = Detector.from_settings(cand)
        return detectors[(model, size, tta)]

    baseline = Detector.from_settings(ev.baseline_settings()) if with_baseline else None
    results, records = [], {}
    pooled, pooled_base = ev.Tally(), ev.Tally()
    busy_total = 0.0
    rates: dict[str, float] = {}
    for folder in ev.find_sequences(dataset):
        seq = ev.load_sequence(folder, fps)
        n = len(seq.frames)
        if n <= k:
            raise SourceError(f"{seq.name}: {n} frames, need more than --calibrate {k}")
        snaps = [ev.read_frame(p) for p in seq.frames[:k]]
        detect = _cached_detect(snaps, detector_for)
        truth = [[len(g)] for g in seq.gt[:k]]
        error = (
            None
            if objective == "count"
            else located_error(
                [foot_points(g) if objective == "points" else g for g in seq.gt[:k]],
                by=objective,
            )
        )
        res = calibrate(
            detect, truth, default, models, sizes, thresholds, rule=rule, error=error, ttas=ttas
        )
        chosen = res.chosen
        det_settings = chosen.detector_settings(base_settings)
        if chosen.model == base_settings.name and base_settings.path is not None:
            det_settings = det_settings.model_copy(update={"path": base_settings.path})
        detector = Detector.from_settings(det_settings)
        from lobbywatch.edge.pipeline import PipelineSettings

        pipe = pipeline_for_threshold(PipelineSettings(), chosen.threshold)
        counter = ev.tracker_counter(pipe.tracker_settings())
        # Every per-frame field of the sequence is cut the same way, so timing
        # fields added to Sequence later are sliced with the frames.
        cut = {
            f.name: getattr(seq, f.name)[k:]
            for f in dataclasses.fields(seq)
            if isinstance(getattr(seq, f.name), tuple) and len(getattr(seq, f.name)) == n
        }
        scored = dataclasses.replace(seq, **cut)
        sres, ours, bt, busy = ev.evaluate_sequence(scored, detector, counter, baseline)
        hw = plan_tiles((int(snaps[0].shape[0]), int(snaps[0].shape[1])), det_settings).input_hw
        records[seq.name] = SequenceCalibration(
            k, sres.frames, chosen.model, chosen.size, hw, chosen.threshold,
            res.error_before, res.error_after, res.reason, objective, chosen.tta,
        )  # fmt: skip
        if progress:
            progress(
                f"{seq.name}: calibrated on {k} frames -> {chosen.model} {chosen.size} "
                f"thr {chosen.threshold:g} tta {chosen.tta} ({res.reason}); mae {sres.mae} on "
                f"{sres.frames} "
                f"frames (baseline {sres.baseline.get('mae')})"
            )
        rates[seq.name] = seq.fps
        results.append(sres)
        pooled.merge(ours)
        pooled_base.merge(bt)
        busy_total += busy
    n_all = sum(r.frames for r in results)
    overall = ev._result(
        "overall", n_all, pooled, busy_total,
        pooled_base.summary() if baseline is not None else {},
    )  # fmt: skip
    seq_mean = round(float(np.mean([r.mae for r in results])), 4)
    base_mean = round(float(np.mean([r.baseline.get("mae", 0.0) for r in results])), 4)
    report = ev.EvalReport(results, overall, seq_mean, base_mean, "tracker", rates)
    return report, records


def _cached_detect(
    frames: Sequence[npt.NDArray[np.uint8]], detector_for: Callable[[str, str, str], object]
) -> DetectFn:
    """A :data:`DetectFn` over ``frames`` that runs each (model, size, tta, frame) once."""
    cache: dict[tuple[str, str, str, int], Detections] = {}

    def detect(model: str, size: str, i: int, tta: str = "off") -> Detections:
        key = (model, size, tta, i)
        if key not in cache:
            cache[key] = detector_for(model, size, tta).detect(frames[i])  # type: ignore[attr-defined]
        return cache[key]

    return detect


def calibrated_json(report: EvalReport, records: dict[str, SequenceCalibration]) -> dict[str, Any]:
    """``report.to_json()`` plus ``frames_scored`` and ``calibration`` per sequence."""
    out: dict[str, Any] = report.to_json()
    for seq in out["sequences"]:
        rec = records[seq["name"]]
        seq["frames"] = rec.frames_used + rec.frames_scored
        seq["frames_scored"] = rec.frames_scored
        seq["calibration"] = rec.to_json()
    overall = out["overall"]
    overall["frames_scored"] = overall["frames"]
    overall["frames"] = sum(r.frames_used + r.frames_scored for r in records.values())
    overall["calibration"] = {"frames_used_per_sequence": next(iter(records.values())).frames_used}
    return out
