"""Service progress at the counters: how long until the first busy counter frees, from how
long each counter's current customer has already been served (pure logic, numpy; time
is always an argument).

The wait of a customer joining behind ``L`` people is ``(L + r) / mu``: ``L`` service
completions at the joint rate ``mu`` plus the time ``R`` until the first counter frees,
``r = mu E[R]``. A constant ``r`` (1 by default) is the exponential-service answer, for
which the time a customer has already spent at the counter says nothing. With the
lognormal service of a bank counter (cv 0.6-1.2) it says a lot: a counter whose
customer sat down 20 s ago is far from freeing, one whose customer has been served for
15 min of a 5 min mean is in the long tail and likely to stay there.

The edge publishes every service point (counter, desk) as a zone of its own, with the
current occupant's dwell (``dwell_max_s``) and the completed dwells (service durations).
So, at ``now``, the counters serving the queue are:

* busy with a known elapsed service ``e_k = dwell_max_s + (now - ts)`` (their latest
  message, no older than ``max_age_s``, says ``people >= 1``);
* open but without that information (no fresh message, idle while people wait, no
  dwell): their residual is the stationary one, the equilibrium excess of the service
  law, ``P(R > t) = E[(S - t)+] / E[S]`` (renewal theory: a counter observed at a random
  moment).

The residual of counter ``k`` is ``R_k = S - e_k | S > e_k`` (the conditional survival,
or residual life, of the service law), independent across counters, so

    E[min_k R_k] = integral_0^inf  prod_k P(S > e_k + t) / P(S > e_k)  x  P(R_eq > t)^u  dt

(``u`` counters without elapsed information), evaluated on a fixed grid of ``t``
(trapezoid rule, vectorised). For exponential service every factor is ``exp(-t / m)``
and ``E[min R] = m / c`` whatever the elapsed times (memoryless: ``r = 1``).

The service law is a lognormal fitted by log-moments: the mean ``m`` comes from the
capacity (``m = c / mu``, so ``r`` and ``mu`` agree), the log-variance ``sigma^2`` from
the completed counter dwells (exponentially decayed log-moments, shrunk to a prior cv of
1 with a few pseudo-observations, the cv clamped to a sane range). Its survival is
``P(S > x) = Q((ln x - nu) / sigma)`` with ``nu = ln m - sigma^2 / 2`` and ``Q`` the
standard normal tail, and its stop-loss transform ``E[(S - t)+] = m Q(z - sigma) - t Q(z)``,
``z = (ln t - nu) / sigma``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: integration grid in units of the mean service: fine near 0 (where the minimum of a few
#: residuals lives), geometric out to 200 means (the long tail of a lognormal residual)
_GRID_U = np.concatenate([np.linspace(0.0, 4.0, 401), np.geomspace(4.0, 200.0, 161)[1:]])
#: the lognormal's log-survival is tabulated on this grid (units of the mean; geometric
#: steps of 0.4 %) and interpolated: the estimator asks on every message
_TABLE_U = np.concatenate([[0.0], np.geomspace(1e-4, 1e3, 4000)])
#: elapsed services beyond this many means are taken as this many (the table's reach)
_MAX_ELAPSED_U = 500.0

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def norm_sf(z: np.ndarray) -> np.ndarray:
    """Standard normal tail ``Q(z) = P(N > z)``, vectorised, with a small *relative* error in
    the far tail too (:func:`norm_logsf`)."""
    return np.exp(norm_logsf(z))


def norm_logsf(z: np.ndarray) -> np.ndarray:
    """``log Q(z)``, vectorised (float64); ``-inf`` and ``+inf`` allowed.

    For ``z < 2.5``: ``1 - Phi(z)`` from the Abramowitz-Stegun erf (absolute error below
    1.5e-7, i.e. relative below 3e-5 where ``Q >= 0.006``). Beyond, the Laplace continued
    fraction of the Mills ratio ``Q(z) / phi(z) = 1/(z+ 1/(z+ 2/(z+ 3/(z+ ...))))`` with 24
    terms (relative error below 1e-8 for ``z >= 2.5``), so ratios of far tails stay exact.
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    lo = z < 2.5
    if np.any(lo):
        x = z[lo] / _SQRT2
        a = np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * a)
        poly = t * (
            0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
        )
        erfc_a = poly * np.exp(-a * a)  # erfc(|x|)
        q = np.where(x >= 0, 0.5 * erfc_a, 1.0 - 0.5 * erfc_a)
        with np.errstate(divide="ignore"):
            out[lo] = np.log(q)
    hi = ~lo
    if np.any(hi):
        zh = z[hi]
        finite = np.isfinite(zh)
        zf = np.where(finite, zh, 3.0)
        f = zf.copy()
        for k in range(24, 0, -1):
            f = zf + k / f
        logq = -0.5 * zf * zf - _LOG_SQRT_2PI - np.log(f)
        out[hi] = np.where(finite, logq, -np.inf)
    return out


