"""Wait projection for the next minutes: a fluid model of a many-server queue with
abandonment (pure functions, numpy; time is an argument).

The queue of people waiting, ``Q(t)``, is treated as a fluid (Mandelbaum, Massey
and Reiman 1998; the deterministic limit of Erlang-A used for time-varying
many-server queues by Whitt 2006 and by Ibrahim and Whitt's delay predictors):

    dQ/dt = lambda(t) - mu * 1{Q > 0} - theta * Q

with ``lambda(t)`` the forecast arrival rate (people/s), ``mu`` the service capacity
of the open counters (service starts/s while people wait) and ``theta`` the
abandonment rate per waiting person (1 / mean patience; walk-outs per
waiting-person-second). The arrival forecast is piecewise constant per
``step_s``; within a step the equation is linear and solved exactly, and ``Q`` is
clamped at 0 (the counters then idle).

A customer joining behind ``A`` people starts service after the ``A`` ahead of
them (plus the residual until the first counter frees, ``r``, in units of
service completions; see ``estimator.wait_for_queue``) have left the queue. The
queue ahead leaves at the rate it leaves now: served at ``mu``, walking out at
``theta A`` (FCFS: the people who give up are the ones who have waited longest,
i.e. ahead of a newcomer):

    W(A) = (A + r) / (mu + theta A)

(the Erlang-A queue-length predictor of Ibrahim and Whitt 2009 with the exit
rate frozen at its current value; with exponential patience the exact form is
``ln(1 + theta A / mu) / theta``, which drains slower because the queue ahead
shrinks; patience in a bank lobby is closer to a deadline, 10-20 min, than
exponential, and the people at the deadline are the ones ahead).

Why a fluid model and not a simulation: it is deterministic, costs
microseconds per zone per evaluation, and its inputs (``lambda``, ``mu``,
``theta``) are exactly what the collector estimates; a
simulation would add sampling noise to an alert rule whose main error is the
input estimates, not the queue's randomness (which the persistence clocks
absorb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def wait_behind(
    ahead: float, capacity_per_s: float, abandon_per_s: float, residual: float
) -> float:
    """Expected wait (s) of a customer joining behind ``ahead`` people:
    ``(A + r) / (mu + theta A)``.

    ``ahead`` may be fractional (fluid); ``ahead <= 0`` gives 0 (a counter is
    free), and the residual ``r`` is phased in over the first person
    (``min(ahead, 1) * r``) so the wait is continuous in ``ahead``.
    """
    if ahead <= 0:
        return 0.0
    drain = capacity_per_s + abandon_per_s * ahead
    return (ahead + min(ahead, 1.0) * residual) / drain


def fluid_queue(
    queue: float,
    arrivals_per_s: np.ndarray,
    capacity_per_s: float,
    abandon_per_s: float,
    step_s: float,
) -> np.ndarray:
    """Queue length at ``0, step, 2 step, ...`` (``len(arrivals_per_s) + 1`` values).

    ``arrivals_per_s[k]`` is the arrival rate during step ``k`` (float64, people/s).
    Within a step the ODE is linear, ``dQ/dt = a - theta Q`` with ``a = lambda - mu``,
    and is solved exactly: ``Q(t) = a/theta + (Q0 - a/theta) e^{-theta t}`` (``Q0 + a t``
    for ``theta = 0``), clamped at 0 (with ``a < 0`` an empty queue stays empty).
    """
    lam = np.asarray(arrivals_per_s, dtype=np.float64)
    out = np.empty(len(lam) + 1)
    q = max(0.0, float(queue))
    out[0] = q
    theta = abandon_per_s
    decay = math.exp(-theta * step_s)
    for k, rate in enumerate(lam.tolist()):
        a = rate - capacity_per_s
        if theta > 1e-12:
            q = a / theta + (q - a / theta) * decay
        else:
            q = q + a * step_s
        q = max(0.0, q)
        out[k + 1] = q
    return out


def waits_behind(
    ahead: np.ndarray,
    capacity_per_s: float,
    abandon_per_s: float,
    residual: float | np.ndarray,
) -> np.ndarray:
    """:func:`wait_behind` for an array of queue lengths (float64, seconds); ``residual``
    may be an array of the same length (a residual per joining time)."""
    a = np.maximum(np.asarray(ahead, dtype=np.float64), 0.0)
    return (a + np.minimum(a, 1.0) * residual) / (capacity_per_s + abandon_per_s * a)


@dataclass(frozen=True, slots=True)
class Projection:
    """Projected waits of customers joining at ``0, step, 2 step...`` seconds from now."""

    step_s: float
    #: queue length at each joining time, float64
    queue: np.ndarray
    #: expected wait of a customer joining at each time, seconds, float64
    waits_s: np.ndarray

    def wait_at(self, offset_s: float) -> float:
        """Projected wait of a customer joining ``offset_s`` from now (linear interpolation)."""
        w = self.waits_s
        pos = min(max(offset_s / self.step_s, 0.0), len(w) - 1.0)
        k = min(int(pos), len(w) - 2) if len(w) > 1 else 0
        if len(w) == 1:
            return float(w[0])
        return float(w[k] + (w[k + 1] - w[k]) * (pos - k))

    def first_reaching(self, threshold_s: float, within_s: float) -> float | None:
        """Earliest joining offset (s) within ``within_s`` whose wait reaches ``threshold_s``.

        Linear interpolation between grid points; ``None`` if none does.
        """
        w = self.waits_s
        for k in range(len(w)):
            t = k * self.step_s
            if t > within_s:
                return None
            if w[k] >= threshold_s:
                if k == 0:
                    return 0.0
                frac = (threshold_s - w[k - 1]) / (w[k] - w[k - 1])
                return min((k - 1 + frac) * self.step_s, within_s)
        return None

    @property
    def max_wait_s(self) -> float:
        return float(self.waits_s.max()) if len(self.waits_s) else 0.0


def project(
    queue: float,
    arrivals_per_s: np.ndarray,
    capacity_per_s: float,
    abandon_per_s: float,
    residual: float | np.ndarray,
    step_s: float = 60.0,
) -> Projection:
    """The fluid projection: queue and joiner's wait at each step (see the module docstring).

    Args:
        queue: people waiting now.
        arrivals_per_s: forecast arrival rate per step, shape (n,), people/s.
        capacity_per_s: mu > 0, service starts per second while people wait.
        abandon_per_s: theta >= 0, walk-outs per waiting person per second.
        residual: r, mean time until the first counter frees in units of 1/mu; or one
            per joining time (n + 1 values: the counters' service progress now fades
            out for later joiners).
        step_s: grid step, seconds.

    Returns:
        n + 1 queue lengths and waits (joining at 0 .. n * step_s).
    """
    if capacity_per_s <= 0:
        raise ValueError("capacity_per_s must be > 0")
    q = fluid_queue(queue, arrivals_per_s, capacity_per_s, abandon_per_s, step_s)
    waits = waits_behind(q, capacity_per_s, abandon_per_s, residual)
    return Projection(step_s=step_s, queue=q, waits_s=waits)


def unserved_by(queue: float, capacity_per_s: float, seconds_left: float) -> int:
    """People of ``queue`` projected not to start service within ``seconds_left``.

    The counters start ``mu * seconds_left`` services in that time (every
    waiting customer is ahead of anyone arriving later, walk-outs ignored: it
    errs towards telling the manager of one person too many, not too few).
    """
    served = capacity_per_s * max(0.0, seconds_left)
    return max(0, math.ceil(queue - served - 1e-9))


def ordinary_and_priority_waits(
    queue: float,
    capacity_per_s: float,
    priority_arrivals_per_s: float,
    residual: float,
    abandon_per_s: float = 0.0,
) -> tuple[float, float]:
    """(ordinary, priority) expected waits (s) of a customer joining now; non-preemptive
    priority, the priority class served first.

    An ordinary customer waits for everybody ahead, and priority customers who
    arrive while they wait are served before them: the ``queue`` ahead drains at
    ``mu - lambda_p`` instead of ``mu`` (each priority arrival takes one service
    slot), ``W_o = (L + r) / (mu - lambda_p)``. A priority customer waits only for
    the priority customers ahead (by Little's law about ``lambda_p * W_p`` of them)
    and the residual: ``W_p = r / (mu - lambda_p)``.
    Both fall back to the plain wait when ``lambda_p >= mu`` is not plausible
    (then ``mu - lambda_p`` is floored at ``mu / 4``). With ``queue <= 0`` both are 0.

    Source: the M/G/c non-preemptive priority "delay busy period" argument (Kella
    and Yechiali 1985) in its fluid form.
    """
    if queue <= 0:
        return 0.0, 0.0
    eff = max(capacity_per_s - max(0.0, priority_arrivals_per_s), capacity_per_s / 4)
    ordinary = wait_behind(queue, eff, abandon_per_s, residual)
    priority = min(queue, 1.0) * residual / eff
    return ordinary, priority


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (erf by Abramowitz and Stegun 7.1.26, |error| < 1.5e-7;
    numpy has no erf and scipy is not a dependency)."""
    z = np.asarray(x, dtype=np.float64) / math.sqrt(2.0)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-a * a)
    return 0.5 * (1.0 + np.sign(z) * erf)


