"""Hand-checkable cases of the oracle's re-simulation (bench/wait_oracle.py)."""

from __future__ import annotations

import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from wait_oracle import QueueState, TrueModel, alert_intervals, resimulate

from lobbywatch.demo.simulator import (
    BalkSettings,
    BranchScenario,
    PatienceSettings,
    ServiceDist,
)

MEAN_S = 300.0


def _model(discipline: str = "fcfs", service: ServiceDist | None = None) -> TrueModel:
    """One counter, exponential service (gamma, cv 1), no arrivals, walk-outs or balking."""
    sc = BranchScenario(
        counters=1,
        base_per_h=0.0,
        peaks=(),
        service=service or ServiceDist(kind="gamma", mean_s=MEAN_S, cv=1.0),
        patience=PatienceSettings(share=0.0),
        balking=BalkSettings(per_person=0.0),
        discipline=discipline,  # type: ignore[arg-type]
        vip_share=0.0,
    )
    return TrueModel(sc, ((sc.midnight(), 1),))


def _erlang_cdf(x: float, n: int, mean: float) -> float:
    y = x / mean
    return 1.0 - math.exp(-y) * sum(y**i / math.factorial(i) for i in range(n))


def _erlang_median(n: int, mean: float) -> float:
    lo, hi = 0.0, 50.0 * n * mean
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _erlang_cdf(mid, n, mean) < 0.5 else (lo, mid)
    return lo


def _waits(state: QueueState, model: TrueModel, target: int, n: int = 4000) -> list[float]:
    rng = random.Random(7)
    waits = [resimulate(state, model, rng, target=target) for _ in range(n)]
    assert all(w is not None for w in waits)  # nobody walks out
    return [float(w) for w in waits]  # type: ignore[arg-type]


def test_one_counter_exponential_wait_is_erlang() -> None:
    model = _model()
    t = model.midnight + 10 * 3600.0
    # the counter has served someone for 1000 s (memoryless: residual still Exp(300)),
    # two people wait ahead: the newcomer waits a sum of 3 exponentials, Erlang(3)
    state = QueueState(t, ((t - 1000.0, False),), ((False, t - 60), (False, t - 30), (False, t)))
    waits = _waits(state, model, target=2)
    assert abs(statistics.fmean(waits) - 3 * MEAN_S) < 40  # SE ~8 s
    assert abs(statistics.median(waits) - _erlang_median(3, MEAN_S)) < 40  # 802 s, SE ~10 s


def test_priority_customer_goes_first() -> None:
    model = _model(discipline="vip")
    t = model.midnight + 10 * 3600.0
    # two ordinary customers wait, a priority one arrives: only the residual service
    # is ahead of them (Exp(300), median 300 ln 2); an ordinary one behind a priority
    # one waits Erlang(2)
    state = QueueState(t, ((t - 100.0, False),), ((False, t - 60), (False, t - 30), (True, t)))
    waits = _waits(state, model, target=2)
    assert abs(statistics.median(waits) - MEAN_S * math.log(2)) < 25
    state = QueueState(t, ((t - 100.0, False),), ((True, t - 60), (False, t)))
    waits = _waits(state, model, target=1)
    assert abs(statistics.median(waits) - _erlang_median(2, MEAN_S)) < 35


def test_lognormal_residual_service_is_conditioned_on_elapsed() -> None:
    cv, elapsed = 1.0, 600.0
    model = _model(service=ServiceDist(kind="lognormal", mean_s=MEAN_S, cv=cv))
    rng = random.Random(3)
    totals = [elapsed + model.residual_service(rng, False, elapsed) for _ in range(20000)]
    assert min(totals) > elapsed
    # E[S | S > e] = exp(mu + s^2/2) Phi(s - z0) / Phi(-z0), z0 = (ln e - mu) / s
    s = math.sqrt(math.log1p(cv**2))
    mu = math.log(MEAN_S) - s * s / 2
    z0 = (math.log(elapsed) - mu) / s
    phi = statistics.NormalDist().cdf
    expected = math.exp(mu + s * s / 2) * phi(s - z0) / phi(-z0)
    assert abs(statistics.fmean(totals) / expected - 1) < 0.03


def test_breach_probability_one_counter() -> None:
    model = _model()
    t = model.midnight + 10 * 3600.0
    # one person waiting (just arrived) behind one in service, no arrivals: breach
    # (wait > 600 s) iff the residual service exceeds 600 s, P = exp(-2)
    state = QueueState(t, ((t - 50.0, False),), ((False, t),))
    rng = random.Random(5)
    p = statistics.fmean(
        bool(resimulate(state, model, rng, threshold_s=600.0)) for _ in range(8000)
    )
    assert abs(p - math.exp(-2)) < 0.015  # SE ~0.004


def test_alert_intervals_hold_and_resolve() -> None:
    ticks = [30.0 * k for k in range(12)]
    ps = [0, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9, 0.9]
    assert alert_intervals(ticks, ps, 0.8, 0.0) == [(30.0, 240.0), (300.0, None)]
    assert alert_intervals(ticks, ps, 0.8, 60.0) == [(90.0, 240.0)]