class ServiceLaw(Protocol):
    """What :func:`expected_first_free` needs of a service-time distribution."""

    @property
    def mean_s(self) -> float:
        """``E[S]``, seconds."""
        ...

    def log_sf(self, x: np.ndarray) -> np.ndarray:
        """``log P(S > x)`` (0 for ``x <= 0``)."""
        ...

    def excess_sf(self, t: np.ndarray) -> np.ndarray:
        """``P(R_eq > t) = E[(S - t)+] / E[S]``: the stationary residual's survival."""
        ...


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential service of mean ``mean_s`` (memoryless: the elapsed time says nothing)."""

    mean_s: float

    def log_sf(self, x: np.ndarray) -> np.ndarray:
        return -np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.mean_s

    def excess_sf(self, t: np.ndarray) -> np.ndarray:
        return np.exp(self.log_sf(t))


@dataclass(frozen=True, slots=True)
class Lognormal:
    """Lognormal service of mean ``mean_s`` and log-variance ``sigma2``
    (``cv^2 = exp(sigma2) - 1``)."""

    mean_s: float
    sigma2: float

    @property
    def sigma(self) -> float:
        return math.sqrt(self.sigma2)

    @property
    def nu(self) -> float:
        """Mean of ``ln S``."""
        return math.log(self.mean_s) - 0.5 * self.sigma2

    def _z(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore"):
            lx = np.where(x > 0, np.log(np.maximum(x, 1e-300)), -np.inf)
        return (lx - self.nu) / self.sigma

    def log_sf(self, x: np.ndarray) -> np.ndarray:
        return norm_logsf(self._z(x))

    def excess_sf(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        z = self._z(t)
        stop_loss = self.mean_s * norm_sf(z - self.sigma) - np.maximum(t, 0.0) * norm_sf(z)
        return np.clip(stop_loss / self.mean_s, 0.0, 1.0)


def expected_first_free(elapsed_s: Sequence[float], unknown: int, law: ServiceLaw) -> float:
    """``E[min_k R_k]`` (seconds): the expected time until the first of the counters frees.

    Args:
        elapsed_s: elapsed service of each busy counter with a known occupant (seconds).
        unknown: further counters serving the queue whose progress is unknown (their
            residual is the stationary one, :meth:`ServiceLaw.excess_sf`).
        law: the service-time distribution.

    With no counter at all (``elapsed_s`` empty and ``unknown == 0``) there is nothing to
    wait for: 0.
    """
    return first_free_moments(elapsed_s, unknown, law)[0]


def first_free_moments(
    elapsed_s: Sequence[float], unknown: int, law: ServiceLaw
) -> tuple[float, float]:
    """(mean, variance) of ``min_k R_k`` (s, s^2): ``E[T] = int G``, ``E[T^2] = int 2 t G``
    with ``G(t) = P(min_k R_k > t)`` (see :func:`expected_first_free` for the arguments)."""
    t, surv = _first_free_survival(elapsed_s, unknown, law)
    if t is None:
        return 0.0, 0.0
    mean = float(np.trapezoid(surv, t))
    second = float(np.trapezoid(2.0 * t * surv, t))
    return mean, max(0.0, second - mean * mean)


def _first_free_survival(
    elapsed_s: Sequence[float], unknown: int, law: ServiceLaw
) -> tuple[np.ndarray | None, np.ndarray]:
    """The grid ``t`` and ``P(min_k R_k > t)`` on it (``None`` grid: no counter)."""
    if not len(elapsed_s) and unknown <= 0:
        return None, np.zeros(0)
    m = law.mean_s
    t = _GRID_U * m
    if isinstance(law, Lognormal):
        return t, _lognormal_survival(elapsed_s, unknown, law)
    log_surv = np.zeros_like(t)
    if len(elapsed_s):
        e = np.maximum(np.asarray(elapsed_s, dtype=np.float64), 0.0)[:, None]
        log_surv += (law.log_sf(e + t[None, :]) - law.log_sf(e)).sum(axis=0)
    surv = np.exp(log_surv)
    if unknown > 0:
        surv = surv * law.excess_sf(t) ** unknown
    return t, surv


@functools.lru_cache(maxsize=256)
def _lognormal_tables(sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-survival on ``_TABLE_U`` and stationary-residual survival on ``_GRID_U`` of the
    lognormal of mean 1 and log-variance ``sigma2`` (every lognormal is a scaling of it)."""
    unit = Lognormal(1.0, sigma2)
    return unit.log_sf(_TABLE_U), unit.excess_sf(_GRID_U)


