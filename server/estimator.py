"""Wait estimation for one waiting zone (pure logic; time is always injected).

A :class:`ZoneEstimator` consumes the :class:`~lobbywatch.protocol.ZoneMessage`
stream of one waiting zone and answers "how long will a customer who joins the
queue now wait?". The formulas, their assumptions and a worked example are in
``docs/wait-estimation.md``; in short:

* service capacity ``mu`` (customers/s) = departures from the waiting zone per
  second *during which the zone was occupied* (a departure from the waiting
  zone is a service start; while somebody waits every counter is busy, so
  that rate is the counters' joint completion rate), smoothed by an
  exponentially weighted sum with time constant ``rate_window_s``;
* predicted wait ``W = (L + r) / mu`` for ``L >= 1`` people ahead (``r`` is the
  mean residual service until the first counter frees, in units of ``1/mu``),
  ``0`` for an empty zone;
* until enough has been observed, ``mu = counters / mean_service_s`` from
  configuration (``method="fallback"``);
* forecast: the queue drifts by the net inflow (arrival rate - departure rate,
  smoothed over ``trend_window_s``) times the horizon;
* the oldest occupant's expected total wait ``head_wait = oldest + r / mu``
  (they start at the next completion): the W1 alert's sharpest breach signal.

Counters ``arrivals_total``/``departures_total`` are cumulative on the edge and
restart from 0 when the edge restarts: like Prometheus' ``increase()``, a value
lower than the previous one is read as a reset and the new value is the
increase since the reset.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from lobbywatch.protocol import ZoneMessage


class EstimatorSettings(BaseModel):
    """Knobs of the wait estimator (one set per waiting zone, composed by the collector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_window_s: float = Field(
        default=1200.0,
        gt=0,
        description="time constant of the service-rate smoothing (EWMA), seconds",
    )
    trend_window_s: float = Field(
        default=600.0,
        gt=0,
        description="time constant of the arrival/departure trend smoothing, seconds",
    )
    prior_departures: float = Field(
        default=5.0,
        ge=0,
        description="weight of the configured rate in the observed estimate, in departures "
        "(Gamma prior: shrinks the noisy early estimate towards counters/mean_service_s)",
    )
    min_departures: float = Field(
        default=4.0,
        ge=0,
        description="smoothed departures needed before the observed service rate is used",
    )
    min_busy_s: float = Field(
        default=120.0,
        ge=0,
        description="smoothed occupied seconds needed before the observed rate is used",
    )
    max_gap_s: float = Field(
        default=120.0,
        gt=0,
        description="a gap between two messages longer than this is not used for rates "
        "(the queue may have emptied and refilled unseen)",
    )
    residual_factor: float = Field(
        default=1.0,
        ge=0,
        le=2,
        description="mean time until the first counter frees, in units of 1/mu "
        "(1 = exponential service; (1+cv^2)/2 for a single counter)",
    )
    forecast_horizon_s: float = Field(default=300.0, gt=0, description="forecast horizon, seconds")
    min_trend_s: float = Field(
        default=120.0,
        ge=0,
        description="smoothed observed seconds needed before a trend is reported",
    )
    realised_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="window of completed waits for quantiles and service level",
    )
    wait_threshold_s: float = Field(
        default=600.0, gt=0, description="W1 threshold used for served_within_threshold_ratio"
    )


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """What the estimator knows about one waiting zone at ``now``.

    ``predicted_wait_s`` is for a customer joining now; ``forecast_wait_s`` for
    one joining ``forecast_horizon_s`` later. Rates are per second.
    """

    queue_length: int
    predicted_wait_s: float | None
    service_rate_per_s: float | None
    method: str
    realised_wait_p50_s: float | None
    realised_wait_p90_s: float | None
    oldest_wait_s: float | None
    forecast_wait_s: float | None
    forecast_horizon_s: float
    served_within_threshold_ratio: float | None
    # additions beyond the agreed contract (all optional for consumers)
    arrival_rate_per_s: float | None = None
    departure_rate_per_s: float | None = None
    net_inflow_per_s: float | None = None
    no_departure_for_s: float | None = None
    updated_at: float | None = None
    #: expected total wait of the oldest occupant: ``oldest_wait_s + r / mu``
    #: (they start at the first service completion; see ``head_wait``)
    head_wait_s: float | None = None

    def seconds_to_wait(self, target_s: float) -> float | None:
        """Seconds until the predicted wait reaches ``target_s`` if the trend holds.

        0 when it already has; ``None`` when unknown or not rising. The wait
        grows by ``net_inflow / mu`` seconds per second (each extra person in
        the queue adds ``1/mu``).
        """
        if self.predicted_wait_s is None:
            return None
        if self.predicted_wait_s >= target_s:
            return 0.0
        if not self.net_inflow_per_s or self.net_inflow_per_s <= 0 or not self.service_rate_per_s:
            return None
        growth = self.net_inflow_per_s / self.service_rate_per_s
        return (target_s - self.predicted_wait_s) / growth


