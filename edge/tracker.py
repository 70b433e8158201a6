"""Multi-person tracker: ByteTrack-style two-stage IoU association, in seconds.

Why this shape:

* **Two stages** (ByteTrack, Zhang et al. 2022). Confident detections are matched
  to all live tracks first; the leftover *confirmed* tracks are then matched to
  low-score detections, which are usually the same person partly occluded (a
  seated customer behind someone standing). Low-score detections never start a
  track, so they extend people we already believe in without adding ghosts.
* **Time, not frames.** Deletion and velocity use timestamps, so the same
  settings hold at 2 fps sampling, 30 fps files and sparse time-lapses. A frame
  floor (``min_missed_frames``) keeps one missed detection from killing a track on
  a time-lapse whose every gap is longer than ``max_missed_s``.
* **Stationary people persist longer.** A confirmed track that barely moves (seated
  or standing in line) survives ``stationary_max_missed_s`` unseen instead of
  ``max_missed_s``: people who sit still do not vanish when someone walks in
  front of them, while someone walking out of view is dropped quickly.
* **Greedy matching on IoU, vectorised.** Each round accepts every mutually-best
  (track, detection) pair at once; this equals the classic sorted greedy and
  takes one or two rounds in a lobby, where people rarely overlap ambiguously.
  Hungarian assignment would need scipy (a large dependency for the edge box)
  or an O(n^3) Python loop, for no practical gain once pairs are IoU-gated.
* **Buffered IoU for the leftovers** (C-BIoU, Yang et al. 2023). At 2 fps a
  walking person moves about a box width between frames, so their boxes in
  consecutive frames may not overlap at all, least of all on the first step
  after standing still, before any velocity is known. Recently seen tracks
  (missed at most ``buffer_max_missed_frames`` frames) and confident detections
  left unmatched by plain IoU are matched again with every box enlarged by
  ``buffer_scale`` of its size on each side.
* **Scale-normalised distance gate for what overlap cannot resolve.** A
  customer stepping forward 1.2 box widths in a queue, or a walker at 1 fps
  (0.8 box heights per frame), has no overlap even buffered. The remaining
  recent tracks and confident detections are matched greedily by centre
  distance in box heights, gated at ``gate_base + max_speed * dt`` (how far a
  person can have gone since last seen, ``dt`` capped at ``gate_max_dt_s``) and
  by height ratio (``max_scale_change``). Only confirmed tracks missed at most
  ``buffer_max_missed_frames`` frames and tentative ones seen in the previous
  frame take part: a track lost for longer has no reliable position, and a
  one-frame ghost must not capture the next person to walk in. Plain and
  buffered IoU go first, so the gate only decides what overlap could not.
* **Counting is not the same as remembering; a miss is counted by evidence.**
  A track is kept alive (so the person keeps their id, zone and dwell when seen
  again) for ``max_missed_s`` / ``stationary_max_missed_s``, but it is
  *counted* as a person present only while confirmed and seen now, or while
  the image explains why it is not seen (:meth:`Tracker._coast_counted`): a
  still track with someone in front of it counts; a track whose predicted box
  is *taken* by a detection (the person is counted through that detection) or
  has *left* the frame does not; an unexplained miss counts for one sampling
  interval only. Measured on the shared sequences, counting coasting tracks by
  time alone was what made the product count worse than the raw detections
  on real-rate video (docs/accuracy.md).
* **No empty lobby at start-up.** Before the ``confirm_hits``-th update after
  creation or :meth:`Tracker.reset` no track can be confirmed, so a
  confirmed-only count would read 0 for the first ~1 s after every restart.
  During that warm-up the tentative tracks seen now are counted, and a track
  the warm-up started keeps counting while seen until it has had its
  ``confirm_hits`` frames; from then on only confirmed ones (``count_warmup``). A frame more than
  ``max_missed_s`` after the previous one (a stalled stream, a sparse
  sampling) is a warm-up frame too: no history exists that could confirm the
  people it shows. Two sightings at least ``confirm_span_s`` apart confirm a
  track, as ``confirm_hits`` sightings do.
* **Time, and only time, decides.** No rule depends on the frame rate as such
  or on which data set is fed: every limit is in seconds, box sizes, or
  "one frame", and the evaluation feeds every sequence at its real time stamps.
* **Constant-velocity prediction** (smoothed centre velocity, horizon capped) is
  enough at these speeds; a Kalman filter would add state and tuning for little.

The state is kept as parallel numpy arrays (one row per track), so one update is
a fixed number of vectorised operations whatever the number of people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lobbywatch.edge.detections import Detections, iou_matrix

__all__ = [
    "TrackedObjects",
    "Tracker",
    "TrackerSettings",
    "buffered",
    "distance_affinity",
    "greedy_match",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Tracker tuning. The user-facing subset lives in ``PipelineSettings``.

    Attributes:
        high_score: detections at or above this score are matched first and may
            start tracks.
        low_score: detections in ``[low_score, high_score)`` only extend confirmed
            tracks (second stage); lower ones are ignored. This band is only
            populated when the detector's own score threshold is below
            ``high_score``.
        new_track_score: minimum score of an unmatched detection to start a track
            (None: ``high_score``).
        match_iou: minimum IoU (predicted track box vs detection) in stage one.
        buffer_scale: enlargement of each box side, as a fraction of the box's
            width/height, for the buffered second pass of stage one (0: off).
        buffer_max_missed_frames: only tracks missed in at most this many
            consecutive frames take part in the buffered pass.
        max_speed: fastest plausible person, box heights per second (brisk
            walking; normal walking is about 0.8), for the distance gate.
        gate_base: distance allowed whatever the time, box heights (detection
            jitter, a lean, a step taken from standing still).
        gate_max_dt_s: the distance gate grows with the time since the track was
            seen up to this many seconds (a person unseen for minutes could be
            anywhere; beyond the cap only nearby boxes are taken for them).
        max_scale_change: a detection whose height differs from the track's by
            more than this factor (either way) is not the same person in the
            distance stage.
        low_match_iou: minimum IoU in stage two; stricter than stage one, as
            low-score boxes are less reliable, but below ByteTrack's 0.5 because a
            partly hidden person's box covers only part of their track box.
        confirm_hits: matched frames before a track is confirmed (counted as a
            person). Hits need not be consecutive.
        max_missed_s: seconds unseen before a moving or tentative track is deleted.
        stationary_max_missed_s: the same for a confirmed track that is still.
        count_grace_s: seconds a confirmed *moving* track whose miss nothing in the
            image explains (not taken, not left, not occluded) is still counted
            (``TrackedObjects.counted``); about one sampling interval at the
            product's 2 fps, so one missed detection does not drop a count.
        count_grace_frames: such a track is counted only while missed in at most
            this many consecutive frames as well (one sampling interval at any rate).
        count_stationary_grace_s: the same time limit for a still track. A still
            track whose miss is explained by someone in front of it
            (``occluded_cover``) counts for as long as it lives instead.
        count_warmup: during the tracker's first ``confirm_hits - 1`` updates (after
            creation or :meth:`Tracker.reset`), when no track can have been
            confirmed yet, count the tentative tracks seen now too (and a track
            started then while it is seen, until it has had ``confirm_hits``
            frames),
            so a restarted box does not report an empty lobby for its first
            frames (~1 s at 2 fps). From update ``confirm_hits`` on, only
            confirmed tracks count. The same applies to an update that comes
            more than ``max_missed_s`` after the previous one (a stalled
            stream, a sparse sampling): a restart in all but name, the history
            that would confirm a person seen now does not exist.
        confirm_span_s: a track matched in every frame since its birth, at least
            twice and over at least this many seconds, is confirmed too (None:
            hits only). At 2 fps this is what
            ``confirm_hits`` = 3 takes anyway; at sparser sampling two sightings
            seconds apart are at least as strong evidence.
        taken_iou: a track not seen now whose predicted box overlaps one of this
            frame's detections at this IoU or more is not counted: the person
            there is counted through that detection (0.5, the usual same-object
            IoU, as in the evaluation's matching).
        occluded_cover: a still track not seen now is counted while a detection
            whose foot point is nearer the camera (lower in the image) covers at
            least this fraction of its box: someone stands in front of it.
        stationary_speed: below this speed, in box heights per second, a
            confirmed track counts as still (walking is about 0.8 heights/s).
        min_missed_frames: a track is deleted only after at least this many
            consecutive missed frames as well as the time limit.
        predict: shift unmatched tracks by their smoothed velocity.
        max_predict_s: horizon cap of the prediction, seconds.
        velocity_smoothing: weight of the newest velocity measurement (0..1].
    """

    # Equal to the detector's default score threshold (0.3), not ByteTrack's 0.5:
    # on the shared waiting-room frames YOLOX-Nano scores true seated people in
    # [0.3, 0.5) far more often than false ones (90 vs 12), and a detection the raw
    # count includes must be able to start a track, or the tracker counts fewer
    # people than the detector sees (waiting room 20231221: 4.03 vs 2.87 MAE with
    # 0.4 vs 0.3, docs/accuracy.md).
    high_score: float = 0.3
    low_score: float = 0.1
    new_track_score: float | None = None
    match_iou: float = 0.2
    buffer_scale: float = 0.3
    buffer_max_missed_frames: int = 1
    max_speed: float = 1.5
    gate_base: float = 0.25
    gate_max_dt_s: float = 1.0
    max_scale_change: float = 1.5
    low_match_iou: float = 0.4
    confirm_hits: int = 3
    max_missed_s: float = 2.0
    stationary_max_missed_s: float = 10.0
    stationary_speed: float = 0.2
    count_grace_s: float = 0.5
    count_grace_frames: int = 1
    count_stationary_grace_s: float = 0.5
    count_warmup: bool = True
    confirm_span_s: float | None = 1.0
    taken_iou: float = 0.5
    occluded_cover: float = 0.3
    min_missed_frames: int = 2
    predict: bool = True
    max_predict_s: float = 1.0
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise ValueError(
                f"need 0 <= low_score ({self.low_score}) <= high_score ({self.high_score}) <= 1"
            )
        if self.new_track_score is not None and not 0.0 <= self.new_track_score <= 1.0:
            raise ValueError(f"new_track_score must be in [0, 1], got {self.new_track_score}")
        for name in ("match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.confirm_hits < 1:
            raise ValueError(f"confirm_hits must be >= 1, got {self.confirm_hits}")
        if self.buffer_max_missed_frames < 0:
            raise ValueError(
                f"buffer_max_missed_frames must be >= 0, got {self.buffer_max_missed_frames}"
            )
        if self.min_missed_frames < 1:
            raise ValueError(f"min_missed_frames must be >= 1, got {self.min_missed_frames}")
        for name in ("max_missed_s", "stationary_max_missed_s", "stationary_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.count_grace_s <= self.count_stationary_grace_s:
            raise ValueError(
                f"need 0 <= count_grace_s ({self.count_grace_s}) <= "
                f"count_stationary_grace_s ({self.count_stationary_grace_s})"
            )
        if self.count_grace_frames < 0:
            raise ValueError(f"count_grace_frames must be >= 0, got {self.count_grace_frames}")
        if not 0.0 <= self.buffer_scale <= 2.0:
            raise ValueError(f"buffer_scale must be in [0, 2], got {self.buffer_scale}")
        for name in ("taken_iou", "occluded_cover"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.confirm_span_s is not None and not self.confirm_span_s > 0:
            raise ValueError(f"confirm_span_s must be > 0 or None, got {self.confirm_span_s}")
        for name in ("max_speed", "gate_base"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.gate_max_dt_s > 0:
            raise ValueError(f"gate_max_dt_s must be > 0, got {self.gate_max_dt_s}")
        if not self.max_scale_change >= 1.0:
            raise ValueError(f"max_scale_change must be >= 1, got {self.max_scale_change}")
        if self.max_predict_s < 0:
            raise ValueError(f"max_predict_s must be >= 0, got {self.max_predict_s}")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {self.velocity_smoothing}")

    @property
    def start_score(self) -> float:
        return self.high_score if self.new_track_score is None else self.new_track_score


@dataclass(frozen=True, slots=True)
class TrackedObjects:
    """The live tracks after one update, aligned arrays in ascending id order.

    Attributes:
        ids: ``(M,)`` int64 track ids, unique for the tracker's lifetime.
        xyxy: ``(M, 4)`` float32 boxes: the matched detection, or for a track not
            seen this frame its (velocity-predicted) last box.
        scores: ``(M,)`` float32 score of the latest matched detection.
        confirmed: ``(M,)`` bool, the track has had ``confirm_hits`` matches.
        matched: ``(M,)`` bool, the track was seen in this frame.
        det_index: ``(M,)`` int64 index of the matched detection in this frame's
            :class:`Detections`, -1 when not seen.
        counted: ``(M,)`` bool, the track is a person present now: confirmed and
            seen now, or not seen but with the miss explained by the image
            (:meth:`Tracker._coast_counted`: occluded, or within one sampling
            interval unless taken or gone over the border); during a warm-up
            (the first ``confirm_hits - 1`` updates, or an update after a gap
            longer than ``max_missed_s``, ``count_warmup``) tentative tracks seen
            now count too. This is the product's count.
    """

    ids: IntArray
    xyxy: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    confirmed: BoolArray
    matched: BoolArray
    det_index: IntArray
    counted: BoolArray

    @classmethod
    def empty(cls) -> TrackedObjects:
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, bool),
            np.zeros(0, bool),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def foot_points(self) -> npt.NDArray[np.float32]:
        """Bottom-centre of each track box, ``(M, 2)``."""
        return np.stack(
            ((self.xyxy[:, 0] + self.xyxy[:, 2]) * 0.5, self.xyxy[:, 3]), axis=1
        ).astype(np.float32, copy=False)


def buffered(xyxy: npt.ArrayLike, scale: float) -> FloatArray:
    """Boxes enlarged by ``scale`` of their width/height on every side.

    Example:
        >>> buffered([[10, 10, 20, 30]], 0.5).tolist()
        [[5.0, 0.0, 25.0, 40.0]]
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    pad = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1) * scale
    return b + pad * np.array([-1.0, -1.0, 1.0, 1.0])


def greedy_match(score: npt.ArrayLike, threshold: float) -> tuple[IntArray, IntArray]:
    """Greedy one-to-one assignment maximising ``score``, pairs below ``threshold`` excluded.

    Each round accepts, all at once, every pair that is the best of both its row
    and its column, then removes those rows and columns. The global best pair is
    always mutual, so every round makes progress, and the result equals the
    classic "sort pairs by score, take each pair whose row and column are free"
    greedy (a mutual-best pair is never blocked by a higher-scoring one). Rounds
    are few in practice: one per chain of people competing for the same box.

    Args:
        score: ``(R, C)`` affinity (IoU), higher is better.
        threshold: minimum affinity of an accepted pair.

    Returns:
        ``(rows, cols)`` int64 arrays of matched indices.

    Example:
        >>> r, c = greedy_match([[0.9, 0.8], [0.85, 0.1]], 0.3)
        >>> sorted(zip(r.tolist(), c.tolist()))
        [(0, 0)]
    """
    s = np.array(score, dtype=np.float64, copy=True, ndmin=2)
    s[~(s >= threshold)] = -np.inf  # also drops NaN
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    n_rows = s.shape[0]
    while s.size and np.isfinite(s).any():
        best_col = s.argmax(axis=1)
        best_row = s.argmax(axis=0)
        r = np.arange(n_rows)
        mutual = (best_row[best_col] == r) & np.isfinite(s[r, best_col])
        rr, cc = r[mutual], best_col[mutual]
        rows.append(rr)
        cols.append(cc)
        s[rr, :] = -np.inf
        s[:, cc] = -np.inf
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def distance_affinity(
    tracks: npt.ArrayLike,
    dets: npt.ArrayLike,
    dt: npt.ArrayLike,
    max_speed: float,
    base: float,
    max_scale_change: float,
) -> FloatArray:
    """Affinity of track and detection boxes by centre distance in box heights.

    The gate of each track is ``base + max_speed * dt`` box heights (the
    track's height), i.e. how far a person can have gone since last seen; the
    affinity falls linearly from 1 (same centre) to 0 at the gate, and is 0
    beyond it or when the heights differ by more than ``max_scale_change``.
    Distances are normalised by box size so the same gate holds for a person
    near the camera and one far away (the scale-normalised gating of
    SORT/DeepSORT-style trackers, without a Kalman covariance).

    Args:
        tracks: ``(T, 4)`` predicted track boxes, xyxy pixels.
        dets: ``(D, 4)`` detection boxes, xyxy pixels.
        dt: ``(T,)`` seconds since each track was last seen (already capped).
        max_speed: box heights per second.
        base: box heights allowed at ``dt = 0``.
        max_scale_change: largest height ratio accepted (>= 1).

    Returns:
        ``(T, D)`` float64 affinities in ``[0, 1]``.

    Example:
        >>> distance_affinity([[0, 0, 60, 150]], [[72, 0, 132, 150], [300, 0, 360, 150]],
        ...                   [0.5], 1.5, 0.25, 1.5).round(2).tolist()
        [[0.52, 0.0]]
    """
    t = np.asarray(tracks, np.float64).reshape(-1, 4)
    d = np.asarray(dets, np.float64).reshape(-1, 4)
    th = np.maximum(t[:, 3] - t[:, 1], 1.0)
    dh = np.maximum(d[:, 3] - d[:, 1], 1.0)
    tc = (t[:, :2] + t[:, 2:]) * 0.5
    dc = (d[:, :2] + d[:, 2:]) * 0.5
    dist = np.hypot(*(dc[None, :, :] - tc[:, None, :]).transpose(2, 0, 1)) / th[:, None]
    gate = base + max_speed * np.asarray(dt, np.float64).reshape(-1)[:, None]
    ratio = dh[None, :] / th[:, None]
    same_scale = (ratio <= max_scale_change) & (ratio >= 1.0 / max_scale_change)
    return np.where(same_scale, np.clip(1.0 - dist / gate, 0.0, 1.0), 0.0)


class Tracker:
    """Assigns persistent ids to person detections across frames.

    Example:
        >>> t = Tracker(TrackerSettings(confirm_hits=2))
        >>> box = Detections(np.array([[10, 10, 30, 60]], np.float32), np.array([0.9], np.float32))
        >>> t.update(box, 0.0).confirmed.tolist(), t.update(box, 0.5).confirmed.tolist()
        ([False], [True])
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._next_id = 1
        self._last_ts: float | None = None
        self._prev_ts: float | None = None
        self._updates = 0  # updates since creation / reset (start-up warm-up)
        self._clear()

    def _clear(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._boxes = np.zeros((0, 4), np.float64)  # last matched box
        self._vel = np.zeros((0, 2), np.float64)  # smoothed centre velocity, px/s
        self._last_seen = np.zeros(0, np.float64)
        self._first_seen = np.zeros(0, np.float64)
        self._age = np.zeros(0, np.int64)  # frames since birth, this one included
        self._warm_born = np.zeros(0, bool)  # started during a warm-up
        self._hits = np.zeros(0, np.int64)
        self._missed = np.zeros(0, np.int64)  # consecutive missed frames
        self._confirmed = np.zeros(0, bool)
        self._scores = np.zeros(0, np.float32)
        self._shown = np.zeros((0, 4), np.float64)  # box reported for the current frame

    def reset(self) -> None:
        """Drop every track (e.g. the stream changed resolution). Ids keep increasing."""
        self._clear()
        self._last_ts = None
        self._updates = 0

    def __len__(self) -> int:
        """Number of live tracks, confirmed or not."""
        return int(self._ids.shape[0])

    def _predicted(self, ts: float) -> FloatArray:
        """Track boxes shifted to time ``ts`` by their velocity (horizon capped)."""
        if not self.settings.predict or len(self) == 0:
            return self._boxes.copy()
        dt = np.clip(ts - self._last_seen, 0.0, self.settings.max_predict_s)
        shift = self._vel * dt[:, None]
        return self._boxes + np.concatenate([shift, shift], axis=1)

    def update(
        self, detections: Detections, ts: float, frame_size: tuple[int, int] | None = None
    ) -> TrackedObjects:
        """Associate one frame's detections with the live tracks.

        Args:
            detections: this frame's person boxes (any score; see the thresholds).
            ts: capture time in seconds; must not decrease between calls.

        Returns:
            Every live track after this frame (seen or not), in ascending id order.

        Raises:
            ValueError: ``ts`` is not finite or is earlier than the previous frame's.
        """
        st = self.settings
        ts = float(ts)
        if not np.isfinite(ts):
            raise ValueError(f"frame timestamp must be finite, got {ts}")
        if self._last_ts is not None and ts < self._last_ts:
            raise ValueError(
                f"frame timestamps must not go backwards ({ts} after {self._last_ts}); "
                "use a monotonic clock for live sources"
            )
        self._prev_ts = self._last_ts
        self._last_ts = ts
        self._updates += 1
        # Start-up: before the confirm_hits-th update no track can be confirmed,
        # so the confirmed count would be 0 whatever the scene. Until then the
        # tentative tracks seen now stand in for the count.
        warmup = st.count_warmup and self._updates < st.confirm_hits
        # The same holds after a gap longer than a moving track's memory (a stalled
        # stream, a sparse sampling): it is a restart in all but name, the history
        # that would confirm a new person does not exist, so the people seen now
        # stand in for the count. Far from any camera's frame interval (1-5 fps), so
        # timing jitter does not flip it.
        if st.count_warmup and self._prev_ts is not None:
            warmup = warmup or ts - self._prev_ts > st.max_missed_s

        det_boxes = detections.xyxy.astype(np.float64, copy=False)
        det_scores = detections.scores
        n_tracks = len(self)
        predicted = self._predicted(ts)
        track_det = np.full(n_tracks, -1, np.int64)

        # Stage 1: confident detections against every live track.
        high = np.flatnonzero(det_scores >= st.high_score)
        if n_tracks and len(high):
            r, c = greedy_match(iou_matrix(predicted, det_boxes[high]), st.match_iou)
            track_det[r] = high[c]
            # Stage 1b: the leftovers again, with buffered (enlarged) boxes.
            recent = self._missed <= st.buffer_max_missed_frames
            open_tracks = np.flatnonzero((track_det < 0) & recent)
            free = high[~self._claimed(track_det, len(det_scores))[high]]
            if st.buffer_scale > 0 and len(open_tracks) and len(free):
                iou = iou_matrix(
                    buffered(predicted[open_tracks], st.buffer_scale),
                    buffered(det_boxes[free], st.buffer_scale),
                )
                r, c = greedy_match(iou, st.match_iou)
                track_det[open_tracks[r]] = free[c]
            # Stage 1c: what overlap could not resolve, by scale-normalised distance.
            open_tracks = np.flatnonzero(track_det < 0)
            # Only confirmed tracks seen in the last frame or two, tentative ones seen
            # in the last frame: the predicted position of a track lost for longer is
            # too uncertain to hand it whoever appears nearby, and a one-frame ghost
            # must not capture the next person to walk in.
            recent_enough = np.where(self._confirmed, st.buffer_max_missed_frames, 0)
            open_tracks = open_tracks[self._missed[open_tracks] <= recent_enough[open_tracks]]
            free = high[~self._claimed(track_det, len(det_scores))[high]]
            if st.max_speed > 0 and len(open_tracks) and len(free):
                aff = distance_affinity(
                    predicted[open_tracks],
                    det_boxes[free],
                    np.minimum(ts - self._last_seen[open_tracks], st.gate_max_dt_s),
                    st.max_speed,
                    st.gate_base,
                    st.max_scale_change,
                )
                r, c = greedy_match(aff, np.nextafter(0.0, 1.0))
                track_det[open_tracks[r]] = free[c]
        # Stage 2: low-score detections extend confirmed tracks left unmatched.
        low = np.flatnonzero((det_scores >= st.low_score) & (det_scores < st.high_score))
        open_tracks = np.flatnonzero((track_det < 0) & self._confirmed)
        if len(open_tracks) and len(low):
            iou = iou_matrix(predicted[open_tracks], det_boxes[low])
            r, c = greedy_match(iou, st.low_match_iou)
            track_det[open_tracks[r]] = low[c]

        self._age += 1
        # Matched tracks: take the detection's box, update the smoothed velocity.
        m = np.flatnonzero(track_det >= 0)
        if len(m):
            new_boxes = det_boxes[track_det[m]]
            dt = ts - self._last_seen[m]
            moved = (new_boxes[:, :2] + new_boxes[:, 2:]) - (
                self._boxes[m, :2] + self._boxes[m, 2:]
            )
            inst_vel = np.divide(
                0.5 * moved, dt[:, None], out=np.zeros_like(moved), where=dt[:, None] > 0
            )
            a = st.velocity_smoothing
            self._vel[m] = np.where(dt[:, None] > 0, (1 - a) * self._vel[m] + a * inst_vel, 0.0)
            self._boxes[m] = new_boxes
            self._last_seen[m] = ts
            self._scores[m] = det_scores[track_det[m]]
            self._hits[m] += 1
            self._missed[m] = 0
            self._confirmed[m] |= self._hits[m] >= st.confirm_hits
            if st.confirm_span_s is not None:
                # Seen in every frame of its life, twice or more, over the window.
                span = self._last_seen[m] - self._first_seen[m]
                steady = (self._hits[m] >= 2) & (self._hits[m] == self._age[m])
                self._confirmed[m] |= steady & (span >= st.confirm_span_s)

        # Unmatched tracks: count the miss, delete when unseen for too long.
        unmatched = track_det < 0
        self._missed[unmatched] += 1
        height = np.maximum(self._boxes[:, 3] - self._boxes[:, 1], 1.0)
        still = self._confirmed & (
            np.hypot(self._vel[:, 0], self._vel[:, 1]) / height < st.stationary_speed
        )
        limit = np.where(still, st.stationary_max_missed_s, st.max_missed_s)
        unseen = ts - self._last_seen
        dead = unmatched & (unseen > limit) & (self._missed >= st.min_missed_frames)
        # Counting a track nobody sees now (see _coast_counted): within one sampling
        # interval (time and frame limit: 0.5 s is one frame at 2 fps, 12 at 25 fps)
        # or, if still, while someone stands in front of it; never when its box is
        # taken by a detection or has left the frame.
        coast = np.flatnonzero(unmatched & self._confirmed)
        recent = ~unmatched
        if len(coast):
            seen_for = self._last_seen[coast] - self._first_seen[coast]
            recent[coast] = self._coast_counted(
                predicted[coast], det_boxes[det_scores >= st.low_score], still[coast],
                unseen[coast], self._missed[coast], frame_size, seen_for,
            )  # fmt: skip
        # A track the warm-up started keeps counting while seen until it has had the
        # frames it needs to be confirmed (born in update 2, it has 2 hits in update 3).
        early = self._warm_born & (self._age < st.confirm_hits)
        counted = (self._confirmed | warmup | early) & recent
        # Unmatched survivors report their predicted box (where the person should be now).
        self._shown = np.where(unmatched[:, None], predicted, self._boxes)
        keep = ~dead
        self._select(keep)
        track_det = track_det[keep]
        counted = counted[keep]

        # New tracks from confident detections nobody claimed.
        claimed = np.zeros(len(detections), bool)
        claimed[track_det[track_det >= 0]] = True
        fresh = np.flatnonzero(~claimed & (det_scores >= st.start_score))
        if len(fresh):
            self._spawn(det_boxes[fresh], det_scores[fresh], ts)
            track_det = np.concatenate([track_det, fresh.astype(np.int64)])
            counted = np.concatenate([counted, self._confirmed[-len(fresh) :] | warmup])
            self._warm_born[-len(fresh) :] = warmup

        return TrackedObjects(
            ids=self._ids.copy(),
            xyxy=self._shown.astype(np.float32),
            scores=self._scores.copy(),
            confirmed=self._confirmed.copy(),
            matched=track_det >= 0,
            det_index=track_det,
            counted=counted,
        )

    @staticmethod
    def _claimed(track_det: IntArray, n_dets: int) -> BoolArray:
        """``(N,)`` mask of the detections already assigned (cheaper than ``np.isin``)."""
        claimed = np.zeros(n_dets, bool)
        claimed[track_det[track_det >= 0]] = True
        return claimed

    def _coast_counted(
        self,
        boxes: FloatArray,
        d: FloatArray,
        still: BoolArray,
        unseen: FloatArray,
        missed: IntArray,
        frame_size: tuple[int, int] | None,
        seen_for: FloatArray | None = None,
    ) -> BoolArray:
        """Whether each confirmed track not seen this frame still counts as a person.

        A miss has three explanations, and the image says which:

        * **taken**: a detection of this frame overlaps the predicted box at IoU >=
          ``taken_iou`` (the same-person IoU). Whoever is there is counted through
          that detection; counting the track too would count them twice (the
          double count of a walker re-found under a new id).
        * **left**: the predicted box crosses the image border. People leave
          through the border, and a person cut by it is detected unreliably.
        * **occluded**: a detection whose foot point is nearer the camera (lower
          in the image) covers at least ``occluded_cover`` of a *still* track's
          box: someone stands or walks in front of a seated/queuing person. Such
          a track counts while it lives (``stationary_max_missed_s``) and has been
          unseen for no longer than it had been seen (``seen_for``): a seated
          customer seen for minutes, not a background box seen for 0.2 s.

        Taken or left: not counted. Occluded: counted. Otherwise the miss is
        unexplained (the detector lost the person, or they went unseen), and the
        track counts only within one sampling interval (``count_grace_s`` /
        ``count_stationary_grace_s`` and ``count_grace_frames``).

        Args:
            boxes: ``(K, 4)`` predicted boxes of the coasting tracks.
            d: ``(D, 4)`` this frame's detection boxes (score >= ``low_score``).
            still: ``(K,)`` the tracks are still (speed below ``stationary_speed``).
            unseen: ``(K,)`` seconds since each was seen.
            missed: ``(K,)`` consecutive missed frames, this one included.
            frame_size: ``(width, height)``, or None when unknown (no border test).
            seen_for: ``(K,)`` seconds from each track's first to its last sighting
                (None: no such bound).

        Returns:
            ``(K,)`` bool.
        """
        st = self.settings
        grace = np.where(still, st.count_stationary_grace_s, st.count_grace_s)
        ok = (unseen <= grace) & (missed <= st.count_grace_frames)
        if len(d):
            tl = np.maximum(boxes[:, None, :2], d[None, :, :2])
            br = np.minimum(boxes[:, None, 2:], d[None, :, 2:])
            inter = np.clip(br - tl, 0.0, None).prod(axis=2)
            area = np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(axis=1), 1.0)
            area_d = (d[:, 2:] - d[:, :2]).prod(axis=1)
            union = area[:, None] + area_d[None, :] - inter
            taken = (inter >= st.taken_iou * union).any(axis=1)
            in_front = d[None, :, 3] >= boxes[:, None, 3]
            cover = (np.where(in_front, inter, 0.0) / area[:, None]).max(axis=1)
            hidden = still & (cover >= st.occluded_cover)
            if seen_for is not None:
                # Believe a person hidden for no longer than they have been seen: a
                # seated customer seen for minutes, not a box seen for 0.2 s.
                hidden &= unseen <= seen_for
            ok = (ok | hidden) & ~taken
        if frame_size is not None:
            w, h = float(frame_size[0]), float(frame_size[1])
            left = (boxes[:, :2] < 0.0).any(axis=1) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
            ok &= ~left
        return ok

    def _select(self, keep: BoolArray) -> None:
        self._ids = self._ids[keep]
        self._boxes = self._boxes[keep]
        self._vel = self._vel[keep]
        self._last_seen = self._last_seen[keep]
        self._first_seen = self._first_seen[keep]
        self._age = self._age[keep]
        self._warm_born = self._warm_born[keep]
        self._hits = self._hits[keep]
        self._missed = self._missed[keep]
        self._confirmed = self._confirmed[keep]
        self._scores = self._scores[keep]
        self._shown = self._shown[keep]

    def _spawn(self, boxes: FloatArray, scores: npt.NDArray[np.float32], ts: float) -> None:
        n = len(boxes)
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        self._ids = np.concatenate([self._ids, ids])
        self._boxes = np.concatenate([self._boxes, boxes])
        self._vel = np.concatenate([self._vel, np.zeros((n, 2))])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, ts)])
        self._first_seen = np.concatenate([self._first_seen, np.full(n, ts)])
        self._age = np.concatenate([self._age, np.ones(n, np.int64)])
        self._warm_born = np.concatenate([self._warm_born, np.zeros(n, bool)])
        self._hits = np.concatenate([self._hits, np.ones(n, np.int64)])
        self._missed = np.concatenate([self._missed, np.zeros(n, np.int64)])
        self._confirmed = np.concatenate(
            [self._confirmed, np.full(n, self.settings.confirm_hits <= 1)]
        )
        self._scores = np.concatenate([self._scores, scores.astype(np.float32)])
        self._shown = np.concatenate([self._shown, boxes])
