"""The customers' patience (Kaplan-Meier) and the wait of a customer who is served."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_estimator import T0, msg

from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.alert_texts import alert_context
from lobbywatch.server.alerts import AlertPolicy, w1_advice, w1_queue_condition
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator
from lobbywatch.server.patience import PatienceLog, kaplan_meier, served_wait, survival_at
from lobbywatch.server.walkouts import MidQueueWalkouts


def test_kaplan_meier_by_hand() -> None:
    # waits 60 (walk-out), 120 (served), 180 (walk-out), 240 (served), 300 (walk-out):
    # S(60) = 4/5; at 180 three at risk (180, 240, 300), one leaves: 4/5 * 2/3; at 300
    # the last one at risk leaves: 0
    d = np.array([180.0, 60.0, 300.0, 120.0, 240.0])
    e = np.array([True, True, True, False, False])
    times, s = kaplan_meier(d, e)
    assert times.tolist() == [60.0, 180.0, 300.0]
    assert s == pytest.approx([0.8, 0.8 * 2 / 3, 0.0])
    assert survival_at(times, s, np.array([0.0, 59.9, 60.0, 200.0, 1e6])) == pytest.approx(
        [1.0, 1.0, 0.8, 0.8 * 2 / 3, 0.0]
    )


def test_the_served_wait_is_the_gamma_mean_below_the_patience() -> None:
    # patience 600 s for half the customers, endless for the others: S = 1 then 0.5.
    # E[W S(W)] / E[S(W)] by a million draws of W ~ gamma(mean 600, cv 0.3)
    times, s = np.array([600.0]), np.array([0.5])
    w = np.random.default_rng(7).gamma(1 / 0.09, 600 * 0.09, 1_000_000)
    weight = np.where(w < 600, 1.0, 0.5)
    expected = float((w * weight).sum() / weight.sum())
    got = served_wait(np.array([600.0, 0.0]), times, s, 0.3)
    assert got[0] == pytest.approx(expected, rel=0.005)
    assert expected < 570  # the check is not vacuous: the served wait is shorter
    assert got[1] == 0.0
    # no walk-out seen: the potential wait is the wait
    assert served_wait(np.array([900.0]), np.array([]), np.array([]), 0.3)[0] == 900.0


def test_the_patience_log_needs_its_walkouts_and_forgets_the_oldest() -> None:
    log = PatienceLog(keep=4, min_walkouts=2)
    log.add(100.0, walked_out=True)
    assert log.survival() is None
    for wait, walked in ((200.0, True), (50.0, False), (60.0, False)):
        log.add(wait, walked)
    times, s = log.survival()  # type: ignore[misc]
    assert times.tolist() == [100.0, 200.0] and s == pytest.approx([0.5, 0.0])
    log.add(70.0, walked_out=False)  # the walk-out at 100 s drops out: one is left
    assert log.walkouts == 1 and log.survival() is None


def test_mid_queue_walkouts_hand_over_their_dwells() -> None:
    mq = MidQueueWalkouts(window_s=5.0, min_dwell_s=60.0)
    mq.observe(0.0, 0, [400.0])  # a mid-queue departure, no arrival near it
    mq.observe(3.0, 0, [30.0])  # too young: a phantom, not a walk-out
    assert mq.observe(20.0, 0, []) == 1
    assert mq.walked_out_dwells == [400.0]


def _classified(
    t: float, people: int, departures: int, starts: int, walkouts: int, dwells: list[float]
) -> ZoneMessage:
    base = msg(t, people, departures + people, departures, tuple(dwells), dwell_max=700.0)
    return base.model_copy(
        update={
            "service_starts_total": starts,
            "walk_outs_total": walkouts,
            "departures_unseen_total": 0,
        }
    )


def _long_queue_day(settings: EstimatorSettings) -> ZoneEstimator:
    # 20 people walk out after 600 s each, 10 are served after 100 s: patience is 600 s
    # for all (S = 1, then 0 at 600 s). Twelve wait all along.
    est = ZoneEstimator(settings, counters=2, mean_service_s=300)
    msgs = [_classified(0, 12, 0, 0, 0, [])]
    starts = walkouts = 0
    for k in range(1, 31):
        walked = k <= 20
        walkouts += walked
        starts += not walked
        msgs.append(_classified(10 * k, 12, k, starts, walkouts, [600.0 if walked else 100.0]))
    for m in msgs:
        est.observe(m, m.ts.timestamp())
    return est


def test_the_wait_shown_is_a_served_customers_once_the_patience_is_known() -> None:
    plain = EstimatorSettings(calibration_max=1.0, served_wait_cv=0.0, relink_lost_tracks=False)
    served = plain.model_copy(update={"served_wait_cv": 0.3})
    potential = _long_queue_day(plain).estimate(T0 + 300)
    shown = _long_queue_day(served).estimate(T0 + 300)
    assert potential.predicted_wait_s is not None and potential.predicted_wait_s > 600
    # the potential wait, with a patience of exactly 600 s: E[W | W < 600]
    rng = np.random.default_rng(3)
    w = rng.gamma(1 / 0.09, potential.predicted_wait_s * 0.09, 1_000_000)
    expected = float(w[w < 600].mean())
    assert shown.predicted_wait_s == pytest.approx(expected, rel=0.01)
    assert shown.predicted_wait_s < 600
    # everything else is the same estimate
    assert shown.service_rate_per_s == pytest.approx(potential.service_rate_per_s)
    assert shown.queue_length == potential.queue_length == 12
    # with fewer walk-outs than patience_min_walkouts the potential wait is shown
    late = served.model_copy(update={"patience_min_walkouts": 21})
    assert _long_queue_day(late).estimate(T0 + 300).predicted_wait_s == pytest.approx(
        potential.predicted_wait_s
    )


def test_w1_judges_the_wait_of_a_customer_who_stays() -> None:
    # A served customer waits under 600 s here (patience is 600 s), but whoever joins
    # waits 2,643 s if they stay: a walk-out waited too long too, so W1 fires on that
    settings = EstimatorSettings(calibration_max=1.0, relink_lost_tracks=False)
    e = _long_queue_day(settings).estimate(T0 + 300)
    assert e.predicted_wait_s is not None and e.predicted_wait_s < 540
    assert e.potential_wait_s == pytest.approx(2643.0, abs=1.0)
    policy = AlertPolicy(w1_threshold_s=600, risk_level=0)
    assert w1_queue_condition(e, policy)
    assert w1_advice(e)["potential_wait_s"] == e.potential_wait_s
    # judged on the served customer's wait the queue rule would not hold
    served_only = dataclasses.replace(e, potential_wait_s=None, potential_wait_ordinary_s=None)
    assert not w1_queue_condition(served_only, policy)
    # the manager's message states the wait judged, beside the one-more-counter figure
    ctx = alert_context(
        branch_name="b1",
        zone_name="w",
        timezone="UTC",
        locale="en",
        estimate=e,
        threshold_s=600,
        counters_configured=2,
        board_url=None,
        now=T0 + 300,
    )
    assert ctx["predicted_wait_s"] == e.potential_wait_s
    assert ctx["wait_with_one_more_s"] < ctx["predicted_wait_s"]
