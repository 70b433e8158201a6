"""The fluid projection, class-aware waits and the closing-time backlog, against hand
computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lobbywatch.server.forecast import (
    Projection,
    fluid_queue,
    ordinary_and_priority_waits,
    project,
    unserved_by,
    wait_behind,
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
