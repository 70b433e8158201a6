"""Walk-outs from the middle of the queue on edges that do not classify exits
(server/walkouts.py and the estimator's walk-out rate), hand-computed."""

from __future__ import annotations

import pytest
from test_estimator import RAW, T0, feed, msg

from lobbywatch.server.estimator import ZoneEstimator, mid_queue_dwells
from lobbywatch.server.walkouts import MidQueueWalkouts


def test_mid_queue_dwells_are_those_younger_than_someone_still_waiting() -> None:
    assert mid_queue_dwells([120.0], 1, 4, 295.0) == [120.0]
    assert mid_queue_dwells([300.0, 80.0], 2, 4, 296.0) == [80.0]  # the head and one
    assert mid_queue_dwells([293.5], 1, 3, 295.0) == []  # within the 2 s tolerance
    assert mid_queue_dwells([120.0], 1, 0, 295.0) == []  # nobody remains
    assert mid_queue_dwells([120.0], 1, 3, None) == []  # the head unknown
    assert mid_queue_dwells([50.0, 120.0], 1, 3, 295.0) == [120.0]  # this message's own


def test_a_mid_queue_departure_no_arrival_reacquires_is_a_walk_out() -> None:
    w = MidQueueWalkouts(window_s=5.0, min_dwell_s=60.0)
    assert w.observe(100.0, 0, [200.0]) == 0  # pending: its window is open
    assert w.observe(104.0, 0, []) == 0
    assert w.observe(105.5, 0, []) == 1  # 5.5 s, no arrival: a walk-out
    assert w.observe(106.0, 0, []) == 0  # counted once
    # a lost track: the new track 3 s after the old one ended
    assert w.observe(200.0, 0, [200.0]) == 0
    assert w.observe(203.0, 1, []) == 0
    assert w.observe(300.0, 0, []) == 0
    # the new track before the old one ended (in the same message too)
    assert w.observe(400.0, 1, []) == 0
    assert w.observe(404.0, 0, [150.0]) == 0
    assert w.observe(500.0, 1, [150.0]) == 0
    assert w.observe(600.0, 0, []) == 0
    # an arrival 6 s before is somebody else
    assert w.observe(700.0, 1, []) == 0
    assert w.observe(706.0, 0, [150.0]) == 0
    assert w.observe(720.0, 0, []) == 1
    # a young departure (a phantom) is not counted
    assert w.observe(800.0, 0, [30.0]) == 0
    assert w.observe(900.0, 0, []) == 0
    # a restart forgets what was pending
    assert w.observe(1000.0, 0, [200.0]) == 0
    w.reset()
    assert w.observe(1010.0, 0, []) == 0


def test_a_reacquired_person_leaving_from_mid_queue_is_no_walk_out() -> None:
    # Their new track is younger than people who joined after them: when a counter
    # calls them they seem to leave from the middle. Their track joined when an arrival
    # re-acquired them.
    w = MidQueueWalkouts(window_s=5.0, min_dwell_s=60.0, join_tolerance_s=3.0)
    assert w.observe(100.0, 0, [300.0]) == 0  # lost in mid-queue...
    assert w.observe(102.0, 1, []) == 0  # ...re-acquired at 102
    assert w.observe(400.0, 0, [299.0]) == 0  # joined at 101: that person, served
    assert w.observe(410.0, 0, []) == 0
    # lost again before being served: the chain goes on, from the newest arrival
    assert w.observe(500.0, 1, []) == 0  # the new track first...
    assert w.observe(502.0, 0, [150.0]) == 0  # ...of a person lost in mid-queue
    assert w.observe(600.0, 1, []) == 0
    assert w.observe(601.0, 0, [101.0]) == 0  # that new track (joined 500) lost again
    assert w.observe(700.0, 0, [100.0]) == 0  # the last one (joined 600) leaves
    assert w.observe(710.0, 0, []) == 0
    # a head lost and re-acquired (an in-order departure and an arrival), served later
    # out of order: no walk-out either
    assert w.observe(800.0, 1, [], in_order=1) == 0
    assert w.observe(1000.0, 0, [200.0]) == 0
    assert w.observe(1010.0, 0, []) == 0
    # without the re-acquisition it would have been one
    assert w.observe(1100.0, 0, [200.0]) == 0
    assert w.observe(1110.0, 0, []) == 1


def _cycles(reacquired: bool) -> list:
    # Four wait. Each minute the head is called (dwell 200 s) and a newcomer joins at
    # once; 30 s later somebody in the middle of the queue (dwell 80 s) leaves and
    # 15 s later a newcomer joins, or, reacquired, the same person's new track starts
    # 3 s later.
    msgs = [msg(0, 4, 4, 0, dwell_max=150.0)]
    arrivals, departures = 4, 0
    for j in range(4):
        t = 60.0 * j
        departures += 1
        msgs.append(msg(t + 30, 3, arrivals, departures, dwells=(80.0,), dwell_max=150.0))
        arrivals += 1
        msgs.append(msg(t + (33 if reacquired else 45), 4, arrivals, departures, dwell_max=150.0))
        arrivals += 1
        departures += 1
        msgs.append(msg(t + 60, 4, arrivals, departures, dwells=(200.0,), dwell_max=150.0))
    return msgs


ON = RAW.model_copy(update={"walk_outs_mid_queue": True})


def test_a_basic_edge_drains_the_queue_by_its_mid_queue_walk_outs() -> None:
    est = ZoneEstimator(ON, counters=2, mean_service_s=300)
    feed(est, _cycles(reacquired=False))
    e = est.estimate(T0 + 240)
    # mu: 4 heads called in 240 busy s; theta: 4 walk-outs over 4 x (4x30 + 3x15 + 4x15)
    # = 900 waiting person-s
    assert e.service_rate_per_s == pytest.approx(4 / 240)
    assert e.abandon_rate_per_s == pytest.approx(4 / 900)
    assert e.predicted_wait_s == pytest.approx(5 / (4 / 240 + 4 * 4 / 900))
    # lost tracks re-acquired within the window are nobody leaving
    est = ZoneEstimator(ON, counters=2, mean_service_s=300)
    feed(est, _cycles(reacquired=True))
    e = est.estimate(T0 + 240)
    assert e.abandon_rate_per_s == 0.0
    assert e.predicted_wait_s == pytest.approx(5 / (4 / 240))
    # the rule off (the default): no walk-out rate, as before
    est = ZoneEstimator(RAW, counters=2, mean_service_s=300)
    feed(est, _cycles(reacquired=False))
    assert est.estimate(T0 + 240).predicted_wait_s == pytest.approx(5 / (4 / 240))


def test_priority_customers_served_ahead_are_not_walk_outs() -> None:
    # a fifth of the customers are served first: up to 1/4 of an in-order service each
    # left mid-queue as a priority service, so 4 - 4/4 = 3 of the 4 are walk-outs
    est = ZoneEstimator(ON, counters=2, mean_service_s=300, priority_share=0.2)
    feed(est, _cycles(reacquired=False))
    e = est.estimate(T0 + 240)
    assert e.service_rate_per_s == pytest.approx(4 / 240 / 0.8)
    assert e.abandon_rate_per_s == pytest.approx(3 / 900)
