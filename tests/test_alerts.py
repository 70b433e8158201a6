"""Alert rules and business hours against hand-computed timelines."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lobbywatch.server.alerts import (
    AlertEngine,
    AlertEvent,
    AlertPolicy,
    BusinessHours,
    w1_breach_risk,
    w1_clear,
    w1_queue_condition,
    w1_risk_condition,
    w1_severity,
)
from lobbywatch.server.estimator import WaitEstimate

T0 = 1_750_000_000.0

POLICY = AlertPolicy(
    w1_threshold_s=600,
    warn_fraction=0.8,  # queue rule at 480 s...
    warn_head_fraction=0.0,  # ...on the predicted wait alone (the mechanics tests)
    warn_within_s=0,
    min_duration_s=60,
    head_breach_services=0.5,  # head rule: oldest + 0.5/mu >= 600 s...
    head_min_duration_s=20,  # ...held 20 s
    resolve_fraction=0.5,  # resolve below 300 s...
    resolve_after_s=120,  # ...held for 120 s
    renotify_s=600,
    escalate_after_s=1200,
    stalled_after_s=600,
    heartbeat_timeout_s=60,
    offline_after_s=120,
    risk_level=0.0,  # the breach-risk rule and gate have tests of their own
    risk_gate=0.0,
)


def est(
    predicted: float | None,
    queue: int = 5,
    oldest: float | None = None,
    net: float | None = None,
    quiet: float | None = None,
) -> WaitEstimate:
    return WaitEstimate(
        queue_length=queue,
        predicted_wait_s=predicted,
        service_rate_per_s=0.01,
        method="observed",
        realised_wait_p50_s=None,
        realised_wait_p90_s=None,
        oldest_wait_s=oldest,
        forecast_wait_s=None,
        forecast_horizon_s=300.0,
        served_within_threshold_ratio=None,
        net_inflow_per_s=net,
        no_departure_for_s=quiet,
    )


def engine(policy: AlertPolicy = POLICY, hours: BusinessHours | None = None) -> AlertEngine:
    return AlertEngine(lambda b, z: policy, lambda b: hours, lambda b: "north")


def run(eng: AlertEngine, timeline: list[tuple[float, WaitEstimate]]) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for t, e in timeline:
        events += eng.evaluate("b1", "w", e, T0 + t)
    return events


def w1(events: list[AlertEvent]) -> list[tuple[float, str, str]]:
    return [(ev.at - T0, ev.event, ev.severity) for ev in events if ev.kind == "w1_wait"]


def test_min_duration_then_warning_fires() -> None:
    events = run(engine(), [(0, est(500)), (30, est(520)), (59, est(520)), (60, est(490))])
    assert w1(events) == [(60, "fire", "warning")]
    ev = events[0]
    assert ev.alert_id == f"w1_wait:b1:w:{int(T0 + 60)}"
    assert ev.region == "north"
    assert ev.state == "firing"
    assert ev.threshold == 600


def test_a_dip_restarts_the_minimum_duration() -> None:
    timeline = [(0, est(500)), (30, est(400)), (60, est(500)), (110, est(500)), (120, est(500))]
    assert w1(run(engine(), timeline)) == [(120, "fire", "warning")]


def test_warning_escalates_to_critical_at_breach() -> None:
    timeline = [(0, est(500)), (60, est(500)), (90, est(650))]
    assert w1(run(engine(), timeline)) == [(60, "fire", "warning"), (90, "escalate", "critical")]


def test_oldest_occupant_past_threshold_is_critical() -> None:
    timeline = [(0, est(100, oldest=600)), (60, est(100, oldest=660))]
    assert w1(run(engine(), timeline)) == [(60, "fire", "critical")]


def test_trend_warning_when_enabled() -> None:
    policy = POLICY.merged({"warn_within_s": 300})
    # 400 s now, wait grows by net/mu = 0.005/0.01 = 0.5 s/s -> 600 s in 400 s: too far
    far = run(engine(policy), [(0, est(400, net=0.005)), (60, est(400, net=0.005))])
    assert w1(far) == []
    # 0.01/0.01 = 1 s/s -> 600 s in 200 s <= 300 s: warning
    near = run(engine(policy), [(0, est(400, net=0.01)), (60, est(400, net=0.01))])
    assert w1(near) == [(60, "fire", "warning")]


def test_hysteresis_in_value_and_time() -> None:
    timeline = [
        (0, est(500)),
        (60, est(500)),  # fire
        (100, est(400)),  # below warning, above resolve level: stays open
        (300, est(350)),
        (400, est(250)),  # below 300: clear clock starts
        (450, est(320)),  # back above: clock reset
        (500, est(200)),  # clock restarts at 500
        (619, est(200)),
        (620, est(200)),  # 120 s clear: resolve
    ]
    events = run(engine(), timeline)
    assert w1(events) == [(60, "fire", "warning"), (620, "resolve", "warning")]
    assert events[-1].state == "resolved"
    assert events[-1].ended_at == T0 + 620
    assert events[-1].alert_id == events[0].alert_id


def test_renotify_and_time_based_escalation() -> None:
    eng = engine()
    run(eng, [(0, est(500)), (60, est(500))])  # fired at 60
    assert eng.tick(T0 + 600) == []
    renotify = eng.tick(T0 + 660)
    assert [(e.event, e.escalated) for e in renotify] == [("renotify", False)]
    assert eng.tick(T0 + 700) == []
    escalate = eng.tick(T0 + 1260)  # 1200 s after the fire
    assert [(e.event, e.escalated) for e in escalate] == [("escalate", True)]
    assert eng.tick(T0 + 1300) == []  # escalates once
    assert [e.event for e in eng.tick(T0 + 1860)] == ["renotify"]  # 600 s after the escalation
    ids = [e.event_id for e in renotify + escalate]
    assert len(set(ids)) == len(ids)


def test_no_time_based_escalation_while_an_alert_is_resolving() -> None:
    # fired at 60; the queue is gone from 1200 (resolve_after_s 120: resolves at 1320),
    # so the escalation due at 1260 (and the reminder due since 660) would page people
    # about an empty queue
    eng = engine()
    run(eng, [(0, est(500)), (60, est(500)), (1200, est(100, queue=0))])
    assert [e.event for e in eng.tick(T0 + 1260)] == []
    assert [e.event for e in run(eng, [(1320, est(100, queue=0))])] == ["resolve"]
    # a queue that comes back before the resolve escalates at the next tick
    eng = engine()
    run(eng, [(0, est(500)), (60, est(500)), (1200, est(100, queue=0)), (1250, est(500))])
    assert [(e.event, e.escalated) for e in eng.tick(T0 + 1260)] == [("escalate", True)]


def test_service_stalled_fires_and_resolves_on_departure() -> None:
    eng = engine()
    events = run(eng, [(0, est(100, queue=3, quiet=599)), (1, est(100, queue=3, quiet=600))])
    assert [(e.kind, e.event, e.severity) for e in events] == [
        ("service_stalled", "fire", "critical")
    ]
    events = run(eng, [(10, est(100, queue=3, quiet=5))])
    assert [(e.kind, e.event) for e in events] == [("service_stalled", "resolve")]
    # an empty zone is never stalled
    assert run(eng, [(20, est(0, queue=0, quiet=None))]) == []


def test_device_offline_by_heartbeat_and_by_last_will() -> None:
    eng = engine()
    eng.device_seen("b1", "d1", T0)
    assert eng.tick(T0 + 59) == []
    assert eng.tick(T0 + 60) == []  # silent 60 s: offline from 60...
    assert eng.tick(T0 + 179) == []
    fired = eng.tick(T0 + 180)  # ...for 120 s
    assert [(e.kind, e.event, e.subject) for e in fired] == [("device_offline", "fire", "d1")]
    assert fired[0].summary == "Device d1 at b1 offline for 2 min"
    assert eng.tick(T0 + 500) == []  # offline 440 s by now
    eng.device_seen("b1", "d1", T0 + 510)
    back = eng.tick(T0 + 511)
    assert [e.event for e in back] == ["resolve"]
    # how long it was away, not "offline for 0 min"
    assert back[0].summary == "Device d1 at b1 back online after 7 min offline"
    assert back[0].value == 440.0

    eng.device_status("b1", "d1", online=False, now=T0 + 300)
    assert eng.tick(T0 + 419) == []
    assert [e.event for e in eng.tick(T0 + 420)] == ["fire"]


BERLIN_WEEKDAYS = BusinessHours(
    timezone="Europe/Berlin",
    weekly={d: [(time(8, 0), time(12, 0))] for d in ("mon", "tue", "wed", "thu", "fri", "sat")}
    | {"sun": [(time(8, 0), time(12, 0))]},
    holidays=[date(2025, 6, 9)],
)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_business_hours_follow_dst() -> None:
    h = BERLIN_WEEKDAYS
    # Saturday 2025-03-29, CET (UTC+1): 08:00 local = 07:00 UTC
    assert not h.is_open(utc(2025, 3, 29, 6, 59))
    assert h.is_open(utc(2025, 3, 29, 7, 0))
    # Sunday 2025-03-30, clocks went forward at 02:00: 08:00 CEST = 06:00 UTC
    assert not h.is_open(utc(2025, 3, 30, 5, 59))
    assert h.is_open(utc(2025, 3, 30, 6, 0))
    assert h.is_open(utc(2025, 3, 30, 9, 59))
    assert not h.is_open(utc(2025, 3, 30, 10, 0))  # 12:00 CEST


def test_business_hours_closed_days_holidays_and_midnight() -> None:
    h = BusinessHours(
        timezone="America/New_York",
        weekly={"fri": [(time(22, 0), time(2, 0))], "mon": [(time(9, 0), time(17, 0))]},
        holidays=[date(2025, 7, 7)],
    )
    # Friday 2025-07-04 22:00 EDT = Sat 02:00 UTC; open until Sat 02:00 EDT = 06:00 UTC
    assert not h.is_open(utc(2025, 7, 5, 1, 59))
    assert h.is_open(utc(2025, 7, 5, 2, 0))
    assert h.is_open(utc(2025, 7, 5, 5, 59))  # Saturday 01:59 local, still Friday's interval
    assert not h.is_open(utc(2025, 7, 5, 6, 0))
    assert not h.is_open(utc(2025, 7, 6, 15, 0))  # Sunday: not listed
    assert not h.is_open(utc(2025, 7, 7, 15, 0))  # Monday, holiday
    assert h.is_open(utc(2025, 7, 14, 15, 0))  # next Monday 11:00 EDT


def test_business_hours_validation() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        BusinessHours(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="mon: interval 09:00:00-09:00:00 is empty"):
        BusinessHours(timezone="UTC", weekly={"mon": [(time(9), time(9))]})
    parsed = BusinessHours.model_validate(
        {"timezone": "UTC", "weekly": {"mon": [["08:30", "17:00"]]}}
    )
    assert parsed.weekly["mon"] == [(time(8, 30), time(17, 0))]


def test_closed_branch_does_not_alert_and_closing_resolves() -> None:
    hours = BusinessHours(timezone="UTC", weekly={"mon": [(time(9), time(17))]})
    eng = engine(hours=hours)
    sunday_noon = utc(2025, 6, 1, 12)
    monday_1650 = utc(2025, 6, 2, 16, 50)
    assert eng.evaluate("b1", "w", est(900), sunday_noon) == []
    assert eng.evaluate("b1", "w", est(900), sunday_noon + 120) == []
    eng.evaluate("b1", "w", est(900), monday_1650)
    fired = eng.evaluate("b1", "w", est(900), monday_1650 + 60)
    assert [e.event for e in fired] == ["fire"]
    closing = eng.evaluate("b1", "w", est(900), utc(2025, 6, 2, 17, 0))
    assert [(e.event, e.state) for e in closing] == [("resolve", "resolved")]
    assert "branch closed" in closing[0].summary


def test_offline_device_clock_starts_at_opening() -> None:
    hours = BusinessHours(timezone="UTC", weekly={"mon": [(time(9), time(17))]})
    eng = engine(hours=hours)
    eng.device_status("b1", "d1", online=False, now=utc(2025, 6, 1, 20))  # Sunday evening
    assert eng.tick(utc(2025, 6, 2, 8, 59, 59)) == []  # closed
    assert eng.tick(utc(2025, 6, 2, 9, 0)) == []
    assert eng.tick(utc(2025, 6, 2, 9, 1, 59)) == []
    assert [e.event for e in eng.tick(utc(2025, 6, 2, 9, 2))] == ["fire"]


def test_restart_neither_loses_nor_refires() -> None:
    eng = engine()
    fired = run(eng, [(0, est(500)), (60, est(500))])
    saved = eng.snapshot()
    assert [a.alert_id for a in saved] == [fired[0].alert_id]

    again = engine()
    again.restore(saved)
    assert run(again, [(100, est(500)), (200, est(500))]) == []  # no second fire
    assert [a.alert_id for a in again.snapshot()] == [fired[0].alert_id]
    resolved = run(again, [(300, est(100)), (420, est(100))])
    assert [(e.event, e.alert_id) for e in resolved] == [("resolve", fired[0].alert_id)]
    # renotify continues from the stored last notification (fired at 60)
    third = engine()
    third.restore(saved)
    assert [e.event for e in third.tick(T0 + 660)] == ["renotify"]
    assert third.tick(T0 + 661) == []  # once per interval


def test_policy_merge_and_validation() -> None:
    base = AlertPolicy()
    zone = base.merged({"w1_threshold_s": 900}).merged({"min_duration_s": 30})
    assert (zone.w1_threshold_s, zone.min_duration_s) == (900, 30)
    assert zone.warn_fraction == base.warn_fraction
    assert base.merged(None) is base
    with pytest.raises(ValidationError, match="no_such_knob\n  Extra inputs are not permitted"):
        base.merged({"no_such_knob": 1})
    with pytest.raises(ValidationError, match="resolve_fraction must not exceed warn_fraction"):
        AlertPolicy(warn_fraction=0.5, resolve_fraction=0.7)


def test_disabled_policy_never_fires() -> None:
    policy = POLICY.merged({"enabled": False})
    assert run(engine(policy), [(0, est(900)), (100, est(900))]) == []


# --- the two W1 firing conditions (defaults of AlertPolicy, mu = 0.01/s) ------

# T 600, queue rule 1.0 T / head 0.6 T, 120 s; head rule held 20 s; no breach-risk
# rule or gate (the hand computations below pin these rather than follow the tuned
# defaults; the risk rule and gate have tests of their own)
DEFAULT = AlertPolicy(
    resolve_after_s=120,
    warn_fraction=1.0,
    head_min_duration_s=20,
    risk_level=0,
    risk_gate=0,
    risk_level_alone=0,
)


def test_queue_rule_needs_a_queue_that_has_lasted() -> None:
    # predicted 650 s >= T, but the oldest has waited 200 s: expected total
    # 200 + 1/mu = 300 s < 0.6 x 600 = 360 s -> a fresh burst, no warning
    burst = [(t, est(650, oldest=200 + t)) for t in range(0, 60, 10)]
    assert w1(run(engine(DEFAULT), burst)) == []
    # from +60 the oldest has waited 260 s: 260 + 100 = 360 s -> clock starts;
    # fires 120 s later, critical because the predicted wait is over T
    lasting = [(t, est(650, oldest=200 + t)) for t in range(0, 190, 10)]
    assert w1(run(engine(DEFAULT), lasting)) == [(180, "fire", "critical")]


def test_queue_rule_alone_when_the_queue_is_very_long() -> None:
    # 1.35 x 600 = 810 s: fires on the prediction alone after 120 s
    timeline = [(0, est(810, oldest=30)), (60, est(820, oldest=90)), (120, est(815, oldest=150))]
    assert w1(run(engine(DEFAULT), timeline)) == [(120, "fire", "critical")]
    below = [(0, est(800, oldest=30)), (60, est(800, oldest=90)), (120, est(800, oldest=150))]
    assert w1(run(engine(DEFAULT), below)) == []


def test_head_rule_fires_before_the_oldest_crosses_the_threshold() -> None:
    # short queue (predicted 100 s): only the head rule can fire. It holds once
    # oldest + 0.5/mu = oldest + 50 >= 600, i.e. oldest >= 550 s (at +10).
    timeline = [(t, est(100, queue=1, oldest=540 + t)) for t in range(0, 70, 10)]
    assert w1(run(engine(DEFAULT), timeline)) == [
        (30, "fire", "warning"),  # held 20 s (+10 -> +30), 30 s before the breach
        (60, "escalate", "critical"),  # oldest 600 s: breached
    ]


def test_head_rule_clock_restarts_when_the_oldest_is_served() -> None:
    timeline = [
        (0, est(100, oldest=555)),  # holds
        (10, est(100, oldest=565)),
        (15, est(100, oldest=300)),  # served: the next oldest has waited 300 s
        # (a tracker glitch) holds again from +35: the lapse (20 s) exceeds the
        # 15 s grace (a shorter one would be taken for an occlusion spell)
        (35, est(100, oldest=560)),
        (50, est(100, oldest=575)),
        (55, est(100, oldest=580)),  # held 20 s
    ]
    assert DEFAULT.hold_grace_s == 15.0
    assert w1(run(engine(DEFAULT), timeline)) == [(55, "fire", "warning")]


def test_each_condition_keeps_its_own_clock() -> None:
    # queue rule holds from 0 (650 >= 600, head 580 + t >= 360) and would fire
    # at 120; the head rule holds from 70 (480 + 70 + 50 = 600) and fires at 90.
    # A shared clock would fire at 20 (head duration) or 120 (queue duration).
    timeline = [(t, est(650, oldest=480 + t)) for t in range(0, 130, 10)]
    assert w1(run(engine(DEFAULT), timeline)) == [(90, "fire", "critical")]
    head_only = [(t, est(100, oldest=480 + t)) for t in range(0, 130, 10)]
    assert w1(run(engine(DEFAULT), head_only)) == [
        (90, "fire", "warning"),
        (120, "escalate", "critical"),
    ]


def test_no_resolve_while_the_oldest_is_expected_to_cross() -> None:
    timeline = [
        (0, est(100, oldest=560)),
        (20, est(100, oldest=580)),  # fire (head rule)
        (30, est(100, oldest=505)),  # head 505 + 100 = 605 >= 600: not clear
        (200, est(100, oldest=505)),
        (210, est(100, oldest=200)),  # served: clear clock starts
        (329, est(100, oldest=320)),
        (330, est(100, oldest=321)),  # 120 s clear -> resolve
    ]
    assert w1(run(engine(DEFAULT), timeline)) == [
        (20, "fire", "warning"),
        (330, "resolve", "warning"),
    ]


def test_head_rule_can_be_switched_off() -> None:
    policy = DEFAULT.merged({"head_breach_services": 0})
    timeline = [(t, est(100, queue=1, oldest=540 + t)) for t in range(0, 70, 10)]
    assert w1(run(engine(policy), timeline)) == []


def test_head_rule_counts_the_priority_arrivals_that_take_the_next_counter() -> None:
    # mu 0.01/s, priority arrivals 0.005/s: the ordinary head is called at
    # 0.01 - 0.005 = 0.005/s, so the rule holds once oldest + 0.5 / 0.005 = oldest + 100
    # >= 600, i.e. from oldest 500 s (+0), and fires after the 20 s hold: 80 s before
    # the breach.
    def head(t: int, oldest: float, lam_p: float) -> WaitEstimate:
        return dataclasses.replace(
            est(100, queue=1, oldest=oldest + t), priority_arrival_rate_per_s=lam_p
        )

    timeline = [(t, head(t, 500, 0.005)) for t in range(0, 90, 10)]
    assert DEFAULT.head_min_duration_s == 20.0
    assert w1(run(engine(DEFAULT), timeline)) == [(20, "fire", "warning")]
    # class-blind (the rule before): oldest + 50 >= 600 from oldest 550 s (+50), fires at +70
    blind = DEFAULT.merged({"head_priority_aware": False})
    assert w1(run(engine(blind), timeline)) == [(70, "fire", "warning")]
    # priority customers take at most 3/4 of the slots (the class-aware wait's floor):
    # 0.5 / 0.0025 = 200 s, from oldest 400 s (+10), fires at +30
    flood = [(t, head(t, 390, 0.02)) for t in range(0, 50, 10)]
    assert w1(run(engine(DEFAULT), flood)) == [(30, "fire", "warning")]


def test_a_short_lapse_keeps_the_persistence_clock() -> None:
    # queue rule at 480 s held 60 s; at 30 s an occlusion hides a person for 10 s
    timeline = [(0, est(500)), (30, est(400)), (40, est(500)), (60, est(500)), (100, est(500))]
    graced = POLICY.model_copy(update={"hold_grace_s": 15.0})
    assert w1(run(engine(graced), timeline)) == [(60, "fire", "warning")]
    # without the grace the lapse restarts the clock at 40 s: fires at 100 s
    strict = POLICY.model_copy(update={"hold_grace_s": 0.0})
    assert w1(run(engine(strict), timeline)) == [(100, "fire", "warning")]


def test_a_lapse_longer_than_the_grace_restarts_the_clock() -> None:
    graced = POLICY.model_copy(update={"hold_grace_s": 15.0})
    # false from 30 s to 50 s (20 s > 15 s): the clock restarts at 50 s, fires at 110 s
    timeline = [(0, est(500)), (30, est(400)), (50, est(500)), (60, est(500)), (110, est(500))]
    assert w1(run(engine(graced), timeline)) == [(110, "fire", "warning")]


def test_forecast_rule_fires_on_a_projected_breach_when_the_queue_is_already_long() -> None:
    import dataclasses

    def fc(predicted: float, breach_in: float | None, t: float) -> WaitEstimate:
        # oldest 300 + t: head wait 300 + t + 1/0.01 >= 0.6 T; head rule needs 550
        return dataclasses.replace(est(predicted, oldest=300 + t), projected_breach_in_s=breach_in)

    times = range(0, 130, 10)
    # a joiner 300 s from now is projected to wait T; a joiner now waits 500 s >= 0.8 T
    timeline = [(t, fc(500, 300.0, t)) for t in times]
    assert w1(run(engine(DEFAULT), timeline)) == [(120, "fire", "warning")]  # held 120 s
    # 470 s now is below 0.8 T = 480 s (it was enough at the old 0.7 T)
    assert DEFAULT.forecast_min_fraction == 0.8
    assert w1(run(engine(DEFAULT), [(t, fc(470, 300.0, t)) for t in times])) == []
    # the projected breach is further away than forecast_lead_s (450 s)
    assert w1(run(engine(DEFAULT), [(t, fc(500, 500.0, t)) for t in times])) == []


def queue_of_four(oldest: float, predicted: float = 300.0) -> WaitEstimate:
    """4 waiting at one completion a minute; the others 55, 105 and 155 s younger."""
    return dataclasses.replace(
        est(predicted, queue=4, oldest=oldest),
        service_rate_per_s=1 / 60,
        head_wait_s=oldest + 60.0,  # r = 1
        waiting_p50_s=oldest - 80.0,
        waiting_p90_s=oldest - 20.0,
    )


def test_risk_rule_fires_on_the_person_most_at_risk_not_the_head() -> None:
    # oldest 500 s: waits 500, 445, 395, 345; the last is most at risk (P(Pois(4.25) <= 3)
    # = 0.386; the head only 0.189). Queue (300 s < 540) and head (500 + 30 < 600) rules
    # do not hold, nor the forecast rule (no projection).
    policy = DEFAULT.merged({"risk_level": 0.35, "risk_min_duration_s": 60})
    assert w1_breach_risk(queue_of_four(500), policy) == pytest.approx(0.386, abs=5e-3)
    timeline = [(t, queue_of_four(500 + t)) for t in range(0, 70, 10)]
    assert w1(run(engine(policy), timeline)) == [(60, "fire", "warning")]
    # the level: 0.5 is first reached at +40 (P(Pois(215/60) <= 3) = 0.519; +30: 0.484),
    # so with 60 s of persistence it fires at +100
    longer = [(t, queue_of_four(500 + t)) for t in range(0, 130, 10)]
    assert w1_breach_risk(queue_of_four(530), policy) == pytest.approx(0.484, abs=5e-3)
    assert w1_breach_risk(queue_of_four(540), policy) == pytest.approx(0.519, abs=5e-3)
    at_half = DEFAULT.merged(
        {"risk_level": 0.5, "risk_min_duration_s": 60, "head_breach_services": 0}
    )
    assert w1(run(engine(at_half), longer)) == [(100, "fire", "critical")]
    # off: nothing (the shipped default is on at 0.6, which 0.386 does not reach)
    assert DEFAULT.risk_level == 0.0
    assert w1(run(engine(DEFAULT), timeline)) == []
    assert AlertPolicy().risk_level == 0.6
    assert AlertPolicy().risk_level_alone == 0.7


def test_risk_level_alone_needs_more_while_no_observed_rule_holds() -> None:
    # oldest 540 s: the most at-risk person's probability is 0.519 (see above)
    policy = DEFAULT.merged(
        {
            "risk_level": 0.5,
            "risk_level_alone": 0.6,
            "risk_min_duration_s": 60,
            "head_breach_services": 0,
            "warn_fraction": 0.9,
            "warn_head_fraction": 0.6,
        }
    )
    quiet = queue_of_four(540)  # predicted 300 s: the queue rule does not hold
    assert not w1_queue_condition(quiet, policy)
    assert w1_risk_condition(quiet, policy, corroborated=True)
    assert not w1_risk_condition(quiet, policy, corroborated=False)
    # alone, 0.519 < 0.6: nothing; with the queue rule holding (predicted 560 s >= 0.9 T,
    # head 540 + 60 >= 0.6 T) the risk rule's 0.5 applies and it fires after its 60 s,
    # before the queue rule's own 120 s
    assert w1(run(engine(policy), [(t, quiet) for t in range(0, 130, 10)])) == []
    long = queue_of_four(540, predicted=560)
    assert w1_queue_condition(long, policy)
    assert w1(run(engine(policy), [(t, long) for t in range(0, 130, 10)])) == [
        (60, "fire", "warning")
    ]
    # below risk_level it changes nothing
    same = policy.merged({"risk_level_alone": 0.4})
    assert w1(run(engine(same), [(t, quiet) for t in range(0, 130, 10)])) == [
        (60, "fire", "warning")
    ]


def test_risk_gate_holds_the_queue_rule_until_somebody_waiting_is_at_risk() -> None:
    # predicted 560 s >= 0.9 x 600 and head 500 + 60 >= 0.6 x 600: without a gate the
    # queue rule holds...
    gated = AlertPolicy(w1_threshold_s=600)  # the shipped default gate: 0.5
    assert gated.risk_gate == 0.5
    policy = gated.merged({"risk_gate": 0.0})
    assert w1_queue_condition(queue_of_four(500, predicted=560), policy)
    # ...but with a gate of 0.5 only once the most at-risk person reaches it
    # (0.386 at oldest 500 s, 0.519 at 540 s; see the risk rule test above)
    assert not w1_queue_condition(queue_of_four(500, predicted=560), gated)
    assert w1_queue_condition(queue_of_four(540, predicted=560), gated)
    # a queue past warn_alone_fraction (1.35 x 600 = 810 s) needs no such evidence
    assert w1_queue_condition(queue_of_four(500, predicted=820), gated)
    # nor does a zone whose risk cannot be computed (no oldest occupant: an edge
    # without dwell statistics), with the head requirement off
    no_head = gated.merged({"warn_head_fraction": 0.0})
    unknown = dataclasses.replace(
        queue_of_four(500, predicted=560), oldest_wait_s=None, head_wait_s=None
    )
    assert w1_breach_risk(unknown, no_head) is None
    assert w1_queue_condition(unknown, no_head)


def test_risk_calibrated_recovers_kappa_from_the_wait_shown() -> None:
    # raw wait behind 4 at 1/60: (4 + 1) x 60 = 300 s; shown 360 s: kappa = 1.2, so the
    # remaining budgets 100, 155, 205, 255 s count as /1.2: Erlang tails
    # P(Pois(budget / 1.2 / 60) <= j) = 0.249, 0.366, 0.458, 0.527 (uncalibrated max 0.386)
    plain = AlertPolicy(w1_threshold_s=600)
    calibrated = plain.merged({"risk_calibrated": True})
    e = queue_of_four(500, predicted=360)
    assert w1_breach_risk(e, plain) == pytest.approx(0.386, abs=5e-3)
    assert w1_breach_risk(e, calibrated) == pytest.approx(0.527, abs=5e-3)


def test_risk_resolve_below_keeps_a_warning_open_while_somebody_is_at_risk() -> None:
    # predicted 300 s < 0.6 x 600, oldest 500 s and head 500 + 60 < 600: clear by value;
    # the most at-risk of the four still breaches with P(Pois(4.25) <= 3) = 0.386
    plain = AlertPolicy(w1_threshold_s=600, resolve_after_s=120)
    calm = queue_of_four(500, predicted=300)
    assert w1_breach_risk(calm, plain) == pytest.approx(0.386, abs=5e-3)
    assert w1_clear(calm, plain)  # off by default: the risk is not consulted
    assert not w1_clear(calm, plain.merged({"risk_resolve_below": 0.35}))
    assert w1_clear(calm, plain.merged({"risk_resolve_below": 0.4}))
    # no computable risk (no oldest occupant): no veto
    blind = dataclasses.replace(calm, oldest_wait_s=None, head_wait_s=None)
    assert w1_clear(blind, plain.merged({"risk_resolve_below": 0.35}))
    # through the engine: fired by the queue rule at 0.8 T, then the queue shortens
    fired = POLICY  # queue rule at 480 s held 60 s; resolves below 300 s held 120 s
    timeline = [(0, est(500)), (60, est(500))] + [
        (t, queue_of_four(500, predicted=280)) for t in range(100, 400, 20)
    ]
    assert w1(run(engine(fired), timeline)) == [
        (60, "fire", "warning"),
        (220, "resolve", "warning"),
    ]
    held = fired.merged({"risk_resolve_below": 0.35})
    assert w1(run(engine(held), timeline)) == [(60, "fire", "warning")]


def test_risk_resolve_below_cannot_exceed_the_firing_level() -> None:
    with pytest.raises(ValidationError, match=r"risk_resolve_below \(0.7\) must not exceed"):
        AlertPolicy(risk_level=0.6, risk_resolve_below=0.7)
    assert AlertPolicy(risk_level=0.0, risk_resolve_below=0.7).risk_resolve_below == 0.7


_SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    queue=st.integers(0, 500),
    predicted=st.none() | _SECONDS,
    mu=st.none() | st.floats(1e-9, 10),
    oldest=st.none() | _SECONDS,
    p50=st.none() | _SECONDS,
    p90=st.none() | _SECONDS,
    head=st.none() | _SECONDS,
    lam_p=st.none() | st.floats(0, 10),
    theta=st.none() | st.floats(0, 1),
)
def test_breach_risk_is_a_probability_for_any_estimate(
    queue: int,
    predicted: float | None,
    mu: float | None,
    oldest: float | None,
    p50: float | None,
    p90: float | None,
    head: float | None,
    lam_p: float | None,
    theta: float | None,
) -> None:
    # the rule is on by default: an estimate the edge or the estimator can produce,
    # however odd (quantiles above the oldest, no rate, a huge queue), must give a
    # probability (or no risk at all), never a NaN or an exception in the engine
    e = dataclasses.replace(
        est(predicted, queue=queue, oldest=oldest),
        service_rate_per_s=mu,
        head_wait_s=head,
        waiting_p50_s=p50,
        waiting_p90_s=p90,
        priority_arrival_rate_per_s=lam_p,
        abandon_rate_per_s=theta,
    )
    risk = w1_breach_risk(e, AlertPolicy())
    if oldest is None or not mu:
        assert risk is None
    else:
        assert risk is not None and 0.0 <= risk <= 1.0
    run(engine(AlertPolicy()), [(0, e), (30, e)])


def test_w1_judges_the_ordinary_customers_wait_when_priority_ones_are_served_first() -> None:
    # 500 s class-blind, below 0.9 T = 540 s; the ordinary customer joining now waits
    # 600 s (priority customers arriving meanwhile are called ahead of them)
    policy = DEFAULT.merged({"warn_fraction": 0.9, "warn_head_fraction": 0.6})
    blind = dataclasses.replace(queue_of_four(400, predicted=500), predicted_wait_ordinary_s=600)
    assert w1_queue_condition(blind, policy)  # 600 >= 540, head 400 + 60 >= 360
    assert not w1_queue_condition(blind, policy.merged({"w1_ordinary_wait": False}))
    # the level, the value and the notices' figures stay the lobby's class-blind wait
    # (a warning: 500 s < T); the text adds the ordinary customer's
    assert w1_severity(blind, policy) == "warning"
    fired = run(engine(policy), [(t, blind) for t in range(0, 130, 10)])
    assert [(e.event, e.severity) for e in fired] == [("fire", "warning")]
    assert fired[0].summary.startswith(
        "W1 w at b1: predicted wait 8.3 min (10.0 min for ordinary customers) (threshold 10 min)"
    )
    assert fired[0].value == 500
    # an ordinary wait below the blind one (the level factors can invert them slightly)
    # is not judged: priority customers only add to an ordinary customer's wait
    inverted = dataclasses.replace(blind, predicted_wait_s=560.0, predicted_wait_ordinary_s=500.0)
    assert w1_queue_condition(inverted, policy)
    # the resolve waits for the ordinary wait too: 300 s blind, 400 s ordinary >= 0.6 T
    calmer = dataclasses.replace(blind, predicted_wait_s=300.0, predicted_wait_ordinary_s=400.0)
    assert not w1_clear(dataclasses.replace(calmer, oldest_wait_s=100.0), policy)
    assert w1_clear(
        dataclasses.replace(calmer, oldest_wait_s=100.0, head_wait_s=160.0),
        policy.merged({"w1_ordinary_wait": False}),
    )
    # without priority customers the two waits are one: nothing changes, nothing is said
    same = dataclasses.replace(blind, predicted_wait_ordinary_s=500.0)
    assert not w1_queue_condition(same, policy)
