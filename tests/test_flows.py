"""Walk-outs vs service starts: departures from a waiting zone classified by destination.

Hand-computed timelines on the classifier alone (occupancy events fed in by hand),
then the whole pipeline on synthetic detections, then the device config.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.flows import DepartureClassifier, ZoneFlows
from lobbywatch.edge.occupancy import ZoneEvent
from lobbywatch.edge.pipeline import CameraPipeline, PipelineSettings
from lobbywatch.edge.zones import ZoneSpec
from lobbywatch.errors import ConfigError

# zone indices: 0 queue, 1 counter, 2 door (entrance), 3 self-service, 4 second queue
Q, C, D, S, Q2 = 0, 1, 2, 3, 4


def zones(**flows: ZoneFlows) -> list[SimpleNamespace]:
    ids = [("q", "waiting"), ("c", "cash_counter"), ("door", "entrance")]
    ids += [("atm", "self_service"), ("q2", "waiting")]
    return [SimpleNamespace(id=i, kind=k, flows=flows.get(i)) for i, k in ids]


QUEUE_FLOWS = ZoneFlows(service_points=["c"], exits=["door"], transit_s=6.0)


def classifier() -> DepartureClassifier:
    return DepartureClassifier(zones(q=QUEUE_FLOWS))


def exit_of(
    track: int, zone: int, ts: float, *, lost: bool = False, to_zone: int = -1
) -> ZoneEvent:
    return ZoneEvent("exit", track, zone, ts, 60.0, lost, to_zone)


def step(
    dc: DepartureClassifier,
    t: float,
    seen: dict[int, int],
    events: list[ZoneEvent] | None = None,
    unmatched: tuple[int, ...] = (),
) -> list[list[int]]:
    """One step: ``seen`` maps live track id -> observed zone (-1: unzoned floor)."""
    ids = list(seen) + list(unmatched)
    obs = list(seen.values()) + [-1] * len(unmatched)
    matched = [True] * len(seen) + [False] * len(unmatched)
    out = dc.update(events or [], np.array(ids, np.int64), np.array(obs), np.array(matched), t)
    return out.tolist()


ZERO = [0, 0, 0]


def test_service_start_after_crossing_unzoned_floor() -> None:
    dc = classifier()
    # exit counted at t=13 (exit hysteresis), exit time 10; on the floor until 14
    assert step(dc, 13.0, {7: -1}, [exit_of(7, Q, 10.0)])[Q] == ZERO
    assert dc.in_transit == 1
    assert step(dc, 14.0, {7: -1})[Q] == ZERO
    # reaches the counter at 15.5, 5.5 s after leaving: within transit_s = 6
    assert step(dc, 15.5, {7: C})[Q] == [1, 0, 0]
    assert dc.in_transit == 0
    # later observations change nothing
    assert step(dc, 16.0, {7: D})[Q] == [1, 0, 0]


def test_walk_out_through_the_entrance() -> None:
    dc = classifier()
    assert step(dc, 13.0, {5: D}, [exit_of(5, Q, 10.0)])[Q] == [0, 1, 0]


def test_nothing_reached_within_transit_is_unseen_not_guessed() -> None:
    dc = classifier()
    step(dc, 13.0, {7: -1}, [exit_of(7, Q, 10.0)])
    assert step(dc, 16.0, {7: -1})[Q] == ZERO  # 6.0 s after: still in transit
    assert step(dc, 16.5, {7: -1})[Q] == [0, 0, 1]  # 6.5 s: unseen
    # reaching the counter afterwards does not reclassify it
    assert step(dc, 17.0, {7: C})[Q] == [0, 0, 1]


def test_track_lost_in_transit_or_in_the_queue_is_unseen() -> None:
    dc = classifier()
    step(dc, 13.0, {7: -1, 8: Q}, [exit_of(7, Q, 10.0)])
    assert step(dc, 13.5, {8: Q})[Q] == [0, 0, 1]  # track 7 deleted
    # a track deleted inside the queue: the occupancy reports a lost exit
    assert step(dc, 14.0, {}, [exit_of(8, Q, 13.5, lost=True)])[Q] == [0, 0, 2]
    assert dc.in_transit == 0


def test_where_the_occupancy_last_saw_the_track_decides_at_once() -> None:
    dc = classifier()
    # reached the door and vanished out of the frame before the exit was confirmed:
    # the occupancy reports a lost exit whose latest observation is the door
    assert step(dc, 13.0, {}, [exit_of(4, Q, 11.0, lost=True, to_zone=D)])[Q] == [0, 1, 0]
    # confirmed exit whose latest observation is the counter, unmatched this step
    out = step(dc, 14.0, {}, [exit_of(5, Q, 11.0, to_zone=C)], unmatched=(5,))
    assert out[Q] == [1, 1, 0] and dc.in_transit == 0
    # lost inside the queue (latest observation still the queue): unseen
    assert step(dc, 15.0, {}, [exit_of(6, Q, 14.0, lost=True, to_zone=Q)])[Q] == [1, 1, 1]


def test_unmatched_prediction_is_not_an_observation() -> None:
    dc = classifier()
    step(dc, 13.0, {7: -1}, [exit_of(7, Q, 10.0)])
    # the tracker still holds track 7 but did not see it: no destination yet
    assert step(dc, 14.0, {}, unmatched=(7,))[Q] == ZERO
    assert step(dc, 14.5, {7: D})[Q] == [0, 1, 0]


def test_other_zone_is_unseen_and_back_in_queue_keeps_waiting() -> None:
    dc = classifier()
    step(dc, 13.0, {1: S, 2: Q}, [exit_of(1, Q, 10.0), exit_of(2, Q, 10.0)])
    # 1 went to self-service (neither a service point nor an exit); 2 stepped back
    assert dc.totals[Q].tolist() == [0, 0, 1]
    assert dc.in_transit == 1
    assert step(dc, 14.0, {2: C})[Q] == [1, 0, 1]


def test_zones_without_flows_are_not_classified_and_zones_are_independent() -> None:
    flows2 = ZoneFlows(service_points=["atm"], transit_s=2.0)
    dc = DepartureClassifier(zones(q=QUEUE_FLOWS, q2=flows2))
    assert dc.enabled.tolist() == [True, False, False, False, True]
    out = step(
        dc,
        13.0,
        {1: C, 2: S, 3: C, 4: -1},
        # 1: queue -> counter; 2: second queue -> its self-service point; 3: exit from
        # the counter zone (no flows: ignored); 4: second queue, in transit
        [exit_of(1, Q, 12.0), exit_of(2, Q2, 12.0), exit_of(3, C, 12.0), exit_of(4, Q2, 12.0)],
    )
    assert out[Q] == [1, 0, 0] and out[Q2] == [1, 0, 0] and out[C] == ZERO
    # 2 s transit for the second queue: track 4 is unseen at 14.5, though it reaches c
    assert step(dc, 14.5, {4: C})[Q2] == [1, 0, 1]


def test_many_departures_in_one_step() -> None:
    dc = classifier()
    n = 50
    events = [exit_of(i, Q, 10.0) for i in range(n)]
    seen = {i: (C if i % 5 else D) for i in range(n)}  # every 5th walks out
    assert step(dc, 11.0, seen, events)[Q] == [40, 10, 0]


# ------------------------------------------------------------------ flows in the config


def test_flows_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="at least one service point or exit"):
        ZoneFlows()
    with pytest.raises(ValueError, match="'c' cannot be both"):
        ZoneFlows(service_points=["c"], exits=["c"])
    with pytest.raises(ValueError, match="exit 'atm' is a self_service zone, not an entrance"):
        DepartureClassifier(zones(q=ZoneFlows(exits=["atm"])))
    with pytest.raises(ValueError, match="service point 'nope' is not a zone of this camera"):
        DepartureClassifier(zones(q=ZoneFlows(service_points=["nope"])))
    with pytest.raises(ValueError, match="'c': flows apply to waiting zones only"):
        DepartureClassifier(zones(c=ZoneFlows(exits=["door"])))
    with pytest.raises(ValueError, match="service point 'q2' is a waiting zone"):
        DepartureClassifier(zones(q=ZoneFlows(service_points=["q2"])))
    with pytest.raises(ValidationError, match="transit_s"):
        ZoneFlows(exits=["door"], transit_s=-1)


def test_device_config_reports_flows_problems_with_their_path() -> None:
    from lobbywatch.edge.config import DeviceConfigError, parse_device_config

    text = """
