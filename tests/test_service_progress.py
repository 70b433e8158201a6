"""Service progress at the counters: the expected time until the first counter frees, from
the counters' elapsed services (docs/wait-estimation.md, "Service progress at the
counters"). Reference values are computed here by other means: closed forms with
``math.erfc``, and Monte Carlo with a fixed seed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from test_server_support import zone_msg

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.counters import CounterObserver
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator
from lobbywatch.server.service_progress import (
    Exponential,
    LogMoments,
    Lognormal,
    expected_first_free,
    first_free_moments,
    norm_logsf,
)

T0 = 1_764_400_000.0
POINTS = ("c1", "c2", "c3", "c4")


def _q(z: float) -> float:
    """Standard normal tail, from the standard library."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _lognormal_mrl(mean: float, cv: float, e: float) -> float:
    """Mean residual life E[S - e | S > e] of a lognormal, closed form:
    (m Q(z - sigma) - e Q(z)) / Q(z), z = (ln e - nu) / sigma."""
    s2 = math.log1p(cv * cv)
    s, nu = math.sqrt(s2), math.log(mean) - s2 / 2
    if e <= 0:
        return mean
    z = (math.log(e) - nu) / s
    return (mean * _q(z - s) - e * _q(z)) / _q(z)


def test_normal_log_tail_is_accurate_in_relative_terms_far_out() -> None:
    z = np.array([-6.0, -1.0, 0.0, 1.5, 2.4, 2.6, 4.0, 8.0, 15.0, 30.0])
    want = np.array([math.log(_q(x)) for x in z])
    assert norm_logsf(z) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert norm_logsf(np.array([-np.inf, np.inf])).tolist() == [0.0, -np.inf]


@pytest.mark.parametrize("elapsed", [[], [0.0], [10.0, 2000.0], [300.0, 30.0, 900.0, 5.0]])
def test_exponential_service_is_memoryless(elapsed: list[float]) -> None:
    # c = 4 counters, mean 300 s: the first of 4 exponentials frees after 300 / 4 s,
    # however long each has been serving (the unknown ones are exponential too)
    got = expected_first_free(elapsed, 4 - len(elapsed), Exponential(300.0))
    assert got == pytest.approx(75.0, rel=1e-3)
    # the minimum of 4 is exponential of mean 75 s: standard deviation 75 s too
    mean, var = first_free_moments(elapsed, 4 - len(elapsed), Exponential(300.0))
    assert (mean, math.sqrt(var)) == (pytest.approx(75.0, rel=1e-3), pytest.approx(75.0, rel=2e-3))


@pytest.mark.parametrize("cv", [0.6, 1.0, 1.5])
@pytest.mark.parametrize("e", [0.0, 60.0, 300.0, 900.0, 3000.0])
def test_one_lognormal_counter_matches_the_mean_residual_life(cv: float, e: float) -> None:
    law = Lognormal(300.0, math.log1p(cv * cv))
    got = expected_first_free([e], 0, law)
    assert got == pytest.approx(_lognormal_mrl(300.0, cv, e), rel=5e-3)


@pytest.mark.parametrize("cv", [0.6, 1.2])
def test_unknown_progress_is_the_stationary_residual(cv: float) -> None:
    # a counter observed at a random moment: E[R_eq] = E[S^2] / (2 E[S]) = m (1 + cv^2) / 2
    law = Lognormal(240.0, math.log1p(cv * cv))
    assert expected_first_free([], 1, law) == pytest.approx(240.0 * (1 + cv * cv) / 2, rel=5e-3)
    assert expected_first_free([], 0, law) == 0.0  # no counter: nothing to wait for


def _conditional_lognormal(
    rng: np.random.Generator, mean: float, cv: float, e: float, n: int
) -> np.ndarray:
    """``n`` draws of S - e given S > e (rejection)."""
    s2 = math.log1p(cv * cv)
    nu = math.log(mean) - s2 / 2
    out: list[np.ndarray] = []
    got = 0
    while got < n:
        x = rng.lognormal(nu, math.sqrt(s2), 4 * n)
        x = x[x > e] - e
        out.append(x)
        got += len(x)
    return np.concatenate(out)[:n]


def test_two_busy_counters_and_an_unknown_one_against_monte_carlo() -> None:
    rng = np.random.default_rng(20261130)
    mean, cv, n = 300.0, 1.1, 400_000
    law = Lognormal(mean, math.log1p(cv * cv))
    r1 = _conditional_lognormal(rng, mean, cv, 30.0, n)  # just sat down
    r2 = _conditional_lognormal(rng, mean, cv, 700.0, n)  # deep in a long service
    mc = np.minimum(r1, r2)
    assert expected_first_free([30.0, 700.0], 0, law) == pytest.approx(mc.mean(), rel=0.01)
    _, var = first_free_moments([30.0, 700.0], 0, law)
    assert math.sqrt(var) == pytest.approx(mc.std(), rel=0.02)
    # a third counter without progress: its residual is the stationary one, i.e. the
    # residual of a service observed at a random moment (length-biased draw, uniform age)
    x = rng.lognormal(math.log(mean) - law.sigma2 / 2, law.sigma, 20 * n)
    biased = rng.choice(x, size=n, p=x / x.sum())
    r3 = biased * rng.uniform(size=n)
    mc3 = np.minimum(mc, r3)
    assert expected_first_free([30.0, 700.0], 1, law) == pytest.approx(mc3.mean(), rel=0.015)