def wait_for_queue(queue_length: float, service_rate_per_s: float, residual_factor: float) -> float:
    """Expected wait of a customer joining behind ``queue_length`` waiting people.

    With ``L >= 1`` people waiting every counter is busy; the newcomer starts
    service at the ``(L+1)``-th service completion: the first after the mean
    residual ``r/mu``, then ``L`` more at the joint completion rate ``mu``.
    An empty waiting zone predicts 0 (a counter is usually free; see the docs).
    """
    if queue_length <= 0:
        return 0.0
    return (queue_length + residual_factor) / service_rate_per_s


def head_wait(oldest_wait_s: float, service_rate_per_s: float, residual_factor: float) -> float:
    """Expected total wait of the oldest current occupant (the head of a FCFS queue).

    They have waited ``oldest_wait_s`` and start at the next service
    completion, on average ``r / mu`` away. Unlike the prediction for a newcomer,
    most of this is already realised, so it is the sharper W1 breach signal.
    """
    return oldest_wait_s + residual_factor / service_rate_per_s


def _increase(new: int, old: int | None) -> int:
    """Counter increase with Prometheus reset semantics (a decrease means a restart)."""
    if old is None:
        return 0
    return new - old if new >= old else new


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default 'linear' method) of sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class ZoneEstimator:
    """Stateful estimator of one waiting zone.

    Args:
        settings: smoothing windows and thresholds.
        counters: counters configured open for this queue (fallback capacity).
        mean_service_s: configured mean service time per customer (fallback).
    """

    def __init__(self, settings: EstimatorSettings, counters: int, mean_service_s: float) -> None:
        if counters < 1 or mean_service_s <= 0:
            raise ValueError("counters must be >= 1 and mean_service_s > 0")
        self.settings = settings
        self.counters = counters
        self.mean_service_s = mean_service_s
        self._ts: float | None = None
        self._people = 0
        self._arrivals: int | None = None
        self._departures: int | None = None
        self._dwell_max: float | None = None
        # exponentially decayed sums: departures while occupied / occupied seconds
        self._busy_departures = 0.0
        self._busy_s = 0.0
        # exponentially decayed sums for the trend: arrivals, departures, seconds
        self._trend_arrivals = 0.0
        self._trend_departures = 0.0
        self._trend_s = 0.0
        self._last_departure_ts: float | None = None
        self._occupied_since: float | None = None
        self._realised: deque[tuple[float, float]] = deque()

    @property
    def fallback_rate_per_s(self) -> float:
        return self.counters / self.mean_service_s

    def set_counters(self, counters: int) -> None:
        """Change the configured number of open counters (affects the fallback only)."""
        if counters < 1:
            raise ValueError("counters must be >= 1")
        self.counters = counters

    def observe(self, msg: ZoneMessage, now: float) -> None:
        """Fold one zone message in. ``now`` is the receive time (only used to expire data).

        Messages older than the newest one seen only contribute their completed
        dwells (the cumulative counters of the newer message already include
        their increments).
        """
        ts = msg.ts.timestamp()
        for dwell in msg.completed_dwells_s:
            self._realised.append((ts, float(dwell)))
        self._expire(max(now, ts))
        if self._ts is not None and ts <= self._ts:
            return
        arrivals = _increase(msg.arrivals_total, self._arrivals)
        departures = _increase(msg.departures_total, self._departures)
        if self._ts is not None:
            dt = ts - self._ts
            if dt <= self.settings.max_gap_s:
                self._fold_rates(dt, arrivals, departures, msg.people)
        if departures > 0:
            self._last_departure_ts = ts
        if msg.people > 0 and (self._occupied_since is None or self._people == 0):
            self._occupied_since = ts
        elif msg.people == 0:
            self._occupied_since = None
        self._ts = ts
        self._people = msg.people
        self._arrivals = msg.arrivals_total
        self._departures = msg.departures_total
        self._dwell_max = msg.dwell_max_s

    def _fold_rates(self, dt: float, arrivals: int, departures: int, people: int) -> None:
        s = self.settings
        decay = math.exp(-dt / s.rate_window_s)
        self._busy_departures *= decay
        self._busy_s *= decay
        if self._people > 0 and (people > 0 or departures > 0):
            # Somebody waited throughout (or left, i.e. was served): every counter
            # was busy, so departures in it happened at full capacity. Requiring
            # both ends keeps a one-message phantom detection in an empty zone
            # from counting idle time as busy time.
            self._busy_departures += departures
            self._busy_s += dt
        decay = math.exp(-dt / s.trend_window_s)
        self._trend_arrivals = self._trend_arrivals * decay + arrivals
        self._trend_departures = self._trend_departures * decay + departures
        self._trend_s = self._trend_s * decay + dt

    def _expire(self, now: float) -> None:
        horizon = now - self.settings.realised_window_s
        while self._realised and self._realised[0][0] < horizon:
            self._realised.popleft()

    def service_rate(self, now: float) -> tuple[float, str]:
        """(customers/s, method). Observed once the smoothed evidence is enough.

        Precisely: ``method="observed"`` iff the exponentially decayed count of
        departures seen while the zone was occupied, ``D``, is >= ``min_departures``
        and the decayed occupied time ``B`` is >= ``min_busy_s`` (both decayed to
        ``now``); the rate is then ``(D + k) / (B + k / mu0)`` with ``k =
        prior_departures`` and ``mu0 = counters / mean_service_s`` (posterior mean
        of a Gamma prior worth ``k`` departures at the configured rate).
        Otherwise ``mu0`` itself (``method="fallback"``).
        """
        s = self.settings
        age = max(0.0, now - self._ts) if self._ts is not None else 0.0
        decay = math.exp(-age / s.rate_window_s)
        departures = self._busy_departures * decay
        busy = self._busy_s * decay
        if departures >= s.min_departures and busy >= s.min_busy_s and departures > 0:
            prior = self.fallback_rate_per_s
            rate = (departures + s.prior_departures) / (busy + s.prior_departures / prior)
            return rate, "observed"
        return self.fallback_rate_per_s, "fallback"

    def estimate(self, now: float, threshold_s: float | None = None) -> WaitEstimate:
        s = self.settings
        threshold = threshold_s if threshold_s is not None else s.wait_threshold_s
        self._expire(now)
        waits = sorted(d for _, d in self._realised)
        p50 = _quantile(waits, 0.5) if waits else None
        p90 = _quantile(waits, 0.9) if waits else None
        within = sum(1 for w in waits if w <= threshold) / len(waits) if waits else None
        if self._ts is None:
            return WaitEstimate(
                queue_length=0,
                predicted_wait_s=None,
                service_rate_per_s=None,
                method="fallback",
                realised_wait_p50_s=p50,
                realised_wait_p90_s=p90,
                oldest_wait_s=None,
                forecast_wait_s=None,
                forecast_horizon_s=s.forecast_horizon_s,
                served_within_threshold_ratio=within,
            )
        age = max(0.0, now - self._ts)
        mu, method = self.service_rate(now)
        queue = self._people
        predicted = wait_for_queue(queue, mu, s.residual_factor)
        arrival_rate = departure_rate = net = None
        if self._trend_s >= s.min_trend_s:
            arrival_rate = self._trend_arrivals / self._trend_s
            departure_rate = self._trend_departures / self._trend_s
            net = arrival_rate - departure_rate
        forecast_queue = max(0.0, queue + (net or 0.0) * s.forecast_horizon_s)
        forecast = wait_for_queue(forecast_queue, mu, s.residual_factor)
        oldest = head = None
        # dwell_max comes from the edge's tracks, so it is there even when the
        # confirmed count misses the one person waiting (a 3-6% miss rate would
        # otherwise blank the oldest-occupant signal for a message now and then)
        if self._dwell_max is not None:
            oldest = self._dwell_max + age
            head = head_wait(oldest, mu, s.residual_factor)
        stalled = None
        if queue > 0 and self._occupied_since is not None:
            since = self._occupied_since
            if self._last_departure_ts is not None:
                since = max(since, self._last_departure_ts)
            stalled = max(0.0, now - since)
        return WaitEstimate(
            queue_length=queue,
            predicted_wait_s=predicted,
            service_rate_per_s=mu,
            method=method,
            realised_wait_p50_s=p50,
            realised_wait_p90_s=p90,
            oldest_wait_s=oldest,
            forecast_wait_s=forecast,
            forecast_horizon_s=s.forecast_horizon_s,
            served_within_threshold_ratio=within,
            arrival_rate_per_s=arrival_rate,
            departure_rate_per_s=departure_rate,
            net_inflow_per_s=net,
            no_departure_for_s=stalled,
            updated_at=self._ts,
            head_wait_s=head,
        )
