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
  ``buffer_scale`` of its size on each side. Plain IoU goes first, so the
  wider gate only resolves what exact overlap could not; tracks missing for
  longer rely on their predicted box instead, so a false positive near where
  someone just left does not revive their track.
* **Counting is not the same as remembering.** A track is kept alive (so the
  person keeps their id when seen again) for ``max_missed_s`` /
  ``stationary_max_missed_s``, but it is *counted* as a person present only
  while confirmed and seen recently: within ``count_grace_s`` (about one
  sampling interval) for a moving track, within ``count_stationary_grace_s``
  for a still one. A walker whose track is lost usually reappears at once
  under a new id, so counting the coasting old track would count them twice;
  a seated person hidden for a few frames by someone passing has not left.
* **No empty lobby at start-up.** Before the ``confirm_hits``-th update after
  creation or :meth:`Tracker.reset` no track can be confirmed, so a
  confirmed-only count would read 0 for the first ~1 s after every restart.
  During that warm-up tentative tracks (seen within the grace) are counted;
  from then on only confirmed ones (``count_warmup``).
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
        low_match_iou: minimum IoU in stage two; stricter than stage one, as
            low-score boxes are less reliable, but below ByteTrack's 0.5 because a
            partly hidden person's box covers only part of their track box.
        confirm_hits: matched frames before a track is confirmed (counted as a
            person). Hits need not be consecutive.
        max_missed_s: seconds unseen before a moving or tentative track is deleted.
        stationary_max_missed_s: the same for a confirmed track that is still.
        count_grace_s: seconds unseen during which a confirmed *moving* track is
            still counted as present (``TrackedObjects.counted``); about one
            sampling interval at the product's 2 fps, so one missed detection
            does not drop a count, but a lost walker is not counted twice.
        count_grace_frames: a moving track is counted only while missed in at most
            this many consecutive frames as well (one sampling interval at any rate).
        count_stationary_grace_s: the same for a confirmed still track (a seated
            person occluded for a few frames); time only.
        count_warmup: during the tracker's first ``confirm_hits - 1`` updates (after
            creation or :meth:`Tracker.reset`), when no track can have been
            confirmed yet, count tentative tracks seen within the count grace too,
            so a restarted box does not report an empty lobby for its first
            frames (~1 s at 2 fps). From update ``confirm_hits`` on, only
            confirmed tracks count.
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
    low_match_iou: float = 0.4
    confirm_hits: int = 3
    max_missed_s: float = 2.0
    stationary_max_missed_s: float = 10.0
    stationary_speed: float = 0.2
    count_grace_s: float = 0.5
    count_grace_frames: int = 1
    count_stationary_grace_s: float = 2.0
    count_warmup: bool = True
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
            seen within the count grace (``TrackerSettings.count_grace_s``, or
            ``count_stationary_grace_s`` when still); during the start-up
            warm-up (the first ``confirm_hits - 1`` updates, ``count_warmup``)
            tentative tracks within the grace count too. This is the product's count.
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
        self._updates = 0  # updates since creation / reset (start-up warm-up)
        self._clear()

    def _clear(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._boxes = np.zeros((0, 4), np.float64)  # last matched box
        self._vel = np.zeros((0, 2), np.float64)  # smoothed centre velocity, px/s
        self._last_seen = np.zeros(0, np.float64)
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

    def update(self, detections: Detections, ts: float) -> TrackedObjects:
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
        self._last_ts = ts
        self._updates += 1
        # Start-up: before the confirm_hits-th update no track can be confirmed,
        # so the confirmed count would be 0 whatever the scene. Until then the
        # tentative tracks (seen within the grace) stand in for the count.
        warmup = st.count_warmup and self._updates < st.confirm_hits

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
            free = high[~np.isin(high, track_det)]
            if st.buffer_scale > 0 and len(open_tracks) and len(free):
                iou = iou_matrix(
                    buffered(predicted[open_tracks], st.buffer_scale),
                    buffered(det_boxes[free], st.buffer_scale),
                )
                r, c = greedy_match(iou, st.match_iou)
                track_det[open_tracks[r]] = free[c]
        # Stage 2: low-score detections extend confirmed tracks left unmatched.
        low = np.flatnonzero((det_scores >= st.low_score) & (det_scores < st.high_score))
        open_tracks = np.flatnonzero((track_det < 0) & self._confirmed)
        if len(open_tracks) and len(low):
            iou = iou_matrix(predicted[open_tracks], det_boxes[low])
            r, c = greedy_match(iou, st.low_match_iou)
            track_det[open_tracks[r]] = low[c]

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
        grace = np.where(still, st.count_stationary_grace_s, st.count_grace_s)
        # A moving track must satisfy both the time and the frame limit: at 2 fps
        # one missed frame is 0.5 s, at 25 fps it is 40 ms (a walker lost for
        # half a second at 25 fps has long reappeared under a new id).
        recent = (unseen <= grace) & (still | (self._missed <= st.count_grace_frames))
        counted = (self._confirmed | warmup) & recent
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

        return TrackedObjects(
            ids=self._ids.copy(),
            xyxy=self._shown.astype(np.float32),
            scores=self._scores.copy(),
            confirmed=self._confirmed.copy(),
            matched=track_det >= 0,
            det_index=track_det,
            counted=counted,
        )

    def _select(self, keep: BoolArray) -> None:
        self._ids = self._ids[keep]
        self._boxes = self._boxes[keep]
        self._vel = self._vel[keep]
        self._last_seen = self._last_seen[keep]
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
        self._hits = np.concatenate([self._hits, np.ones(n, np.int64)])
        self._missed = np.concatenate([self._missed, np.zeros(n, np.int64)])
        self._confirmed = np.concatenate(
            [self._confirmed, np.full(n, self.settings.confirm_hits <= 1)]
        )
        self._scores = np.concatenate([self._scores, scores.astype(np.float32)])
        self._shown = np.concatenate([self._shown, boxes])