def test_log_moments_shrink_to_a_prior_cv_of_one() -> None:
    lm = LogMoments()
    lm.add(T0, [100.0, 400.0], window_s=1800.0)
    # log-variance of {ln 100, ln 400}: (ln 2)^2; 2 observations against 4 of ln 2
    want = (2 * math.log(2) ** 2 + 4 * math.log(2)) / 6
    assert lm.sigma2() == pytest.approx(want)
    assert LogMoments().sigma2() == pytest.approx(math.log(2))  # nothing seen: cv 1
    flat = LogMoments()
    flat.add(T0, [300.0] * 500, window_s=1800.0)  # no spread at all: clamped at cv 0.3
    assert flat.sigma2() == pytest.approx(math.log1p(0.09))


def _msg(zone: str, kind: ZoneKind, at: float, people: int, **kw: Any) -> ZoneMessage:
    """One zone of device d, camera cam, branch b, seq = seconds since T0."""
    return zone_msg(
        int(at - T0),
        at,
        people=people,
        branch="b",
        camera="cam",
        device="d",
        zone=zone,
        kind=kind,
        **kw,
    )


def _counter(point: str, at: float, people: int, dwell_max: float | None, **kw: Any) -> ZoneMessage:
    return _msg(point, ZoneKind.CASH_COUNTER, at, people, dwell_max=dwell_max, **kw)


def _waiting(at: float, people: int, dwell_max: float | None = None) -> ZoneMessage:
    return _msg("W1", ZoneKind.WAITING, at, people, arrivals=people, dwell_max=dwell_max)


def test_elapsed_services_from_the_latest_fresh_message_of_each_counter() -> None:
    obs = CounterObserver(POINTS, 300.0)
    obs.observe("c1", 1, [], T0, dwell_max_s=100.0)
    obs.observe("c2", 1, [], T0 + 20, dwell_max_s=5.0)
    obs.observe("c3", 0, [240.0], T0 + 20, dwell_max_s=None)  # idle: unknown
    obs.observe("c4", 1, [], T0 - 200, dwell_max_s=50.0)  # its source went quiet
    obs.observe("c2", 1, [], T0 + 10, dwell_max_s=1.0)  # late, older: ignored
    # at T0 + 30: c1 100 + 30, c2 5 + 10; c4's message is 230 s old (> 90 s): stale
    assert sorted(obs.elapsed_services(T0 + 30, 90.0)) == [pytest.approx(15.0), 130.0]
    # the occupant left: c1 no longer counts
    obs.observe("c1", 0, [160.0], T0 + 60, dwell_max_s=None)
    assert obs.elapsed_services(T0 + 60, 90.0) == [pytest.approx(45.0)]
    assert obs.elapsed_services(T0 + 200, 90.0) == []  # everything stale


# the configured capacity (2 / 300 s) until departures are seen: the figures below
PROGRESS = EstimatorSettings(service_progress=True, calibration_max=1.0, service_rate_gated=True)


def _queue_of_four(settings: EstimatorSettings) -> ZoneEstimator:
    est = ZoneEstimator(settings, counters=2, mean_service_s=300.0, service_points=("c1", "c2"))
    for k in range(0, 200, 10):
        est.observe(_waiting(T0 + k, 4, dwell_max=200.0 + k), T0 + k)
    return est


def test_the_wait_uses_the_counters_progress_when_observed() -> None:
    est = _queue_of_four(PROGRESS)
    # both customers have been served for half a mean service or so: a counter frees
    # sooner than the stationary m / c = 150 s (117 s)
    est.observe_service_point(_counter("c1", T0 + 180, 1, 140.0))
    est.observe_service_point(_counter("c2", T0 + 185, 1, 195.0))
    now = T0 + 190
    e = est.estimate(now)
    mu = e.service_rate_per_s
    assert mu is not None and e.counters_open == 2
    # the lognormal of mean counters / mu and the prior cv of 1 (no service seen yet)
    law = Lognormal(2 / mu, math.log(2.0))
    first = expected_first_free([150.0, 200.0], 0, law)
    assert e.first_free_s == pytest.approx(first)
    assert e.predicted_wait_s == pytest.approx(4 / mu + first)
    assert e.head_wait_s == pytest.approx(390.0 + first)
    assert e.projected_waits_s is None or e.projected_waits_s[0] == pytest.approx(
        e.predicted_wait_s
    )
    # the same zone without service progress: r = residual_factor = 1
    off = _queue_of_four(PROGRESS.model_copy(update={"service_progress": False}))
    off.observe_service_point(_counter("c1", T0 + 180, 1, 140.0))
    off.observe_service_point(_counter("c2", T0 + 185, 1, 195.0))
    e_off = off.estimate(now)
    assert e_off.first_free_s is None
    assert e_off.predicted_wait_s == pytest.approx(5 / mu)
    assert e.predicted_wait_s == pytest.approx(e_off.predicted_wait_s - 33.0, abs=1.0)


