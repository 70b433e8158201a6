"""Tracker: association, identity through misses and crossings, confirmation, deletion."""

from __future__ import annotations

import numpy as np
import pytest

from lobbywatch.edge.detections import Detections, iou_matrix
from lobbywatch.edge.tracker import (
    TrackedObjects,
    Tracker,
    TrackerSettings,
    greedy_match,
)


def dets(boxes: list[list[float]], scores: list[float] | None = None) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.full(len(xyxy), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(xyxy, s)


def box(x: float, y: float = 100.0, w: float = 40.0, h: float = 100.0) -> list[float]:
    return [x, y, x + w, y + h]


def reference_greedy(score: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """The textbook sequential greedy: sort pairs by score, take free ones."""
    pairs = sorted(
        ((score[r, c], r, c) for r in range(score.shape[0]) for c in range(score.shape[1])),
        reverse=True,
    )
    rows: set[int] = set()
    cols: set[int] = set()
    out: set[tuple[int, int]] = set()
    for s, r, c in pairs:
        if s >= threshold and r not in rows and c not in cols:
            out.add((r, c))
            rows.add(r)
            cols.add(c)
    return out


class TestMatching:
    def test_iou_hand_values(self) -> None:
        iou = iou_matrix([[0, 0, 2, 2], [0, 0, 0, 5]], [[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6]])
        # inter 2 / union 6; identical; disjoint; a zero-area box has IoU 0 with anything.
        assert iou[0].tolist() == pytest.approx([1 / 3, 1.0, 0.0])
        assert iou[1].tolist() == [0.0, 0.0, 0.0]

    def test_greedy_needs_two_rounds(self) -> None:
        r, c = greedy_match(np.array([[0.9, 0.8, 0.0], [0.85, 0.7, 0.0]]), 0.3)
        assert set(zip(r.tolist(), c.tolist(), strict=True)) == {(0, 0), (1, 1)}

    def test_greedy_threshold_excludes_pairs(self) -> None:
        r, c = greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3)
        assert list(zip(r.tolist(), c.tolist(), strict=True)) == [(0, 0)]

    def test_greedy_empty(self) -> None:
        r, c = greedy_match(np.zeros((0, 3)), 0.1)
        assert r.size == 0 and c.size == 0

    def test_greedy_equals_sequential_greedy(self) -> None:
        rng = np.random.default_rng(7)
        for _ in range(200):
            score = rng.random((rng.integers(1, 8), rng.integers(1, 8)))
            r, c = greedy_match(score, 0.3)
            assert set(zip(r.tolist(), c.tolist(), strict=True)) == reference_greedy(score, 0.3)


class TestLifecycle:
    def test_confirmation_after_n_hits(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=3))
        seen = [t.update(dets([box(10)]), 0.5 * i) for i in range(4)]
        assert [bool(s.confirmed[0]) for s in seen] == [False, False, True, True]
        assert {int(s.ids[0]) for s in seen} == {1}

    def test_keeps_id_through_two_missed_frames(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=2, max_missed_s=2.0))
        for i in range(4):
            t.update(dets([box(10 + i)]), 0.5 * i)
        gone1 = t.update(Detections.empty(), 2.0)
        gone2 = t.update(Detections.empty(), 2.5)
        for out in (gone1, gone2):
            assert out.ids.tolist() == [1]
            assert out.matched.tolist() == [False] and out.confirmed.tolist() == [True]
            assert out.det_index.tolist() == [-1]
        back = t.update(dets([box(16)]), 3.0)
        assert back.ids.tolist() == [1] and back.matched.tolist() == [True]
        assert back.det_index.tolist() == [0]

    def test_moving_track_deleted_after_max_missed_s(self) -> None:
        # Walking 40 px/s with a 100 px box: 0.4 heights/s, not stationary.
        t = Tracker(TrackerSettings(confirm_hits=1, max_missed_s=2.0, stationary_max_missed_s=10))
        for i in range(3):
            t.update(dets([box(20.0 * i)]), 0.5 * i)  # last seen at t=1.0
        assert len(t.update(Detections.empty(), 2.5)) == 1
        assert len(t.update(Detections.empty(), 3.0)) == 1  # unseen 2.0 s: not yet more than 2
        assert len(t.update(Detections.empty(), 3.5)) == 0

    def test_still_person_persists_longer(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=2, max_missed_s=2.0, stationary_max_missed_s=10))
        for i in range(4):
            t.update(dets([box(100 + (i % 2))]), 0.5 * i)  # 1 px jitter: seated, last seen 1.5
        for ts in (4.0, 8.0, 11.5):
            assert t.update(Detections.empty(), ts).ids.tolist() == [1]
        assert len(t.update(Detections.empty(), 12.0)) == 0

    def test_counted_moving_track_one_missed_frame_at_2fps(self) -> None:
        # Walking 40 px/s (0.4 heights/s): counted while confirmed and unseen <= 0.5 s.
        t = Tracker(TrackerSettings(confirm_hits=2, count_grace_s=0.5))
        seen = [t.update(dets([box(20.0 * i)]), 0.5 * i) for i in range(3)]
        # first update: start-up warm-up (no track can be confirmed yet) counts it tentatively
        assert [s.counted.tolist() for s in seen] == [[True], [True], [True]]
        assert [s.confirmed.tolist() for s in seen] == [[False], [True], [True]]
        miss = [t.update(Detections.empty(), ts) for ts in (1.5, 2.0, 2.5)]
        assert [m.counted.tolist() for m in miss] == [[True], [False], [False]]
        assert [len(m) for m in miss] == [1, 1, 1]  # alive: identity kept for max_missed_s

    def test_counted_moving_track_one_frame_at_25fps(self) -> None:
        # At 25 fps the frame limit bites first: 2 missed frames (80 ms) stop the count.
        t = Tracker(TrackerSettings(confirm_hits=2, count_grace_s=0.5, count_grace_frames=1))
        for i in range(5):
            t.update(dets([box(100.0 + 2.0 * i)]), 0.04 * i)  # 50 px/s = 0.5 heights/s
        miss = [t.update(Detections.empty(), 0.04 * i).counted.tolist() for i in (5, 6)]
        assert miss == [[True], [False]]

    def test_counted_still_track_longer(self) -> None:
        t = Tracker(
            TrackerSettings(confirm_hits=2, count_grace_s=0.5, count_stationary_grace_s=2.0)
        )
        for i in range(4):
            t.update(dets([box(100 + (i % 2))]), 0.5 * i)  # seated, last seen at 1.5
        counted = [t.update(Detections.empty(), ts).counted.tolist() for ts in (2.5, 3.5, 4.0)]
        assert counted == [[True], [True], [False]]

    def test_warmup_counts_tentative_tracks_until_confirmation_is_possible(self) -> None:
        # confirm_hits=3: updates 1 and 2 cannot confirm anyone, so tentative tracks
        # seen within the grace count; from update 3 only confirmed ones do.
        t = Tracker(TrackerSettings(confirm_hits=3))
        a, b = box(100), box(300)
        first = t.update(dets([a]), 0.0)
        second = t.update(dets([a, b]), 0.5)
        third = t.update(dets([a, b]), 1.0)
        assert first.counted.tolist() == [True] and not first.confirmed.any()
        assert second.counted.tolist() == [True, True] and not second.confirmed.any()
        # A has 3 hits (confirmed, counted); B only 2: tentative, no longer counted.
        assert third.confirmed.tolist() == [True, False]
        assert third.counted.tolist() == [True, False]

    def test_warmup_restarts_after_reset_and_can_be_disabled(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=3))
        for i in range(4):
            t.update(dets([box(100)]), 0.5 * i)
        t.reset()
        assert t.update(dets([box(100)]), 10.0).counted.tolist() == [True]
        # A track seen at start-up and then lost is not counted beyond the grace.
        assert t.update(Detections.empty(), 10.5).counted.tolist() == [True]
        assert t.update(Detections.empty(), 11.0).counted.tolist() == [False]
        off = Tracker(TrackerSettings(confirm_hits=3, count_warmup=False))
        assert off.update(dets([box(100)]), 0.0).counted.tolist() == [False]
        assert off.update(dets([box(100)]), 0.5).counted.tolist() == [False]

    def test_tentative_track_is_not_stationary(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=3, max_missed_s=2.0, stationary_max_missed_s=10))
        t.update(dets([box(100)]), 0.0)
        assert len(t.update(Detections.empty(), 2.0)) == 1
        assert len(t.update(Detections.empty(), 2.5)) == 0

    def test_time_lapse_survives_one_missed_frame(self) -> None:
        s = TrackerSettings(confirm_hits=2, max_missed_s=2.0, stationary_max_missed_s=10)
        t = Tracker(s)
        t.update(dets([box(100)]), 0.0)
        t.update(dets([box(100)]), 20.0)
        assert t.update(Detections.empty(), 40.0).ids.tolist() == [1]  # 1 missed frame
        assert t.update(dets([box(101)]), 60.0).ids.tolist() == [1]
        assert t.update(Detections.empty(), 80.0).ids.tolist() == [1]
        assert len(t.update(Detections.empty(), 100.0)) == 0  # 2 missed frames, 40 s unseen

    def test_ids_never_reused(self) -> None:
        s = TrackerSettings(
            confirm_hits=1, max_missed_s=0.5, stationary_max_missed_s=0.5, min_missed_frames=1
        )
        t = Tracker(s)
        assert t.update(dets([box(0)]), 0.0).ids.tolist() == [1]
        assert len(t.update(Detections.empty(), 1.0)) == 0
        assert t.update(dets([box(0)]), 2.0).ids.tolist() == [2]
        t.reset()
        assert t.update(dets([box(0)]), 0.0).ids.tolist() == [3]

    def test_unmatched_track_reports_predicted_box(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=1, velocity_smoothing=1.0, max_predict_s=1.0))
        t.update(dets([box(0)]), 0.0)
        t.update(dets([box(10)]), 1.0)  # 10 px/s
        out = t.update(Detections.empty(), 1.5)
        assert out.xyxy[0].tolist() == pytest.approx(box(15))
        out = t.update(Detections.empty(), 4.0)  # horizon capped at 1 s
        assert out.xyxy[0].tolist() == pytest.approx(box(20))


