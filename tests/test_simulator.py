"""Simulator invariants: conservation, queue disciplines, determinism, MQTT output."""

from __future__ import annotations

import math
import threading
from collections import Counter
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from lobbywatch.demo.simulator import (
    HARD_SCENARIO_KINDS,
    BalkSettings,
    BranchScenario,
    NoiseSettings,
    PatienceSettings,
    Peak,
    ServiceDist,
    StaffChange,
    branch_messages,
    merged_messages,
    publish,
    scenario,
    simulate_customers,
    simulate_day,
)
from lobbywatch.protocol import StatusMessage, ZoneMessage, parse_message, subscription
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator

QUIET = NoiseSettings.none()


def small(**kw: object) -> BranchScenario:
    """A short, busy morning: queues form, so the invariants have work to do."""
    params: dict[str, object] = {
        "open_h": 9.0,
        "close_h": 11.0,
        "base_per_h": 40.0,
        "peaks": (Peak(at_h=10.0, width_h=0.3, extra_per_h=40.0),),
        "counters": 3,
        "noise": QUIET,
        "seed": 3,
    }
    params.update(kw)
    return BranchScenario.model_validate(params)


def test_every_customer_served_and_counters_never_double_booked() -> None:
    sc = small(staffing=(StaffChange(at_h=9.5, counters=1), StaffChange(at_h=10.5, counters=3)))
    customers = simulate_customers(sc)
    assert len(customers) > 50
    assert all(c.service_start >= c.arrival for c in customers)
    for counter in range(sc.max_counters):
        jobs = sorted((c.service_start, c.service_end) for c in customers if c.counter == counter)
        assert all(a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in pairwise(jobs))
    # between 9:30 and 10:30 only counter 0 starts new customers
    lo, hi = sc.midnight() + 9.5 * 3600, sc.midnight() + 10.5 * 3600
    assert {c.counter for c in customers if lo < c.service_start < hi} <= {0}


def test_fcfs_serves_in_arrival_order() -> None:
    customers = simulate_customers(small())
    starts = [c.service_start for c in sorted(customers, key=lambda c: c.arrival)]
    assert starts == sorted(starts)
    assert max(c.wait_s for c in customers) > 60  # a queue did form


def test_vip_priority_is_non_preemptive_priority() -> None:
    customers = simulate_customers(small(discipline="vip", vip_share=0.2))
    vips = [c for c in customers if c.vip]
    others = [c for c in customers if not c.vip]
    assert vips and others
    # nobody ordinary starts while a VIP who arrived before that start waits
    for n in others:
        for v in vips:
            if v.arrival < n.service_start:
                assert v.service_start <= n.service_start
    # and within a class it is first come, first served
    for group in (vips, others):
        starts = [c.service_start for c in sorted(group, key=lambda c: c.arrival)]
        assert starts == sorted(starts)
    assert sum(c.wait_s for c in vips) / len(vips) < sum(c.wait_s for c in others) / len(others)


def test_waiting_zone_conservation_and_realised_waits() -> None:
    sc = small()
    customers = simulate_customers(sc)
    msgs = [m for m in branch_messages(sc, customers) if m.zone == sc.waiting_zone]
    assert all(isinstance(m, ZoneMessage) for m in msgs)
    for m in msgs:
        assert m.arrivals_total == m.departures_total + m.people
    visible = [c for c in customers if c.wait_s >= sc.min_visible_wait_s]
    assert msgs[-1].arrivals_total == msgs[-1].departures_total == len(visible)
    reported = sorted(d for m in msgs for d in m.completed_dwells_s)
    assert reported == pytest.approx(sorted(c.wait_s for c in visible), abs=1e-6)
    assert [m.seq for m in msgs] == sorted(m.seq for m in msgs)


def test_counter_zones_report_service_times() -> None:
    sc = small()
    customers = simulate_customers(sc)
    msgs = [m for m in branch_messages(sc, customers) if m.zone != sc.waiting_zone]
    assert {m.zone for m in msgs} == {f"counter{i + 1}" for i in range(sc.counters)}
    assert all(m.people in (0, 1) for m in msgs)
    served = sorted(d for m in msgs for d in m.completed_dwells_s)
    assert served == pytest.approx(sorted(c.service_s for c in customers), abs=1e-6)