def gamma_sf(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``P(G > x)`` for a Gamma variable with this mean and variance (vectorised).

    Wilson and Hilferty (1931): ``(G / mean)^(1/3)`` is nearly normal with mean
    ``1 - 1/(9k)`` and variance ``1/(9k)``, shape ``k = mean^2 / var``. Exact in the
    limit of large ``k``; for ``k = 1`` (an exponential) the error is below 0.01.
    ``x <= 0`` gives 1.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    k = m * m / v
    h = 1.0 / (9.0 * k)
    ratio = np.maximum(x, 0.0) / m
    z = (np.cbrt(ratio) - (1.0 - h)) / np.sqrt(h)
    return np.where(x <= 0, 1.0, 1.0 - normal_cdf(z))


def waited_by_position(
    people: int, oldest_s: float, p50_s: float | None, p90_s: float | None
) -> np.ndarray:
    """How long each person waiting has waited so far, head of the queue first (float64).

    Under FCFS the head is the oldest occupant (``oldest_s``); the edge's quantiles
    of the current dwells place the others: with ``n`` people sorted by dwell, the
    quantile ``q`` sits at rank ``q (n - 1)`` (linear interpolation, as the edge
    computes it), so the ranks ``0.5 (n-1)``, ``0.9 (n-1)`` and ``n - 1`` have
    ``p50``, ``p90`` and ``oldest``; between them the waits are interpolated, and
    below the median they are extrapolated along the p50-p90 line (arrivals at a
    steady rate give dwells linear in rank), floored at 0. Without quantiles the
    waits fall linearly from ``oldest`` to 0.
    """
    n = max(int(people), 1)
    if n == 1:
        return np.array([max(0.0, oldest_s)])
    top = n - 1.0
    if p50_s is None or p90_s is None:
        xp = np.array([0.0, top])
        fp = np.array([0.0, oldest_s])
    else:
        p50 = min(p50_s, oldest_s)
        p90 = min(max(p90_s, p50), oldest_s)
        youngest = min(max(0.0, p50 - 1.25 * (p90 - p50)), p50)
        xp = np.array([0.0, 0.5 * top, 0.9 * top, top])
        fp = np.array([youngest, p50, p90, oldest_s])
    ranks = np.arange(n - 1, -1, -1, dtype=np.float64)  # position 0 (head) = top rank
    return np.maximum(np.interp(ranks, xp, fp), 0.0)


def breach_risk_by_position(
    waited_s: np.ndarray,
    threshold_s: float,
    capacity_per_s: float,
    priority_arrivals_per_s: float = 0.0,
    abandon_per_s: float = 0.0,
    residual: float = 1.0,
    service_cv: float = 1.0,
    own_walk_out: bool = False,
    time_scale: float = 1.0,
    first_sd_s: float | None = None,
) -> np.ndarray:
    """Probability that each person waiting (head first) waits longer than ``threshold_s``.

    The person at position ``j`` (``j`` people ahead, all counters busy) starts
    service when the completions since now, minus the priority customers who
    arrive meanwhile and take a slot first, plus the people ahead who walk out,
    reach ``j + r``. Completions of ``c`` busy counters come at rate ``mu`` with a
    variance rate ``mu cv^2`` (renewal counting process; Poisson for cv = 1), priority
    arrivals are a Poisson stream of rate ``lambda_p``: the difference drifts at
    ``d = mu - lambda_p`` (floored at ``mu / 4``, as in the class-aware wait) plus
    ``theta j`` walk-outs ahead, with variance rate ``v = mu cv^2 + lambda_p``. Its
    first passage to ``n = j + r`` has mean ``n / d`` and variance ``n v / d^3``
    (first passage of a process with independent increments: Brownian/inverse
    Gaussian moments), matched here by a Gamma law (exactly Erlang(j+1, mu) for
    Poisson service, no priority, r = 1). Risk ``= P(remaining wait > T - waited)``;
    1 for someone already past T.

    ``first_sd_s``: the standard deviation of the time until the first counter frees,
    when the counters' service progress gives it (:mod:`service_progress`); the variance
    is then that of the first completion plus ``j v / d^3`` for the ``j`` after it.
    """
    w = np.asarray(waited_s, dtype=np.float64)
    j = np.arange(len(w), dtype=np.float64)
    mu = capacity_per_s
    lam_p = max(0.0, priority_arrivals_per_s)
    drift = max(mu - lam_p, mu / 4.0) + abandon_per_s * j
    n = np.maximum(j + residual, 1e-6)
    mean = n / drift
    rate_var = (mu * service_cv * service_cv + lam_p) / drift**3
    if first_sd_s is not None:
        var = np.maximum(first_sd_s * first_sd_s + j * rate_var, 1e-6 / (mu * mu))
    else:
        var = n * rate_var
    left = threshold_s - w
    # remaining waits scaled by ``time_scale`` (the calibration from realised waits):
    # P(scale x W > left) = P(W > left / scale)
    risk = gamma_sf(left / time_scale, mean, var)
    if own_walk_out and abandon_per_s > 0:
        # ...and does not give up first: a walk-out before T is no W1 breach
        risk = risk * np.exp(-abandon_per_s * np.maximum(left, 0.0))
    return risk