class TestAssociation:
    @staticmethod
    def _cross(predict: bool) -> tuple[set[int], set[int]]:
        # A walks right, B walks left along the same line, 20 px per frame with 40 px
        # wide boxes; they pass each other between frames 4 and 5 (A at 80 -> 100, B at
        # 110 -> 90). Detection 0 is always A.
        t = Tracker(TrackerSettings(confirm_hits=1, predict=predict))
        a_ids: set[int] = set()
        b_ids: set[int] = set()
        for i in range(11):
            out = t.update(dets([box(20 * i), box(190 - 20 * i)]), 0.1 * i)
            a_ids.update(out.ids[out.det_index == 0].tolist())
            b_ids.update(out.ids[out.det_index == 1].tolist())
        return a_ids, b_ids

    def test_two_crossing_people_keep_ids(self) -> None:
        assert self._cross(predict=True) == ({1}, {2})

    def test_crossing_needs_the_velocity_prediction(self) -> None:
        # Without prediction, A's last box (x=80) overlaps B's new box (x=90) more than
        # its own (x=100): the ids swap. This guards the test above against being trivial.
        a_ids, b_ids = self._cross(predict=False)
        assert a_ids == {1, 2} and b_ids == {1, 2}

    @pytest.mark.parametrize(("scale", "n_ids"), [(0.3, 1), (0.0, 4)])
    def test_buffered_iou_follows_a_person_starting_to_walk(self, scale: float, n_ids: int) -> None:
        # Standing still, then one box width (40 px) per frame: consecutive boxes touch but
        # do not overlap (IoU 0), and no velocity is known yet on the first step. Buffered
        # by 0.3 of the box size on each side (64 x 160 px), consecutive boxes overlap by
        # 24 x 160: IoU 3840 / 16640 = 0.23 >= 0.2, so the track is kept; without the
        # buffer every step starts a new track.
        t = Tracker(TrackerSettings(confirm_hits=1, buffer_scale=scale))
        ids: set[int] = set()
        for i, x in enumerate([0, 0, 0, 40, 80, 120]):
            out = t.update(dets([box(x)]), 0.5 * i)
            ids.update(out.ids[out.det_index == 0].tolist())
        assert len(ids) == n_ids

    def test_detection_order_does_not_matter(self) -> None:
        t = Tracker(TrackerSettings(confirm_hits=1))
        t.update(dets([box(0), box(200)]), 0.0)
        out = t.update(dets([box(203), box(2)]), 0.5)
        assert out.ids[out.det_index == 0].tolist() == [2]
        assert out.ids[out.det_index == 1].tolist() == [1]

    def test_low_score_detection_extends_confirmed_track(self) -> None:
        s = TrackerSettings(high_score=0.4, low_score=0.1, confirm_hits=2)
        t = Tracker(s)
        t.update(dets([box(100)]), 0.0)
        t.update(dets([box(100)]), 0.5)
        # Partly hidden: smaller box (IoU 0.6) with a low score.
        out = t.update(dets([[100, 140, 140, 200]], [0.2]), 1.0)
        assert out.ids.tolist() == [1] and out.matched.tolist() == [True]
        assert out.scores.tolist() == pytest.approx([0.2])

    def test_low_score_detection_never_starts_a_track(self) -> None:
        t = Tracker(TrackerSettings(high_score=0.4, low_score=0.1))
        assert len(t.update(dets([box(100)], [0.3]), 0.0)) == 0

    def test_low_score_needs_stricter_overlap(self) -> None:
        s = TrackerSettings(high_score=0.4, low_score=0.1, confirm_hits=1, low_match_iou=0.4)
        t = Tracker(s)
        t.update(dets([box(100)]), 0.0)
        # IoU with the track: 20 px overlap of 40 -> 2000 / 6000 = 0.33 < 0.4.
        out = t.update(dets([box(120)], [0.3]), 0.5)
        assert out.matched.tolist() == [False]
        # The same box at a high score matches in stage one (0.33 >= 0.2).
        out = t.update(dets([box(120)], [0.6]), 1.0)
        assert out.ids.tolist() == [1] and out.matched.tolist() == [True]

    def test_low_score_does_not_extend_tentative_track(self) -> None:
        t = Tracker(TrackerSettings(high_score=0.4, low_score=0.1, confirm_hits=3))
        t.update(dets([box(100)]), 0.0)
        out = t.update(dets([box(100)], [0.2]), 0.5)
        assert out.matched.tolist() == [False]

    def test_below_low_score_ignored(self) -> None:
        t = Tracker(TrackerSettings(high_score=0.4, low_score=0.1, confirm_hits=1))
        t.update(dets([box(100)]), 0.0)
        assert t.update(dets([box(100)], [0.05]), 0.5).matched.tolist() == [False]

    def test_output_is_aligned_and_typed(self) -> None:
        t = Tracker()
        out = t.update(dets([box(0), box(200), box(400)], [0.9, 0.5, 0.2]), 0.0)
        assert isinstance(out, TrackedObjects)
        assert out.ids.dtype == np.int64 and out.xyxy.dtype == np.float32
        assert out.scores.dtype == np.float32 and out.confirmed.dtype == np.bool_
        assert len(out) == 2  # the 0.2 detection is below the default high score 0.4
        assert out.xyxy.tolist() == [box(0), box(200)]
        assert out.foot_points().tolist() == [[20.0, 200.0], [220.0, 200.0]]


class TestInputs:
    def test_time_must_not_go_backwards(self) -> None:
        t = Tracker()
        t.update(Detections.empty(), 5.0)
        with pytest.raises(ValueError, match="must not go backwards"):
            t.update(Detections.empty(), 4.0)

    def test_time_must_be_finite(self) -> None:
        with pytest.raises(ValueError, match="finite"):
            Tracker().update(Detections.empty(), float("nan"))

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"low_score": 0.6, "high_score": 0.5}, "low_score"),
            ({"confirm_hits": 0}, "confirm_hits"),
            ({"match_iou": 0.0}, "match_iou"),
            ({"max_missed_s": 0}, "max_missed_s"),
            ({"count_grace_s": 3.0, "count_stationary_grace_s": 2.0}, "count_grace_s"),
            ({"count_grace_frames": -1}, "count_grace_frames"),
        ],
    )
    def test_settings_validation(self, kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            TrackerSettings(**kwargs)  # type: ignore[arg-type]