def test_seeded_determinism() -> None:
    sc = scenario("vip", 3, seed=42, counter_zones=False)
    first = [m.model_dump_json() for m in branch_messages(sc, simulate_customers(sc))]
    second = [m.model_dump_json() for m in branch_messages(sc, simulate_customers(sc))]
    assert first == second
    other = scenario("vip", 3, seed=43, counter_zones=False)
    assert [m.model_dump_json() for m in branch_messages(other, simulate_customers(other))] != first


def test_peaks_raise_the_arrival_rate() -> None:
    sc = small(peaks=(Peak(at_h=10.0, width_h=0.25, extra_per_h=120.0),), base_per_h=20.0)
    counts: Counter[str] = Counter()
    for seed in range(10):
        for c in simulate_customers(sc.model_copy(update={"seed": seed})):
            hour = (c.arrival - sc.midnight()) / 3600
            counts["peak" if 9.75 <= hour < 10.25 else "base" if hour < 9.5 else "other"] += 1
    # expected per day: peak half hour ~10 + 120*0.68*0.5 = 51; first half hour ~10
    assert counts["peak"] > 3 * counts["base"]


def test_noise_and_restart() -> None:
    sc = small(noise=NoiseSettings(p_drop=0.05), restart_at_h=10.0)
    msgs = list(branch_messages(sc, simulate_customers(sc), status=True))
    zone = [m for m in msgs if isinstance(m, ZoneMessage) and m.zone == sc.waiting_zone]
    resets = sum(1 for a, b in pairwise(zone) if b.arrivals_total < a.arrivals_total)
    assert resets == 1
    status = [m for m in msgs if isinstance(m, StatusMessage) and m.camera is None]
    assert [(m.state, m.will) for m in status] == [
        ("online", False),
        ("offline", True),
        ("online", False),
        ("offline", False),
    ]
    seqs = [m.seq for m in msgs if not (isinstance(m, StatusMessage) and m.will)]
    assert len(set(seqs)) == len(seqs)  # unique per device, also across the restart
    # dropped messages leave gaps the collector can see
    assert max(seqs) + 1 > len(seqs)
    # the estimator survives the counter reset: rates stay non-negative
    est = ZoneEstimator(EstimatorSettings(), counters=3, mean_service_s=300)
    for m in zone:
        est.observe(m, m.ts.timestamp())
        e = est.estimate(m.ts.timestamp())
        assert e.arrival_rate_per_s is None or e.arrival_rate_per_s >= 0
        assert e.departure_rate_per_s is None or e.departure_rate_per_s >= 0


def test_merged_branches_are_in_time_order() -> None:
    scenarios = [small(branch=f"b{i}", device=f"d{i}", seed=i) for i in range(3)]
    ts = [m.ts for m in merged_messages(scenarios)]
    assert ts == sorted(ts)


def test_publish_to_real_mosquitto(mosquitto) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    broker = mosquitto()
    sc = small(close_h=9.25, report_interval_s=30.0)
    expected = list(branch_messages(sc, simulate_customers(sc), status=True))
    received: list[bytes] = []
    done = threading.Event()

    def on_message(client, userdata, message):  # type: ignore[no-untyped-def]
        received.append(message.payload)
        if len(received) >= len(expected):
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        sub.subscribe(subscription(), qos=1)
        assert subscribed.wait(5)
        sent = publish(expected, port=broker.port, qos=1, speed=0)
        assert sent == len(expected)
        assert done.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    parsed = [parse_message(p) for p in received]
    assert [m.seq for m in parsed] == [m.seq for m in expected]
    assert parsed == expected


def test_unknown_scenario_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario("nope", 0, 0)


