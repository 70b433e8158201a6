"""Customers' patience, and the wait of a customer who is served (pure logic).

A wait predicted for a long queue is a *potential* wait: what a customer who stays
however long would wait. The customers who are served are those whose patience
outlasted their wait, so their waits are shorter than the potential one, and the
longer the queue the shorter (on the independent cross-check's basic edges, customers
shown 15 min or more waited 25 % less on average, and the calibration from realised
waits lags by the wait itself). The wait shown to a customer is the one of a
customer who is served: ``E[W | W < patience]``.

- **Patience** is a customer trait, the same all day: its survival function ``S(t)
  = P(patience > t)`` is the Kaplan-Meier estimate (E. L. Kaplan, P. Meier, JASA
  1958) from the waits that ended in a walk-out (an event: the patience ran out
  then) and those that ended in service (censored: the patience was longer). This
  is how call-centre studies read the patience of callers from their abandonments
  (L. Brown et al., "Statistical analysis of a telephone call center", JASA 2005,
  section 6).
- **The potential wait** ``W`` given the prediction ``p`` is taken as gamma with
  mean ``p`` and coefficient of variation ``cv``, the error of the prediction and
  the randomness of the services ahead together.
- ``E[W | served] = E[W S(W)] / E[S(W)]``, by quadrature on fixed gamma nodes.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: quadrature nodes for the unit-mean gamma: midpoints up to 5 means (for cv <= 0.6
#: the mass beyond is under 1e-4)
_NODES = np.linspace(0.0, 5.0, 401)[1:] - 5.0 / 800


def _unit_gamma_weights(cv: float) -> np.ndarray:
    """Normalised weights of the gamma with mean 1 and coefficient of variation ``cv``
    at ``_NODES``, shape (400,), float64."""
    k = 1.0 / (cv * cv)
    x = _NODES
    log_pdf = (k - 1.0) * np.log(x) - k * x + k * math.log(k) - math.lgamma(k)
    w = np.exp(log_pdf - log_pdf.max())
    return w / w.sum()


def kaplan_meier(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival of ``durations`` (s, shape (n,)) where ``events`` (bool,
    shape (n,)) marks the observed ends (walk-outs); the others are censored.

    Returns ``(times, survival)``: the sorted event times (s) and ``S`` just after each
    (right-continuous steps; ``S = 1`` before the first). At tied times events come
    before censorings, the usual convention. Empty arrays when there is no event.
    """
    order = np.lexsort((~events, durations))
    d = durations[order]
    e = events[order]
    at_risk = len(d) - np.arange(len(d))
    factors = np.where(e, 1.0 - 1.0 / at_risk, 1.0)
    survival = np.cumprod(factors)
    return d[e], survival[e]


def survival_at(times: np.ndarray, survival: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The step function ``(times, survival)`` of :func:`kaplan_meier` at ``t`` (s,
    any shape); 1 before the first event, the last value after the last one."""
    i = np.searchsorted(times, t, side="right")
    padded = np.concatenate(([1.0], survival))
    return padded[i]


def served_wait(
    potential_s: np.ndarray, times: np.ndarray, survival: np.ndarray, cv: float
) -> np.ndarray:
    """``E[W | W < patience]`` for gamma ``W`` of mean ``potential_s`` (s, shape (n,))
    and coefficient of variation ``cv``, patience of survival ``(times, survival)``.

    Never more than ``potential_s``; ``potential_s`` itself where patience never ends
    in the waits' range (no event) or where no customer would be served (S = 0 over
    the whole distribution, a queue nobody outlasts: the potential wait is all there
    is to say).
    """
    p = np.asarray(potential_s, dtype=np.float64)
    if times.size == 0:
        return p.copy()
    w = _unit_gamma_weights(cv)
    waits = p[:, None] * _NODES[None, :]  # (n, nodes)
    s = survival_at(times, survival, waits) * w[None, :]
    mass = s.sum(axis=1)
    mean = np.divide((waits * s).sum(axis=1), mass, out=p.copy(), where=mass > 1e-9)
    return np.minimum(mean, p)


class PatienceLog:
    """The last ``keep`` waits that ended in service or in a walk-out, and their
    Kaplan-Meier patience once ``min_walkouts`` walk-outs are among them.

    Args:
        keep: waits kept (the oldest are dropped: patience is a customer trait, so a
            count, not a time window).
        min_walkouts: walk-outs needed before the survival is trusted.
    """

    def __init__(self, keep: int = 2000, min_walkouts: int = 20) -> None:
        self._waits: deque[tuple[float, bool]] = deque(maxlen=keep)
        self.min_walkouts = min_walkouts
        self._walkouts = 0
        self._curve: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, wait_s: float, walked_out: bool) -> None:
        """One wait (s) that ended in a walk-out (``walked_out``) or in service."""
        if wait_s < 0 or not math.isfinite(wait_s):
            return
        if len(self._waits) == self._waits.maxlen and self._waits[0][1]:
            self._walkouts -= 1
        self._waits.append((wait_s, walked_out))
        self._walkouts += walked_out
        self._curve = None

    @property
    def walkouts(self) -> int:
        """Walk-outs among the kept waits."""
        return self._walkouts

    def survival(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(times, survival)`` (:func:`kaplan_meier`), or ``None`` before
        ``min_walkouts`` walk-outs."""
        if self._walkouts < self.min_walkouts:
            return None
        if self._curve is None:
            data = np.array(self._waits, dtype=np.float64)
            self._curve = kaplan_meier(data[:, 0], data[:, 1] > 0.5)
        return self._curve

    def reset(self) -> None:
        self._waits.clear()
        self._walkouts = 0
        self._curve = None
