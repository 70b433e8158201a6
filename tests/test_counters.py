"""Open counters seen at the service points (hand-computed timelines)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.counters import CounterObserver
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator

T0 = 1_764_400_000.0
POINTS = ("c1", "c2", "c3", "c4")


def test_a_counter_busy_within_the_window_while_people_waited_is_open() -> None:
    obs = CounterObserver(POINTS, 300.0, window_s=180.0)
    # people wait from T0; c1..c3 are occupied now and then, c4 stays empty (absent)
    obs.observe("c1", 1, [], T0 + 10)
    obs.observe("c2", 1, [], T0 + 50)
    obs.observe("c3", 1, [], T0 + 100)
    obs.observe("c3", 0, [], T0 + 150)
    obs.observe("c4", 0, [], T0 + 150)
    obs.observe("elsewhere", 1, [], T0 + 150)  # not a service point of this queue
    # the queue has not lasted a whole window yet: nothing inferred
    assert obs.reading(T0 + 120, queue_since=T0).open_counters is None
    # at T0 + 185: c1 (busy 175 s ago), c2 and c3 are within 180 s -> 3 open
    assert obs.reading(T0 + 185, queue_since=T0).open_counters == 3
    # at T0 + 200 c1 was last busy 190 s ago: it closed (lunch) -> 2 open
    assert obs.reading(T0 + 200, queue_since=T0).open_counters == 2
    # nobody waits: idle counters say nothing, the last inference stands
    assert obs.reading(T0 + 900, queue_since=None).open_counters == 2


def test_service_durations_at_the_counters_shrunk_to_the_configured_mean() -> None:
    obs = CounterObserver(POINTS, 300.0, service_window_s=1e12, prior_services=3, min_services=5)
    obs.observe("c1", 0, [200.0] * 4 + [5.0], T0)  # 5 s: a passer-by, not a service
    assert obs.reading(T0, None).mean_service_s is None  # 4 services < 5
    obs.observe("c2", 0, [200.0] * 6, T0 + 1)
    # (10 x 200 + 3 x 300) / 13
    assert obs.reading(T0 + 1, None).mean_service_s == pytest.approx(2900 / 13)


def _zone(zone: str, kind: ZoneKind, at: float, people: int, **kw: object) -> ZoneMessage:
    return ZoneMessage.model_validate(
        {
            "device": "d",
            "seq": int(at - T0),
            "ts": datetime.fromtimestamp(at, UTC),
            "branch": "b",
            "camera": "cam",
            "zone": zone,
            "kind": kind,
            "people": people,
            "raw_count": people,
            "arrivals_total": kw.get("arrivals", 0),
            "departures_total": kw.get("departures", 0),
            "completed_dwells_s": kw.get("dwells", []),
        }
    )


@pytest.mark.parametrize("tau", [1800.0, 7200.0])
def test_estimator_uses_observed_counters_and_their_service_time(tau: float) -> None:
    # tau: the estimator's service_window_s (1800 s by default)
    est = ZoneEstimator(
        EstimatorSettings(service_window_s=tau),
        counters=4,
        mean_service_s=300.0,
        service_points=POINTS,
    )
    for k in range(0, 200, 5):
        est.observe(_zone("W1", ZoneKind.WAITING, T0 + k, 6, arrivals=6), T0 + k)
    for point in ("c1", "c2", "c3"):
        est.observe_service_point(
            _zone(point, ZoneKind.CASH_COUNTER, T0 + 100, 1, dwells=[240.0, 240.0])
        )
    # queue since T0, window 180 s: at T0 + 195 three counters were busy within it
    counters, how, mean = est.counters_now(T0 + 195)
    assert (counters, how) == (3, "observed")
    # total time on test: 6 services of 240 s, each busy second weighted by its age
    # (tau (1 - e^(-240/tau)) = 224.9 s each at 1800 s), decayed over the 95 s since they
    # ended, 3 prior services at 300 s; the counters' messages carry no running dwell
    f = math.exp(-95 / tau)
    busy = tau * -math.expm1(-240 / tau)
    service = (6 * busy * f + 3 * 300) / (6 * f + 3)
    assert mean == pytest.approx(service)
    mu, method = est.service_rate(T0 + 195)
    assert method == "counters" and mu == pytest.approx(3 / service)
    e = est.estimate(T0 + 195)
    assert e.counters_open == 3 and e.counters_method == "observed"
    # 6 waiting: (6 + 1) / mu, and with a 4th counter (6 + 1) / (mu * 4 / 3)
    assert e.predicted_wait_s == pytest.approx(7 * service / 3)
    assert e.predicted_wait_one_more_counter_s == pytest.approx(7 * service / 4)


def test_running_services_count_as_censored_time_on_test() -> None:
    """The opening: every counter starts at once, the short services end first."""
    tau = 1800.0
    obs = CounterObserver(
        POINTS, 300.0, service_window_s=tau, prior_services=3, censored_max_age_s=90.0
    )
    # c1..c3 started at T0 and are still serving at T0 + 400; c4's first customer
    # took 200 s and its second has been served for 190 s (message at T0 + 390)
    for point in ("c1", "c2", "c3"):
        obs.observe(point, 1, [], T0 + 390, dwell_max_s=390.0)
    obs.observe("c4", 1, [200.0], T0 + 200, dwell_max_s=0.0)
    obs.observe("c4", 1, [], T0 + 390, dwell_max_s=190.0)

    def busy(d: float) -> float:
        return tau * -math.expm1(-d / tau)

    # one completion (200 s, ended 200 s ago), running: 3 x 400 s and 200 s (10 s since
    # the messages)
    f = math.exp(-200 / tau)
    running = 3 * busy(400.0) + busy(200.0)
    expected = (busy(200.0) * f + running + 3 * 300.0) / (f + 3)
    mean = obs.reading(T0 + 400, None).mean_service_s
    assert mean == pytest.approx(expected)
    # the completed service alone would say 200 s; with the running ones the mean is
    # above the configured 300 s: four counters busy for 400 s with one completion
    assert mean > 300.0
    # a message older than censored_max_age_s says nothing about now: only c4's
    # completed service and the prior remain once every message is stale
    stale = obs.reading(T0 + 390 + 91, None).mean_service_s
    f2 = math.exp(-281 / tau)
    assert stale == pytest.approx((busy(200.0) * f2 + 3 * 300.0) / (f2 + 3))


def test_censored_mean_waits_for_a_completion_and_caps_a_lingerer() -> None:
    tau = 1800.0
    obs = CounterObserver(
        POINTS, 300.0, service_window_s=tau, prior_services=3, censored_max_age_s=90.0
    )
    # nothing completed yet: no observed mean (the queue's own estimate stands)
    obs.observe("c1", 1, [], T0, dwell_max_s=600.0)
    assert obs.reading(T0, None).mean_service_s is None
    # somebody has stood at c1 for 3 h: counted as 4 configured means (1200 s)
    obs.observe("c2", 0, [300.0], T0)
    obs.observe("c1", 1, [], T0 + 1, dwell_max_s=3 * 3600.0)
    busy_cap = tau * -math.expm1(-1200 / tau)
    busy_300 = tau * -math.expm1(-300 / tau)
    f = math.exp(-1 / tau)
    assert obs.reading(T0 + 1, None).mean_service_s == pytest.approx(
        (busy_300 * f + busy_cap + 900.0) / (f + 3)
    )


def test_completed_services_only_when_censoring_is_off() -> None:
    settings = EstimatorSettings(service_time_censored=False)
    est = ZoneEstimator(settings, counters=4, mean_service_s=300.0, service_points=POINTS)
    assert est.counter_observer is not None
    assert est.counter_observer.censored_max_age_s is None
    est.counter_observer.service_window_s = 1e12
    est.observe_service_point(_zone("c1", ZoneKind.CASH_COUNTER, T0, 1, dwells=[200.0] * 5))
    # (5 x 200 + 3 x 300) / 8, the running service (no dwell) not counted either way
    assert est.counter_observer.reading(T0, None).mean_service_s == pytest.approx(1900 / 8)


def test_an_empty_zone_with_every_open_counter_serving_predicts_the_first_to_free() -> None:
    """W(0) = r / mu when the service points show no free counter; 0 when one is free."""
    est = ZoneEstimator(
        EstimatorSettings(calibration_max=1.0, calibration_levels_s=[]),
        counters=3,
        mean_service_s=300.0,
        service_points=("c1", "c2", "c3"),
    )
    # nobody has waited yet: the counters are the configured 3, the rate 3 / 300 s
    est.observe(_zone("W1", ZoneKind.WAITING, T0, 0), T0)
    for point in ("c1", "c2", "c3"):
        est.observe_service_point(_zone(point, ZoneKind.CASH_COUNTER, T0, 1))
    # every counter serving: the newcomer starts at the first completion, 1 / (3 / 300)
    assert est.estimate(T0 + 5).predicted_wait_s == pytest.approx(100.0)
    # both classes: whoever joins an empty zone is first in line
    e = est.estimate(T0 + 5)
    assert e.predicted_wait_ordinary_s == e.predicted_wait_priority_s == e.predicted_wait_s
    # c2 frees: a counter calls the newcomer at once
    est.observe_service_point(_zone("c2", ZoneKind.CASH_COUNTER, T0 + 10, 0))
    assert est.estimate(T0 + 15).predicted_wait_s == 0.0
    # c2 busy again, but c3's latest message is 91 s old by T0 + 101: it says nothing
    # about now (an offline source), so no evidence that every counter is busy
    est.observe_service_point(_zone("c2", ZoneKind.CASH_COUNTER, T0 + 20, 1))
    assert est.estimate(T0 + 90).predicted_wait_s == pytest.approx(100.0)
    assert est.estimate(T0 + 101).predicted_wait_s == 0.0
    # switched off: an empty zone predicts 0 as before
    off = ZoneEstimator(
        EstimatorSettings(empty_zone_residual=False), 3, 300.0, service_points=("c1", "c2", "c3")
    )
    off.observe(_zone("W1", ZoneKind.WAITING, T0, 0), T0)
    for point in ("c1", "c2", "c3"):
        off.observe_service_point(_zone(point, ZoneKind.CASH_COUNTER, T0, 1))
    assert off.estimate(T0 + 5).predicted_wait_s == 0.0


def test_a_counter_occupied_longer_than_any_service_is_not_serving() -> None:
    """Somebody at a counter for more than max_censored_means configured means (staff in
    view, a stationary false detection) is no service: a counter may still be free."""
    obs = CounterObserver(("c1", "c2"), 300.0, max_censored_means=4.0)
    obs.observe("c1", 1, [], T0, dwell_max_s=100.0)
    obs.observe("c2", 1, [], T0, dwell_max_s=1190.0)
    assert obs.busy_now(T0 + 5, 90.0) == 2  # 1195 s <= 4 x 300 s
    assert obs.busy_now(T0 + 15, 90.0) == 1  # c2's occupant at 1205 s: not a service
    obs.observe("c2", 0, [], T0 + 20)
    assert obs.busy_now(T0 + 25, 90.0) == 1