def test_simulate_live_dates_the_stream_from_now(tmp_path: Path) -> None:
    """--live shifts the simulated day so a running collector sees current data."""
    import json
    import time as _time

    from typer.testing import CliRunner

    from lobbywatch.cli import app

    runner = CliRunner()
    before = _time.time()
    live = runner.invoke(app, ["simulate", "--dry-run", "--live", "--interval", "60"])
    assert live.exit_code == 0, live.output
    plain = runner.invoke(app, ["simulate", "--dry-run", "--interval", "60"])
    assert plain.exit_code == 0, plain.output

    def stamps(output: str) -> list[float]:
        out = []
        for line in output.splitlines():
            _topic, payload = line.split(" ", 1)
            out.append(datetime.fromisoformat(json.loads(payload)["ts"]).timestamp())
        return out

    live_ts, plain_ts = stamps(live.output), stamps(plain.output)
    assert len(live_ts) == len(plain_ts) > 10
    # first message observed "now"; spacing of the simulated day unchanged
    assert before - 1 <= live_ts[0] <= _time.time() + 1
    assert live_ts[-1] - live_ts[0] == pytest.approx(plain_ts[-1] - plain_ts[0], abs=1e-3)
    # without --live the simulated day is dated in the past
    assert plain_ts[0] < before - 3600


def test_simulate_password_file_missing_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lobbywatch.cli import app

    result = CliRunner().invoke(
        app, ["simulate", "--dry-run", "--password-file", str(tmp_path / "nope")]
    )
    assert result.exit_code != 0
    assert "password-file" in str(result.exception) + result.output


# ------------------------------------------------------------------ the harder simulator


def busy(**kw: object) -> BranchScenario:
    """Overloaded: 2 counters, ~1.5x their capacity for an hour."""
    params: dict[str, object] = {
        "open_h": 9.0,
        "close_h": 10.0,
        "base_per_h": 36.0,
        "peaks": (),
        "counters": 2,
        "service": ServiceDist(mean_s=300.0, cv=0.6),
        "noise": QUIET,
        "seed": 5,
    }
    params.update(kw)
    return BranchScenario.model_validate(params)


def test_walk_outs_leave_when_their_patience_runs_out() -> None:
    sc = busy(patience=PatienceSettings(share=1.0, min_s=300.0, max_s=300.0))
    customers = simulate_customers(sc)
    walked = [c for c in customers if c.outcome == "walked_out"]
    served = [c for c in customers if c.served]
    assert walked and served
    for c in walked:
        assert c.wait_s == pytest.approx(300.0)
        assert math.isnan(c.service_start) and c.counter == -1 and c.klass == "ordinary"
    # nobody waits longer than their patience, and FCFS holds among the served
    assert max(c.wait_s for c in served) <= 300.0 + 1e-9
    starts = [c.service_start for c in sorted(served, key=lambda c: c.arrival)]
    assert starts == sorted(starts)
    # without walk-outs the same arrivals wait longer (walk-outs shorten the queue)
    patient = simulate_customers(busy())
    assert [c.arrival for c in patient] == [c.arrival for c in customers]
    assert max(c.wait_s for c in patient) > 300.0


def test_balking_customers_do_not_join_a_long_queue() -> None:
    sc = busy(balking=BalkSettings(from_queue=3, per_person=1.0, max_p=1.0))
    customers = simulate_customers(sc)
    balked = [c for c in customers if c.outcome == "balked"]
    joined = [c for c in customers if c.outcome != "balked"]
    assert balked and joined
    # P(balk) = min(1, 1 * (L - 3 + 1)): certain from 3 waiting on, never below
    assert all(c.queue_at_arrival >= 3 for c in balked)
    assert all(c.queue_at_arrival < 3 for c in joined)
    assert all(c.wait_s == 0 and not c.served for c in balked)


def test_simulated_day_staffing_and_capacity() -> None:
    sc = busy(
        counters=2,
        nominal_counters=3,
        staffing=(StaffChange(at_h=9.5, counters=1), StaffChange(at_h=9.75, counters=2)),
    )
    day = simulate_day(sc)
    m = sc.midnight()
    assert sc.configured_counters == 3 and sc.max_counters == 3
    assert day.open_counters_at(m + 9.25 * 3600) == 2
    assert day.open_counters_at(m + 9.6 * 3600) == 1
    assert day.capacity_per_s(m + 9.6 * 3600) == pytest.approx(1 / 300.0)
    assert day.capacity_per_s(m + 9.9 * 3600) == pytest.approx(2 / 300.0)
    assert day.customers == simulate_customers(sc)
    # the absent third counter never serves anybody
    assert {c.counter for c in day.customers if c.served} <= {0, 1}