device_id: d1
branch_id: b1
cameras:
  - id: cam
    source: 0
    zones:
      - id: W1
        kind: waiting
        polygon: [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
        flows:
          service_points: [cash-9]
      - id: cash-1
        kind: cash_counter
        polygon: [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
"""
    with pytest.raises(DeviceConfigError) as err:
        parse_device_config(text, check_files=False)
    (problem,) = err.value.problems
    assert problem.path == "cameras[0].zones[0].flows"
    assert problem.line == 11
    assert "service point 'cash-9' is not a zone of this camera" in problem.message
    ok = parse_device_config(text.replace("cash-9", "cash-1"), check_files=False)
    flows = ok.cameras[0].zones[0].flows
    assert flows is not None and flows.service_points == ["cash-1"] and flows.transit_s == 6.0


# ------------------------------------------------------------------ whole pipeline

FRAME = (1000, 500)
# queue | floor gap | counter on the left half; entrance strip on the right
PIPE_ZONES = [
    ZoneSpec(
        id="queue",
        kind="waiting",
        polygon=[(0.0, 0.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0)],
        flows=ZoneFlows(service_points=["counter"], exits=["door"], transit_s=6.0),
    ),
    ZoneSpec(id="counter", kind="cash_counter", polygon=[(0.5, 0), (0.7, 0), (0.7, 1), (0.5, 1)]),
    ZoneSpec(id="door", kind="entrance", polygon=[(0.8, 0), (1.0, 0), (1.0, 1), (0.8, 1)]),
]


def box(cx: float, cy: float = 300.0) -> list[float]:
    return [cx - 40, cy - 160, cx + 40, cy]


def run(path: list[float], zone_list: list[ZoneSpec] = PIPE_ZONES) -> list[object]:
    """One person at x = path[k] at t = k / 2 (2 fps); the states of every step."""
    pipe = CameraPipeline(zone_list, PipelineSettings(confirm_hits=1, zone_entry_s=0.0))
    out = []
    for k, x in enumerate(path):
        d = Detections(np.asarray([box(x)], np.float32), np.array([0.9], np.float32))
        out.append(pipe.step(d, k / 2, FRAME).zones[0])
    return out


def walk(start: float, end: float, steps: int) -> list[float]:
    return list(np.linspace(start, end, steps))


def test_pipeline_counts_a_service_start_across_the_gap() -> None:
    # 10 s in the queue at x=200, then 40 px per frame to the counter at x=600, stays
    path = [200.0] * 20 + walk(240, 600, 10) + [600.0] * 12
    states = run(path)
    last = states[-1]
    assert last.departures_total == 1  # type: ignore[attr-defined]
    assert (last.service_starts_total, last.walk_outs_total, last.departures_unseen_total) == (  # type: ignore[attr-defined]
        1,
        0,
        0,
    )


def test_pipeline_counts_a_walk_out_through_the_door() -> None:
    path = [200.0] * 20 + walk(240, 900, 17) + [900.0] * 6
    last = run(path)[-1]
    assert (last.service_starts_total, last.walk_outs_total) == (0, 1)  # type: ignore[attr-defined]


def test_pipeline_walk_out_leaving_the_frame_from_the_door() -> None:
    # the door next to the queue: one step across the floor, a second in the door strip
    # at the edge of the frame, then out of view, before any exit hysteresis is over
    door_side = [
        PIPE_ZONES[0],
        ZoneSpec(id="door", kind="entrance", polygon=[(0.45, 0), (0.6, 0), (0.6, 1), (0.45, 1)]),
        ZoneSpec(id="counter", kind="cash_counter", polygon=[(0.7, 0), (1, 0), (1, 1), (0.7, 1)]),
    ]
    pipe = CameraPipeline(door_side, PipelineSettings(confirm_hits=1, zone_entry_s=0.0))
    path = [200.0] * 20 + walk(240, 480, 7) + [500.0, 520.0]
    last = None
    for k, x in enumerate(path):
        d = Detections(np.asarray([box(x)], np.float32), np.array([0.9], np.float32))
        last = pipe.step(d, k / 2, FRAME).zones[0]
    for k in range(len(path), len(path) + 30):  # nobody in view for 15 s
        empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        last = pipe.step(empty, k / 2, FRAME).zones[0]
    assert last is not None and last.departures_total == 1
    assert (last.walk_outs_total, last.departures_unseen_total) == (1, 0)


def test_pipeline_too_slow_through_the_gap_is_unseen() -> None:
    # stands on the floor gap (x=450) for 10 s before reaching the counter
    path = [200.0] * 20 + [450.0] * 20 + [600.0] * 8
    last = run(path)[-1]
    assert last.departures_total == 1  # type: ignore[attr-defined]
    assert (last.service_starts_total, last.departures_unseen_total) == (0, 1)  # type: ignore[attr-defined]


def test_pipeline_without_flows_omits_the_fields() -> None:
    plain = [PIPE_ZONES[0].model_copy(update={"flows": None}), *PIPE_ZONES[1:]]
    last = run([200.0] * 20 + walk(240, 600, 10) + [600.0] * 12, plain)[-1]
    assert last.departures_total == 1  # type: ignore[attr-defined]
    assert last.service_starts_total is None and last.walk_outs_total is None  # type: ignore[attr-defined]


def test_pipeline_rejects_bad_flows_as_config_error() -> None:
    bad = [PIPE_ZONES[0].model_copy(update={"flows": ZoneFlows(exits=["counter"])}), PIPE_ZONES[1]]
    with pytest.raises(ConfigError, match="exit 'counter' is a cash_counter zone"):
        CameraPipeline(bad)