def _lognormal_survival(elapsed_s: Sequence[float], unknown: int, law: Lognormal) -> np.ndarray:
    """``P(min_k R_k > t)`` on ``_GRID_U * mean`` from the tables (log-variance rounded to
    1e-3, elapsed services in units of the mean, linear interpolation)."""
    log_table, excess = _lognormal_tables(round(law.sigma2, 3))
    log_surv = np.zeros_like(_GRID_U)
    for e in elapsed_s:
        u = min(max(e, 0.0) / law.mean_s, _MAX_ELAPSED_U)
        at = np.interp(_GRID_U + u, _TABLE_U, log_table)
        log_surv += at - float(np.interp(u, _TABLE_U, log_table))
    surv = np.exp(log_surv)
    if unknown > 0:
        surv = surv * excess**unknown
    return surv


@dataclass(slots=True)
class LogMoments:
    """Exponentially decayed sums of ``1``, ``ln d`` and ``(ln d)^2`` of service durations
    ``d`` (decayed to the latest fold's time ``at``; time constant given per call)."""

    n: float = 0.0
    s1: float = 0.0
    s2: float = 0.0
    at: float | None = None

    def add(self, ts: float, durations_s: Sequence[float], window_s: float) -> None:
        if self.at is not None and ts > self.at:
            f = math.exp(-(ts - self.at) / window_s)
            self.n *= f
            self.s1 *= f
            self.s2 *= f
        if self.at is None or ts > self.at:
            self.at = ts
        for d in durations_s:
            ld = math.log(d)
            self.n += 1.0
            self.s1 += ld
            self.s2 += ld * ld

    def sigma2(
        self,
        *,
        prior_cv: float = 1.0,
        prior_n: float = 4.0,
        cv_min: float = 0.3,
        cv_max: float = 2.0,
    ) -> float:
        """Log-variance of the lognormal fit: the sample log-variance (weights decayed),
        shrunk towards ``ln(1 + prior_cv^2)`` by ``prior_n`` pseudo-observations, its cv
        clamped to ``[cv_min, cv_max]``. Scale-free: the decay's common factor cancels."""
        prior = math.log1p(prior_cv * prior_cv)
        n = self.n
        if n > 0:
            mean = self.s1 / n
            var = max(0.0, self.s2 / n - mean * mean)
            s2 = (n * var + prior_n * prior) / (n + prior_n)
        else:
            s2 = prior
        lo, hi = math.log1p(cv_min * cv_min), math.log1p(cv_max * cv_max)
        return min(max(s2, lo), hi)


def cv_of_sigma2(sigma2: float) -> float:
    """The lognormal's coefficient of variation from its log-variance."""
    return math.sqrt(math.expm1(sigma2))


@dataclass(frozen=True, slots=True)
class ServicePointState:
    """The latest message of one service point: when, how many, the occupant's dwell."""

    ts: float
    people: int
    dwell_max_s: float | None