def _waiting(sc: BranchScenario) -> tuple[list[ZoneMessage], list[object]]:
    customers = simulate_customers(sc)
    msgs = [m for m in branch_messages(sc, customers) if isinstance(m, ZoneMessage)]
    return [m for m in msgs if m.zone == sc.waiting_zone], customers  # type: ignore[return-value]


def test_departures_by_destination_match_the_ground_truth() -> None:
    sc = busy(
        patience=PatienceSettings(share=1.0, min_s=240.0, max_s=360.0), publish_mode="on_change"
    )
    msgs, customers = _waiting(sc)
    visible = [c for c in customers if c.outcome != "balked" and c.wait_s >= 2.0]  # type: ignore[attr-defined]
    served = sum(c.served for c in visible)  # type: ignore[attr-defined]
    walked = sum(c.outcome == "walked_out" for c in visible)  # type: ignore[attr-defined]
    assert served and walked
    last = msgs[-1]
    assert (last.service_starts_total, last.walk_outs_total, last.departures_unseen_total) == (
        served,
        walked,
        0,
    )
    for m in msgs:  # every departure is classified at once in the simulation
        assert m.service_starts_total is not None and m.walk_outs_total is not None
        assert m.service_starts_total + m.walk_outs_total + (m.departures_unseen_total or 0) == (
            m.departures_total
        )
    # counters on another camera: service starts are unseen departures, not guessed
    remote, _ = _waiting(sc.model_copy(update={"counters_visible": False}))
    assert remote[-1].service_starts_total == 0
    assert remote[-1].departures_unseen_total == served
    assert remote[-1].walk_outs_total == walked
    # an older edge omits the fields
    old, _ = _waiting(sc.model_copy(update={"classify_departures": False}))
    assert all(m.service_starts_total is None and m.walk_outs_total is None for m in old)


def test_on_change_publishing_follows_the_agent_rules() -> None:
    sc = busy(publish_mode="on_change", min_interval_s=1.0, heartbeat_s=30.0)
    customers = simulate_customers(sc)
    msgs = [m for m in branch_messages(sc, customers) if isinstance(m, ZoneMessage)]
    start = sc.midnight() + sc.open_h * 3600
    by_zone: dict[str, list[ZoneMessage]] = {}
    for m in msgs:
        by_zone.setdefault(m.zone, []).append(m)

    def on_grid(m: ZoneMessage) -> bool:
        k = (m.ts.timestamp() - start) / 30.0
        return abs(k - round(k)) < 1e-6

    for zone_msgs in by_zone.values():
        for a, b in pairwise(zone_msgs):
            gap = b.ts.timestamp() - a.ts.timestamp()
            assert gap <= 30.0 + 1e-6  # at least one message per heartbeat
            if on_grid(b):
                continue  # the heartbeat republishes every zone, whenever it last spoke
            # between heartbeats: only on a change, at most one per min_interval_s
            assert gap >= 1.0 - 1e-6
            changed = (a.people, a.arrivals_total, a.departures_total) != (
                b.people,
                b.arrivals_total,
                b.departures_total,
            ) or bool(b.completed_dwells_s)
            assert changed
    waiting = by_zone[sc.waiting_zone]
    visible = [c for c in customers if c.wait_s >= sc.min_visible_wait_s]
    assert waiting[-1].arrivals_total == waiting[-1].departures_total == len(visible)
    reported = sorted(d for m in waiting for d in m.completed_dwells_s)
    assert reported == pytest.approx(sorted(c.wait_s for c in visible), abs=1e-6)
    # the seq is device-wide and increases in publication order
    assert [m.seq for m in msgs] == list(range(len(msgs)))


