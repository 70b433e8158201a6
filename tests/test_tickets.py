"""Ticket-system events: pairing issued -> called, duplicates and order, eviction, the
learned priority share, calibration from ticket waits, the ingest's checks, and the
collector / replay path (hand-computed; no broker: see test_tickets_broker.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from test_server_support import raw, server_config, ticket_msg, zone_msg

from lobbywatch.server.collector import Collector
from lobbywatch.server.config import IngestSettings, parse_server_config
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator
from lobbywatch.server.ingest import Ingestor
from lobbywatch.server.replay import Recorded, replay
from lobbywatch.server.state import CollectorState, ZoneKey
from lobbywatch.server.tickets import (
    TicketBook,
    TicketSettings,
    TicketSummary,
    TicketWait,
)

T0 = 1_764_400_000.0
W1 = ZoneKey("b1", "W1")


def _apply(book: TicketBook, *msgs: Any, now: float | None = None) -> list[str]:
    out = []
    for m in msgs:
        at = m.ts.timestamp()
        out.append(book.apply(m, at, at if now is None else now).result)
    return out


# ------------------------------------------------------------------ the book


def test_issued_then_called_is_a_realised_wait_of_the_issued_class() -> None:
    book = TicketBook()
    assert book.apply(ticket_msg(1, T0, "issued", "A001"), T0, T0).wait is None
    got = book.apply(ticket_msg(2, T0 + 300, "called", "A001", counter="C2"), T0 + 300, T0 + 300)
    assert got.result == "ok" and got.wait == TicketWait("b1", "W1", "ordinary", T0, T0 + 300)
    assert got.wait.wait_s == 300.0
    _apply(
        book,
        ticket_msg(3, T0 + 10, "issued", "P001", "priority"),
        ticket_msg(4, T0 + 70, "called", "P001", "priority"),
        ticket_msg(5, T0 + 100, "issued", "A002"),
        ticket_msg(6, T0 + 600, "called", "A002"),
    )
    s = book.summary("b1", "W1", T0 + 600, 0.0)
    assert s is not None
    # ordinary waits 300 and 500: p50 400, p90 300 + 0.9 * 200 = 480; priority one wait of 60
    assert s.waits["ordinary"] == (400.0, 480.0, 2)
    assert s.waits["priority"] == (60.0, 60.0, 1)
    assert s.open_tickets == {"ordinary": 0, "priority": 0}
    zt = book.zones[("b1", "W1")]
    assert zt.totals == {
        ("issued", "ordinary"): 2,
        ("called", "ordinary"): 2,
        ("issued", "priority"): 1,
        ("called", "priority"): 1,
    }
    # the wait window (3600 s) is by call time: an hour after the last call only A002's
    # call at T0 + 600 is still inside (T0 + 4199 - 3600 = T0 + 599)
    assert book.summary("b1", "W1", T0 + 4199, 0.0).waits["ordinary"] == (500.0, 500.0, 1)  # type: ignore[union-attr]


def test_duplicates_recalls_and_out_of_order_events() -> None:
    book = TicketBook()
    issued = ticket_msg(1, T0, "issued", "A001")
    assert _apply(book, issued) == ["ok"]
    # the same event re-sent under a new seq (same ts): duplicate
    assert _apply(book, ticket_msg(9, T0, "issued", "A001")) == ["duplicate"]
    assert _apply(book, ticket_msg(2, T0 + 120, "called", "A001")) == ["ok"]
    # a re-call (the customer did not come) does not move the end of the wait
    assert _apply(book, ticket_msg(3, T0 + 180, "called", "A001")) == ["duplicate"]
    assert book.zones[("b1", "W1")].waits["ordinary"] == [(T0 + 120, 120.0)]
    # called before its issued (out of order): paired when the issued arrives
    assert _apply(book, ticket_msg(5, T0 + 400, "called", "A002")) == ["ok"]
    late = ticket_msg(4, T0 + 250, "issued", "A002")
    got = book.apply(late, T0 + 250, T0 + 401)
    assert got.result == "ok" and got.wait is not None and got.wait.wait_s == 150.0
    assert book.zones[("b1", "W1")].open == {"ordinary": 0, "priority": 0}
    # an issued older than the one held for that number: stale
    assert _apply(book, ticket_msg(6, T0 - 50, "issued", "A002"), now=T0 + 402) == ["stale"]
    # a call stamped before the issue cannot be this ticket's
    assert _apply(book, ticket_msg(7, T0 + 500, "issued", "A003")) == ["ok"]
    assert _apply(book, ticket_msg(8, T0 + 499, "called", "A003"), now=T0 + 501) == ["rejected"]
    # a held (out-of-order) call stamped before the issue that arrives is not its call
    assert _apply(book, ticket_msg(10, T0 + 700, "called", "A004")) == ["ok"]
    got = book.apply(ticket_msg(11, T0 + 800, "issued", "A004"), T0 + 800, T0 + 800)
    assert got.result == "ok" and got.wait is None
    assert book.zones[("b1", "W1")].open["ordinary"] == 2  # A003 and A004


def test_cancelled_tickets_leave_the_queue_without_a_wait() -> None:
    book = TicketBook()
    _apply(
        book,
        ticket_msg(1, T0, "issued", "A001"),
        ticket_msg(2, T0 + 5, "issued", "P001", "priority"),
        ticket_msg(3, T0 + 60, "cancelled", "A001"),
    )
    zt = book.zones[("b1", "W1")]
    assert zt.open == {"ordinary": 0, "priority": 1}
    assert zt.waits == {"ordinary": [], "priority": []}
    assert _apply(book, ticket_msg(4, T0 + 61, "cancelled", "A001")) == ["duplicate"]
    # a call after the cancellation is counted but is no wait
    assert _apply(book, ticket_msg(5, T0 + 90, "called", "A001")) == ["ok"]
    assert zt.waits["ordinary"] == []


def test_open_tickets_are_evicted_after_the_documented_age_and_the_cap() -> None:
    book = TicketBook(TicketSettings(open_max_age_s=1000, max_tickets=3))
    _apply(book, ticket_msg(1, T0, "issued", "A001"), ticket_msg(2, T0 + 10, "issued", "A002"))
    zt = book.zones[("b1", "W1")]
    assert zt.open["ordinary"] == 2
    assert book.evict(T0 + 1000) == 0  # exactly the age: kept
    assert book.evict(T0 + 1000.5) == 1  # A001's last event is older than 1000 s
    assert (zt.open["ordinary"], zt.expired, len(book.tickets)) == (1, 1, 1)
    # its call, when it finally comes, is an orphan: no wait from a forgotten issue
    assert _apply(book, ticket_msg(3, T0 + 1001, "called", "A001")) == ["ok"]
    assert zt.waits["ordinary"] == []
    # the cap: a fourth ticket forgets the least recently touched (A002, open: expired)
    _apply(
        book, ticket_msg(4, T0 + 1002, "issued", "A003"), ticket_msg(5, T0 + 1003, "issued", "A004")
    )
    assert len(book.tickets) == 3 and ("b1", "qms-1", "A002") not in book.tickets
    assert zt.expired == 2 and zt.open["ordinary"] == 2


def test_a_ticket_number_issued_again_later_is_a_new_ticket() -> None:
    book = TicketBook()
    _apply(book, ticket_msg(1, T0, "issued", "A001"))
    # the next morning the numbers restart; yesterday's A001 was never called
    _apply(book, ticket_msg(2, T0 + 86_000, "issued", "A001"), now=T0 + 86_000)
    zt = book.zones[("b1", "W1")]
    assert zt.expired == 1 and zt.open["ordinary"] == 1
    got = book.apply(ticket_msg(3, T0 + 86_100, "called", "A001"), T0 + 86_100, T0 + 86_100)
    assert got.wait is not None and got.wait.wait_s == 100.0


def test_priority_share_is_learned_from_issued_tickets_over_the_window() -> None:
    s = TicketSettings(share_window_s=3600, min_share_tickets=20, share_prior_tickets=10)
    book = TicketBook(s)
    # 19 tickets, 5 priority: below the threshold the configured share (0.1) stands
    for i in range(19):
        klass = "priority" if i < 5 else "ordinary"
        _apply(book, ticket_msg(i + 1, T0 + 60 * i, "issued", f"T{i}", klass))
    got = book.summary("b1", "W1", T0 + 1200, 0.1)
    assert got is not None
    assert (got.priority_share, got.priority_share_method, got.share_tickets) == (
        0.1,
        "configured",
        19,
    )
    _apply(book, ticket_msg(20, T0 + 1140, "issued", "T19"))
    got = book.summary("b1", "W1", T0 + 1200, 0.1)
    assert got is not None
    # (n_p + k s0) / (n + k) = (5 + 10 x 0.1) / (20 + 10) = 0.2
    assert got.priority_share == pytest.approx(0.2)
    assert got.priority_share_method == "tickets" and got.share_tickets == 20
    # an hour after the 5th ticket (T0 + 240) the first five (all priority) have left the
    # window: 15 tickets, back to the prior
    got = book.summary("b1", "W1", T0 + 3600 + 240, 0.1)
    assert got is not None and (got.priority_share_method, got.share_tickets) == (
        "configured",
        15,
    )
    # capped at max_share
    book2 = TicketBook(TicketSettings(min_share_tickets=1, share_prior_tickets=0))
    _apply(book2, ticket_msg(1, T0, "issued", "P1", "priority"))
    assert book2.summary("b1", "W1", T0, 0.0).priority_share == 0.95  # type: ignore[union-attr]


# ------------------------------------------------------------------ the estimator


def _estimator(**settings: Any) -> ZoneEstimator:
    # the configured capacity (1 / 60 s) until departures are seen: the hand figures
    settings.setdefault("service_rate_gated", True)
    return ZoneEstimator(EstimatorSettings(**settings), counters=1, mean_service_s=60.0)


def test_learned_share_replaces_the_configured_one_in_the_class_waits() -> None:
    est = _estimator(min_trend_s=60)
    est.observe(zone_msg(1, T0, people=4), T0)
    est.observe(zone_msg(2, T0 + 60, people=4, arrivals=2, departures=2), T0 + 60)
    e = est.estimate(T0 + 60)
    # configured share 0: both classes wait (L + r) / mu = 5 x 60 = 300 s
    assert (e.predicted_wait_ordinary_s, e.predicted_wait_priority_s) == (300.0, 300.0)
    assert (e.priority_share, e.priority_share_method) == (0.0, "configured")
    waits = {"ordinary": (400.0, 480.0, 2), "priority": (None, None, 0)}
    summary = TicketSummary(0.25, "tickets", 24, waits, {"ordinary": 3, "priority": 1})
    e = est.estimate(T0 + 60, tickets=summary)
    # lambda = 2 arrivals / 60 s, lambda_p = 0.25 / 30 = 1/120, mu - lambda_p = 1/120:
    # ordinary (4 + 1) x 120 = 600 s, priority 1 x 120 = 120 s; class-blind stays 300 s
    assert e.predicted_wait_ordinary_s == pytest.approx(600.0)
    assert e.predicted_wait_priority_s == pytest.approx(120.0)
    assert e.predicted_wait_s == pytest.approx(300.0)
    assert (e.priority_share, e.priority_share_method, e.priority_share_tickets) == (
        0.25,
        "tickets",
        24,
    )
    assert (e.ticket_wait_ordinary_p50_s, e.ticket_wait_ordinary_p90_s) == (400.0, 480.0)
    assert (e.ticket_waits_ordinary, e.ticket_waits_priority) == (2, 0)
    assert (e.tickets_open_ordinary, e.tickets_open_priority) == (3, 1)


def test_ticket_waits_calibrate_kappa_and_win_over_camera_dwells() -> None:
    # no prior (calibration_prior 0): kappa = realised / predicted, clipped to [1/1.5, 1.5]
    est = _estimator(calibration_prior=0, calibration_min_tickets=0.5, calibrate_from_tickets=True)
    est.observe(zone_msg(1, T0, people=4), T0)
    e = est.estimate(T0)  # shown at T0: (4 + 1) x 60 = 300 s
    assert e.predicted_wait_s == 300.0 and e.calibration_source == "camera"
    # the camera: a dwell of 240 s completed at T0 + 240 (joined at T0, shown 300): 0.8
    est.observe(zone_msg(2, T0 + 240, people=4, dwells=[240.0]), T0 + 240)
    assert est.calibration(T0 + 240) == pytest.approx(0.8)
    # the ticket system: ordinary ticket issued at T0 + 1 (shown 300), called 390 s later
    est.observe_ticket_wait(TicketWait("b1", "W1", "ordinary", T0 + 1, T0 + 391))
    assert est.calibration_source(T0 + 391) == "tickets"
    assert est.calibration(T0 + 391) == pytest.approx(1.3)
    e = est.estimate(T0 + 391)
    assert e.calibration_factor == pytest.approx(1.3) and e.calibration_source == "tickets"
    assert e.predicted_wait_s == pytest.approx(390.0)  # 1.3 x 300
    # one more counter: the same calibrated model at twice the capacity, 1.3 x (4 + 1) x 30
    assert e.predicted_wait_one_more_counter_s == pytest.approx(195.0)
    # too little ticket evidence for the threshold, or ticket calibration off (the
    # default: measured, it raised the MAE): the same evidence leaves the camera's kappa
    for settings in (
        {"calibration_min_tickets": 5, "calibrate_from_tickets": True},
        {"calibration_min_tickets": 0.5},
    ):
        other = _estimator(calibration_prior=0, **settings)
        other.observe(zone_msg(1, T0, people=4), T0)
        other.estimate(T0)
        other.observe(zone_msg(2, T0 + 240, people=4, dwells=[240.0]), T0 + 240)
        other.observe_ticket_wait(TicketWait("b1", "W1", "ordinary", T0 + 1, T0 + 391))
        assert other.calibration_source(T0 + 391) == "camera"
        assert other.calibration(T0 + 391) == pytest.approx(0.8)


def test_a_ticket_wait_is_judged_against_its_own_class_prediction() -> None:
    est = _estimator(
        calibration_prior=0,
        calibration_min_tickets=0.5,
        calibrate_from_tickets=True,
        min_trend_s=60,
    )
    est.observe(zone_msg(1, T0, people=4), T0)
    est.observe(zone_msg(2, T0 + 60, people=4, arrivals=2, departures=2), T0 + 60)
    summary = TicketSummary(0.25, "tickets", 24, {}, {})
    est.estimate(T0 + 60, tickets=summary)  # shown: ordinary 600 s, priority 120 s
    # a priority ticket issued then, called 180 s later: 180 / 120 = 1.5 (the clip)
    est.observe_ticket_wait(TicketWait("b1", "W1", "priority", T0 + 61, T0 + 241))
    assert est.calibration(T0 + 241) == pytest.approx(1.5)
    # an ordinary one called 540 s after the same moment: (180 + 540) / (120 + 600) = 1.0
    est.observe_ticket_wait(TicketWait("b1", "W1", "ordinary", T0 + 61, T0 + 601))
    assert est.calibration(T0 + 601) == pytest.approx(
        (180 * _decay(360) + 540) / (120 * _decay(360) + 600)
    )


def _decay(dt: float, window: float = 3600.0) -> float:
    import math

    return math.exp(-dt / window)


# ------------------------------------------------------------------ the ingest


def _ingestor(**kw: Any) -> tuple[Ingestor, CollectorState]:
    state = CollectorState()
    settings = kw.pop("settings", IngestSettings())
    ing = Ingestor(state, settings, "lobbywatch", {"b1": "north"}, **kw)
    return ing, state


def _handle(ing: Ingestor, msg: Any, now: float) -> Any:
    topic, payload = raw(msg)
    return ing.handle(topic, payload, now)


def test_ingest_accepts_tickets_of_known_zones_only() -> None:
    ing, state = _ingestor(ticket_zones={"b1": frozenset({"W2"})})
    # W1 is neither configured nor seen yet: refused, counted with its reason
    out = _handle(ing, ticket_msg(1, T0, "issued", "A001"), T0)
    assert (out.result, out.reason) == ("rejected", "unknown_zone")
    assert state.invalid[("rejected", "unknown_zone")] == 1
    # once a camera reports W1 as a waiting zone, it is a known queue
    assert _handle(ing, zone_msg(1, T0, people=2), T0).result == "ok"
    out = _handle(ing, ticket_msg(2, T0, "issued", "A001"), T0)
    assert out.result == "ok" and out.zone_key == W1 and out.ticket is not None
    assert out.msg is None  # not a zone/status state
    # a configured zone no camera reported yet
    assert _handle(ing, ticket_msg(3, T0, "issued", "A002", zone="W2"), T0).result == "ok"
    # a counter zone is no queue
    _handle(ing, zone_msg(2, T0, zone="C1", kind="cash_counter"), T0)  # type: ignore[arg-type]
    out = _handle(ing, ticket_msg(4, T0, "issued", "A003", zone="C1"), T0)
    assert out.reason == "unknown_zone"
    # the pairing reaches the outcome
    out = _handle(ing, ticket_msg(5, T0 + 200, "called", "A001"), T0 + 200)
    assert out.ticket_wait is not None and out.ticket_wait.wait_s == 200.0


def test_ingest_deduplicates_by_source_and_seq_and_checks_branch_and_source() -> None:
    ing, state = _ingestor(
        settings=IngestSettings(unknown_branches="reject"),
        ticket_zones={"b1": frozenset({"W1"})},
        ticket_sources={"b1": frozenset({"qms-1"})},
    )
    m = ticket_msg(1, T0, "issued", "A001")
    assert _handle(ing, m, T0).result == "ok"
    assert _handle(ing, m, T0 + 1).result == "duplicate"  # QoS 1 redelivery
    out = _handle(ing, ticket_msg(1, T0, "issued", "A001", branch="b9"), T0)
    assert (out.result, out.reason) == ("rejected", "unknown_branch")
    out = _handle(ing, ticket_msg(1, T0, "issued", "A001", source="qms-x"), T0)
    assert (out.result, out.reason) == ("rejected", "identity")
    # the payload must belong on its topic
    topic, payload = raw(ticket_msg(2, T0, "issued", "A002"))
    out = ing.handle(topic.replace("/qms-1/", "/qms-2/"), payload, T0)
    assert (out.result, out.reason) == ("malformed", "topic_mismatch")
    zone_topic, zone_payload = raw(zone_msg(3, T0, people=1))
    out = ing.handle(topic, zone_payload, T0)
    assert (out.result, out.reason) == ("malformed", "topic_mismatch")
    out = ing.handle(zone_topic, payload, T0)
    assert (out.result, out.reason) == ("malformed", "topic_mismatch")
    # a call stamped before its issue: implausible
    out = _handle(ing, ticket_msg(2, T0 - 10, "called", "A001"), T0)
    assert (out.result, out.reason) == ("rejected", "implausible")
    # from the future
    out = _handle(ing, ticket_msg(3, T0 + 3600, "issued", "A009"), T0)
    assert (out.result, out.reason) == ("malformed", "future_timestamp")
    assert state.results["ok"] == 1 and state.results["duplicate"] == 1


def test_a_ticket_source_never_shares_a_sequence_window_with_a_device() -> None:
    ing, _ = _ingestor(ticket_zones={"b1": frozenset({"W1"})})
    assert _handle(ing, zone_msg(7, T0, people=1, device="qms-1"), T0).result == "ok"
    # the same id and seq from the ticket system is not a duplicate of the device's
    assert _handle(ing, ticket_msg(7, T0, "issued", "A001"), T0).result == "ok"


# ------------------------------------------------------------------ collector and replay


def _config(tmp_path: Path) -> dict[str, Any]:
    cfg = server_config(mqtt_port=1883, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    cfg["branches"][0].update(priority_share=0.1, zones={"W1": {}})
    cfg["ingest"] = {"evaluate_interval_s": 0}
    cfg["tickets"] = {"min_share_tickets": 4, "share_prior_tickets": 0}
    return cfg


def _stream() -> list[tuple[float, str, bytes]]:
    """A queue of 4 at a 1-counter, 60 s branch; 4 tickets, 2 priority; 3 called."""
    msgs: list[tuple[float, Any]] = [
        (T0, zone_msg(1, T0, people=4, arrivals=4)),
        (T0 + 1, ticket_msg(1, T0 + 1, "issued", "A001")),
        (T0 + 2, ticket_msg(2, T0 + 2, "issued", "P001", "priority")),
        (T0 + 3, ticket_msg(3, T0 + 3, "issued", "A002")),
        (T0 + 4, ticket_msg(4, T0 + 4, "issued", "P002", "priority")),
        (T0 + 62, ticket_msg(5, T0 + 62, "called", "P001", "priority", counter="C1")),
        (T0 + 301, ticket_msg(6, T0 + 301, "called", "A001", counter="C1")),
        (T0 + 303, ticket_msg(7, T0 + 303, "called", "A002", counter="C1")),
        (T0 + 303, ticket_msg(7, T0 + 303, "called", "A002", counter="C1")),  # redelivered
    ]
    return [(at, *raw(m)) for at, m in msgs]


def _check_estimate(e: dict[str, Any]) -> None:
    # 4 issued, 2 priority, no prior weight: share 0.5 learned from the tickets
    assert (e["priority_share"], e["priority_share_method"]) == (0.5, "tickets")
    assert e["priority_share_tickets"] == 4
    # ordinary waits 300 and 300 s; priority 60 s; P002 still open
    assert (e["ticket_wait_ordinary_p50_s"], e["ticket_waits_ordinary"]) == (300.0, 2)
    assert (e["ticket_wait_priority_p50_s"], e["ticket_waits_priority"]) == (60.0, 1)
    assert (e["tickets_open_ordinary"], e["tickets_open_priority"]) == (0, 1)


def test_collector_reports_ticket_figures_in_state_and_metrics(tmp_path: Path) -> None:
    now = [T0]
    c = Collector(
        parse_server_config(_config(tmp_path)),
        clock=lambda: now[0],
        with_mqtt=False,
        with_http=False,
    )
    c.store.migrate()
    try:
        for at, topic, payload in _stream():
            now[0] = at
            c.process_batch([(topic, payload, at)])
        rec = c.state.zones[W1]
        e = rec.estimate
        _check_estimate(
            {k: getattr(e, k) for k in e.__dataclass_fields__}  # type: ignore[union-attr]
        )
        assert c.state.results["duplicate"] == 1
        text = generate_latest(c.registry).decode()
        assert 'lobbywatch_zone_priority_share{branch="b1",method="tickets",zone="W1"} 0.5' in text
        assert (
            'lobbywatch_zone_ticket_realised_wait_seconds{branch="b1",class="priority",'
            'quantile="0.5",zone="W1"} 60.0' in text
        )
        assert (
            'lobbywatch_zone_tickets_total{branch="b1",class="ordinary",event="called",'
            'zone="W1"} 2.0' in text
        )
        assert 'lobbywatch_zone_tickets_open{branch="b1",class="priority",zone="W1"} 1.0' in text
    finally:
        c.close_offline()


def test_replay_processes_ticket_events_like_live(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    records = [Recorded(at, topic, payload) for at, topic, payload in _stream()]
    replay(
        parse_server_config(_config(tmp_path)),
        records,
        out.append,
        estimates_every_s=60,
        until=T0 + 320,
    )
    last = [o for o in out if o["type"] == "estimate"][-1]
    assert T0 + 303 <= last["ts"] <= T0 + 320
    _check_estimate(last)
    json.dumps(last)  # the output line is JSON


# ------------------------------------------------------------------ the simulator's ticket system


def test_simulated_ticket_system_matches_the_ground_truth_and_replays(tmp_path: Path) -> None:
    from lobbywatch.demo import simulator
    from lobbywatch.protocol import encode_message, topic_for

    sc = simulator.scenario("hard_priority", 0, 1000)
    customers = simulator.simulate_customers(sc)
    msgs = list(simulator.ticket_messages(sc, customers))
    joined = [cu for cu in customers if cu.outcome != "balked"]
    by_event: dict[str, list[Any]] = {"issued": [], "called": [], "cancelled": []}
    for m in msgs:
        by_event[m.event].append(m)
    assert len(by_event["issued"]) == len(joined)
    assert len(by_event["called"]) == sum(cu.served for cu in customers)
    assert len(by_event["cancelled"]) == sum(cu.outcome == "walked_out" for cu in customers)
    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(msgs))
    # issued -> called is each served customer's true wait, in their class
    issued = {m.ticket: m for m in by_event["issued"]}
    truth = sorted(round(cu.wait_s, 3) for cu in customers if cu.served)
    paired = sorted(
        round(m.ts.timestamp() - issued[m.ticket].ts.timestamp(), 3) for m in by_event["called"]
    )
    assert paired == pytest.approx(truth, abs=2e-3)

    # through the collector (replay): the share learned is the hand-computed one
    cfg = server_config(mqtt_port=1883, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    cfg["branches"] = [
        {"id": sc.branch, "region": "north", "priority_share": 0.0, "zones": {sc.waiting_zone: {}}}
    ]
    records = [
        Recorded(m.ts.timestamp(), topic_for(m), encode_message(m))
        for m in simulator.merged_messages([sc], status=True, tickets=True)
    ]
    out: list[dict[str, Any]] = []
    replay(parse_server_config(cfg), records, out.append, estimates_every_s=1800)
    est = [o for o in out if o["type"] == "estimate" and o["zone"] == sc.waiting_zone]
    noon = next(o for o in est if o["ts"] >= sc.midnight() + 12 * 3600)
    window = [
        m
        for m in by_event["issued"]
        if noon["ts"] - 7200 < m.ts.timestamp() <= noon["ts"]
        and m.ts.timestamp() < noon["ts"]  # received before the estimate
    ]
    n_p = sum(m.service_class == "priority" for m in window)
    assert noon["priority_share_method"] == "tickets"
    assert noon["priority_share_tickets"] == len(window)
    # no prior weight from a configured 0: n_p / (n + 10)
    assert noon["priority_share"] == pytest.approx(n_p / (len(window) + 10))
    assert noon["ticket_waits_ordinary"] > 0 and noon["ticket_waits_priority"] > 0
    # ticket waits calibrate only when asked (calibrate_from_tickets; measured default off)
    assert noon["calibration_source"] == "camera"


def test_simulate_cli_publishes_ticket_events_only_with_the_flag() -> None:
    from typer.testing import CliRunner

    from lobbywatch.cli import app
    from lobbywatch.protocol import TicketMessage, parse_message, parse_topic

    runner = CliRunner()
    with_tickets = runner.invoke(app, ["simulate", "--dry-run", "--interval", "60", "--tickets"])
    assert with_tickets.exit_code == 0, with_tickets.output
    plain = runner.invoke(app, ["simulate", "--dry-run", "--interval", "60"])
    assert plain.exit_code == 0, plain.output
    assert "/_tickets/" not in plain.output
    tickets = []
    for line in with_tickets.output.splitlines():
        topic, payload = line.split(" ", 1)
        msg = parse_message(payload.encode())
        parts = parse_topic(topic)
        assert parts is not None
        if isinstance(msg, TicketMessage):
            assert (parts.kind, parts.source, parts.branch) == ("ticket", "qms-1", msg.branch)
            tickets.append(msg)
    assert {m.event for m in tickets} >= {"issued", "called"}
    # the edge's messages are the same with and without the ticket system
    edge = [x for x in with_tickets.output.splitlines() if "/_tickets/" not in x]
    assert edge == plain.output.splitlines()


def test_simulated_ticket_events_are_published_not_retained(mosquitto: Any) -> None:
    import threading

    import paho.mqtt.client as mqtt

    from lobbywatch.demo import simulator

    broker = mosquitto()
    sc = simulator.scenario("normal", 0, 7)
    msgs = list(simulator.merged_messages([sc], status=True, tickets=True))[:400]
    assert any(m.type == "ticket" for m in msgs) and any(m.type == "zone" for m in msgs)
    assert simulator.publish(msgs, port=broker.port, qos=1, speed=0) == len(msgs)
    retained: list[str] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c: Any, u: Any, m: Any) -> None:
        if m.retain:
            retained.append(m.topic)
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("lobbywatch/v1/#", qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert done.wait(5)
        import time as _time

        _time.sleep(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert retained and not [t for t in retained if "/_tickets/" in t]


def test_provision_tickets_cli_writes_private_credentials_and_refuses_bad_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import stat

    from lobbywatch.cli import main as cli_main

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as done:
            cli_main(list(argv))
        return int(done.value.code or 0)

    args = ["device", "provision-tickets", "--branch", "b1", "--source", "qms-1"]
    assert run(*args, "--out", str(tmp_path)) == 0
    folder = tmp_path / "tickets.b1.qms-1"
    assert stat.S_IMODE((folder / "mqtt.password").stat().st_mode) == 0o600
    assert (
        (folder / "broker-acl.conf")
        .read_text()
        .endswith("user tickets.b1.qms-1\ntopic write lobbywatch/v1/b1/_tickets/qms-1/events\n")
    )
    told = capsys.readouterr().out
    assert "publish as tickets.b1.qms-1 to lobbywatch/v1/b1/_tickets/qms-1/events" in told
    assert "ticket_sources: [qms-1]" in told
    assert run(*args, "--out", str(tmp_path)) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    bad = ["device", "provision-tickets", "--branch", "b/1", "--source", "q"]
    bad += ["--out", str(tmp_path / "bad")]
    assert run(*bad) == 2
    assert "--branch 'b/1'" in capsys.readouterr().err


# ------------------------------------------------------------------ property: any event order


def _event_strategy() -> Any:
    from hypothesis import strategies as st

    return st.lists(
        st.tuples(
            st.sampled_from(["issued", "called", "cancelled"]),
            st.sampled_from(["A1", "A2", "A3", "P1", "P2"]),
            st.sampled_from(["ordinary", "priority"]),
            st.sampled_from(["W1", "W2"]),
            st.integers(min_value=0, max_value=40),  # ts offset, minutes
            st.integers(min_value=0, max_value=40),  # receive offset, minutes
        ),
        max_size=40,
    )


def test_any_event_sequence_keeps_the_book_consistent() -> None:
    from hypothesis import given, settings

    @settings(max_examples=300, deadline=None)
    @given(_event_strategy())
    def check(events: list[tuple[str, str, str, str, int, int]]) -> None:
        book = TicketBook(TicketSettings(open_max_age_s=1200, max_tickets=4))
        now = T0
        for seq, (event, ticket, klass, zone, ts_min, recv_min) in enumerate(events, 1):
            now = max(now, T0 + 60 * recv_min)
            msg = ticket_msg(seq, T0 + 60 * ts_min, event, ticket, klass, zone=zone)
            got = book.apply(msg, msg.ts.timestamp(), now)
            assert got.result in ("ok", "duplicate", "stale", "rejected")
            if got.wait is not None:
                assert got.wait.wait_s >= 0
            assert len(book.tickets) <= 4
            # the open counters are exactly the open tickets held, per zone and class
            for (b, z), zt in book.zones.items():
                for c in ("ordinary", "priority"):
                    held = sum(
                        1
                        for t in book.tickets.values()
                        if t.is_open and (t.branch, t.zone, t.klass) == (b, z, c)
                    )
                    assert zt.open[c] == held, (z, c, zt.open, events)
        book.evict(now + 1201)
        assert not book.tickets
        assert all(v == 0 for zt in book.zones.values() for v in zt.open.values())

    check()
