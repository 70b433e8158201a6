"""Arrivals, service starts and walk-outs on the collector: increases, resets, metrics,
minute aggregates (hand-computed message sequences; no broker needed)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from test_server_support import parse_metrics, raw, sample, zone_msg

from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.collector import MinuteAggregator
from lobbywatch.server.config import IngestSettings
from lobbywatch.server.flows import FlowCounts, FlowDelta, increase, observe
from lobbywatch.server.ingest import Ingestor, Outcome
from lobbywatch.server.metrics import LatencyHistogram, StateCollector, make_registry
from lobbywatch.server.state import CollectorState, ZoneKey

NOW = 1_750_000_000.0
W1 = ZoneKey("b1", "W1")


def flows_msg(
    seq: int,
    at: float,
    arrivals: int,
    starts: int | None,
    walks: int | None,
    unseen: int | None,
    *,
    device: str = "edge-1",
    zone: str = "W1",
) -> ZoneMessage:
    base = zone_msg(seq, at, arrivals=arrivals, device=device, zone=zone)
    return base.model_copy(
        update={
            "service_starts_total": starts,
            "walk_outs_total": walks,
            "departures_unseen_total": unseen,
        }
    )


def test_increase_reads_counters_like_prometheus() -> None:
    assert increase(12, 10) == 2
    assert increase(10, 10) == 0
    assert increase(3, 10) == 3  # a reset: the new value is the increase since it
    assert increase(5, None) == 0  # no baseline yet
    assert increase(None, 5) == 0  # the edge stopped sending the field


def test_observe_hand_computed_sequence_with_an_edge_restart() -> None:
    c = FlowCounts(window_s=1800.0)
    seq = [
        # (arrivals, service starts, walk-outs, unseen) -> expected increase
        ((10, 5, 1, 0), (0, 0, 0, 0)),  # first message: baseline only
        ((12, 6, 2, 0), (2, 1, 1, 0)),
        ((12, 6, 2, 0), (0, 0, 0, 0)),  # heartbeat
        ((1, 0, 1, 0), (1, 0, 1, 0)),  # edge restarted: counters from 0
        ((3, 1, 1, 1), (2, 1, 0, 1)),
    ]
    for k, (totals, expected) in enumerate(seq):
        delta = observe(c, flows_msg(k, NOW + 60 * k, *totals), NOW + 60 * k)
        assert tuple(delta) == expected, k
    assert (c.arrivals, c.service_starts, c.walk_outs, c.departures_unseen) == (5, 2, 2, 1)
    assert c.classified
    # walk-outs / classified departures: 2 / (2 + 2 + 1)
    assert c.walk_out_ratio() == pytest.approx(0.4)


def test_walk_out_ratio_window_and_unknown() -> None:
    c = FlowCounts(window_s=600.0)
    assert c.walk_out_ratio() is None
    observe(c, flows_msg(0, NOW, 0, 0, 0, 0), NOW)
    observe(c, flows_msg(1, NOW + 10, 4, 0, 3, 0), NOW + 10)  # 3 walk-outs
    observe(c, flows_msg(2, NOW + 500, 8, 4, 3, 0), NOW + 500)  # 4 service starts
    assert c.walk_out_ratio() == pytest.approx(3 / 7)
    # 700 s later the walk-outs at NOW + 10 are out of the 600 s window
    observe(c, flows_msg(3, NOW + 700, 9, 5, 3, 0), NOW + 700)
    assert c.walk_out_ratio() == pytest.approx(0.0)
    assert (c.service_starts, c.walk_outs) == (5, 3)  # the counters keep everything


def test_walk_out_ratio_with_counters_on_another_camera() -> None:
    # every service start is an unseen departure there: 2 walk-outs of 10 departures
    # is 20 %, not the 100 % a share over known destinations would claim
    c = FlowCounts()
    observe(c, flows_msg(0, NOW, 0, 0, 0, 0), NOW)
    observe(c, flows_msg(1, NOW + 60, 10, 0, 2, 8), NOW + 60)
    assert c.walk_out_ratio() == pytest.approx(0.2)


def test_another_device_or_an_older_edge_sets_a_new_baseline() -> None:
    c = FlowCounts()
    observe(c, flows_msg(0, NOW, 50, 40, 5, 1), NOW)
    # the zone is now published by another device with its own totals: no delta
    assert observe(c, flows_msg(0, NOW + 5, 3, 2, 0, 0, device="edge-2"), NOW + 5) == FlowDelta()
    assert tuple(observe(c, flows_msg(1, NOW + 9, 4, 3, 0, 0, device="edge-2"), NOW + 9)) == (
        1,
        1,
        0,
        0,
    )
    # the edge was downgraded: classes vanish, arrivals still count
    old = flows_msg(2, NOW + 12, 6, None, None, None, device="edge-2")
    assert tuple(observe(c, old, NOW + 12)) == (2, 0, 0, 0)
    assert (c.arrivals, c.service_starts) == (3, 1)


def make() -> tuple[Ingestor, CollectorState]:
    state = CollectorState()
    return Ingestor(state, IngestSettings(), "lobbywatch", {"b1": "north"}), state


def handle(ing: Ingestor, msg: ZoneMessage, now: float = NOW + 3600) -> Outcome:
    topic, payload = raw(msg)
    return ing.handle(topic, payload, now)


def test_ingest_counts_each_message_once_and_ignores_stale_ones() -> None:
    ing, state = make()
    assert handle(ing, flows_msg(1, NOW, 10, 6, 2, 1)).flows == FlowDelta()
    m2 = flows_msg(2, NOW + 5, 13, 8, 3, 1)
    assert tuple(handle(ing, m2).flows or ()) == (3, 2, 1, 0)
    assert handle(ing, m2).result == "duplicate"
    late = handle(ing, flows_msg(0, NOW - 5, 0, 0, 0, 0))  # older than what we hold
    assert late.result == "stale" and late.flows is None
    f = state.zones[W1].flows
    assert (f.arrivals, f.service_starts, f.walk_outs, f.departures_unseen) == (3, 2, 1, 0)


def test_metrics_export_counters_and_ratio_only_for_classified_zones() -> None:
    ing, state = make()
    handle(ing, flows_msg(1, NOW, 0, 0, 0, 0))
    handle(ing, flows_msg(2, NOW + 60, 10, 6, 2, 1))
    # W2: an older edge without departure classes
    handle(ing, flows_msg(3, NOW, 0, None, None, None, zone="W2"))
    handle(ing, flows_msg(4, NOW + 60, 7, None, None, None, zone="W2"))
    registry = make_registry(StateCollector(state, LatencyHistogram(), clock=lambda: NOW + 61))
    m = parse_metrics(generate_latest(registry).decode())
    w1 = {"branch": "b1", "zone": "W1"}
    w2 = {"branch": "b1", "zone": "W2"}
    assert sample(m, "lobbywatch_zone_arrivals_total", **w1) == 10
    assert sample(m, "lobbywatch_zone_service_starts_total", **w1) == 6
    assert sample(m, "lobbywatch_zone_walk_outs_total", **w1) == 2
    assert sample(m, "lobbywatch_zone_departures_unseen_total", **w1) == 1
    assert sample(m, "lobbywatch_zone_walk_out_ratio", **w1) == pytest.approx(2 / 9)
    assert sample(m, "lobbywatch_zone_arrivals_total", **w2) == 7
    # no walk-out counter for a zone that cannot tell: absent, not 0
    assert sample(m, "lobbywatch_zone_walk_outs_total", **w2) is None
    assert sample(m, "lobbywatch_zone_walk_out_ratio", **w2) is None


def test_minute_aggregates_sum_flows_per_minute() -> None:
    agg = MinuteAggregator()
    w2 = ZoneKey("b1", "W2")
    t0 = 1_750_000_020.0  # 20 s into a minute
    assert agg.roll(t0) == []
    agg.add_flows(W1, FlowDelta(2, 1, 1, 0), classified=True)
    agg.add_flows(W1, FlowDelta(1, 2, 0, 1), classified=True)
    agg.sample(W1, 3, None, 600.0, classified=True)
    agg.add_flows(w2, FlowDelta(4, 0, 0, 0), classified=False)
    agg.sample(w2, 1, None, 600.0, classified=False)
    rows = {r.zone: r for r in agg.roll(t0 + 60)}
    r1, r2 = rows["W1"], rows["W2"]
    assert (r1.arrivals, r1.service_starts, r1.walk_outs, r1.departures_unseen) == (3, 3, 1, 1)
    assert (r2.arrivals, r2.service_starts, r2.walk_outs, r2.departures_unseen) == (
        4,
        None,
        None,
        None,
    )
    # a classified zone with a quiet minute records 0 walk-outs, not "unknown"
    agg.sample(W1, 0, None, 600.0, classified=True)
    (quiet,) = agg.roll(t0 + 120)
    assert (quiet.arrivals, quiet.service_starts, quiet.walk_outs) == (0, 0, 0)