def test_occlusion_hides_the_head_of_the_queue() -> None:
    noise = QUIET.model_copy(update={"occlusions_per_h": 240.0, "occlusion_s": (5.0, 5.0)})
    sc = busy(noise=noise, publish_mode="on_change")
    msgs, _ = _waiting(sc)
    hidden = [m for m in msgs if m.people < m.arrivals_total - m.departures_total]
    assert hidden
    # a spell hides one person; overlapping spells hide the next-oldest too
    assert all(m.people >= 0 for m in msgs)
    # while the head is hidden the oldest dwell drops: the next-oldest is the max
    drops = 0
    for a, b in pairwise(msgs):
        elapsed = b.ts.timestamp() - a.ts.timestamp()
        if (
            a.dwell_max_s is not None
            and b.dwell_max_s is not None
            and b.departures_total == a.departures_total
            and b.dwell_max_s < a.dwell_max_s + elapsed - 1e-6
        ):
            drops += 1
            assert b.people < b.arrivals_total - b.departures_total
    assert drops > 0
    # without departures nothing is lost: counts conserve
    assert msgs[-1].arrivals_total == msgs[-1].departures_total


def test_phantoms_and_lost_tracks_are_unseen_departures() -> None:
    noise = QUIET.model_copy(
        update={"phantoms_per_h": 30.0, "lost_tracks_per_min": 0.05, "reacquire_s": 2.0}
    )
    sc = busy(noise=noise, publish_mode="on_change")
    msgs, _ = _waiting(sc)
    clean, _ = _waiting(sc.model_copy(update={"noise": QUIET}))
    last, ref = msgs[-1], clean[-1]
    extra = last.arrivals_total - ref.arrivals_total
    assert extra > 10  # phantoms + re-acquired lost tracks
    assert last.departures_unseen_total == extra
    assert last.service_starts_total == ref.service_starts_total
    assert last.departures_total == last.arrivals_total
    # a lost track's wait is cut in two: more, shorter completed dwells
    assert sum(len(m.completed_dwells_s) for m in msgs) == last.departures_total


def test_hard_families_are_deterministic_and_have_walk_outs() -> None:
    shares = []
    for kind in HARD_SCENARIO_KINDS:
        sc = scenario(kind, 1, seed=1000)
        assert sc.publish_mode == "on_change" and sc.patience.share > 0
        a = [m.model_dump_json() for m in branch_messages(sc, simulate_customers(sc))][:500]
        b = [m.model_dump_json() for m in branch_messages(sc, simulate_customers(sc))][:500]
        assert a == b
        shares.append(simulate_day(sc).walk_out_share)
    assert max(shares) > 0.02
    assert scenario("hard_absent", 1, seed=1000).counters == 3
    assert scenario("hard_absent", 1, seed=1000).configured_counters == 4


def test_simulate_cli_hard_family_publishes_flows_and_writes_truth(tmp_path: Path) -> None:
    import csv
    import json

    from typer.testing import CliRunner

    from lobbywatch.cli import app

    truth = tmp_path / "truth.csv"
    result = CliRunner().invoke(
        app, ["simulate", "--dry-run", "--scenario", "hard_absent", "--truth", str(truth)]
    )
    assert result.exit_code == 0, result.output
    waiting = [
        json.loads(line.split(" ", 1)[1])
        for line in result.output.splitlines()
        if "/zones/waiting " in line
    ]
    last = waiting[-1]
    assert last["walk_outs_total"] > 0 and last["service_starts_total"] > 0
    rows = list(csv.DictReader(truth.open()))
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes["served"] and outcomes["walked_out"]
    walked = [r for r in rows if r["outcome"] == "walked_out"]
    assert all(r["counter"] == "" and r["service_start"] == "" for r in walked)
    assert {r["class"] for r in rows} == {"ordinary", "priority"}
    assert all(r["vip"] == str(int(r["class"] == "priority")) for r in rows)
    # the edge saw the visible walk-outs (10 % of them leave out of view: unseen)
    visible = sum(float(r["wait_s"]) >= 2.0 for r in walked)
    assert 0.7 * visible <= last["walk_outs_total"] <= visible
    bad = CliRunner().invoke(app, ["simulate", "--dry-run", "--scenario", "hard_nope"])
    assert bad.exit_code != 0  # the CLI's entry point turns this error into exit 2
    assert "unknown scenario 'hard_nope'" in str(bad.exception) + bad.output
