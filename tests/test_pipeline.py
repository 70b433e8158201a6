"""CameraPipeline end to end on synthetic detections (and on real frames with the model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.pipeline import CameraPipeline, FrameResult, PipelineSettings
from lobbywatch.edge.zones import ZoneSpec
from lobbywatch.errors import ConfigError
from lobbywatch.zone_state import ZoneKind

FRAME = (1000, 500)  # width, height
QUEUE = ZoneSpec(
    id="queue", kind="waiting", blueprint="W1", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]
)
COUNTER = ZoneSpec(id="counter", kind="cash_counter", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])


def person(cx: float, cy: float = 300.0, w: float = 80.0, h: float = 160.0) -> list[float]:
    """Box whose foot point is (cx, cy)."""
    return [cx - w / 2, cy - h, cx + w / 2, cy]


def dets(boxes: list[list[float]], score: float = 0.9) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), score, np.float32))


class TestSettings:
    def test_defaults_build_tracker_and_occupancy(self) -> None:
        s = PipelineSettings()
        t = s.tracker_settings()
        assert (t.confirm_hits, t.max_missed_s, t.stationary_max_missed_s) == (3, 2.0, 10.0)
        # high score = the detector's threshold (0.3): every raw detection can start a track
        assert (t.high_score, t.low_score, t.match_iou) == (0.3, 0.1, 0.2)
        assert (t.count_grace_s, t.count_stationary_grace_s) == (0.5, 0.5)
        o = s.occupancy_settings()
        assert (o.entry_s, o.exit_s) == (1.0, 3.0)

    def test_inconsistent_scores_rejected(self) -> None:
        with pytest.raises(ValidationError, match="track_low_score"):
            PipelineSettings(track_low_score=0.5, track_high_score=0.4)

    def test_stationary_shorter_than_moving_rejected(self) -> None:
        with pytest.raises(ValidationError, match="stationary_max_missed_s"):
            PipelineSettings(max_missed_s=5, stationary_max_missed_s=2)

    def test_unknown_knob_rejected(self) -> None:
        with pytest.raises(ValidationError, match="confirm_hit\n  Extra inputs are not permitted"):
            PipelineSettings(confirm_hit=3)  # type: ignore[call-arg]


class TestStep:
    def test_states_in_config_order_with_contract_fields(self) -> None:
        pipe = CameraPipeline([QUEUE, COUNTER], PipelineSettings())
        r = pipe.step(dets([person(100), person(700), person(800)]), 1000.0, FRAME)
        assert isinstance(r, FrameResult)
        assert [s.zone for s in r.zones] == ["queue", "counter"]
        q, c = r.zones
        assert (q.kind, q.blueprint, c.kind, c.blueprint) == (
            ZoneKind.WAITING,
            "W1",
            ZoneKind.CASH_COUNTER,
            None,
        )
        assert (q.ts, q.raw_count, c.raw_count) == (1000.0, 1, 2)
        assert (q.people, c.people) == (0, 0)  # not confirmed yet
        assert q.dwell_p50_s is None and q.completed_dwells_s == ()
        assert r.zone_of_detection.tolist() == [0, 1, 1]
        assert r.zone("counter") is c
        with pytest.raises(KeyError, match="no zone 'lobby'"):
            r.zone("lobby")

    def test_people_counted_after_confirmation_and_entry(self) -> None:
        # confirm_hits 3 at 2 fps -> confirmed at t=1.0; entry needs 1.0 s -> counted at 1.0.
        pipe = CameraPipeline([QUEUE, COUNTER], PipelineSettings())
        people = [pipe.step(dets([person(200)]), 0.5 * i, FRAME).zones[0].people for i in range(4)]
        assert people == [0, 0, 1, 1]

    def test_one_missed_detection_does_not_empty_the_zone(self) -> None:
        pipe = CameraPipeline([QUEUE, COUNTER], PipelineSettings())
        for i in range(6):
            pipe.step(dets([person(200)]), 0.5 * i, FRAME)
        r = pipe.step(Detections.empty(), 3.0, FRAME)
        assert r.zones[0].people == 1 and r.zones[0].raw_count == 0
        assert r.tracks.matched.tolist() == [False]
        assert pipe.step(dets([person(201)]), 3.5, FRAME).zones[0].people == 1

    def test_walker_lost_is_not_counted_twice(self) -> None:
        # A walker (80 px/s) is confirmed, then their track is lost: the detection
        # jumps away (a new track starts there). After one missed frame the old,
        # moving track stops counting although it lives on (max_missed_s 2 s).
        pipe = CameraPipeline([QUEUE], PipelineSettings(zone_entry_s=0))
        for i in range(5):
            r = pipe.step(dets([person(100 + 40 * i)]), 0.5 * i, FRAME)
        assert r.zones[0].people == 1
        people, live = [], []
        for i in range(5, 9):
            r = pipe.step(dets([person(420, cy=480)]), 0.5 * i, FRAME)
            people.append(r.zones[0].people)
            live.append(len(r.tracks))
        assert live == [2, 2, 2, 2]  # the old track is remembered ...
        # ... counted for one missed frame (t=2.5), then not; the new person counts from
        # its 3rd hit (t=3.5) while the old track, alive until 4.0, would make it 2.
        assert people == [1, 0, 1, 1]
        assert r.tracks.counted.sum() == 1

    def test_still_person_counted_through_a_short_occlusion(self) -> None:
        # A queuing person (foot y 300); another walks in and stands in front of them
        # (foot y 360, covering half their box) for 4 s, during which only the one in
        # front is detected: the hidden person stays counted and keeps the oldest dwell.
        pipe = CameraPipeline([QUEUE], PipelineSettings(zone_entry_s=0))
        for i in range(10):
            other = person(max(420.0 - 40 * i, 230.0), cy=360.0)
            pipe.step(dets([person(200), other]), 0.5 * i, FRAME)
        hidden = [pipe.step(dets([person(230, cy=360.0)]), 5.0 + 0.5 * i, FRAME) for i in range(8)]
        assert [r.zones[0].people for r in hidden] == [2] * 8
        assert [r.zones[0].dwell_max_s for r in hidden] == [5.0 + 0.5 * i for i in range(8)]
        # Nobody in front: the miss is unexplained, counted for one frame (0.5 s) only,
        # but the person stays a member of the zone: dwell_max_s keeps rising.
        pipe = CameraPipeline([QUEUE], PipelineSettings(zone_entry_s=0))
        for i in range(6):
            pipe.step(dets([person(200)]), 0.5 * i, FRAME)
        gone = [pipe.step(Detections.empty(), 3.0 + 0.5 * i, FRAME).zones[0] for i in range(6)]
        assert [z.people for z in gone] == [1, 0, 0, 0, 0, 0]
        assert [z.dwell_max_s for z in gone] == [3.0 + 0.5 * i for i in range(6)]
        assert [z.departures_total for z in gone] == [0] * 6

    def test_geometry_checked_at_construction(self) -> None:
        bad = ZoneSpec(id="wide", kind="waiting", polygon=[(0.4, 0), (1, 0), (1, 1), (0.4, 1)])
        with pytest.raises(ConfigError, match="zones 'queue' and 'wide' overlap"):
            CameraPipeline([QUEUE, bad])

    def test_process_without_detector(self) -> None:
        pipe = CameraPipeline([QUEUE])
        with pytest.raises(ValueError, match="no detector"):
            pipe.process(np.zeros((10, 10, 3), np.uint8), 0.0)

    def test_frame_size_change_rebuilds_map_and_restarts_tracks(self) -> None:
        pipe = CameraPipeline([QUEUE, COUNTER], PipelineSettings(confirm_hits=1, zone_entry_s=0))
        r = pipe.step(dets([person(200)]), 0.0, FRAME)
        assert r.zones[0].people == 1 and pipe.zone_map is not None
        assert pipe.zone_map.width == 1000
        # Same relative place at half resolution: the old track is lost (exit at its last
        # sighting, 0.0), a new one enters.
        r = pipe.step(dets([person(100, 150, 40, 80)]), 1.0, (500, 250))
        assert pipe.zone_map.width == 500
        q = r.zones[0]
        assert (q.people, q.arrivals_total, q.departures_total) == (1, 2, 1)
        assert q.completed_dwells_s == (0.0,)
        assert r.tracks.ids.tolist() == [2]

    def test_bad_frame_size(self) -> None:
        with pytest.raises(ValueError, match="frame_size"):
            CameraPipeline([QUEUE]).step(Detections.empty(), 0.0, (0, 10))


def simulate_queue(
    n_people: int, drop_rate: float, seed: int
) -> tuple[list[FrameResult], list[float], list[float]]:
    """People queue then get served, sampled at 2 fps, with dropped detections and ghosts.

    Person k arrives at t0 = 20 k with their foot at x = 140 (queue), stands 10 s,
    walks right at 80 px/s to x = 740 (counter; crossing the border x = 500 at
    t0 + 14.5), is served for 10 s (until t0 + 27.5) and then leaves the view.
    A fraction of detections is dropped at random (never two frames in a row for
    the same person, so no gap exceeds one frame), and single-frame false
    positives appear now and then.
    """
    rng = np.random.default_rng(seed)
    settings = PipelineSettings(stationary_max_missed_s=3.0)
    pipe = CameraPipeline([QUEUE, COUNTER], settings)
    results: list[FrameResult] = []
    queue_waits: list[float] = []
    service: list[float] = []
    dropped_last: set[int] = set()
    for f in range(int((20 * n_people + 40) / 0.5)):
        t = 0.5 * f
        boxes = []
        dropped_now: set[int] = set()
        for k in range(n_people):
            age = t - 20.0 * k
            if not 0 <= age <= 27.5:
                continue
            x = 140.0 + 80.0 * float(np.clip(age - 10.0, 0.0, 7.5))
            if rng.random() < drop_rate and k not in dropped_last:
                dropped_now.add(k)
                continue
            boxes.append(person(x))
        dropped_last = dropped_now
        if rng.random() < 0.05:  # a ghost: one frame only, somewhere in a zone
            boxes.append(person(float(rng.uniform(300, 900)), cy=480.0))
        r = pipe.step(dets(boxes), 1_700_000_000.0 + t, FRAME)
        results.append(r)
        queue_waits.extend(r.zones[0].completed_dwells_s)
        service.extend(r.zones[1].completed_dwells_s)
    return results, queue_waits, service


class TestQueueSimulation:
    def test_clean_detections_give_exact_flows_and_waits(self) -> None:
        results, waits, service = simulate_queue(6, drop_rate=0.0, seed=1)
        q, c = results[-1].zones
        assert (q.arrivals_total, q.departures_total, q.people) == (6, 6, 0)
        assert (c.arrivals_total, c.departures_total, c.people) == (6, 6, 0)
        # Queue: first seen 20k, first seen at the counter 20k + 14.5.
        assert waits == [14.5] * 6
        # Counter: 20k + 14.5 until the last sighting at 20k + 27.5 (lost track).
        assert service == [13.0] * 6
        ids = set().union(*(set(r.tracks.ids[r.tracks.confirmed].tolist()) for r in results))
        assert len(ids) == 6  # one identity per person, ghosts never confirmed

    def test_dropped_detections_do_not_change_counts(self) -> None:
        results, waits, service = simulate_queue(6, drop_rate=0.3, seed=2)
        q, c = results[-1].zones
        assert (q.arrivals_total, q.departures_total) == (6, 6)
        assert (c.arrivals_total, c.departures_total) == (6, 6)
        # A dropped frame can shift an observed boundary by one frame (0.5 s).
        assert waits == pytest.approx([14.5] * 6, abs=0.51)
        assert service == pytest.approx([13.0] * 6, abs=1.01)
        # People in the queue never exceed the people present (no flicker double count).
        assert max(r.zones[0].people for r in results) == 1

    def test_people_never_exceed_confirmed_tracks(self) -> None:
        results, _, _ = simulate_queue(4, drop_rate=0.2, seed=3)
        for r in results:
            assert sum(s.people for s in r.zones) <= int(r.tracks.confirmed.sum())
            assert sum(s.raw_count for s in r.zones) <= len(r.detections)


@pytest.mark.model
def test_process_real_frames(vtest_video: Path, model_path: Path) -> None:
    """Detector + pipeline on the first 1.5 s of vtest.avi: sane, consistent counts."""
    import cv2

    from lobbywatch.edge.detector import Detector, DetectorSettings

    detector = Detector.from_settings(DetectorSettings(name="yolox_nano", path=model_path))  # type: ignore[call-arg]
    whole = ZoneSpec(id="all", kind="waiting", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])
    pipe = CameraPipeline([whole], PipelineSettings(), detector)
    cap = cv2.VideoCapture(str(vtest_video))
    results = []
    for i in range(15):  # 10 fps: confirmed after 0.2 s, counted after 1.0 s in the zone
        ok, frame = cap.read()
        assert ok
        results.append(pipe.process(frame, i / 10.0))
    cap.release()
    assert pipe.zone_map is not None and (pipe.zone_map.width, pipe.zone_map.height) == (768, 576)
    # The whole frame is one zone: every detection is in it.
    assert all(r.zones[0].raw_count == len(r.detections) for r in results)
    assert min(r.zones[0].raw_count for r in results) >= 2  # people are always in view
    assert results[0].zones[0].people == 0  # nobody confirmed on the first frame
    assert results[-1].zones[0].people >= 2
    assert all(r.zones[0].people <= int(r.tracks.confirmed.sum()) for r in results)


class TestQueueStepAtSparseFrames:
    """Issue 10, section 5: one step forward in the queue must not restart the wait."""

    @pytest.mark.parametrize("fps", [1.0, 2.0])
    def test_one_step_of_1_2_box_widths_keeps_the_dwell(self, fps: float) -> None:
        # Standing still 60 s, then one step of 72 px at box width 60 px, then still to 89.5 s.
        pipe = CameraPipeline([QUEUE], PipelineSettings(zone_entry_s=0))
        n = int(90 * fps)
        for i in range(n):
            x = 150.0 if i < 60 * fps else 222.0
            r = pipe.step(dets([person(x, w=60.0, h=150.0)]), i / fps, FRAME)
        q = r.zones[0]
        assert q.dwell_max_s == (n - 1) / fps  # 89 / 89.5: one person, one wait
        assert (q.people, q.arrivals_total, q.departures_total) == (1, 1, 0)
        assert set(r.tracks.ids.tolist()) == {1}


class TestClockSteps:
    """Issue 10, section 7: a wall-clock step changes no dwell and stops nothing."""

    @staticmethod
    def _run(wall_step_s: float) -> list[FrameResult]:
        pipe = CameraPipeline([QUEUE], PipelineSettings(zone_entry_s=0))
        mono0, wall0 = 5_000.0, 1_700_000_000.0
        out = []
        for i in range(40):
            mono = mono0 + 0.5 * i
            wall = wall0 + 0.5 * i + (wall_step_s if i >= 20 else 0.0)  # NTP step at frame 20
            out.append(pipe.step(dets([person(200)]), mono, FRAME, wall_ts=wall))
        return out

    @pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
    def test_wall_clock_step_changes_no_dwell(self, step_s: float) -> None:
        steady, stepped = self._run(0.0), self._run(step_s)
        assert len(stepped) == 40  # every frame processed, none refused
        as_dicts = [
            [(z.people, z.dwell_max_s, z.arrivals_total, z.departures_total) for z in r.zones]
            for r in stepped
        ]
        assert as_dicts == [
            [(z.people, z.dwell_max_s, z.arrivals_total, z.departures_total) for z in r.zones]
            for r in steady
        ]
        assert stepped[-1].zones[0].dwell_max_s == 19.5
        # the published stamp follows the wall clock, step included
        assert stepped[19].zones[0].ts == 1_700_000_000.0 + 9.5
        assert stepped[20].zones[0].ts == 1_700_000_000.0 + 10.0 + step_s

    def test_without_a_wall_stamp_ts_is_published(self) -> None:
        r = CameraPipeline([QUEUE]).step(dets([person(200)]), 12.5, FRAME)
        assert r.zones[0].ts == 12.5 and r.ts == 12.5
