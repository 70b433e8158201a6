"""The fluid projection, class-aware waits and the closing-time backlog, against hand
computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lobbywatch.server.forecast import (
    Projection,
    breach_risk_by_position,
    fluid_queue,
    gamma_sf,
    normal_cdf,
    ordinary_and_priority_waits,
    project,
    unserved_by,
    wait_behind,
    waited_by_position,
)


def test_wait_behind_a_queue_with_and_without_walk_outs() -> None:
    # 4 ahead + residual 1 at 0.01/s: 500 s
    assert wait_behind(4, 0.01, 0.0, 1.0) == pytest.approx(500.0)
    # 4 people ahead, each walking out at 0.001/s: the queue drains at 0.01 + 0.004
    assert wait_behind(4, 0.01, 0.001, 1.0) == pytest.approx(5 / 0.014)
    # nobody ahead: a counter is free; half a person phases the residual in
    assert wait_behind(0, 0.01, 0.0, 1.0) == 0.0
    assert wait_behind(0.5, 0.01, 0.0, 1.0) == pytest.approx(100.0)


def test_fluid_queue_solves_each_step_exactly_and_never_goes_negative() -> None:
    # no walk-outs: Q grows by (0.02 - 0.01) * 60 = 0.6 per minute
    q = fluid_queue(5, np.array([0.02, 0.02]), 0.01, 0.0, 60.0)
    assert q == pytest.approx([5.0, 5.6, 6.2])
    # theta = 0.001: Q(60) = a/theta + (Q0 - a/theta) e^{-0.06}, a = 0.01
    q = fluid_queue(5, np.array([0.02]), 0.01, 0.001, 60.0)
    assert q[1] == pytest.approx(10 - 5 * math.exp(-0.06))
    # a draining queue stops at 0 and stays there while arrivals < capacity
    q = fluid_queue(1, np.array([0.0, 0.0, 0.005]), 0.01, 0.0, 60.0)
    assert q == pytest.approx([1.0, 0.4, 0.0, 0.0])


def test_projection_breach_time_and_wait_at_interpolate_on_the_grid() -> None:
    p = Projection(step_s=60.0, queue=np.zeros(4), waits_s=np.array([300.0, 420, 540, 660]))
    # 600 s is reached halfway between the joining times 120 s and 180 s
    assert p.first_reaching(600.0, 1800.0) == pytest.approx(150.0)
    assert p.first_reaching(600.0, 120.0) is None
    assert p.first_reaching(200.0, 1800.0) == 0.0
    assert p.wait_at(90.0) == pytest.approx(480.0)  # halfway between 60 s and 120 s
    assert p.max_wait_s == 660.0


def test_project_grows_the_wait_by_the_net_inflow() -> None:
    # 5 waiting, 0.02/s arriving, capacity 0.01/s: +0.6 people and +60 s of wait per minute
    p = project(5, np.full(3, 0.02), 0.01, 0.0, 1.0, 60.0)
    assert p.waits_s == pytest.approx([600.0, 660.0, 720.0, 780.0])
    assert p.first_reaching(700.0, 1800.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="capacity_per_s must be > 0"):
        project(5, np.full(3, 0.02), 0.0, 0.0, 1.0)


def test_class_aware_waits_of_ordinary_and_priority_customers() -> None:
    # 5 waiting, capacity 0.02/s, priority arrivals 0.004/s served first: the queue
    # ahead of an ordinary customer drains at 0.016/s -> (5 + 1) / 0.016 = 375 s; a
    # priority customer waits for the residual at that rate: 1 / 0.016 = 62.5 s
    ordinary, priority = ordinary_and_priority_waits(5, 0.02, 0.004, 1.0)
    assert ordinary == pytest.approx(375.0)
    assert priority == pytest.approx(62.5)
    # no priority arrivals: both are the FCFS wait (priority only waits the residual)
    ordinary, priority = ordinary_and_priority_waits(5, 0.02, 0.0, 1.0)
    assert ordinary == pytest.approx(300.0) and priority == pytest.approx(50.0)
    assert ordinary_and_priority_waits(0, 0.02, 0.004, 1.0) == (0.0, 0.0)


def test_unserved_before_closing() -> None:
    # 10 waiting, 0.01/s for 600 s: 6 start service, 4 do not
    assert unserved_by(10, 0.01, 600.0) == 4
    assert unserved_by(5, 0.01, 600.0) == 0
    assert unserved_by(6.5, 0.01, 600.0) == 1


def test_normal_cdf_matches_the_table() -> None:
    got = normal_cdf(np.array([0.0, 1.96, -1.0]))
    assert got == pytest.approx([0.5, 0.975002, 0.158655], abs=2e-6)


def test_gamma_tail_by_wilson_hilferty() -> None:
    # exponential (k = 1), mean 60 s, x = 30 s: z = (0.5^(1/3) - 8/9) / (1/3) = -0.28557,
    # 1 - Phi(z) = 0.61239 (exact e^-0.5 = 0.60653: within 0.01)
    got = gamma_sf(np.array([30.0, 0.0, -5.0]), np.array([60.0] * 3), np.array([3600.0] * 3))
    assert got[0] == pytest.approx(0.61239, abs=1e-4)
    assert abs(got[0] - math.exp(-0.5)) < 0.01
    assert got[1:].tolist() == [1.0, 1.0]  # nothing left of the budget: certain
    # k = 100 at its mean: z = (1/900) / (1/30) = 0.0333, tail 0.4867
    assert gamma_sf(np.array([100.0]), np.array([100.0]), np.array([100.0]))[0] == pytest.approx(
        0.4867, abs=1e-4
    )


def test_waits_so_far_by_position_from_the_dwell_quantiles() -> None:
    # 5 people, ranks 0..4 (youngest..oldest): p50 at rank 2, p90 at rank 3.6, max at 4;
    # below the median along the p50-p90 line: 300 - 1.25 * 200 = 50 at rank 0.
    # rank 3 = 300 + (1 / 1.6) * 200 = 425; rank 1 = 50 + (1 / 2) * 250 = 175.
    got = waited_by_position(5, 600, 300, 500)
    assert got.tolist() == pytest.approx([600, 425, 300, 175, 50])  # head first
    assert waited_by_position(1, 90, 80, 85).tolist() == [90]
    assert waited_by_position(0, 90, None, None).tolist() == [90]  # the count missed them
    # no quantiles: from the oldest down to 0
    assert waited_by_position(3, 300, None, None).tolist() == pytest.approx([300, 150, 0])
    # a long median extrapolates below 0: floored
    assert waited_by_position(3, 300, 100, 290).tolist() == pytest.approx([300, 100, 0])


def test_breach_risk_by_position_erlang_priority_and_walk_outs() -> None:
    mu = 1 / 60  # one completion a minute, T = 600 s
    # head, waited 570 s: P(no completion in 30 s) = e^-0.5 = 0.607 (WH: 0.6124);
    # position 1, waited 480 s: P(Pois(2) <= 1) = 3 e^-2 = 0.406 (WH: 0.4068);
    # position 2, already 650 s: 1
    risk = breach_risk_by_position(np.array([570.0, 480.0, 650.0]), 600, mu)
    assert risk.tolist() == pytest.approx([0.6124, 0.4068, 1.0], abs=1e-3)
    # priority arrivals 1 / 240 s: drift 1/80, variance rate 1/60 + 1/240 = 1/48;
    # position 1: mean 2 * 80 = 160 s, var 2 * (1/48) * 80^3 = 21333 (k = 1.2), x = 120 s:
    # z = (0.75^(1/3) - (1 - 1 / 10.8)) / sqrt(1 / 10.8) = 0.0038, tail 0.4985
    risk = breach_risk_by_position(np.array([570.0, 480.0]), 600, mu, 1 / 240)
    assert risk[1] == pytest.approx(0.4985, abs=1e-3)
    assert risk[1] > 0.4068  # later priority customers raise an ordinary one's risk
    # giving up first (1 / 600 s per person): the head's 0.6124 x e^(-30/600) = 0.5825
    risk = breach_risk_by_position(np.array([570.0]), 600, mu, 0, 1 / 600, 1.0, 1.0, True)
    assert risk[0] == pytest.approx(0.5825, abs=1e-3)


def test_a_person_behind_the_head_can_be_the_one_at_risk() -> None:
    # 4 waiting, oldest 500 s, p50 420, p90 480: waits so far 500, 445, 395, 345 (head
    # first). Erlang tails P(Pois(mu x) <= j) with x = 600 - waited: 0.189, 0.271,
    # 0.337, 0.386: the last person in the queue is the most at risk.
    waited = waited_by_position(4, 500, 420, 480)
    assert waited.tolist() == pytest.approx([500, 445, 395, 345])
    risk = breach_risk_by_position(waited, 600, 1 / 60)
    assert risk.tolist() == pytest.approx([0.189, 0.271, 0.337, 0.386], abs=5e-3)
    assert int(np.argmax(risk)) == 3


def test_breach_risk_scaled_by_the_calibration() -> None:
    # kappa = 2 doubles every remaining wait: P(2 W > 30) = P(W > 15) for the head's
    # exponential (mean 60 s): WH z = (0.25^(1/3) - 8/9) * 3 = -0.7768, tail 0.7814
    # (exact e^-0.25 = 0.7788)
    got = breach_risk_by_position(np.array([570.0]), 600, 1 / 60, time_scale=2.0)
    assert got[0] == pytest.approx(0.7814, abs=1e-3)
    assert abs(got[0] - math.exp(-0.25)) < 0.01
