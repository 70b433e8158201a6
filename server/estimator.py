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
  mean residual service until the first counter frees, in units of ``1/mu``:
  ``residual_factor``, or, with service points, ``mu E[min R]`` from how long each
  busy counter's customer has been served, :mod:`service_progress`),
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

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.counters import CounterObserver
from lobbywatch.server.forecast import (
    Projection,
    ordinary_and_priority_waits,
    project,
    wait_behind,
)
from lobbywatch.server.patience import PatienceLog, served_wait
from lobbywatch.server.service_progress import (
    Lognormal,
    expected_nth_completion,
    first_free_moments,
)
from lobbywatch.server.tickets import TicketSummary, TicketWait
from lobbywatch.server.track_relink import LostTrackLinker
from lobbywatch.server.walkouts import MidQueueWalkouts

#: largest residual factor taken from the counters' service progress (mean services of
#: the joint rate: a counter deep in a long service, the others unknown)
_MAX_OBSERVED_RESIDUAL = 4.0


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
        description="smoothed departures needed before the walk-out rate is estimated (and "
        "the observed service rate is used, with service_rate_gated)",
    )
    min_busy_s: float = Field(
        default=120.0,
        ge=0,
        description="smoothed occupied seconds needed before the walk-out rate is estimated "
        "(and the observed service rate is used, with service_rate_gated)",
    )
    service_rate_gated: bool = Field(
        default=False,
        description="the service rate stays on the configured fallback until min_departures "
        "and min_busy_s are reached (before session 20); off: the Gamma posterior from the "
        "first busy second, which warns earlier at the opening "
        '(docs/wait-estimation.md, "Session 20")',
    )
    busy_min_wait_s: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="an interval counts as busy (every open counter serving) only once the "
        "oldest person waiting has waited this long, seconds: a free counter calls the next "
        "customer within it, so a shorter stay is somebody passing to a free counter",
    )
    in_order_departures: bool = Field(
        default=True,
        description="without classified exits: the observed service rate counts only the "
        "departures that had waited at least as long as everyone still waiting (the head "
        "of a first-come-first-served queue), not lost tracks, phantoms or mid-queue exits",
    )
    calibrate_in_order_only: bool = Field(
        default=True,
        description="calibration, edges without departures by destination: only the dwells "
        "of departures in first-come-first-served order (at least the longest dwell still "
        "waiting) calibrate; a lost track's fragments and a mid-queue walk-out do not "
        '(docs/wait-estimation.md, "Session 20")',
    )
    calibrate_service_starts_only: bool = Field(
        default=True,
        description="when the edge classifies exits, calibrate from the completed dwells "
        "of service starts only (a lost track's dwell is cut short, a walk-out's is no "
        "wait to service)",
    )
    classify_lag_s: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="a departure the edge has not classified this long after it left is "
        "taken as unseen (edges that do not send departures_unseen_total) or forgotten "
        "(edges that do), seconds",
    )
    stuck_after_departures: int = Field(
        default=8,
        ge=0,
        description="the oldest occupant of a waiting zone is taken for no customer (a "
        "stationary false detection, a track never ended) once this many departures in a "
        "row left the queue while it stayed, younger than it: a first-come-first-served "
        "queue serves its head first. Until it leaves, the zone is read without it (one "
        "person fewer, the others' longest wait from the edge's dwell quantiles); 0 = never "
        '(docs/wait-estimation.md, "Session 20")',
    )
    stuck_after_quick_passes: int = Field(
        default=4,
        ge=0,
        description="...or once this many of those departures had waited less than "
        "busy_min_wait_s: a free counter called them while the oldest occupant stayed, and "
        "a free counter calls the head first (a priority customer arriving just as a "
        "counter frees is the exception, so more than one is needed); 0 = never "
        '(docs/wait-estimation.md, "Session 24")',
    )
    relink_lost_tracks: bool = Field(
        default=True,
        description="calibration, edges that send departures_unseen_total: an unseen "
        "departure and an arrival within relink_window_s are one person whose track was "
        "lost and re-acquired; their later service start calibrates with the wait from "
        'their first join (server/track_relink.py; docs/wait-estimation.md, "Session 20")',
    )
    relink_head: bool = Field(
        default=True,
        description="head-of-line wait, edges that send departures_unseen_total: a "
        "re-acquired person (relink_lost_tracks' link) keeps the wait from their first "
        "join while they wait, if it was under the W1 threshold when the track was lost; "
        "the link ends when the new track leaves or relink_head_passes departures in "
        'order pass it (server/track_relink.py; docs/wait-estimation.md, "Session 21")',
    )
    relink_head_passes: int = Field(
        default=1,
        ge=1,
        le=20,
        description="a head link ends after this many departures in order that joined "
        "after the first join left while it stayed",
    )
    relink_head_min_s: float = Field(
        default=60.0,
        ge=0,
        description="a head lost before waiting this long opens no head link, seconds",
    )
    relink_window_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="an arrival this close to an unseen departure re-acquires it, seconds",
    )
    walk_outs_mid_queue: bool = Field(
        default=False,
        description="edges without departures by destination or counter zones: a departure "
        "from the middle of the queue (younger than someone still waiting) that no arrival "
        "within relink_window_s re-acquires, and that is no re-acquired person leaving, is a "
        "walk-out, and the walk-out rate drains the queue ahead of a newcomer; priority "
        "customers served ahead are deducted at their share. Off by default: measured, it "
        "cut the wait error where customers walk out early (MAE -0.24 min) and cost the "
        "warning lead where they give up only after the threshold (median -0.5 to -0.8 "
        'min) (server/walkouts.py; docs/wait-estimation.md, "Session 22")',
    )
    walk_out_min_dwell_s: float = Field(
        default=60.0,
        ge=0,
        description="walk_outs_mid_queue: a mid-queue departure that waited less than this "
        "is not counted (phantoms are young), seconds",
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
    projection_horizon_s: float = Field(
        default=1800.0,
        gt=0,
        le=7200,
        description="how far ahead the fluid projection runs (joining times), seconds",
    )
    projection_step_s: float = Field(
        default=60.0, gt=0, description="grid step of the projection, seconds"
    )
    calibration_max: float = Field(
        default=1.5,
        ge=1,
        le=3,
        description="largest correction factor from realised waits (1 = no calibration)",
    )
    calibration_prior: float = Field(
        default=10.0, ge=0, description="calibration: prior weight, in departures"
    )
    calibration_min_s: float = Field(
        default=120.0,
        gt=0,
        description="calibration: only departures shown at least this prediction count",
    )
    calibration_window_s: float = Field(
        default=3600.0, gt=0, description="calibration: time constant, seconds"
    )
    calibration_lookback_s: float = Field(
        default=3600.0, gt=0, description="calibration: predictions kept this long, seconds"
    )
    calibration_levels_s: tuple[float, ...] = Field(
        default=(300.0, 600.0, 900.0),
        description="calibration by level: edges (seconds, increasing, above "
        "calibration_min_s) of the bands of the calibrated prediction in which realised / "
        "predicted is learned again, so a long prediction is corrected by what long "
        "predictions turned into (served customers are the ones whose patience outlasted "
        "the wait); empty = one factor for all (docs/wait-estimation.md, 'Calibration by level')",
    )
    calibrate_from_tickets: bool = Field(
        default=False,
        description="calibration: take kappa from realised ticket waits (issued -> called) "
        "instead of the camera's completed dwells once calibration_min_tickets are in; off "
        "by default: measured, it raised the wait MAE (docs/wait-estimation.md)",
    )
    calibration_min_tickets: float = Field(
        default=5.0,
        ge=0,
        description="calibration: realised ticket waits (issued -> called, decayed over "
        "calibration_window_s) needed before kappa comes from them instead of the camera's "
        "completed dwells",
    )
    served_wait_cv: float = Field(
        default=0.3,
        ge=0,
        le=0.6,
        description="the wait shown is a served customer's, E[W | W < patience], with the "
        "patience learned from the walk-outs' waits (Kaplan-Meier) and the potential wait W "
        "gamma with this coefficient of variation around the prediction; 0 = show the "
        "potential wait (server/patience.py, docs/wait-estimation.md 'Session 25')",
    )
    patience_min_walkouts: int = Field(
        default=20,
        ge=1,
        description="served_wait_cv: walk-outs seen (with their waits) before the patience "
        "is trusted",
    )
    calibrate_projection: bool = Field(
        default=True,
        description="scale the projected waits by the calibration from realised waits too "
        "(as the wait shown now)",
    )

    @model_validator(mode="after")
    def _levels(self) -> EstimatorSettings:
        edges = self.calibration_levels_s
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"calibration_levels_s must increase: {list(edges)}")
        if edges and edges[0] <= self.calibration_min_s:
            raise ValueError(
                f"calibration_levels_s starts at {edges[0]} s, not above calibration_min_s "
                f"({self.calibration_min_s} s): the band below it would learn nothing"
            )
        return self

    abandon_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="no longer used (the walk-out rate shares rate_window_s with the "
        "service rate); accepted so configs that set it stay valid",
    )
    service_time_censored: bool = Field(
        default=True,
        description="with service points: the mean service time is the total time on test "
        "(the services still running count as censored, from the first completed one) "
        "instead of the mean of at least 5 completed services, which reads short for the "
        'first hour of a day (docs/wait-estimation.md, "Session 20")',
    )
    service_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="with service points: time constant of the counters' mean service time "
        "(every busy second and completion weighted by exp(-age / this)), seconds",
    )
    service_progress: bool = Field(
        default=False,
        description="with service points: the residual until the first counter frees from "
        "how long each busy counter's customer has been served (lognormal fit to the "
        "counters' services) instead of residual_factor; off by default: measured, it moved "
        "the wait MAE by 0.01 min and the held-out alert figures the wrong way "
        '(docs/wait-estimation.md, "Service progress at the counters")',
    )
    empty_zone_residual: bool = Field(
        default=True,
        description="with service points: a customer joining an empty waiting zone while "
        "every open counter is seen serving waits for the first to free (the residual "
        "r / service rate, calibrated like any prediction) instead of 0 "
        '(docs/wait-estimation.md, "Session 24")',
    )
    service_progress_max_age_s: float = Field(
        default=90.0,
        gt=0,
        le=600,
        description="service progress: a service point's latest message older than this "
        "says nothing about its occupant now (source offline), seconds",
    )
    service_progress_head: bool = Field(
        default=True,
        description="service progress: also in the oldest occupant's expected total wait "
        "(head_wait_s), from which the alert rules' breach risk takes its residual",
    )
    service_progress_order: bool = Field(
        default=False,
        description="service progress: the newcomer's wait from the (L+1)-th completion "
        "at the counters given their progress (Monte Carlo over fixed draws), not only the "
        "first",
    )
    service_progress_projection: bool = Field(
        default=True,
        description="service progress: also in the projection (the observed residual fading "
        "into residual_factor over one mean service) and so the forecast rule",
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
    #: counters in the capacity: seen open at the service points, else configured
    counters_open: int | None = None
    #: "observed" (service points) or "configured"
    counters_method: str | None = None
    #: walk-outs per waiting person per second (``theta``; 0 when none are reported)
    abandon_rate_per_s: float | None = None
    #: share of the classified departures from the queue that walked out
    walkout_share: float | None = None
    #: projected wait of a customer joining at each ``projection_step_s`` from now
    projected_waits_s: tuple[float, ...] | None = None
    projection_step_s: float | None = None
    #: first joining offset (s) whose projected wait reaches the W1 threshold
    projected_breach_in_s: float | None = None
    #: when that customer is expected to cross the threshold (Unix s)
    breach_expected_at: float | None = None
    #: the predicted wait with one more counter open (same queue, mu * (c+1)/c)
    predicted_wait_one_more_counter_s: float | None = None
    #: class-aware waits of a customer joining now (priority served first)
    predicted_wait_ordinary_s: float | None = None
    predicted_wait_priority_s: float | None = None
    #: the waits of a customer who stays however long (class-blind, ordinary): what
    #: W1 judges, a walk-out being a wait too long too. ``predicted_wait_s`` is a
    #: served customer's, shorter once the customers' patience is known
    #: (``served_wait_cv``, server/patience.py); None: the same as the predicted waits
    potential_wait_s: float | None = None
    potential_wait_ordinary_s: float | None = None
    #: "history" (weekday x time-of-day profile blended with the trend), "trend", None
    arrival_forecast_method: str | None = None
    #: the zone's source (device/camera) is offline or down: its numbers are not current
    stale: bool = False
    stale_reason: str | None = None
    #: share of priority arrivals used for the class-aware waits, and where it came from:
    #: "tickets" (learned from a ticket system) or "configured"
    priority_share: float | None = None
    priority_share_method: str | None = None
    #: tickets issued in the share window (None: no ticket system reports this zone)
    priority_share_tickets: int | None = None
    #: realised waits (ticket issued -> called) by class over the ticket wait window
    ticket_wait_ordinary_p50_s: float | None = None
    ticket_wait_ordinary_p90_s: float | None = None
    ticket_waits_ordinary: int | None = None
    ticket_wait_priority_p50_s: float | None = None
    ticket_wait_priority_p90_s: float | None = None
    ticket_waits_priority: int | None = None
    #: tickets issued and not yet called or cancelled, by class
    tickets_open_ordinary: int | None = None
    tickets_open_priority: int | None = None
    #: the calibration factor kappa in the waits, and its ground truth: "tickets"
    #: (realised ticket waits) or "camera" (completed dwells)
    calibration_factor: float | None = None
    calibration_source: str | None = None
    #: the calibration by level on top of it (``calibration_levels_s``): the factor the
    #: class-blind wait shown got for its level (None: no bands, or tickets as the source)
    calibration_level_factor: float | None = None
    #: median and 90th percentile of the current occupants' waits so far (the edge's
    #: ``dwell_p50_s`` / ``dwell_p90_s`` plus the time since that message): with
    #: ``oldest_wait_s`` they place the people waiting (breach risk by position)
    waiting_p50_s: float | None = None
    waiting_p90_s: float | None = None
    #: priority customers arriving per second (``priority_share`` x arrival rate; 0
    #: without a priority class): each takes a service slot ahead of ordinary customers
    priority_arrival_rate_per_s: float | None = None
    #: expected seconds until the first counter frees, from how long each busy counter's
    #: customer has been served (service progress; None: not observed or switched off);
    #: the waits then use ``r = mu x first_free_s`` instead of ``residual_factor``
    first_free_s: float | None = None
    #: its standard deviation, seconds (the spread of the first completion)
    first_free_sd_s: float | None = None

    def seconds_to_wait(self, target_s: float) -> float | None:
        """Seconds until the predicted wait reaches ``target_s`` if the trend holds.

        0 when it already has; ``None`` when unknown or not rising. The wait
        grows by ``net_inflow / mu`` seconds per second (each extra person in
        the queue adds ``1/mu``).
        """
        wait = self.predicted_wait_s if self.potential_wait_s is None else self.potential_wait_s
        if wait is None:
            return None
        if wait >= target_s:
            return 0.0
        if not self.net_inflow_per_s or self.net_inflow_per_s <= 0 or not self.service_rate_per_s:
            return None
        growth = self.net_inflow_per_s / self.service_rate_per_s
        return (target_s - wait) / growth


def wait_for_queue(queue_length: float, service_rate_per_s: float, residual_factor: float) -> float:
    """Expected wait of a customer joining behind ``queue_length`` waiting people.

    With ``L >= 1`` people waiting every counter is busy; the newcomer starts
    service at the ``(L+1)``-th service completion: the first after the mean
    residual ``r/mu``, then ``L`` more at the joint completion rate ``mu``.
    An empty waiting zone predicts 0 (a counter is usually free; the estimator
    predicts the residual ``r/mu`` instead when the service points show every open
    counter serving: see ``empty_zone_residual`` and the docs).
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


#: a departure's completed dwell may read this much under the dwell of the person
#: still waiting who joined right after them (exit confirmation, rounding), seconds
IN_ORDER_TOLERANCE_S = 2.0


def in_order_departures(
    dwells: list[float], departures: int, people: int, dwell_max: float | None
) -> int:
    """How many of a message's ``departures`` left in first-come-first-served order.

    A departure is in order when its completed dwell (s) is at least the longest dwell
    of the ``people`` still waiting (``dwell_max``, s; minus
    :data:`IN_ORDER_TOLERANCE_S`): they were ahead of everyone who remains, as the
    person a counter calls is. A lost track or a phantom in the middle of the queue
    leaves while someone older still waits, so it is not one. Every departure counts
    when nobody remains or the edge sends no dwells (``dwell_max`` None, or fewer
    dwells than departures: those without one), as before this rule. Source: the
    delay of the last customer to enter service (LES) is the head's; Ibrahim and
    Whitt (2009).
    """
    if departures <= 0:
        return 0
    if people <= 0 or dwell_max is None:
        return departures
    known = dwells[-departures:] if len(dwells) >= departures else dwells
    floor = dwell_max - IN_ORDER_TOLERANCE_S
    return sum(d >= floor for d in known) + departures - len(known)


def mid_queue_dwells(
    dwells: list[float], departures: int, people: int, dwell_max: float | None
) -> list[float]:
    """The completed dwells (s) of this message's ``departures`` that left from the
    middle of the queue: shorter than the longest dwell still waiting (``dwell_max``,
    s, minus :data:`IN_ORDER_TOLERANCE_S`). None when nobody remains or the head is
    unknown (the complement of :func:`in_order_departures`)."""
    if departures <= 0 or people <= 0 or dwell_max is None:
        return []
    floor = dwell_max - IN_ORDER_TOLERANCE_S
    return [d for d in dwells[-departures:] if d < floor]


def in_order_dwells(dwells: list[float], dwell_max: float | None) -> list[float]:
    """The completed dwells (s) of departures in first-come-first-served order: at least
    the longest dwell still waiting (``dwell_max``, s, minus :data:`IN_ORDER_TOLERANCE_S`);
    all of them when the edge sends no ``dwell_max``. See :func:`in_order_departures`."""
    if dwell_max is None:
        return dwells
    floor = dwell_max - IN_ORDER_TOLERANCE_S
    return [d for d in dwells if d >= floor]


def classified_exits(msg: ZoneMessage) -> tuple[int | None, int | None]:
    """(cumulative service starts, cumulative walk-outs) of a waiting zone, if the edge
    classifies exits (optional protocol v1 fields; ``None`` from older edges)."""
    starts = getattr(msg, "service_starts_total", None)
    walkouts = getattr(msg, "walk_outs_total", None)
    return starts, walkouts


@dataclass(slots=True)
class _DecayedPairs:
    """Exponentially decayed sums of (realised wait, prediction) pairs and their count,
    all decayed to the latest pair's time ``at`` (seconds; time constant given per call)."""

    realised: float = 0.0
    predicted: float = 0.0
    n: float = 0.0
    at: float | None = None

    def add(self, at: float, realised: float, predicted: float, window_s: float) -> None:
        if self.at is not None and at > self.at:
            f = math.exp(-(at - self.at) / window_s)
            self.realised *= f
            self.predicted *= f
            self.n *= f
        self.at = at if self.at is None else max(self.at, at)
        self.realised += realised
        self.predicted += predicted
        self.n += 1.0

    def count(self, now: float | None, window_s: float) -> float:
        """The decayed number of pairs, decayed further to ``now`` (0 with none)."""
        if self.at is None or self.n <= 0:
            return 0.0
        if now is not None and now > self.at:
            return self.n * math.exp(-(now - self.at) / window_s)
        return self.n


def _ticket_fields(tickets: TicketSummary | None, share: float) -> dict[str, Any]:
    """The :class:`WaitEstimate` fields about the priority share and ticket waits."""
    if tickets is None:
        return {"priority_share": share, "priority_share_method": "configured"}
    o50, o90, on = tickets.waits.get("ordinary", (None, None, 0))
    p50, p90, pn = tickets.waits.get("priority", (None, None, 0))
    return {
        "priority_share": share,
        "priority_share_method": tickets.priority_share_method,
        "priority_share_tickets": tickets.share_tickets,
        "ticket_wait_ordinary_p50_s": o50,
        "ticket_wait_ordinary_p90_s": o90,
        "ticket_waits_ordinary": on,
        "ticket_wait_priority_p50_s": p50,
        "ticket_wait_priority_p90_s": p90,
        "ticket_waits_priority": pn,
        "tickets_open_ordinary": tickets.open_tickets.get("ordinary", 0),
        "tickets_open_priority": tickets.open_tickets.get("priority", 0),
    }


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

    def __init__(
        self,
        settings: EstimatorSettings,
        counters: int,
        mean_service_s: float,
        *,
        service_points: tuple[str, ...] = (),
        priority_share: float = 0.0,
    ) -> None:
        if counters < 1 or mean_service_s <= 0:
            raise ValueError("counters must be >= 1 and mean_service_s > 0")
        if not 0 <= priority_share < 1:
            raise ValueError("priority_share must be in [0, 1)")
        self.settings = settings
        self.counters = counters
        self.mean_service_s = mean_service_s
        self.priority_share = priority_share
        self.counter_observer = (
            CounterObserver(
                service_points,
                mean_service_s,
                service_window_s=settings.service_window_s,
                censored_max_age_s=(
                    settings.service_progress_max_age_s if settings.service_time_censored else None
                ),
            )
            if service_points
            else None
        )
        #: arrivals, service starts and walk-outs counted so far (sums of increments,
        #: resets handled): the collector's per-minute aggregates and history
        self.arrivals_seen = 0
        self.service_starts_seen = 0
        self.walk_outs_seen = 0
        # edge-classified exits from the queue (optional protocol fields), decayed sums
        # over busy intervals: service starts, walk-outs, unclassified departures
        self._busy_service = 0.0
        self._busy_walkouts = 0.0
        self._busy_unknown = 0.0
        self._classified = False
        self._service_starts: int | None = None
        self._walk_outs: int | None = None
        self._unseen: int | None = None
        # departures not classified yet, oldest first: (left at, left a busy interval,
        # completed dwell if the edge sent it). The edge classifies a departure up to
        # its transit time after it left, often in a later message, after the queue
        # emptied: the classification is booked against the interval the departure
        # left in, not the one it arrives in.
        self._unclassified: deque[tuple[float, bool, float | None]] = deque()
        #: the oldest occupant's join time (ts - dwell_max), how many departures left
        #: younger than it while it stayed, and its join time once taken as stuck
        self._oldest_join: float | None = None
        self._passed = 0
        self._quick_passes = 0
        self._stuck_join: float | None = None
        #: lost and re-acquired tracks, for the realised waits the calibration learns from
        self._relink = (
            LostTrackLinker(
                settings.relink_window_s,
                head_passes=settings.relink_head_passes,
                head_min_s=settings.relink_head_min_s,
            )
            if settings.relink_lost_tracks
            else None
        )
        #: walk-outs from the middle of the queue, for edges that do not classify exits:
        #: their waits are the patience that ran out (always), and with
        #: walk_outs_mid_queue and no service points their rate drains the queue
        self._mid_queue = MidQueueWalkouts(settings.relink_window_s, settings.walk_out_min_dwell_s)
        self._mid_queue_drains = settings.walk_outs_mid_queue and not service_points
        #: waits that ended in service or in a walk-out: the customers' patience
        self._patience = PatienceLog(min_walkouts=settings.patience_min_walkouts)
        # waiting person-seconds of the busy intervals (decayed like the departures)
        self._busy_person_s = 0.0
        # decayed exits beyond service over the busy intervals
        self._excess = 0.0
        # this message's classified walk-outs and unseen exits of busy intervals
        self._new_busy_walkouts = 0.0
        self._new_busy_unknown = 0.0
        # calibration from realised waits: the predictions shown at each time, and
        # decayed sums of (realised wait, prediction at that person's arrival)
        # (time, wait shown, ordinary wait shown, priority wait shown)
        self._shown: deque[tuple[float, float, float, float]] = deque()
        self._cal = _DecayedPairs()
        # the same from realised ticket waits (issued -> called)
        self._tcal = _DecayedPairs()
        # by level of the calibrated prediction (calibration_levels_s): one band each
        self._lcal = [_DecayedPairs() for _ in range(len(self.settings.calibration_levels_s) + 1)]
        self._ts: float | None = None
        self._people = 0
        self._arrivals: int | None = None
        self._departures: int | None = None
        self._dwell_max: float | None = None
        self._dwell_p50: float | None = None
        self._dwell_p90: float | None = None
        # exponentially decayed sums: departures while occupied / occupied seconds
        self._busy_departures = 0.0
        # the same, only the departures in first-come-first-served order
        self._busy_in_order = 0.0
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
        completed = [float(d) for d in msg.completed_dwells_s]
        dwells = completed
        for dwell in dwells:
            self._realised.append((ts, dwell))
        self._expire(max(now, ts))
        if self._ts is not None and ts <= self._ts:
            for dwell in dwells:
                self._calibrate(ts, dwell)
            return
        arrivals = _increase(msg.arrivals_total, self._arrivals)
        departures = _increase(msg.departures_total, self._departures)
        # departures that left ahead of everyone still waiting (the head), read once
        in_order_raw = in_order_departures(completed, departures, msg.people, msg.dwell_max_s)
        people, stats = self._without_stuck(
            msg, mid_queue_dwells(completed, departures, msg.people, msg.dwell_max_s)
        )
        # the head for the in-order rules: unknown while the oldest is stuck (every
        # departure counts, as for an edge without dwells); the dwell statistics kept
        # for the head and risk rules (_dwell_max...) are the stuck-free proxies
        dwell_max = msg.dwell_max_s if self._stuck_join is None else None
        starts_total, walkouts_total = classified_exits(msg)
        split = starts_total is not None and walkouts_total is not None
        column = 1  # the class-blind prediction (see _calibrate)
        if self.settings.calibrate_service_starts_only and split:
            # the edge classifies exits: a dwell calibrates once its departure is known
            # to be a service start (a lost track's dwell is cut short, a walk-out's
            # is no wait to service); see _fold_exits
            pending_dwells, dwells = dwells[:departures], dwells[departures:]
        else:
            pending_dwells = []
            if self.settings.calibrate_in_order_only and people > 0:
                # no split: only the head of the queue is known to have been served
                # (a lost track's fragment leaves while older people still wait, and
                # the re-acquired track is younger than those who joined after them)
                dwells = in_order_dwells(dwells, dwell_max)
                if dwell_max is not None:
                    # the head is an ordinary customer (priority ones are called ahead
                    # of it, out of order): their waits calibrate the ordinary
                    # prediction, or kappa would carry the priority delay into the
                    # ordinary wait twice. Without the head's dwell every departure
                    # calibrates, priority ones too: the class-blind prediction
                    column = 2
        for dwell in dwells:
            self._calibrate(ts, dwell, column)
        if self._departures is not None and msg.departures_total < self._departures:
            self._unclassified.clear()  # a restart: its pending departures are gone
            self._mid_queue.reset()
        self.arrivals_seen += arrivals
        unseen_total = getattr(msg, "departures_unseen_total", None)
        starts = walkouts = None
        unseen = 0
        if starts_total is not None and walkouts_total is not None:
            starts = _increase(starts_total, self._service_starts)
            walkouts = _increase(walkouts_total, self._walk_outs)
            if unseen_total is not None:
                unseen = _increase(unseen_total, self._unseen)
            self.service_starts_seen += starts
            self.walk_outs_seen += walkouts
            self._service_starts, self._walk_outs = starts_total, walkouts_total
            self._unseen = unseen_total
            if unseen_total is not None:
                self._follow_links(ts, (people, dwell_max), completed, arrivals)
        if not split:
            mid = mid_queue_dwells(completed, departures, people, dwell_max)
            confirmed = self._mid_queue.observe(ts, arrivals, mid, departures - len(mid))
            if self._mid_queue_drains:
                self._excess += confirmed
            for dwell in self._mid_queue.walked_out_dwells:
                self._patience.add(dwell, walked_out=True)
            self._mid_queue.walked_out_dwells.clear()
        self._new_busy_walkouts = self._new_busy_unknown = 0.0
        dt = ts - self._ts if self._ts is not None else math.inf
        observed = dt <= self.settings.max_gap_s
        busy = observed and self._busy_interval(people, departures)
        if starts is not None and walkouts is not None:
            # after a gap too: its departures still await their classification,
            # and their dwells their calibration (not busy time, no decay)
            self._fold_exits(
                ts,
                dt if observed else 0.0,
                (departures, pending_dwells),
                (starts, walkouts, unseen),
                unseen_total is None,
                busy,
            )
        if self._ts is not None:
            if observed:
                in_order = in_order_raw if self._stuck_join is None else departures
                self._fold_rates(dt, arrivals, (departures, in_order), busy)
                # exits beyond service in this interval, judged against the capacity as
                # it was then (a lunch break must not turn into "walk-outs" once the
                # capacity estimate has caught up)
                self._fold_excess(dt, departures, busy, ts)
            else:
                # unobserved time (the night, a device down): the arrival trend is a
                # rate of *now*, and what was seen before the gap ages by the gap's
                # length (an EWMA weighs a minute by exp(-age / window)). Without
                # this a collector running for days opened every morning with the
                # previous evening's rate and met the opening rush with it. The
                # service capacity keeps its memory: yesterday's counters are the
                # best prior for today's until departures are seen.
                decay = math.exp(-dt / self.settings.trend_window_s)
                self._trend_arrivals *= decay
                self._trend_departures *= decay
                self._trend_s *= decay
        if departures > 0:
            self._last_departure_ts = ts
        if people > 0 and (self._occupied_since is None or self._people == 0):
            self._occupied_since = ts
        elif people == 0:
            self._occupied_since = None
        self._ts = ts
        self._people = people
        self._arrivals = msg.arrivals_total
        self._departures = msg.departures_total
        self._dwell_max, self._dwell_p50, self._dwell_p90 = stats

    def _follow_links(
        self,
        ts: float,
        waiting: tuple[int, float | None],
        completed: list[float],
        arrivals: int,
    ) -> None:
        """This message's arrivals and departures (completed dwells, s) for the links of
        ``track_relink``: arrivals that may re-acquire a lost track, and the departures
        that open, end or pass the head links (``relink_head``). ``waiting``: the people
        still waiting and the longest dwell among them (s), without a stuck occupant
        (``None``: unknown, every departure is in order)."""
        relink = self._relink
        if relink is None:
            return
        people, remaining = waiting
        if self.settings.relink_head:
            if people <= 0 and remaining is None:
                # no track at all (a confirmed count of 0 alone misses people now and then)
                relink.clear_heads()
            if completed:
                floor = (
                    remaining - IN_ORDER_TOLERANCE_S
                    if people > 0 and remaining is not None
                    else None
                )
                relink.departed(ts, completed, floor)
        if arrivals:
            relink.arrived(ts, arrivals)

    def _without_stuck(
        self, msg: ZoneMessage, passers: list[float]
    ) -> tuple[int, tuple[float | None, float | None, float | None]]:
        """(people, (dwell_max_s, dwell_p50_s, dwell_p90_s)) of ``msg`` without an oldest
        occupant taken as stuck; ``passers``: the completed dwells (s) of this message's
        departures that left younger than the oldest still waiting (out of order).

        The oldest occupant is followed by its join time ``ts - dwell_max_s`` (the same
        within :data:`IN_ORDER_TOLERANCE_S`). Every departure that leaves younger than it
        while it stays passed it; in a first-come-first-served queue the head goes
        first, and priority customers pass it only now and then. Once
        ``stuck_after_departures`` have passed it, or ``stuck_after_quick_passes`` that
        had waited less than ``busy_min_wait_s`` (a free counter called them while it
        stayed), it is read as no customer until it leaves: one person fewer, and the
        longest wait of the others is taken from the edge's quantiles where the stuck
        track cannot be in them: the 90th percentile with 11 people or more (numpy's
        linear quantile then never reaches the largest), else the median with 3 or more
        (a lower bound of the real head's wait, so the head rule fires late rather than
        falsely), else none.
        """
        s = self.settings
        n, n_quick = s.stuck_after_departures, s.stuck_after_quick_passes
        stats = (msg.dwell_max_s, msg.dwell_p50_s, msg.dwell_p90_s)
        if (n <= 0 and n_quick <= 0) or msg.people <= 0 or msg.dwell_max_s is None:
            self._oldest_join, self._passed, self._quick_passes = None, 0, 0
            self._stuck_join = None
            return msg.people, stats
        join = msg.ts.timestamp() - msg.dwell_max_s
        same = self._oldest_join is not None and abs(join - self._oldest_join) <= (
            IN_ORDER_TOLERANCE_S
        )
        if not same:
            self._oldest_join, self._passed, self._quick_passes = join, 0, 0
            self._stuck_join = None
        self._passed += len(passers)
        self._quick_passes += sum(d < s.busy_min_wait_s for d in passers)
        if (n > 0 and self._passed >= n) or (n_quick > 0 and self._quick_passes >= n_quick):
            self._stuck_join = self._oldest_join
        if self._stuck_join is None:
            return msg.people, stats
        p50 = msg.dwell_p50_s if msg.people >= 3 else None
        p90 = msg.dwell_p90_s if msg.people >= 11 else None
        return msg.people - 1, (p90 if p90 is not None else p50, p50, p90)

    def _busy_interval(self, people: int, departures: int) -> bool:
        """Whether every open counter served throughout the interval ending now.

        Somebody waited throughout (or left, i.e. was served), so in a
        work-conserving queue every counter was busy and departures happened at
        full capacity. Requiring both ends keeps a one-message phantom detection
        in an empty zone from counting idle time as busy time. And the oldest
        person waiting at its start must have waited ``busy_min_wait_s``: a free
        counter calls the next customer within seconds, so a queue of people who
        just arrived may be people walking through to free counters; each of
        their departures would count as a full-capacity service in a few
        seconds of "busy" time (1.6-1.8x the true capacity on the independent
        simulation, where a called customer needs 5-16 s to leave the queue).
        An edge without dwell statistics keeps the occupancy rule alone.
        """
        if not (self._people > 0 and (people > 0 or departures > 0)):
            return False
        oldest = self._dwell_max
        return oldest is None or oldest >= self.settings.busy_min_wait_s

    def _fold_rates(self, dt: float, arrivals: int, left: tuple[int, int], busy: bool) -> None:
        """``left``: the interval's departures, and how many of them left in order."""
        s = self.settings
        departures, in_order = left
        decay = math.exp(-dt / s.rate_window_s)
        self._busy_departures *= decay
        self._busy_in_order *= decay
        self._busy_s *= decay
        self._busy_person_s *= decay
        if busy:
            self._busy_departures += departures
            self._busy_in_order += in_order
            self._busy_s += dt
            self._busy_person_s += self._people * dt
        decay = math.exp(-dt / s.trend_window_s)
        self._trend_arrivals = self._trend_arrivals * decay + arrivals
        self._trend_departures = self._trend_departures * decay + departures
        self._trend_s = self._trend_s * decay + dt

    def _fold_excess(self, dt: float, departures: int, busy: bool, ts: float) -> None:
        """Exits beyond service over the busy intervals (decayed like the person-seconds
        they are divided by, every interval, so a quiet spell ages both alike)."""
        decay = math.exp(-dt / self.settings.rate_window_s)
        self._excess *= decay
        if self._classified and self._busy_service > 0:
            # the edge saw these walk-outs; an unseen exit (a lost track, a walk-out
            # out of view) is one at the walk-out share. Even where the split is not
            # trusted for mu: there "every departure minus the capacity" would count
            # every lost track as a walk-out (theta L / mu at 0.4-0.55 on the
            # cross-check's queues of 3 or more, against 0.1-0.2 without lost tracks)
            self._excess += self._new_busy_walkouts + self._new_busy_unknown * (
                1.0 - self._service_share()
            )
        elif busy and self.counter_observer is not None:
            mu, method = self.service_rate(ts)
            if method == "counters":
                self._excess += departures - mu * dt

    def _service_share(self) -> float:
        service, walked = self._busy_service, self._busy_walkouts
        return service / (service + walked) if service + walked > 0 else 1.0

    def _split_trusted(self) -> bool:
        """The camera sees the service starts: they are a quarter of the exits or more
        and outnumber the walk-outs. A camera that sees no counters classifies almost
        none (its service starts are unseen exits); lost tracks, by contrast, add
        unseen exits beside the service starts it does see (up to 40 % of the exits
        of a long queue on the independent cross-check), and counting them as
        services, as ``D / B`` does, put mu at 2x the true capacity there."""
        service, walked, unseen = self._busy_service, self._busy_walkouts, self._busy_unknown
        return service > walked and service >= 0.25 * (service + walked + unseen)

    def _fold_exits(
        self,
        ts: float,
        dt: float,
        left: tuple[int, list[float]],
        classified: tuple[int, int, int],
        infer_unseen: bool,
        busy: bool,
    ) -> None:
        """Edge-classified exits (service starts, walk-outs, destination unseen), each
        booked against the interval its departure left in: busy or not.

        ``classified``: this message's increments of the three counters. Departures
        are classified in the order they left (one transit window for all), so the
        oldest pending departures are the ones classified now; a class's share of the
        busy ones is its share of the batch. With ``infer_unseen`` (an edge that does
        not send ``departures_unseen_total``) a departure still pending
        ``classify_lag_s`` after it left counts as unseen.

        ``left``: this message's departures and the completed dwells that go with
        them (in order; fewer when the edge sent fewer). A dwell calibrates the
        estimate when its departure is classified as a service start, in a batch of
        service starts only (within a mixed batch which dwell is which is unknown).
        """
        s = self.settings
        decay = math.exp(-dt / s.rate_window_s)
        self._busy_service *= decay
        self._busy_walkouts *= decay
        self._busy_unknown *= decay
        self._classified = True
        pending = self._unclassified
        departures, dwells = left
        # a handful per message at most
        pending.extend(
            (ts, busy, dwells[k] if k < len(dwells) else None) for k in range(departures)
        )
        starts, walkouts, unseen = classified
        batch = min(starts + walkouts + unseen, len(pending))
        popped = [pending.popleft() for _ in range(batch)]
        busy_left = sum(p[1] for p in popped)
        share = busy_left / batch if batch else 0.0
        relink = self._relink if not infer_unseen else None
        if starts >= batch:
            for at, _, dwell in popped:
                if dwell is not None:
                    wait = relink.realised(at, dwell) if relink is not None else dwell
                    self._calibrate(at, wait)
        elif relink is not None and unseen >= batch:
            for at, _, dwell in popped:
                if dwell is not None:
                    relink.lost(at, dwell)
        elif walkouts >= batch:
            for at, _, dwell in popped:
                if dwell is not None:
                    wait = relink.realised(at, dwell) if relink is not None else dwell
                    self._patience.add(wait, walked_out=True)
        # none waits longer than classify_lag_s: unseen where the edge does not say so
        # itself, and otherwise dropped (an edge that sends departures_unseen_total
        # but loses a classification must not grow this queue for days)
        overdue = 0
        while pending and ts - pending[0][0] > s.classify_lag_s:
            if pending.popleft()[1] and infer_unseen:
                overdue += 1
        self._new_busy_walkouts = walkouts * share
        self._new_busy_unknown = unseen * share + overdue
        self._busy_service += starts * share
        self._busy_walkouts += self._new_busy_walkouts
        self._busy_unknown += self._new_busy_unknown

    def _calibrate(self, left_at: float, dwell: float, column: int = 1) -> None:
        """Fold one realised wait against the prediction shown when that person joined:
        ``column`` 1 the class-blind one, 2 the ordinary customer's (what the head of the
        queue is, on an edge whose only served departures are the head's).

        Departures whose prediction was under ``calibration_min_s`` (an empty or
        one-person queue: the ratio is noise) are skipped, as are those who joined
        before the oldest prediction kept.
        """
        self._patience.add(dwell, walked_out=False)
        predicted = self._shown_at(left_at - dwell, column)
        if predicted is not None:
            window = self.settings.calibration_window_s
            self._cal.add(left_at, dwell, predicted, window)
            if len(self._lcal) > 1:
                band = bisect.bisect_right(self.settings.calibration_levels_s, predicted)
                self._lcal[band].add(left_at, dwell, predicted, window)

    def level_factor(self, predicted: np.ndarray | float) -> np.ndarray:
        """Calibration by level: realised / predicted within the band of ``predicted``
        (seconds, the prediction already scaled by :meth:`calibration`), linearly
        interpolated between the bands' mean predictions so the correction has no step
        at a band's edge; 1 where ``calibration_levels_s`` is empty.

        Each band's factor is ``(R_b + k m_b) / (P_b + k m_b)``: ``k =
        calibration_prior`` pseudo-departures at the band's mean prediction ``m_b``
        shrink it to 1, clipped to ``[1 / calibration_max, calibration_max]``. It is
        learned against the prediction before this factor (the full correction of what
        the one factor left in that band), the isotonic-by-bands refinement of the
        delay-history correction (Ibrahim and Whitt 2011).
        """
        x = np.asarray(predicted, dtype=np.float64)
        s = self.settings
        edges = s.calibration_levels_s
        if not edges or s.calibration_max <= 1:
            return np.ones_like(x)
        lows = (s.calibration_min_s, *edges)
        centres = np.empty(len(self._lcal))
        factors = np.empty(len(self._lcal))
        for b, pairs in enumerate(self._lcal):  # a handful of bands, not per detection
            hi = edges[b] if b < len(edges) else 2.0 * lows[b]
            mean = pairs.predicted / pairs.n if pairs.n > 0 else 0.5 * (lows[b] + hi)
            prior = s.calibration_prior * mean
            centres[b] = mean
            denominator = pairs.predicted + prior
            factors[b] = (pairs.realised + prior) / denominator if denominator > 0 else 1.0
        order = np.argsort(centres)
        f = np.interp(x, centres[order], factors[order])
        return np.clip(f, 1.0 / s.calibration_max, s.calibration_max)

    def _shown_at(self, joined: float, column: int) -> float | None:
        """The prediction (``column`` of ``_shown``: 1 class-blind, 2 ordinary, 3
        priority) shown when a person joined at ``joined``; ``None`` when it is older
        than the oldest kept or under ``calibration_min_s``."""
        shown = self._shown
        if not shown or joined < shown[0][0]:
            return None
        i = bisect.bisect_right(shown, (joined, math.inf)) - 1
        if i < 0:
            return None
        predicted = shown[i][column]
        return predicted if predicted >= self.settings.calibration_min_s else None

    def observe_ticket_wait(self, wait: TicketWait) -> None:
        """Fold one realised ticket wait (issued -> called) against the prediction of its
        class shown when the ticket was issued: the ticket system's ground truth.

        The same rules as the camera's completed dwells (:meth:`_calibrate`), into sums
        of their own; once ``calibration_min_tickets`` (decayed) are in, :meth:`calibration`
        uses these instead of the camera's.
        """
        predicted = self._shown_at(wait.issued_at, 3 if wait.klass == "priority" else 2)
        if predicted is not None:
            self._tcal.add(
                wait.called_at, wait.wait_s, predicted, self.settings.calibration_window_s
            )

    def calibration_source(self, now: float | None = None) -> str:
        """ "tickets" when ``calibrate_from_tickets`` is on and enough realised ticket waits
        are in (``calibration_min_tickets``, decayed to ``now``), else "camera" (completed
        dwells)."""
        s = self.settings
        if not s.calibrate_from_tickets:
            return "camera"
        n = self._tcal.count(now, s.calibration_window_s)
        return "tickets" if n > 0 and n >= s.calibration_min_tickets else "camera"

    def calibration(self, now: float | None = None) -> float:
        """Realised / predicted waits of recent departures, shrunk to 1 and clipped.

        ``(R + k P1) / (P + k P1)`` with ``R``, ``P`` the decayed sums of realised
        waits and of the predictions shown at those people's arrivals, ``k =
        calibration_prior`` pseudo-departures of ``P1 = calibration_min_s``, clipped
        to ``[1 / calibration_max, calibration_max]``. ``P`` sums the predictions as
        shown, which already carry the factor, so it settles at ``sqrt(R / P_raw)``: a
        half-way correction, kept on purpose (the full one biased the served waits low
        on training seeds: docs/wait-estimation.md "Calibration"). The realised waits are the
        ticket system's (issued -> called, against the prediction of the ticket's
        class) when :meth:`calibration_source` says "tickets", else the camera's
        completed dwells.
        """
        s = self.settings
        if s.calibration_max <= 1:
            return 1.0
        prior = s.calibration_prior * s.calibration_min_s
        realised, predicted = self._cal.realised, self._cal.predicted
        if self.calibration_source(now) == "tickets":
            realised, predicted = self._tcal.realised, self._tcal.predicted
        if predicted + prior <= 0:
            return 1.0  # no prior (calibration_prior 0) and nothing realised yet
        k = (realised + prior) / (predicted + prior)
        return min(max(k, 1.0 / s.calibration_max), s.calibration_max)

    def _remember(
        self,
        now: float,
        predicted: float,
        ordinary: float | None = None,
        priority: float | None = None,
    ) -> None:
        shown = self._shown
        if shown and now <= shown[-1][0] + 5.0:
            return
        shown.append(
            (
                now,
                predicted,
                predicted if ordinary is None else ordinary,
                predicted if priority is None else priority,
            )
        )
        horizon = now - self.settings.calibration_lookback_s
        while shown and shown[0][0] < horizon:
            shown.popleft()

    def observe_service_point(self, msg: ZoneMessage) -> None:
        """A message of one of this queue's service points (counter/desk zones)."""
        if self.counter_observer is not None:
            self.counter_observer.observe(
                msg.zone,
                msg.people,
                list(msg.completed_dwells_s),
                msg.ts.timestamp(),
                msg.dwell_max_s,
            )

    def _expire(self, now: float) -> None:
        horizon = now - self.settings.realised_window_s
        while self._realised and self._realised[0][0] < horizon:
            self._realised.popleft()

    def classifies_exits(self) -> bool:
        """Whether the edge sends service starts and walk-outs for this zone."""
        return self._service_starts is not None

    def updated_recently(self, since: float) -> bool:
        """Whether a message observed at or after ``since`` has been folded in (the zone
        was being watched then: its minute counts belong in the arrival history)."""
        return self._ts is not None and self._ts >= since

    def arrival_trend(self) -> float | None:
        """Smoothed arrival rate (people/s) once ``min_trend_s`` of data is in, else None."""
        if self._trend_s >= self.settings.min_trend_s:
            return self._trend_arrivals / self._trend_s
        return None

    def counters_now(self, now: float) -> tuple[int, str, float | None]:
        """(counters, "observed" | "configured", observed mean service s or None).

        Open counters seen at the service points while people waited
        (:mod:`counters`) replace the configured count once observed.
        """
        obs = self.counter_observer
        if obs is None:
            return self.counters, "configured", None
        queue_since = self._occupied_since if self._people > 0 else None
        reading = obs.reading(now, queue_since)
        if reading.open_counters:
            return reading.open_counters, "observed", reading.mean_service_s
        return self.counters, "configured", reading.mean_service_s

    def _counters_all_busy(self, now: float, counters: int) -> bool:
        """Whether the service points show every open counter serving at ``now``
        (``empty_zone_residual``; ``False`` without service points)."""
        obs = self.counter_observer
        if not self.settings.empty_zone_residual or obs is None:
            return False
        return obs.busy_now(now, self.settings.service_progress_max_age_s) >= counters

    def _progress(
        self, now: float, capacity_per_s: float, counters: int
    ) -> tuple[list[float], int, Lognormal] | None:
        """(elapsed services of the busy counters, counters without progress, service law)
        for :mod:`service_progress`; ``None`` when switched off, without service points,
        or when no service point's fresh message shows a customer being served.

        The service law is the lognormal of mean ``counters / mu`` (the capacity's own
        per-counter mean) and the log-variance fitted to the counters' services. Open
        counters without elapsed information (idle while people wait: at lunch, a missed
        detection; or no fresh message) count with the stationary residual.
        """
        s = self.settings
        obs = self.counter_observer
        if not s.service_progress or obs is None or capacity_per_s <= 0:
            return None
        elapsed = obs.elapsed_services(now, s.service_progress_max_age_s)
        if not elapsed:
            return None
        law = Lognormal(counters / capacity_per_s, obs.service_sigma2())
        return elapsed, max(0, counters - len(elapsed)), law

    def service_rate(self, now: float) -> tuple[float, str]:
        """(customers/s, method): the capacity of the open counters while people wait.

        In order of preference:

        * ``"counters"``: open counters seen at the service points divided by
          the smoothed mean service duration measured there (both observed;
          walk-outs never reach a counter, so they cannot inflate it; with
          ``service_time_censored`` the total time on test, the services still
          running included, :mod:`counters`);
        * ``"service_starts"``: the edge classifies exits from the queue
          (service start / walk-out / destination unseen) and most are
          classified: ``S / B``, the service starts per busy second;
        * ``"observed"``: every departure from the queue is a service start:
          ``D / B``;

        each (but the first) as the posterior mean ``(N + k) / (B + k / mu0)``
        of a Gamma prior worth ``k = prior_departures`` services at the
        configured rate ``mu0 = counters / mean_service_s`` (with the observed
        counters when seen), from the first busy second (with
        ``service_rate_gated``: once the decayed count ``N >= min_departures``
        and busy time ``B >= min_busy_s``, both decayed to ``now``); otherwise
        ``mu0`` itself (``"fallback"``).
        """
        s = self.settings
        counters, _, observed_mean = self.counters_now(now)
        if observed_mean is not None and self.counter_observer is not None:
            reading_open = self.counter_observer.reading(
                now, self._occupied_since if self._people > 0 else None
            ).open_counters
            if reading_open:
                return reading_open / observed_mean, "counters"
        prior = counters / self.mean_service_s
        age = max(0.0, now - self._ts) if self._ts is not None else 0.0
        decay = math.exp(-age / s.rate_window_s)
        departures = self._busy_departures * decay
        if s.in_order_departures:
            # priority customers are served ahead of older ordinary ones: out of
            # order, though services; about their share of the service starts
            departures = self._busy_in_order * decay / (1.0 - self.priority_share)
        busy = self._busy_s * decay
        method = "observed"
        if self._classified:
            service = self._busy_service * decay
            # the split is trusted only when most exits were classified (counters on
            # another camera: every service start is an unseen departure)
            if self._split_trusted():
                # only the positively identified service starts: unseen exits are
                # mostly lost tracks and walk-outs out of view (counting them at the
                # service share put mu at 1.13x the true capacity on training seeds
                # 1000-1002 of the hard families, against 1.08x without)
                departures = service
                method = "service_starts"
        if s.service_rate_gated:
            observed = departures >= s.min_departures and busy >= s.min_busy_s and departures > 0
        else:
            # the posterior from the first busy second: a queue that stands without
            # departures is itself evidence of slow service (the opening burst), and
            # the prior already weighs the first departures
            observed = (busy > 0 and s.prior_departures > 0) or departures > 0
        if observed and busy + s.prior_departures / prior > 0:
            rate = (departures + s.prior_departures) / (busy + s.prior_departures / prior)
            return rate, method
        return prior, "fallback"

    def abandonment(self, capacity_per_s: float) -> tuple[float, float | None]:
        """(theta, walk-out share of the classified exits).

        ``theta``: exits beyond service per waiting person per second, while people
        wait: ``X / integral L dt`` over the busy intervals, where ``X`` counts the
        walk-outs (and the unseen exits times the walk-out share) when the edge
        classifies exits, else, with counters seen, every departure minus the
        capacity of that moment times the interval, else (``walk_outs_mid_queue``) the
        mid-queue departures no arrival re-acquires (``server/walkouts.py``) less the
        priority customers' expected share of them; otherwise 0 (every departure
        is then a service in ``mu`` already). It is the drain of the queue ahead of a
        newcomer beyond the counters. 0 until ``min_departures`` / ``min_busy_s``
        of evidence; capped at ``mu`` per waiting person.
        """
        s = self.settings
        theta = 0.0
        departures, busy = self._busy_departures, self._busy_s
        excess = self._excess
        if self._mid_queue_drains and not self._classified and self.priority_share > 0:
            # priority customers served ahead of older ordinary ones left mid-queue too:
            # services, already in mu (at most share / (1 - share) per in-order one)
            share = self.priority_share
            excess -= self._busy_in_order * share / (1.0 - share)
        if departures >= s.min_departures and busy >= s.min_busy_s and self._busy_person_s > 0:
            theta = min(max(0.0, excess / self._busy_person_s), capacity_per_s)
        seen = self._classified and self._busy_service + self._busy_walkouts > 0
        return theta, (1.0 - self._service_share()) if seen else None

    def estimate(
        self,
        now: float,
        threshold_s: float | None = None,
        arrivals_ahead_per_s: np.ndarray | None = None,
        arrival_forecast_method: str | None = None,
        tickets: TicketSummary | None = None,
    ) -> WaitEstimate:
        """What is known at ``now``, with the projection of the next minutes.

        Args:
            now: Unix seconds.
            threshold_s: W1 threshold (default ``settings.wait_threshold_s``).
            arrivals_ahead_per_s: forecast arrival rate for each projection step
                from now (people/s, float64; e.g. from :mod:`arrivals`); default:
                the current arrival trend held constant.
            arrival_forecast_method: reported as is (``"history"``...).
            tickets: what the zone's ticket system says (``server.tickets``): its learned
                priority share replaces the configured one, its realised waits by
                class are reported.
        """
        s = self.settings
        threshold = threshold_s if threshold_s is not None else s.wait_threshold_s
        self._expire(now)
        waits = sorted(d for _, d in self._realised)
        p50 = _quantile(waits, 0.5) if waits else None
        p90 = _quantile(waits, 0.9) if waits else None
        within = sum(1 for w in waits if w <= threshold) / len(waits) if waits else None
        share = tickets.priority_share if tickets is not None else self.priority_share
        ticket_fields = _ticket_fields(tickets, share)
        kappa = self.calibration(now)
        ticket_fields["calibration_factor"] = kappa
        ticket_fields["calibration_source"] = self.calibration_source(now)
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
                **ticket_fields,
            )
        age = max(0.0, now - self._ts)
        mu, method = self.service_rate(now)
        counters, counters_method, _ = self.counters_now(now)
        theta, walkout_share = self.abandonment(mu)
        r = r_configured = s.residual_factor
        # the counters' progress is read once: the first completion and, with
        # service_progress_order, the (L+1)-th come from the same state
        progress = self._progress(now, mu, counters)
        first_free = first_sd = None
        if progress is not None:
            mean, var = first_free_moments(*progress)
            first_free, first_sd = mean, math.sqrt(var)
            # service progress: the observed residual, r = mu E[min R] (capped: a single
            # counter deep in a long service cannot hold the whole queue forever)
            r = min(mu * first_free, _MAX_OBSERVED_RESIDUAL)
        queue = self._people
        # the residual of the newcomer behind the whole queue: r, or, with
        # service_progress_order, what the counters' progress says of the (L+1)-th
        # completion, as a residual: mu E[T_(L+1)] - L
        r_queue = r
        if progress is not None and s.service_progress_order and queue >= 1:
            nth = expected_nth_completion(*progress, queue + 1)
            if nth is not None:
                r_queue = min(max(mu * nth - queue, 0.0), _MAX_OBSERVED_RESIDUAL)
        if queue >= 1:
            predicted = kappa * wait_behind(queue, mu, theta, r_queue)
        elif self._counters_all_busy(now, counters):
            # nobody waits, but no counter is free: the newcomer starts at the first
            # completion, the residual of the L >= 1 formula (W(0) = r / mu)
            predicted = kappa * r / mu
        else:
            predicted = 0.0
        arrival_rate = departure_rate = net = None
        if self._trend_s >= s.min_trend_s:
            arrival_rate = self._trend_arrivals / self._trend_s
            departure_rate = self._trend_departures / self._trend_s
            net = arrival_rate - departure_rate
        ordinary = priority = predicted
        lam_priority = 0.0
        if share > 0:
            lam_now = arrival_rate if arrival_rate is not None else 0.0
            lam_priority = share * lam_now
            ordinary, priority = ordinary_and_priority_waits(queue, mu, lam_priority, r, theta)
            if r_queue != r:
                ordinary = ordinary_and_priority_waits(queue, mu, lam_priority, r_queue, theta)[0]
            ordinary, priority = kappa * ordinary, kappa * priority
        if queue < 1:
            # an empty zone: whoever joins is first in line, whatever their class
            ordinary = priority = predicted
        curve = self._patience.survival() if s.served_wait_cv > 0 else None
        # potential / served, class-blind and ordinary: 1 until the patience is known
        stay_blind = stay_ordinary = 1.0
        if curve is not None and predicted > 0:
            # the wait of a customer who is served: their patience outlasted it
            served = served_wait(
                np.array([predicted, ordinary, priority]), *curve, s.served_wait_cv
            )
            stay_blind = predicted / served[0] if served[0] > 0 else 1.0
            stay_ordinary = ordinary / served[1] if served[1] > 0 else 1.0
            predicted, ordinary, priority = (float(v) for v in served)
        if queue >= 1:
            self._remember(now, predicted, ordinary, priority)
        else:
            # kappa and the level bands refine the queue-length predictor: the empty
            # zone's residual is shown, not learned from (it would move kappa with
            # waits the queue formula never predicted)
            self._remember(now, 0.0)
        levels = len(self._lcal) > 1 and self.calibration_source(now) == "camera"
        level_factor: float | None = None
        if levels:
            # the wait shown gets the level factor; what is remembered (and learned
            # against) is the prediction before it. The bands learn from the camera's
            # dwells: with the ticket system as the source, its kappa stands alone
            f = self.level_factor(np.array([predicted, ordinary, priority]))
            level_factor = float(f[0])
            predicted, ordinary, priority = (float(v) for v in f * (predicted, ordinary, priority))
        steps = max(1, math.ceil(s.projection_horizon_s / s.projection_step_s))
        lam: np.ndarray | None = None
        if arrivals_ahead_per_s is not None and len(arrivals_ahead_per_s) >= steps:
            lam = np.asarray(arrivals_ahead_per_s[:steps], dtype=np.float64)
        elif arrival_rate is not None:
            lam = np.full(steps, arrival_rate)
            arrival_forecast_method = "trend"
        # the residual of a customer joining later: what the counters' progress says now
        # fades into the configured factor over one mean service (the customers now at the
        # counters are gone by then)
        residual_path: float | np.ndarray = r_queue
        r_forecast = r_queue
        if first_free is not None:
            if s.service_progress_projection:
                fade = counters / mu
                offsets = np.arange(steps + 1, dtype=np.float64) * s.projection_step_s
                gap = r_queue - r_configured
                residual_path = r_configured + gap * np.exp(-offsets / fade)
                r_forecast = r_configured + gap * math.exp(-s.forecast_horizon_s / fade)
            else:
                residual_path = r_forecast = r_configured
        projection = (
            project(queue, lam, mu, theta, residual_path, s.projection_step_s)
            if lam is not None
            else None
        )
        if projection is not None and s.calibrate_projection:
            # the same delay-history correction as the wait shown now, so the projection
            # starts at the predicted wait (a breach it foresees is one the calibrated
            # predictor would announce)
            projection = Projection(projection.step_s, projection.queue, projection.waits_s * kappa)
        if projection is not None:
            forecast = projection.wait_at(s.forecast_horizon_s)
        else:
            forecast_queue = max(0.0, queue + (net or 0.0) * s.forecast_horizon_s)
            forecast = (
                wait_behind(forecast_queue, mu, theta, r_forecast) if forecast_queue >= 1 else 0.0
            )
        oldest = head = None
        # dwell_max comes from the edge's tracks, so it is there even when the
        # confirmed count misses the one person waiting (a 3-6% miss rate would
        # otherwise blank the oldest-occupant signal for a message now and then)
        if self._dwell_max is not None:
            oldest = self._dwell_max + age
        if self._relink is not None and s.relink_head:
            # a head whose track was lost keeps its clock (see track_relink)
            first_join = self._relink.head_join(now, threshold)
            if first_join is not None:
                oldest = max(oldest or 0.0, now - first_join)
        if oldest is not None:
            head = head_wait(oldest, mu, r if s.service_progress_head else r_configured)
        stalled = None
        if queue > 0 and self._occupied_since is not None:
            since = self._occupied_since
            if self._last_departure_ts is not None:
                since = max(since, self._last_departure_ts)
            stalled = max(0.0, now - since)
        breach_in = breach_at = None
        if projection is not None:
            breach_in = projection.first_reaching(threshold, s.projection_horizon_s)
            if breach_in is not None:
                breach_at = now + breach_in + threshold
        if head is not None and oldest is not None and head >= threshold:
            # the oldest occupant is expected to cross T first if they are still waiting
            head_breach = now + max(0.0, threshold - oldest)
            breach_at = head_breach if breach_at is None else min(breach_at, head_breach)
        # the same calibrated model with one more counter's capacity (not the raw model:
        # against a calibrated wait it could read longer than the wait now); a potential
        # wait, like the one W1 judges and the alert's advice sets it against
        one_more = (
            kappa * wait_behind(queue, mu * (counters + 1) / counters, theta, r_queue)
            if queue
            else 0.0
        )
        if levels:
            one_more = float(self.level_factor(one_more) * one_more)
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
            counters_open=counters,
            counters_method=counters_method,
            abandon_rate_per_s=theta,
            walkout_share=walkout_share,
            projected_waits_s=(
                tuple(float(x) for x in projection.waits_s) if projection is not None else None
            ),
            projection_step_s=s.projection_step_s if projection is not None else None,
            projected_breach_in_s=breach_in,
            breach_expected_at=breach_at,
            predicted_wait_one_more_counter_s=one_more,
            predicted_wait_ordinary_s=ordinary,
            predicted_wait_priority_s=priority,
            potential_wait_s=predicted * stay_blind if curve is not None else None,
            potential_wait_ordinary_s=ordinary * stay_ordinary if curve is not None else None,
            arrival_forecast_method=arrival_forecast_method if projection is not None else None,
            **ticket_fields,
            waiting_p50_s=self._dwell_p50 + age if self._dwell_p50 is not None else None,
            waiting_p90_s=self._dwell_p90 + age if self._dwell_p90 is not None else None,
            priority_arrival_rate_per_s=lam_priority,
            first_free_s=first_free,
            first_free_sd_s=first_sd,
            calibration_level_factor=level_factor,
        )