def elapsed_services(
    states: dict[str, ServicePointState], now: float, max_age_s: float
) -> list[float]:
    """Elapsed service (s) of every service point whose latest message is fresh (no older
    than ``max_age_s``: an offline source says nothing about now) and says it is occupied,
    with the occupant's dwell: ``dwell_max_s + (now - ts)``."""
    out: list[float] = []
    for st in states.values():
        age = now - st.ts
        if st.people >= 1 and st.dwell_max_s is not None and -5.0 <= age <= max_age_s:
            out.append(st.dwell_max_s + max(0.0, age))
    return out


#: common random numbers of :func:`expected_nth_completion` (fixed: the estimate is a
#: deterministic function of its inputs): uniforms for the residuals, standard normals for
#: the services after them
_MC_SAMPLES = 512
_MC_COUNTERS = 12
_MC_SERVICES = 40
_MC_RNG = np.random.default_rng(20261130)
_MC_U = _MC_RNG.uniform(size=(_MC_SAMPLES, _MC_COUNTERS))
_MC_Z = _MC_RNG.standard_normal(size=(_MC_SAMPLES, _MC_COUNTERS, _MC_SERVICES - 1))


def expected_nth_completion(
    elapsed_s: Sequence[float], unknown: int, law: Lognormal, n: int
) -> float | None:
    """``E[T_n]`` (s): the expected time of the ``n``-th service completion from now at the
    counters (``n = L + 1``: when a customer joining behind ``L`` starts, FCFS, nobody
    walking out), each counter completing its current service after its residual
    (conditional on its elapsed service, or stationary when unknown) and then renewing
    with fresh services of ``law``; by Monte Carlo over fixed random numbers (512 draws).

    ``None`` when it cannot say: no counter, more than 12 counters, ``n < 1``.
    """
    k_known = len(elapsed_s)
    k = k_known + max(0, unknown)
    if k == 0 or k > _MC_COUNTERS or n < 1:
        return None
    m = law.mean_s
    log_table, excess = _lognormal_tables(round(law.sigma2, 3))
    u = _MC_U[:, :k]
    first = np.empty((_MC_SAMPLES, k))
    # a known counter: S - e | S > e by inversion, log S(x) = log U + log S(e)
    for i, e in enumerate(elapsed_s):
        ue = min(max(e, 0.0) / m, _MAX_ELAPSED_U)
        target = np.log(u[:, i]) + float(np.interp(ue, _TABLE_U, log_table))
        x = np.interp(target, log_table[::-1], _TABLE_U[::-1])
        first[:, i] = np.maximum(x - ue, 0.0)
    if k > k_known:
        # unknown progress: the stationary residual, by inversion of its survival
        first[:, k_known:] = np.interp(u[:, k_known:], excess[::-1], _GRID_U[::-1])
    per = min(n, _MC_SERVICES)
    times = first[:, :, None]
    if per > 1:
        later = _unit_renewals(round(law.sigma2, 3))[:, :k, : per - 1]
        times = np.concatenate([times, first[:, :, None] + later], axis=2)
    flat = times.reshape(_MC_SAMPLES, -1)
    nth = min(n, flat.shape[1]) - 1
    mc_nth = np.partition(flat, nth, axis=1)[:, nth].mean() if nth > 0 else first.min(axis=1).mean()
    # control variate: the first completion exactly (:func:`expected_first_free`), the
    # rest by the same draws, E[T_n] = E[T_1] + E_mc[T_n - T_1]
    exact_first = float(np.trapezoid(_lognormal_survival(elapsed_s, unknown, law), _GRID_U))
    return float(exact_first + mc_nth - first.min(axis=1).mean()) * m


@functools.lru_cache(maxsize=8)
def _unit_renewals(sigma2: float) -> np.ndarray:
    """Cumulative sums of the fixed draws of fresh services of the lognormal of mean 1 and
    log-variance ``sigma2``: the times of each counter's later completions after its first."""
    later = np.exp(-0.5 * sigma2 + math.sqrt(sigma2) * _MC_Z)
    return np.cumsum(later, axis=2)