def test_unknown_progress_falls_back_to_the_residual_factor() -> None:
    est = _queue_of_four(PROGRESS)
    # counters seen, but idle or without a dwell: nothing says how far their services are
    est.observe_service_point(_counter("c1", T0 + 180, 0, None))
    est.observe_service_point(_counter("c2", T0 + 185, 1, None))
    e = est.estimate(T0 + 190)
    assert e.first_free_s is None
    assert e.predicted_wait_s == pytest.approx(5 / e.service_rate_per_s)


def test_a_stale_counter_message_does_not_count() -> None:
    est = _queue_of_four(PROGRESS)
    # c1's source went offline at T0 + 50 (its last message says busy); c2 is fresh
    est.observe_service_point(_counter("c1", T0 + 50, 1, 100.0))
    est.observe_service_point(_counter("c2", T0 + 185, 1, 600.0))
    now = T0 + 190  # c1's message is 140 s old > 90 s
    e = est.estimate(now)
    mu = e.service_rate_per_s
    assert mu is not None
    law = Lognormal(2 / mu, math.log(2.0))
    # c2 known (605 s), c1 unknown: its stationary residual, not a 240 s elapsed service
    assert e.first_free_s == pytest.approx(expected_first_free([605.0], 1, law))
    assert e.first_free_s != pytest.approx(expected_first_free([605.0, 240.0], 0, law), rel=0.01)
    # and when every counter's message is stale: the residual factor again
    late = est.estimate(T0 + 400)
    assert late.first_free_s is None


def test_service_progress_settings_are_validated() -> None:
    from lobbywatch.errors import ConfigError
    from lobbywatch.server.config import parse_server_config

    with pytest.raises(ValueError):
        EstimatorSettings(service_progress_max_age_s=0)
    with pytest.raises(ValueError):
        EstimatorSettings.model_validate({"service_progress": "sometimes"})
    with pytest.raises(ConfigError, match="service_progress_max_age_s"):
        parse_server_config({"estimator": {"service_progress_max_age_s": -5}})
    cfg = parse_server_config({"estimator": {"service_progress": False}})
    assert cfg.estimator.service_progress is False


def test_the_risk_takes_the_first_completions_spread_from_the_counters() -> None:
    from lobbywatch.server.forecast import breach_risk_by_position, gamma_sf

    waited = np.array([500.0, 400.0])  # head waited 500 s, the next 400 s; T = 600 s
    mu = 1 / 150.0
    # r = 0.8 (first counter frees in 120 s on average), with a spread of 30 s only
    risk = breach_risk_by_position(waited, 600.0, mu, residual=0.8, first_sd_s=30.0)
    # head: P(first completion > 100 s) for a Gamma of mean 120 s, sd 30 s
    want0 = gamma_sf(np.array([100.0]), np.array([120.0]), np.array([900.0]))[0]
    # next: the first completion then one more at rate mu (variance 1 / mu^2, cv 1)
    want1 = gamma_sf(np.array([200.0]), np.array([270.0]), np.array([900.0 + 150.0**2]))[0]
    assert risk == pytest.approx([want0, want1])
    # without it, the first completion is Poisson-like: variance r / mu^2
    plain = breach_risk_by_position(waited, 600.0, mu, residual=0.8)
    assert plain[0] == pytest.approx(
        gamma_sf(np.array([100.0]), np.array([120.0]), np.array([0.8 * 150.0**2]))[0]
    )
    assert risk[0] > plain[0]  # a tight first completion after 120 s: the head likely breaches


def test_the_nth_completion_against_an_independent_simulation() -> None:
    from lobbywatch.server.service_progress import expected_nth_completion

    mean, cv = 300.0, 1.0
    law = Lognormal(mean, math.log1p(cv * cv))
    elapsed = [30.0, 400.0, 900.0]
    # the first completion is exactly the first-free residual
    assert expected_nth_completion(elapsed, 0, law, 1) == pytest.approx(
        expected_first_free(elapsed, 0, law)
    )
    rng = np.random.default_rng(7)
    n_draws = 200_000
    s2 = law.sigma2
    first = np.stack([_conditional_lognormal(rng, mean, cv, e, n_draws) for e in elapsed], axis=1)
    later = rng.lognormal(math.log(mean) - s2 / 2, math.sqrt(s2), (n_draws, 3, 4))
    times = np.concatenate([first[:, :, None], first[:, :, None] + later.cumsum(axis=2)], axis=2)
    ordered = np.sort(times.reshape(n_draws, -1), axis=1)
    for n in (2, 3, 5):
        want = ordered[:, n - 1].mean()
        assert expected_nth_completion(elapsed, 0, law, n) == pytest.approx(want, rel=0.03)
    assert expected_nth_completion([], 0, law, 2) is None  # no counter
