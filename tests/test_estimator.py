"""Wait estimator against hand-computed cases (docs/wait-estimation.md)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.estimator import (
    EstimatorSettings,
    WaitEstimate,
    ZoneEstimator,
    in_order_departures,
    wait_for_queue,
)
from lobbywatch.zone_state import ZoneKind

T0 = 1_750_000_000.0

# No decay within a test, no prior, small evidence thresholds: every number
# below is then plain arithmetic.
RAW = EstimatorSettings(
    rate_window_s=1e12,
    trend_window_s=1e12,
    prior_departures=0,
    min_departures=3.5,  # (exact integers would sit on float rounding)
    min_busy_s=25,
    min_trend_s=25,
    max_gap_s=120,
    residual_factor=1.0,
    forecast_horizon_s=300,
    realised_window_s=1800,
    wait_threshold_s=200,
)


def msg(
    t: float,
    people: int,
    arrivals: int,
    departures: int,
    dwells: tuple[float, ...] = (),
    dwell_max: float | None = None,
    seq: int = 0,
) -> ZoneMessage:
    return ZoneMessage(
        device="d1",
        seq=seq,
        ts=datetime.fromtimestamp(T0 + t, UTC),
        branch="b1",
        camera="c1",
        zone="w",
        kind=ZoneKind.WAITING,
        people=people,
        raw_count=people,
        dwell_max_s=dwell_max,
        arrivals_total=arrivals,
        departures_total=departures,
        completed_dwells_s=list(dwells),
    )


def feed(est: ZoneEstimator, msgs: list[ZoneMessage]) -> None:
    for m in msgs:
        est.observe(m, m.ts.timestamp())


def test_wait_formula() -> None:
    # 4 people ahead, 2 customers/min joint capacity, r = 1: (4+1)/ (2/60) = 150 s
    assert wait_for_queue(4, 2 / 60, 1.0) == pytest.approx(150.0)
    assert wait_for_queue(4, 2 / 60, 0.5) == pytest.approx(135.0)
    assert wait_for_queue(0, 2 / 60, 1.0) == 0.0


def test_nothing_observed_yet() -> None:
    e = ZoneEstimator(RAW, counters=2, mean_service_s=300).estimate(T0)
    assert e.predicted_wait_s is None
    assert e.queue_length == 0
    assert e.method == "fallback"


def test_fallback_uses_configured_counters() -> None:
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    est.observe(msg(0, people=3, arrivals=3, departures=0), T0)
    e = est.estimate(T0)
    # mu0 = 2/300 per s; W = (3 + 1) / mu0 = 600 s
    assert e.method == "fallback"
    assert e.service_rate_per_s == pytest.approx(2 / 300)
    assert e.predicted_wait_s == pytest.approx(600.0)


def test_observed_rate_counts_only_occupied_intervals() -> None:
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    msgs = [msg(0, 0, 0, 0), msg(10, 0, 2, 2)]  # empty zone: 2 walk-throughs, not busy
    # then 6 intervals of 10 s with somebody waiting and one departure each
    arrivals, departures = 2, 2
    for k in range(1, 7):
        arrivals += 1
        departures += 1
        msgs.append(msg(10 + 10 * k, 5, arrivals, departures))
    msgs[2] = msg(20, 5, 8, 3)  # the queue appears (5 arrive, 1 leaves)...
    feed(est, msgs)
    # ...but that interval started empty, so it is not busy time: busy
    # intervals are 20->30 ... 60->70: 5 intervals, 5 departures, 50 s
    e = est.estimate(T0 + 70)
    assert e.method == "observed"
    assert e.service_rate_per_s == pytest.approx(5 / 50)
    assert e.predicted_wait_s == pytest.approx((5 + 1) / 0.1)


def test_too_few_departures_falls_back_only_when_gated() -> None:
    gated = RAW.model_copy(update={"service_rate_gated": True})
    est = ZoneEstimator(gated, counters=2, mean_service_s=300)
    feed(est, [msg(0, 5, 5, 0), msg(60, 5, 8, 3)])  # 3 < min_departures
    assert est.estimate(T0 + 60).method == "fallback"
    # ungated (the default): 3 departures in 60 busy seconds, no prior
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    feed(est, [msg(0, 5, 5, 0), msg(60, 5, 8, 3)])
    e = est.estimate(T0 + 60)
    assert (e.method, e.service_rate_per_s) == ("observed", pytest.approx(3 / 60))


def test_a_queue_standing_without_departures_lowers_the_rate_from_the_prior() -> None:
    """The opening: 5 people wait 120 s and nobody is called. With a prior of 5
    departures at mu0 = 2 / 300: (0 + 5) / (120 + 5 x 150) = 5 / 870, below mu0; the
    gated estimator stays on mu0 until 4 departures and 25 s are in."""
    settings = RAW.model_copy(update={"prior_departures": 5.0})
    est = ZoneEstimator(settings, counters=2, mean_service_s=300)
    feed(est, [msg(0, 5, 5, 0, dwell_max=60.0), msg(120, 5, 5, 0, dwell_max=180.0)])
    e = est.estimate(T0 + 120)
    assert (e.method, e.service_rate_per_s) == ("observed", pytest.approx(5 / 870))
    gated = settings.model_copy(update={"service_rate_gated": True})
    est = ZoneEstimator(gated, counters=2, mean_service_s=300)
    feed(est, [msg(0, 5, 5, 0, dwell_max=60.0), msg(120, 5, 5, 0, dwell_max=180.0)])
    e = est.estimate(T0 + 120)
    assert (e.method, e.service_rate_per_s) == ("fallback", pytest.approx(2 / 300))


def test_prior_shrinks_towards_configured_rate() -> None:
    settings = RAW.model_copy(update={"prior_departures": 5.0})
    est = ZoneEstimator(settings, counters=2, mean_service_s=300)
    feed(est, [msg(0, 5, 5, 0), msg(60, 5, 11, 6)])
    # (D + k) / (B + k/mu0) = (6 + 5) / (60 + 5 * 150) = 11/810
    assert est.estimate(T0 + 60).service_rate_per_s == pytest.approx(11 / 810)


def test_exponential_decay_of_rate_evidence() -> None:
    settings = RAW.model_copy(update={"rate_window_s": 100.0, "min_busy_s": 0, "min_departures": 0})
    est = ZoneEstimator(settings, counters=1, mean_service_s=100)
    feed(est, [msg(0, 3, 3, 0), msg(100, 3, 5, 2), msg(200, 3, 11, 8)])
    # D = 2 e^-1 + 6, B = 100 e^-1 + 100
    import math

    expected = (2 * math.exp(-1) + 6) / (100 * math.exp(-1) + 100)
    assert est.estimate(T0 + 200).service_rate_per_s == pytest.approx(expected)


def test_counter_reset_reads_new_value_as_increase() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(
        est,
        [
            msg(0, 4, 100, 96),
            msg(30, 4, 103, 99),  # +3 / +3
            msg(60, 2, 2, 0),  # edge restarted: +2 arrivals, +0 departures
            msg(90, 2, 5, 3),  # +3 / +3
        ],
    )
    e = est.estimate(T0 + 90)
    assert e.arrival_rate_per_s == pytest.approx((3 + 2 + 3) / 90)
    assert e.departure_rate_per_s == pytest.approx((3 + 0 + 3) / 90)
    assert e.service_rate_per_s == pytest.approx((3 + 0 + 3) / 90)


def test_forecast_adds_net_inflow_over_horizon() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    # per 10 s: 2 arrivals, 1 departure -> net +0.1/s; queue 4 -> 5 -> ... -> 8
    feed(est, [msg(10 * k, 4 + k, 4 + 2 * k, k) for k in range(5)])
    e = est.estimate(T0 + 40)
    assert e.net_inflow_per_s == pytest.approx(0.1)
    assert e.service_rate_per_s == pytest.approx(4 / 40)
    # queue in 300 s: 8 + 0.1 * 300 = 38 -> (38 + 1) / 0.1
    assert e.forecast_wait_s == pytest.approx(390.0)
    assert e.predicted_wait_s == pytest.approx(90.0)
    # the wait grows by net/mu = 1 s per s: 200 s more to reach 290 s
    assert e.seconds_to_wait(290.0) == pytest.approx(200.0)


def test_realised_waits_and_service_level() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(est, [msg(0, 1, 1, 0, dwells=(60, 120, 180)), msg(10, 1, 3, 2, dwells=(240, 300))])
    e = est.estimate(T0 + 10)
    assert e.realised_wait_p50_s == pytest.approx(180.0)
    assert e.realised_wait_p90_s == pytest.approx(240 + 0.6 * 60)
    assert e.served_within_threshold_ratio == pytest.approx(3 / 5)  # threshold 200 s
    # explicit threshold wins
    assert est.estimate(T0 + 10, threshold_s=100).served_within_threshold_ratio == 1 / 5
    # dwells age out of the 1800 s window
    assert est.estimate(T0 + 1811).realised_wait_p50_s is None


def test_oldest_and_stalled_clocks_advance_with_now() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(
        est,
        [
            msg(0, 0, 0, 0),
            msg(10, 2, 2, 0, dwell_max=8),
            msg(20, 2, 3, 1, dwell_max=18),
            msg(30, 2, 3, 1, dwell_max=28),
        ],
    )
    e = est.estimate(T0 + 50)
    assert e.oldest_wait_s == pytest.approx(48.0)
    assert e.no_departure_for_s == pytest.approx(30.0)  # last departure seen at +20
    # fallback mu = 1/60: the oldest starts after r/mu = 60 s more on average
    assert e.head_wait_s == pytest.approx(48.0 + 60.0)


def test_oldest_is_kept_when_the_count_misses_the_only_person() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(est, [msg(0, 1, 1, 0, dwell_max=500), msg(5, 0, 1, 0, dwell_max=505)])
    e = est.estimate(T0 + 5)
    # the confirmed count says 0 (missed detection), the track says 505 s
    assert e.queue_length == 0 and e.predicted_wait_s == 0.0
    assert e.oldest_wait_s == pytest.approx(505.0)
    assert e.head_wait_s == pytest.approx(565.0)


def test_stale_and_duplicate_messages_only_add_dwells() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(est, [msg(0, 3, 3, 0), msg(20, 5, 6, 1)])
    est.observe(msg(10, 9, 99, 50, dwells=(42.0,)), T0 + 21)  # late: older ts
    e = est.estimate(T0 + 21)
    assert e.queue_length == 5
    assert e.realised_wait_p50_s == 42.0


def test_long_gap_is_not_used_for_rates() -> None:
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(est, [msg(0, 5, 5, 0), msg(1000, 5, 50, 45)])  # 1000 s > max_gap_s
    e = est.estimate(T0 + 1000)
    assert e.method == "fallback"
    assert e.arrival_rate_per_s is None


def test_seconds_to_wait_edges() -> None:
    base = dict(
        queue_length=3,
        service_rate_per_s=0.01,
        method="observed",
        realised_wait_p50_s=None,
        realised_wait_p90_s=None,
        oldest_wait_s=None,
        forecast_wait_s=None,
        forecast_horizon_s=300.0,
        served_within_threshold_ratio=None,
    )
    assert WaitEstimate(predicted_wait_s=700, **base).seconds_to_wait(600) == 0.0  # type: ignore[arg-type]
    falling = WaitEstimate(predicted_wait_s=400, net_inflow_per_s=-0.01, **base)  # type: ignore[arg-type]
    assert falling.seconds_to_wait(600) is None


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="counters must be >= 1 and mean_service_s > 0"):
        ZoneEstimator(RAW, counters=0, mean_service_s=60)
    with pytest.raises(ValueError, match="unknown\n  Extra inputs are not permitted"):
        EstimatorSettings(unknown=1)  # type: ignore[call-arg]


def test_the_projection_is_calibrated_like_the_wait_shown_now() -> None:
    settings = RAW.model_copy(
        update={
            "calibration_prior": 0.0,
            "calibration_min_s": 1.0,
            "calibration_max": 3.0,
            "calibration_window_s": 1e12,
            "calibration_levels_s": (),  # one factor, as the projection's
            "projection_horizon_s": 120.0,
            "projection_step_s": 60.0,
        }
    )
    est = ZoneEstimator(settings, counters=1, mean_service_s=100)
    # two waiting throughout, a departure and an arrival every 40 s: mu = lambda = 1/40
    feed(est, [msg(40 * k, 2, 2 + k, k, seq=k) for k in range(5)])
    assert est.estimate(T0 + 160).predicted_wait_s == pytest.approx(3 * 40)  # shown at 160
    # the person who joined at 160 waited 240 s, twice the 120 s shown: kappa = 2
    # (a 240 s gap: not used for rates)
    feed(est, [msg(400, 2, 6, 4, dwells=(240.0,), seq=5)])
    e = est.estimate(T0 + 400)
    assert e.predicted_wait_s == pytest.approx(2 * 120)
    # arrivals match the service rate: the queue stays at 2, every joiner waits 2 x 120 s
    assert e.projected_waits_s == pytest.approx((240.0, 240.0, 240.0))
    plain = ZoneEstimator(settings.model_copy(update={"calibrate_projection": False}), 1, 100)
    feed(plain, [msg(40 * k, 2, 2 + k, k, seq=k) for k in range(5)])
    plain.estimate(T0 + 160)
    feed(plain, [msg(400, 2, 6, 4, dwells=(240.0,), seq=5)])
    assert plain.estimate(T0 + 400).projected_waits_s == pytest.approx((120.0, 120.0, 120.0))


def test_current_waits_quantiles_age_and_priority_arrival_rate() -> None:
    # the edge's quantiles of the current dwells, aged by the time since the message
    # like the oldest; priority arrivals = share x the arrival trend
    est = ZoneEstimator(RAW, counters=1, mean_service_s=60, priority_share=0.25)
    m0 = msg(0, 3, 3, 0, dwell_max=50)
    m1 = msg(40, 3, 5, 2, dwell_max=90).model_copy(
        update={"dwell_p50_s": 30.0, "dwell_p90_s": 70.0}
    )
    feed(est, [m0, m1])
    e = est.estimate(T0 + 50)
    assert e.oldest_wait_s == pytest.approx(100.0)
    assert (e.waiting_p50_s, e.waiting_p90_s) == (pytest.approx(40.0), pytest.approx(80.0))
    # arrivals: 2 in 40 s -> 0.05/s; a quarter of them priority
    assert e.arrival_rate_per_s == pytest.approx(0.05)
    assert e.priority_arrival_rate_per_s == pytest.approx(0.0125)
    # without a priority class: 0; without quantiles from the edge: None
    plain = ZoneEstimator(RAW, counters=1, mean_service_s=60)
    feed(plain, [m0, msg(40, 3, 5, 2, dwell_max=90)])
    e = plain.estimate(T0 + 50)
    assert e.priority_arrival_rate_per_s == 0.0
    assert e.waiting_p50_s is None and e.waiting_p90_s is None


def test_the_arrival_trend_ages_across_a_gap_it_did_not_observe() -> None:
    # trend time constant 600 s. Yesterday evening: 6 arrivals a minute for 10 minutes;
    # then nothing is received for 15 h (closed); this morning 1 a minute for 3 min.
    settings = RAW.model_copy(update={"trend_window_s": 600.0})
    est = ZoneEstimator(settings, counters=2, mean_service_s=300)
    evening = [msg(60.0 * k, 1, 6 * k, 6 * k) for k in range(11)]
    feed(est, evening)
    night = 15 * 3600.0
    morning = [msg(600 + night + 60.0 * k, 1, 60 + k, 60 + k) for k in range(4)]
    feed(est, morning)
    # the evening's weights aged by exp(-15 h / 600 s) = 0 (not merely frozen): the
    # trend is the morning's 3 arrivals over its 180 s
    assert est.arrival_trend() == pytest.approx(1 / 60, rel=1e-6)
    # a gap of one window keeps e^-1 of what was seen before it: sums of arrivals and
    # observed seconds of the EWMA, each decayed, then the morning's added
    est = ZoneEstimator(settings, counters=2, mean_service_s=300)
    feed(est, evening)
    feed(est, [msg(600 + 600 + 60.0 * k, 1, 60 + k, 60 + k) for k in range(4)])
    d = math.exp(-60 / 600)
    before_a = sum(6 * d**k for k in range(10))  # arrivals seen in the evening, aged
    before_s = sum(60 * d**k for k in range(10))
    after_a = sum(d**k for k in range(3))
    after_s = sum(60 * d**k for k in range(3))
    gap = math.exp(-600 / 600)
    expected = (before_a * gap * d**3 + after_a) / (before_s * gap * d**3 + after_s)
    assert est.arrival_trend() == pytest.approx(expected, rel=1e-6)


def test_people_passing_to_free_counters_are_not_busy_time() -> None:
    # A free counter calls the next customer within seconds: somebody who stood in
    # the queue 8 s and left did not leave at full capacity. Five such passes, then
    # an established queue (oldest >= busy_min_wait_s, 30 s) served once every 10 s.
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    msgs = [msg(0, 0, 0, 0)]
    for k in range(5):
        msgs += [msg(20 * k + 10, 1, k + 1, k, dwell_max=0.0)]
        msgs += [msg(20 * k + 18, 0, k + 1, k + 1)]
    # four arrive at 100; the heartbeat at 140 sees the oldest at 40 s
    msgs += [msg(100, 4, 9, 5, dwell_max=0.0), msg(140, 4, 9, 5, dwell_max=40.0)]
    msgs += [msg(140 + 10 * j, 4, 9 + j, 5 + j, dwell_max=40.0 + 10 * j) for j in range(1, 6)]
    feed(est, msgs)
    e = est.estimate(T0 + 190)
    # busy: only 140 -> 190 (the interval 100 -> 140 started with the oldest at 0 s):
    # 5 departures in 50 s. Counting the passes as busy gave (5 + 5) / (40 + 40 + 50).
    assert e.method == "observed"
    assert e.service_rate_per_s == pytest.approx(5 / 50)
    # four waiting, residual 1 / mu: (4 + 1) / 0.1
    assert e.predicted_wait_s == pytest.approx(50.0)


def classified_msg(
    t: float,
    people: int,
    departures: int,
    starts: int,
    dwell_max: float | None,
    unseen: int | None = 0,
) -> ZoneMessage:
    base = msg(t, people, 5, departures, dwell_max=dwell_max)
    return base.model_copy(
        update={
            "service_starts_total": starts,
            "walk_outs_total": 0,
            "departures_unseen_total": unseen,
        }
    )


def test_a_service_start_classified_after_the_queue_emptied_is_still_one() -> None:
    # The edge classifies a departure up to its transit time after it left, so each
    # service start below arrives 5 s after its departure, the last one once the
    # queue is empty. Five people served, one every 10 s, none walked out.
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    msgs = [classified_msg(0, 5, 0, 0, 60.0)]
    for k in range(1, 5):
        msgs += [classified_msg(10 * k, 5 - k, k, k - 1, 60.0 + 10 * k)]
        msgs += [classified_msg(10 * k + 5, 5 - k, k, k, 65.0 + 10 * k)]
    msgs += [classified_msg(50, 0, 5, 4, None), classified_msg(55, 0, 5, 5, None)]
    feed(est, msgs)
    e = est.estimate(T0 + 55)
    # all five starts belong to the busy time 0 -> 50 s: S / B = 5 / 50, from the
    # classified starts. Booking each by the message it arrived in counted 5 exits as
    # unclassified and 4 as starts: the split was not trusted ("observed").
    assert e.method == "service_starts"
    assert e.service_rate_per_s == pytest.approx(5 / 50)
    assert e.walkout_share == 0.0
    assert e.abandon_rate_per_s == 0.0


def test_departures_never_classified_count_as_unseen_after_the_lag() -> None:
    # An edge that sends starts and walk-outs but not departures_unseen_total: of 18
    # departures (one every 10 s) the first four are classified at once as service
    # starts, the other 14 never (counters on another camera, say).
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    msgs = [classified_msg(0, 5, 0, 0, 60.0, unseen=None)]
    msgs += [
        classified_msg(10 * k, 5, k, min(k, 4), 60.0 + 10 * k, unseen=None) for k in range(1, 19)
    ]
    feed(est, msgs)
    # at 180 s the eight that left by 120 s are overdue (classify_lag_s 60 s), the six
    # since may still be classified: 4 starts of 12 exits, a quarter or more, S / B
    e = est.estimate(T0 + 180)
    assert e.method == "service_starts"
    assert e.service_rate_per_s == pytest.approx(4 / 180)
    # heartbeats until 250 s: all 14 are unseen, 4 starts < a quarter of 18 exits
    feed(
        est,
        [classified_msg(180 + 10 * k, 5, 18, 4, 240.0 + 10 * k, unseen=None) for k in range(1, 8)],
    )
    e = est.estimate(T0 + 250)
    assert e.method == "observed"
    assert e.service_rate_per_s == pytest.approx(18 / 250)


def test_in_order_departures_are_those_ahead_of_everyone_still_waiting() -> None:
    assert in_order_departures([300.0], 1, 4, 295.0) == 1  # the head, called
    assert in_order_departures([120.0], 1, 4, 295.0) == 0  # a lost track mid-queue
    assert in_order_departures([300.0, 3.0], 2, 4, 296.0) == 1  # the head and a phantom
    assert in_order_departures([294.0], 1, 3, 295.5) == 1  # within the 2 s tolerance
    assert in_order_departures([293.0], 1, 3, 295.5) == 0
    assert in_order_departures([120.0], 1, 0, None) == 1  # nobody remains
    assert in_order_departures([], 2, 3, 100.0) == 2  # no dwells sent: all count
    assert in_order_departures([50.0], 3, 3, 100.0) == 2  # one judged, two without a dwell
    assert in_order_departures([], 0, 3, 100.0) == 0


def test_lost_tracks_in_the_queue_do_not_count_as_services() -> None:
    # Four wait throughout. Every 60 s the head is called (their dwell is the longest);
    # 30 s after each call a track in the middle of the queue is lost and restarts
    # (a departure with a short dwell and an arrival; the head stays the oldest).
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    msgs = [msg(0, 4, 4, 0, dwell_max=100.0)]
    for k in range(1, 9):
        head_called = k % 2 == 0
        dwell = 100.0 + 30 * k if head_called else 10.0 * k
        oldest = 100.0 + 30 * k - (50 if head_called else 0)
        msgs.append(msg(30 * k, 4, 4 + k, k, dwells=(dwell,), dwell_max=oldest))
    feed(est, msgs)
    e = est.estimate(T0 + 240)
    # 4 calls in 240 s of busy time, not 8 departures
    assert e.method == "observed"
    assert e.service_rate_per_s == pytest.approx(4 / 240)
    assert e.predicted_wait_s == pytest.approx((4 + 1) / (4 / 240))
    # the rule off: every departure is a service, as before
    est = ZoneEstimator(
        RAW.model_copy(update={"in_order_departures": False}), counters=2, mean_service_s=300
    )
    feed(est, msgs)
    assert est.estimate(T0 + 240).service_rate_per_s == pytest.approx(8 / 240)


def test_departures_an_edge_never_classifies_do_not_pile_up() -> None:
    # An edge that sends departures_unseen_total but drops a classification now and
    # then: a collector runs for weeks, so nothing may wait for it forever. Here no
    # departure is ever classified (all counters stay at 0) for 10 minutes.
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    feed(est, [classified_msg(10 * k, 5, k, 0, 60.0 + 10 * k) for k in range(61)])
    # only the departures of the last classify_lag_s (60 s) may still be classified:
    # those that left at 540, 550, ..., 600 s
    assert len(est._unclassified) == 7
    # and none of the dropped ones counted as unseen: the edge counts those itself
    assert est._busy_unknown == 0.0


def test_an_oldest_occupant_passed_by_eight_departures_is_read_as_stuck() -> None:
    """A track that never leaves (a stationary false detection): 1 person stays from T0
    while 8 others arrive and leave one by one, each younger than it."""
    settings = RAW.model_copy(update={"prior_departures": 5.0})
    est = ZoneEstimator(settings, counters=1, mean_service_s=60)
    feed(est, [msg(0, 1, 1, 0, dwell_max=0.0)])
    arrivals = departures = 1
    for k in range(1, 9):
        t = 100.0 * k
        arrivals += 1
        feed(est, [msg(t - 50, 2, arrivals, departures - 1, dwell_max=t - 50)])
        departures += 1
        # the newcomer leaves after 50 s; the stuck one (dwell t) stays
        feed(est, [msg(t, 1, arrivals, departures - 1, dwells=(50.0,), dwell_max=t)])
        e = est.estimate(T0 + t)
        if k < 8:  # passed by k departures: still the head
            assert (e.queue_length, e.oldest_wait_s) == (1, pytest.approx(t))
    # the 8th departure that passed it: one person fewer, no oldest occupant
    e = est.estimate(T0 + 800)
    assert (e.queue_length, e.oldest_wait_s, e.predicted_wait_s) == (0, None, 0.0)
    # 3 more join: 4 in the zone, the stuck one the oldest; the others' longest wait is
    # read from the median (the 90th percentile would still hold the stuck track)
    busy = msg(850, 4, arrivals + 3, departures - 1, dwell_max=850.0).model_copy(
        update={"dwell_p50_s": 40.0, "dwell_p90_s": 600.0}
    )
    feed(est, [busy])
    e = est.estimate(T0 + 850)
    assert (e.queue_length, e.oldest_wait_s, e.waiting_p90_s) == (3, pytest.approx(40.0), None)
    arrivals += 3
    # everybody leaves (the zone empties): the tracking starts over
    feed(est, [msg(900, 0, arrivals, departures + 3, dwells=(900.0,))])
    feed(est, [msg(910, 1, arrivals + 1, departures + 3, dwell_max=5.0)])
    assert est.estimate(T0 + 910).oldest_wait_s == pytest.approx(5.0)
    # switched off: the oldest stays the head whatever passes it
    off = ZoneEstimator(
        settings.model_copy(update={"stuck_after_departures": 0}), counters=1, mean_service_s=60
    )
    feed(off, [msg(0, 1, 1, 0, dwell_max=0.0), msg(800, 1, 9, 8, dwell_max=800.0)])
    assert off.estimate(T0 + 800).oldest_wait_s == pytest.approx(800.0)


def test_an_oldest_occupant_passed_by_four_who_did_not_wait_is_read_as_stuck() -> None:
    """A free counter calls the head first: newcomers called within busy_min_wait_s (30 s)
    while the oldest stays say it is not waiting for a counter (a track left behind)."""
    settings = RAW.model_copy(update={"prior_departures": 5.0})
    est = ZoneEstimator(settings, counters=1, mean_service_s=60)
    feed(est, [msg(0, 1, 1, 0, dwell_max=0.0)])
    arrivals = departures = 1
    for k, stay in enumerate((40.0, 8.0, 8.0, 8.0, 8.0), start=1):
        t = 100.0 * k
        arrivals += 1
        feed(est, [msg(t - stay, 2, arrivals, departures - 1, dwell_max=t - stay)])
        departures += 1
        feed(est, [msg(t, 1, arrivals, departures - 1, dwells=(stay,), dwell_max=t)])
        e = est.estimate(T0 + t)
        # 40 s is a wait (not a quick pass); then three passes of 8 s: still the head
        if k < 5:
            assert (e.queue_length, e.oldest_wait_s) == (1, pytest.approx(t)), k
    # the fourth who did not wait: one person fewer, no oldest occupant
    e = est.estimate(T0 + 500)
    assert (e.queue_length, e.oldest_wait_s) == (0, None)
    # switched off: five passers are short of the eight departures of the other rule
    off = ZoneEstimator(
        settings.model_copy(update={"stuck_after_quick_passes": 0}),
        counters=1,
        mean_service_s=60,
    )
    feed(off, [msg(0, 1, 1, 0, dwell_max=0.0)])
    for k in range(1, 6):
        t = 100.0 * k
        feed(off, [msg(t - 8, 2, k + 1, k - 1, dwell_max=t - 8)])
        feed(off, [msg(t, 1, k + 1, k, dwells=(8.0,), dwell_max=t)])
    assert off.estimate(T0 + 500).oldest_wait_s == pytest.approx(500.0)
