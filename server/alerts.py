"""W1, service-stalled and device-offline alert rules (pure logic; time injected).

The :class:`AlertEngine` turns wait estimates and device liveness into alert
*events* (``fire``, ``escalate``, ``renotify``, ``resolve``). It owns no clock,
no I/O and no storage: the collector feeds it, stores the events in its outbox
and delivers them; :meth:`AlertEngine.snapshot` / :meth:`AlertEngine.restore`
carry open alerts across a restart so that they are neither lost nor fired
again.

Rules (all per zone, with a policy the collector composes from global, branch
and zone settings via :meth:`AlertPolicy.merged`):

* ``w1_wait`` — fires on any of its conditions, each with its own
  persistence clock (chosen on simulated branch-days, see
  ``docs/wait-estimation.md``):

  - *queue rule*: the predicted wait for a customer joining now reaches
    ``warn_fraction`` of the W1 threshold (or the trend reaches the threshold
    within ``warn_within_s``) while the oldest occupant's expected total wait
    is at least ``warn_head_fraction`` of it (the queue has lasted: short
    bursts clear before anyone is late) or the predicted wait alone reaches
    ``warn_alone_fraction`` of it; held for ``min_duration_s``;
  - *head rule*: the oldest occupant is within ``head_breach_services`` mean
    service completions of the threshold (``oldest + x/mu >= T``), held for
    ``head_min_duration_s``: they are likely to cross it before a counter frees;
  - *forecast rule*: the fluid projection has a customer joining within
    ``forecast_lead_s`` wait at least the threshold (see the policy fields);
  - *risk rule* (``risk_level`` > 0; 0.6 by default): the probability that somebody
    already waiting, at any position of the queue, waits longer than the
    threshold reaches ``risk_level`` (:func:`w1_breach_risk`), held for
    ``risk_min_duration_s``; ``risk_gate`` > 0 (0.5 by default) makes the queue
    and forecast rules require that probability too.

  Its severity is *critical* when the predicted wait reaches the threshold or
  somebody has already waited that long, else *warning*; a warning that turns
  critical is *escalated*. Resolves after the predicted wait stayed below
  ``resolve_fraction`` of the threshold and nobody is expected to cross it
  (oldest occupant's expected total below it) for ``resolve_after_s``
  (hysteresis in value and time); with ``risk_resolve_below`` > 0, also the
  breach risk must be below it (hysteresis in probability).
* ``service_stalled`` — people waiting and no departure for ``stalled_after_s``.
* ``device_offline`` — the device said offline (last will) or sent nothing
  for ``heartbeat_timeout_s``, for ``offline_after_s``, during business hours.

Nothing fires while a branch is closed (:class:`BusinessHours`); alerts still
open when it closes are resolved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lobbywatch.server.estimator import WaitEstimate
from lobbywatch.server.forecast import (
    breach_risk_by_position,
    unserved_by,
    wait_behind,
    waited_by_position,
)
from lobbywatch.server.state import silence_limit_s

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Kind = Literal["w1_wait", "service_stalled", "device_offline", "closing_backlog"]
Severity = Literal["warning", "critical"]


class BusinessHours(BaseModel):
    """Opening hours of one branch in its own time zone.

    ``weekly`` maps a weekday to opening intervals in local wall-clock time,
    e.g. ``{"mon": [["08:30", "12:00"], ["13:00", "17:30"]]}``; a day that is
    absent is closed. An interval whose close is not after its open crosses
    midnight (``["22:00", "02:00"]`` opens on that weekday and closes the next
    morning). Wall-clock times follow DST: 08:30 is 08:30 local on both sides of
    a change. ``holidays`` are local dates on which no interval *starts*.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    weekly: dict[Weekday, list[tuple[time, time]]] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _no_empty_intervals(self) -> BusinessHours:
        for day, intervals in self.weekly.items():
            for opens, closes in intervals:
                if opens == closes:
                    raise ValueError(f"{day}: interval {opens}-{closes} is empty")
        return self

    def _intervals(self, day: date) -> list[tuple[float, float]]:
        if day in self.holidays:
            return []
        tz = ZoneInfo(self.timezone)
        out = []
        for opens, closes in self.weekly.get(WEEKDAYS[day.weekday()], []):
            end_day = day if closes > opens else day + timedelta(days=1)
            out.append(
                (
                    datetime.combine(day, opens, tz).timestamp(),
                    datetime.combine(end_day, closes, tz).timestamp(),
                )
            )
        return out

    def open_minutes(self, day: date) -> np.ndarray:
        """Local minutes of ``day`` (bool, shape (1440,), minute ``h * 60 + m``) inside an
        opening interval, wall-clock (an interval crossing midnight covers the evening of
        its weekday and the next morning)."""
        mask = np.zeros(1440, dtype=bool)
        if day not in self.holidays:
            for opens, closes in self.weekly.get(WEEKDAYS[day.weekday()], []):
                lo, hi = opens.hour * 60 + opens.minute, closes.hour * 60 + closes.minute
                mask[lo : hi if closes > opens else 1440] = True
        yesterday = day - timedelta(days=1)
        if yesterday not in self.holidays:
            for opens, closes in self.weekly.get(WEEKDAYS[yesterday.weekday()], []):
                if closes <= opens:
                    mask[: closes.hour * 60 + closes.minute] = True
        return mask

    def closes_at(self, now: float) -> float | None:
        """End (Unix s) of the opening interval containing ``now``; ``None`` when closed."""
        today = datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date()
        for day in (today - timedelta(days=1), today):
            for start, end in self._intervals(day):
                if start <= now < end:
                    return end
        return None

    def is_open(self, now: float) -> bool:
        """Whether the branch is open at Unix time ``now``."""
        today = datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date()
        # yesterday's interval may cross midnight into today
        for day in (today - timedelta(days=1), today):
            for start, end in self._intervals(day):
                if start <= now < end:
                    return True
        return False


class AlertPolicy(BaseModel):
    """Alert rules of one zone (and its device). Durations in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    w1_threshold_s: float = Field(default=600.0, gt=0, description="W1: longest acceptable wait")
    # W1 defaults chosen on simulated branch-days (bench/alert_quality.py,
    # training seeds 1000-1039, reported on 2000-2029): see
    # docs/wait-estimation.md for the grid. A predicted wait of 0.8 T alone
    # fired on every queue that hovered near T (precision ~0.7): the queue rule
    # now needs the full threshold *and* a queue that has lasted.
    warn_fraction: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="queue rule: the predicted wait for a joining customer reaches "
        "this x threshold",
    )
    warn_head_fraction: float = Field(
        default=0.6,
        ge=0,
        le=2,
        description="queue rule: ...while the oldest occupant's expected total wait is at least "
        "this x threshold (0 = no such requirement)",
    )
    warn_alone_fraction: float = Field(
        default=1.35,
        gt=0,
        description="queue rule: ...or the predicted wait alone reaches this x threshold "
        "(a queue this long is unambiguous)",
    )
    head_breach_services: float = Field(
        default=0.5,
        ge=0,
        description="head rule: the oldest occupant is within this many mean service "
        "completions (x / service rate) of the threshold; 0.5 = about a 60% chance that "
        "they cross it before a counter frees (exponential residual); 0 = off",
    )
    head_priority_aware: bool = Field(
        default=True,
        description="head rule: the head's call comes at the service rate less the priority "
        'arrivals that take a free counter first (docs/wait-estimation.md, "Session 26")',
    )
    head_min_duration_s: float = Field(
        default=10.0,
        ge=0,
        description="head rule: condition must hold this long to fire (absorbs one-message "
        "glitches; keep it well below 0.5 / service rate or the rule fires after the breach)",
    )
    # The trend rule (warn_within_s) added false warnings without catching
    # more breaches, so it is opt-in.
    warn_within_s: float = Field(
        default=0.0,
        ge=0,
        description="warning when the trend reaches the threshold within this; 0 = off",
    )
    min_duration_s: float = Field(
        default=120.0,
        ge=0,
        description="condition must hold this long to fire (W1: the queue rule's persistence)",
    )
    resolve_fraction: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="resolve only below this x threshold (value hysteresis)",
    )
    resolve_after_s: float = Field(
        default=300.0, ge=0, description="...for this long (time hysteresis)"
    )
    renotify_s: float = Field(default=1800.0, ge=0, description="re-send a firing alert; 0 = never")
    escalate_after_s: float = Field(
        default=1800.0, ge=0, description="escalate an alert still firing after this; 0 = never"
    )
    stalled_after_s: float = Field(
        default=600.0,
        gt=0,
        description="service stalled: people waiting, no departure for this long",
    )
    stalled_min_people: int = Field(default=1, ge=1)
    heartbeat_timeout_s: float = Field(
        default=60.0, gt=0, description="a device silent this long counts as offline"
    )
    offline_after_s: float = Field(
        default=120.0, ge=0, description="device offline this long (in business hours) fires"
    )
    # Forecast rule (docs/wait-estimation.md): the fluid projection of the next
    # minutes' waits, from the queue, the open counters, the service rate and the
    # arrival forecast.
    forecast_lead_s: float = Field(
        default=450.0,
        ge=0,
        description="forecast rule: a customer joining within this many seconds is projected "
        "to wait at least the threshold; 0 = off",
    )
    forecast_min_fraction: float = Field(
        default=0.8,
        ge=0,
        description="forecast rule: ...while the predicted wait for a customer joining now "
        "is already this x threshold (the queue is there, not only foreseen)",
    )
    forecast_min_duration_s: float = Field(
        default=120.0, ge=0, description="forecast rule: condition must hold this long to fire"
    )
    # Breach-risk rule (docs/wait-estimation.md, "Lead: the third pass"): the
    # probability that someone already waiting crosses T, by position in the queue.
    risk_level: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="risk rule: the probability that a person already waiting (any position, "
        "placed by the edge's dwell quantiles) waits longer than the threshold reaches this; "
        "0 = off",
    )
    risk_level_alone: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="risk rule: the level it needs while neither the queue rule nor the head "
        "rule holds (the model's probability alone: nothing observed yet says the queue is "
        "long or its head near T); at or below risk_level: risk_level throughout. Fires of "
        "the risk rule alone were true 64 % of the time on training seeds, against 86-100 % "
        'with the queue or head rule (docs/wait-estimation.md, "Session 20")',
    )
    risk_min_duration_s: float = Field(
        default=60.0, ge=0, description="risk rule: condition must hold this long to fire"
    )
    risk_service_cv: float = Field(
        default=1.0,
        gt=0,
        le=3,
        description="risk rule: coefficient of variation of the service time (the spread of "
        "the service completions; 1 = Poisson completions)",
    )
    risk_gate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="queue and forecast rules: ...and somebody already waiting has at least "
        "this probability of waiting longer than the threshold (the risk rule's model; a "
        "queue past warn_alone_fraction needs no such evidence); 0 = no such requirement",
    )
    risk_calibrated: bool = Field(
        default=False,
        description="risk rule: scale the remaining waits by the estimator's calibration from "
        "realised waits (as the wait shown now)",
    )
    risk_first_free_spread: bool = Field(
        default=False,
        description="risk rule: with the counters' service progress in the estimate "
        "(first_free_sd_s), the spread of the first service completion comes from it instead "
        "of the completions' variance rate",
    )
    risk_resolve_below: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="W1 resolve: ...and the breach risk of the people waiting is below this "
        "(probability hysteresis: an alert is not withdrawn while somebody is still that "
        "likely to wait longer than the threshold); 0 = the risk is not consulted",
    )
    risk_walk_out: bool = Field(
        default=True,
        description="risk rule: the person may walk out before T (at the observed walk-out "
        "rate per waiting person), which is no breach",
    )
    # W1 is breached by ordinary customers: priority ones are called ahead of them. With
    # priority customers the class-blind wait under-states the joining ordinary
    # customer's, so the queue rule held late on priority days (docs/wait-estimation.md,
    # "Session 23").
    w1_ordinary_wait: bool = Field(
        default=True,
        description="queue and forecast rules, and the resolve: judge the wait of an ordinary "
        "customer joining now (priority customers are served ahead of them: the one at "
        "risk) where the estimate has it, instead of the class-blind wait; the same wait "
        "without priority customers",
    )
    hold_grace_s: float = Field(
        default=15.0,
        ge=0,
        description="W1 persistence clocks: a condition that lapses for at most this long "
        "keeps its clock (occlusion spells of 2-8 s hide the head of the queue); 0 = any "
        "lapse restarts it",
    )
    closing_warn_s: float = Field(
        default=1800.0,
        ge=0,
        description="closing_backlog: from this long before closing, tell once how many of "
        "the people waiting are projected not to be served in time; 0 = off",
    )
    closing_min_people: int = Field(
        default=1, ge=1, description="closing_backlog: fire only if at least this many"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertPolicy:
        if self.resolve_fraction > self.warn_fraction:
            raise ValueError("resolve_fraction must not exceed warn_fraction")
        if self.risk_level > 0 and self.risk_resolve_below > self.risk_level:
            raise ValueError(
                f"risk_resolve_below ({self.risk_resolve_below}) must not exceed risk_level "
                f"({self.risk_level}): an alert would resolve while it may fire"
            )
        return self

    def merged(self, overrides: Mapping[str, Any] | None) -> AlertPolicy:
        """This policy with ``overrides`` applied (validated). Compose global -> branch -> zone."""
        if not overrides:
            return self
        return AlertPolicy.model_validate({**self.model_dump(), **dict(overrides)})


@dataclass(frozen=True, slots=True, kw_only=True)
class _AlertFacts:
    """What an alert says: shared by the alert and each notification about it."""

    alert_id: str
    kind: str
    severity: str
    state: str
    branch: str
    subject: str
    region: str | None
    started_at: float
    ended_at: float | None
    summary: str
    value: float | None
    threshold: float | None
    escalated: bool = False
    #: what would help and when (W1: counters open, wait with one more counter,
    #: expected breach; closing_backlog: people not served in time), JSON-able
    details: Mapping[str, Any] | None = None


_FACT_FIELDS = tuple(f.name for f in dataclasses.fields(_AlertFacts))


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(_AlertFacts):
    """One alert episode. ``alert_id`` is stable for the episode's whole life."""

    last_notified_at: float | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent(_AlertFacts):
    """A notification to deliver: the alert as of the event, and what happened.

    ``event_id`` is ``{alert_id}#{revision}``: unique per event and the same if
    the event is produced again from the same state (idempotent delivery).
    """

    event_id: str
    event: str
    at: float
    #: the alert's revision as of this event (persisted, so a restart re-derives the same id)
    revision: int
    #: the severity before this event, only when the event changed it (an escalation
    #: from warning to critical); a time-based escalation keeps the severity, so None
    previous_severity: str | None = None

    @classmethod
    def of(
        cls, alert: Alert, event: str, at: float, previous_severity: str | None = None
    ) -> AlertEvent:
        return cls(
            event_id=f"{alert.alert_id}#{alert.revision}",
            event=event,
            at=at,
            revision=alert.revision,
            previous_severity=previous_severity,
            **{name: getattr(alert, name) for name in _FACT_FIELDS},
        )


@dataclass
class _RuleState:
    pending_since: float | None = None
    clear_since: float | None = None
    alert: Alert | None = None
    #: per-condition persistence clocks of a rule with several firing conditions
    held_since: dict[str, float] = dataclasses.field(default_factory=dict)
    #: since when each condition has lapsed (for the grace of ``held_for``)
    lapsed_since: dict[str, float] = dataclasses.field(default_factory=dict)

    def held_for(self, name: str, holds: bool, now: float, grace_s: float = 0.0) -> float | None:
        """Seconds since ``name`` started holding (``None`` when it does not hold now).

        A lapse of at most ``grace_s`` (from the first evaluation that found it
        false to the next that finds it true) does not restart the clock: an
        occlusion of a few seconds hides the head of the queue (one person fewer,
        a younger ``dwell_max``), and the collector evaluates on every message, so
        without it such a glitch would restart a 120 s persistence clock.
        """
        if not holds:
            since = self.lapsed_since.setdefault(name, now)
            if grace_s <= 0 or now - since > grace_s:
                self.held_since.pop(name, None)
            return None
        lapsed = self.lapsed_since.pop(name, None) if name in self.lapsed_since else None
        if lapsed is not None and now - lapsed > grace_s:
            self.held_since.pop(name, None)
        return now - self.held_since.setdefault(name, now)


@dataclass
class _Device:
    last_seen: float
    offline_since: float | None = None  # explicit offline status (last will)
    heartbeat_s: float | None = None  # announced in its status
    # its latest message the collector refused (malformed), and why
    refused_at: float | None = None
    refused_why: str | None = None


def _advice_text(estimate: WaitEstimate, tz: str | None) -> str:
    """'; 3 counters open, 6.1 min with one more; breach expected 12:40' (what is known)."""
    parts = []
    if estimate.counters_open is not None:
        seen = "" if estimate.counters_method == "observed" else " (configured)"
        part = f"{estimate.counters_open} counters open{seen}"
        if estimate.predicted_wait_one_more_counter_s is not None and estimate.queue_length:
            part += f", {estimate.predicted_wait_one_more_counter_s / 60:.1f} min with one more"
        parts.append(part)
    if estimate.breach_expected_at is not None:
        parts.append(f"breach expected {_clock(estimate.breach_expected_at, tz)}")
    return "; " + "; ".join(parts) if parts else ""


def _head_wait(estimate: WaitEstimate) -> float | None:
    """The oldest occupant's expected total wait (computed if the estimate lacks it)."""
    if estimate.head_wait_s is not None:
        return estimate.head_wait_s
    if estimate.oldest_wait_s is None or not estimate.service_rate_per_s:
        return None
    return estimate.oldest_wait_s + 1.0 / estimate.service_rate_per_s


def _potential(estimate: WaitEstimate) -> tuple[float | None, float | None]:
    """The class-blind and the ordinary customer's wait for one who stays however long:
    W1 judges these (a walk-out waited too long too), not the served customer's wait
    shown (shorter once the patience is known)."""
    if estimate.potential_wait_s is None:
        return estimate.predicted_wait_s, estimate.predicted_wait_ordinary_s
    return estimate.potential_wait_s, estimate.potential_wait_ordinary_s


def _joining_wait(estimate: WaitEstimate, policy: AlertPolicy) -> float | None:
    """The wait the W1 queue and forecast rules judge: with ``w1_ordinary_wait`` the
    ordinary customer's, never less than the class-blind one (priority customers only
    add to it; the calibration by level could otherwise invert the two slightly)."""
    blind, ordinary = _potential(estimate)
    if policy.w1_ordinary_wait and ordinary is not None and blind is not None:
        return max(blind, ordinary)
    return blind


def w1_queue_condition(estimate: WaitEstimate, policy: AlertPolicy) -> bool:
    """Queue rule: a joining customer would wait too long, and the queue is not a blip."""
    threshold = policy.w1_threshold_s
    predicted = _joining_wait(estimate, policy)
    if predicted is None:
        return False
    if predicted >= policy.warn_alone_fraction * threshold:
        return True
    to_threshold = estimate.seconds_to_wait(threshold)
    long_queue = predicted >= policy.warn_fraction * threshold or (
        to_threshold is not None and to_threshold <= policy.warn_within_s
    )
    if not long_queue:
        return False
    head = _head_wait(estimate)
    # A queue that formed a minute ago (a burst of arrivals) usually clears
    # before anyone reaches T; one whose oldest occupant has already used
    # most of the budget does not.
    if policy.warn_head_fraction > 0 and (
        head is None or head < policy.warn_head_fraction * threshold
    ):
        return False
    return _risk_gate(estimate, policy)


def _risk_gate(estimate: WaitEstimate, policy: AlertPolicy) -> bool:
    """``risk_gate``: somebody already waiting is that likely to cross T (or no gate).

    Without the inputs of the risk (no oldest occupant or no service rate, e.g. an
    edge that publishes no dwell statistics) the gate does not apply: no evidence
    either way leaves the queue and forecast rules as they were.
    """
    if policy.risk_gate <= 0:
        return True
    risk = w1_breach_risk(estimate, policy)
    return risk is None or risk >= policy.risk_gate


def w1_head_condition(estimate: WaitEstimate, policy: AlertPolicy) -> bool:
    """Head rule: the oldest occupant is about to cross the threshold.

    With a mean ``1/mu`` until the next counter frees (exponential residual),
    ``oldest + x/mu >= T`` means they cross T unless served within ``x/mu``:
    probability about ``exp(-x)`` (0.61 for ``x = 0.5``).
    """
    oldest = estimate.oldest_wait_s
    if policy.head_breach_services <= 0 or oldest is None:
        return False
    if oldest >= policy.w1_threshold_s:
        return True
    mu = estimate.service_rate_per_s
    if not mu:
        return False
    if policy.head_priority_aware:
        # the head is an ordinary customer (priority ones are called ahead of it): a
        # priority arrival takes the next free counter first, so the head's own call
        # comes at mu - lambda_p (floored at mu / 4, as in the class-aware wait)
        lam_p = max(0.0, estimate.priority_arrival_rate_per_s or 0.0)
        mu = max(mu - lam_p, mu / 4.0)
    return oldest + policy.head_breach_services / mu >= policy.w1_threshold_s


def w1_forecast_condition(estimate: WaitEstimate, policy: AlertPolicy) -> bool:
    """Forecast rule: the projection has a customer joining within ``forecast_lead_s``
    wait at least T, and a customer joining now already waits ``forecast_min_fraction``
    of T (with the queue rule's head requirement: the queue has lasted)."""
    if policy.forecast_lead_s <= 0 or estimate.projected_breach_in_s is None:
        return False
    threshold = policy.w1_threshold_s
    predicted = _joining_wait(estimate, policy)
    if predicted is None or predicted < policy.forecast_min_fraction * threshold:
        return False
    if estimate.projected_breach_in_s > policy.forecast_lead_s:
        return False
    head = _head_wait(estimate)
    if policy.warn_head_fraction > 0 and (
        head is None or head < policy.warn_head_fraction * threshold
    ):
        return False
    return _risk_gate(estimate, policy)


def _calibration(estimate: WaitEstimate, residual: float) -> float:
    """The estimator's calibration ratio kappa, recovered from the wait shown now
    (``predicted = kappa x (L + r) / (mu + theta L)``); 1 for an empty queue."""
    mu = estimate.service_rate_per_s
    predicted = _potential(estimate)[0]
    if not mu or predicted is None or estimate.queue_length < 1:
        return 1.0
    raw = wait_behind(estimate.queue_length, mu, estimate.abandon_rate_per_s or 0.0, residual)
    return predicted / raw if raw > 0 and predicted > 0 else 1.0


def w1_breach_risk(estimate: WaitEstimate, policy: AlertPolicy) -> float | None:
    """The largest probability, over the people waiting, of a wait longer than T.

    Each person's wait so far comes from their position (:func:`waited_by_position`:
    the oldest occupant and the edge's dwell quantiles), their remaining wait from
    the completions they need (:func:`breach_risk_by_position`: the service rate,
    priority arrivals taking slots, walk-outs ahead). ``None`` without an oldest
    occupant or a service rate.
    """
    oldest = estimate.oldest_wait_s
    mu = estimate.service_rate_per_s
    if oldest is None or not mu:
        return None
    waited = waited_by_position(
        estimate.queue_length, oldest, estimate.waiting_p50_s, estimate.waiting_p90_s
    )
    # the estimator's residual factor r, recovered from head_wait = oldest + r / mu
    head = estimate.head_wait_s
    residual = (head - oldest) * mu if head is not None else 1.0
    risk = breach_risk_by_position(
        waited,
        policy.w1_threshold_s,
        mu,
        estimate.priority_arrival_rate_per_s or 0.0,
        estimate.abandon_rate_per_s or 0.0,
        residual,
        policy.risk_service_cv,
        policy.risk_walk_out,
        _calibration(estimate, residual) if policy.risk_calibrated else 1.0,
        first_sd_s=estimate.first_free_sd_s if policy.risk_first_free_spread else None,
    )
    return float(risk.max())


def w1_risk_condition(
    estimate: WaitEstimate, policy: AlertPolicy, corroborated: bool = True
) -> bool:
    """Risk rule: somebody waiting is likely (``risk_level``) to wait longer than T;
    ``risk_level_alone`` when not ``corroborated`` (neither the queue rule nor the head
    rule holds now)."""
    if policy.risk_level <= 0:
        return False
    level = policy.risk_level if corroborated else max(policy.risk_level, policy.risk_level_alone)
    risk = w1_breach_risk(estimate, policy)
    return risk is not None and risk >= level


def w1_advice(estimate: WaitEstimate) -> dict[str, Any]:
    """The W1 alert's advice: counters open, the wait with one more, expected breach."""
    return {
        "counters_open": estimate.counters_open,
        "counters_method": estimate.counters_method,
        "predicted_wait_s": estimate.predicted_wait_s,
        "potential_wait_s": estimate.potential_wait_s,
        "predicted_wait_one_more_counter_s": estimate.predicted_wait_one_more_counter_s,
        "predicted_wait_ordinary_s": estimate.predicted_wait_ordinary_s,
        "predicted_wait_priority_s": estimate.predicted_wait_priority_s,
        "breach_expected_at_ts": estimate.breach_expected_at,
        "projected_breach_in_s": estimate.projected_breach_in_s,
        "service_rate_per_s": estimate.service_rate_per_s,
    }


def _clock(ts: float, tz: str | None) -> str:
    """``12:40`` in the branch's local time; ``12:40 UTC`` when its zone is unknown."""
    clock = datetime.fromtimestamp(ts, ZoneInfo(tz or "UTC")).strftime("%H:%M")
    return clock if tz and tz not in ("UTC", "Etc/UTC") else f"{clock} UTC"


def w1_severity(estimate: WaitEstimate, policy: AlertPolicy) -> Severity:
    """The level of a (firing) W1 alert: critical once the threshold is reached."""
    threshold = policy.w1_threshold_s
    predicted = _potential(estimate)[0]
    if (predicted is not None and predicted >= threshold) or (
        estimate.oldest_wait_s is not None and estimate.oldest_wait_s >= threshold
    ):
        return "critical"
    return "warning"


def w1_clear(estimate: WaitEstimate, policy: AlertPolicy) -> bool:
    """Whether a W1 alert may start resolving (below the hysteresis band, nobody late)."""
    threshold = policy.w1_threshold_s
    if estimate.predicted_wait_s is None:
        return False  # no data: keep what we have
    if estimate.oldest_wait_s is not None and estimate.oldest_wait_s >= threshold:
        return False
    head = _head_wait(estimate)
    if head is not None and head >= threshold:
        return False  # the oldest occupant is still expected to cross T
    if (_joining_wait(estimate, policy) or 0.0) >= policy.resolve_fraction * threshold:
        return False
    if policy.risk_resolve_below > 0:
        # withdrawing a warning while somebody is still likely to breach makes it
        # flap (every re-fire pages the manager again); no computable risk: no veto
        risk = w1_breach_risk(estimate, policy)
        if risk is not None and risk >= policy.risk_resolve_below:
            return False
    return True


class AlertEngine:
    """Evaluates the rules for every zone and device; see the module docstring.

    Args:
        policy_for: ``(branch, zone) -> AlertPolicy``; device rules of a branch
            use ``policy_for(branch, "")`` (the branch-level policy).
        hours_for: ``branch -> BusinessHours`` or ``None`` (always open).
        region_for: ``branch -> region`` (for routing), or ``None``.
        timezone_for: ``branch -> IANA time zone`` for the clock times in alert texts
            (default: the business hours' zone, else UTC, said as such).
    """

    def __init__(
        self,
        policy_for: Callable[[str, str], AlertPolicy],
        hours_for: Callable[[str], BusinessHours | None],
        region_for: Callable[[str], str | None],
        timezone_for: Callable[[str], str | None] | None = None,
    ) -> None:
        self._policy_for = policy_for
        self._hours_for = hours_for
        self._region_for = region_for
        self._timezone_for = timezone_for
        self._rules: dict[tuple[str, str, str], _RuleState] = {}
        self._devices: dict[tuple[str, str], _Device] = {}
        # first time each branch was seen open after being seen closed: an
        # offline device's clock starts no earlier than the opening
        self._was_open: dict[str, bool] = {}
        self._opened_at: dict[str, float] = {}
        #: (branch, zone) -> the closing time already announced (closing_backlog: once)
        self._closing_told: dict[tuple[str, str], float] = {}

    # --- inputs -------------------------------------------------------------

    def is_open(self, branch: str, now: float) -> bool:
        hours = self._hours_for(branch)
        open_ = hours is None or hours.is_open(now)
        if open_ and self._was_open.get(branch) is False:
            self._opened_at[branch] = now
        self._was_open[branch] = open_
        return open_

    def evaluate(
        self, branch: str, zone: str, estimate: WaitEstimate, now: float
    ) -> list[AlertEvent]:
        """Apply the W1 and service-stalled rules of one waiting zone."""
        policy = self._policy_for(branch, zone)
        w1 = self._rules.setdefault(("w1_wait", branch, zone), _RuleState())
        stalled = self._rules.setdefault(("service_stalled", branch, zone), _RuleState())
        closing = self._rules.setdefault(("closing_backlog", branch, zone), _RuleState())
        if not policy.enabled or not self.is_open(branch, now):
            reason = "alerts disabled" if not policy.enabled else "branch closed"
            return (
                self._stand_down(w1, now, reason)
                + self._stand_down(stalled, now, reason)
                + self._stand_down(closing, now, reason)
            )
        if estimate.stale:
            # Numbers from a source that is offline or down no longer describe the
            # lobby: the zone's alerts stand down and only the device alert speaks.
            reason = f"stale data: {estimate.stale_reason or 'source offline'}"
            return (
                self._stand_down(w1, now, reason)
                + self._stand_down(stalled, now, reason)
                + self._stand_down(closing, now, reason)
            )

        events: list[AlertEvent] = []
        threshold = policy.w1_threshold_s
        predicted = _potential(estimate)[0]
        oldest = estimate.oldest_wait_s
        tz = self._timezone(branch)
        # the value, the level and the notices' figures stay the class-blind wait (the
        # lobby's); the ordinary customer's, which the rules may have judged, is added
        judged = _joining_wait(estimate, policy)
        ordinary = (
            f" ({judged / 60:.1f} min for ordinary customers)"
            if judged is not None and predicted is not None and judged - predicted >= 30.0
            else ""
        )
        summary = (
            # zone ids are often the blueprint tag itself ("W1"): don't say it twice
            f"{'W1 wait' if zone == 'W1' else f'W1 {zone}'} at {branch}: predicted wait "
            f"{(predicted or 0) / 60:.1f} min{ordinary} (threshold {threshold / 60:.0f} min), "
            f"{estimate.queue_length} waiting"
            + (f", oldest waiting {oldest / 60:.1f} min" if oldest is not None else "")
            + _advice_text(estimate, tz)
        )
        # each firing condition has its own persistence clock
        grace = policy.hold_grace_s
        queue_now = w1_queue_condition(estimate, policy)
        head_now = w1_head_condition(estimate, policy)
        queue_for = w1.held_for("queue", queue_now, now, grace)
        head_for = w1.held_for("head", head_now, now, grace)
        forecast_for = w1.held_for("forecast", w1_forecast_condition(estimate, policy), now, grace)
        risk_now = w1_risk_condition(estimate, policy, corroborated=queue_now or head_now)
        risk_for = w1.held_for("risk", risk_now, now, grace)
        ready = (
            (queue_for is not None and queue_for >= policy.min_duration_s)
            or (head_for is not None and head_for >= policy.head_min_duration_s)
            or (forecast_for is not None and forecast_for >= policy.forecast_min_duration_s)
            or (risk_for is not None and risk_for >= policy.risk_min_duration_s)
        )
        events += self._step(
            ("w1_wait", branch, zone),
            w1,
            # an open alert only needs the level (for escalation)
            w1_severity(estimate, policy) if ready or w1.alert is not None else None,
            w1_clear(estimate, policy),
            now,
            policy,
            min_duration=0.0,
            summary=summary,
            value=predicted,
            threshold=threshold,
            details=w1_advice(estimate),
        )
        events += self._closing(branch, zone, closing, estimate, policy, now, tz)

        quiet = estimate.no_departure_for_s
        is_stalled = (
            estimate.queue_length >= policy.stalled_min_people
            and quiet is not None
            and quiet >= policy.stalled_after_s
        )
        events += self._step(
            ("service_stalled", branch, zone),
            stalled,
            "critical" if is_stalled else None,
            not is_stalled,
            now,
            policy,
            # the condition already contains its duration (stalled_after_s)
            min_duration=0.0,
            summary=(
                f"Service stalled at {branch} {zone}: {estimate.queue_length} waiting, "
                f"no departure for {(quiet or 0) / 60:.0f} min"
            ),
            value=quiet,
            threshold=policy.stalled_after_s,
            resolve_after=0.0,
        )
        return events

    def _timezone(self, branch: str) -> str | None:
        if self._timezone_for is not None:
            tz = self._timezone_for(branch)
            if tz is not None:
                return tz
        hours = self._hours_for(branch)
        return hours.timezone if hours is not None else None

    def _closing(
        self,
        branch: str,
        zone: str,
        rule: _RuleState,
        estimate: WaitEstimate,
        policy: AlertPolicy,
        now: float,
        tz: str | None,
    ) -> list[AlertEvent]:
        """closing_backlog: once per closing, how many waiting are projected unserved."""
        hours = self._hours_for(branch)
        if hours is None or policy.closing_warn_s <= 0 or rule.alert is not None:
            return []
        closes = hours.closes_at(now)
        mu = estimate.service_rate_per_s
        if closes is None or not mu or closes - now > policy.closing_warn_s:
            return []
        if self._closing_told.get((branch, zone)) == closes:
            return []
        waiting = estimate.queue_length
        unserved = unserved_by(waiting, mu, closes - now)
        if unserved < policy.closing_min_people:
            return []
        self._closing_told[(branch, zone)] = closes
        summary = (
            f"Closing at {branch} {zone}: {unserved} of {waiting} waiting projected not to "
            f"be served before closing at {_clock(closes, tz)} "
            f"({estimate.counters_open or '?'} counters open)"
        )
        # fires at once and stays open until closing (it is resolved as the branch closes)
        return self._step(
            ("closing_backlog", branch, zone),
            rule,
            "warning",
            False,
            now,
            policy,
            min_duration=0.0,
            summary=summary,
            value=float(unserved),
            threshold=float(policy.closing_min_people),
            details={
                "unserved": unserved,
                "waiting": waiting,
                "closes_at_ts": closes,
                "counters_open": estimate.counters_open,
                "service_rate_per_s": mu,
            },
        )

    def device_seen(
        self, branch: str, device: str, now: float, heartbeat_s: float | None = None
    ) -> None:
        """Any message from the device: it is alive (an offline alert resolves at the next
        tick). ``heartbeat_s``: the heartbeat it announced, if known (a device is silent
        after :func:`~lobbywatch.server.state.silence_limit_s`)."""
        dev = self._devices.get((branch, device))
        if dev is None:
            dev = self._devices[(branch, device)] = _Device(last_seen=now)
        else:
            dev.last_seen = max(dev.last_seen, now)
            dev.offline_since = None
        if heartbeat_s is not None:
            dev.heartbeat_s = heartbeat_s

    def device_refused(self, branch: str, device: str, now: float, why: str) -> None:
        """A message of a known device that the collector refused (malformed, or of another
        protocol version): it does not keep the device alive, but the alert that it sends
        nothing valid names the cause instead of calling it offline. Unknown devices are
        ignored (garbage must not create devices)."""
        dev = self._devices.get((branch, device))
        if dev is not None:
            dev.refused_at = now
            dev.refused_why = why

    def device_status(self, branch: str, device: str, online: bool, now: float) -> None:
        """A status message (``offline`` is typically the broker-published last will)."""
        if online:
            self.device_seen(branch, device, now)
            return
        dev = self._devices.setdefault((branch, device), _Device(last_seen=now))
        if dev.offline_since is None:
            dev.offline_since = now

    def tick(self, now: float) -> list[AlertEvent]:
        """Time-driven rules: device offline, re-notification, escalation, closing time.

        Call it regularly (about once a second); durations are measured from
        the first tick at which a condition holds.
        """
        events: list[AlertEvent] = []
        for (branch, device), dev in self._devices.items():
            policy = self._policy_for(branch, "")
            rule = self._rules.setdefault(("device_offline", branch, device), _RuleState())
            if not policy.enabled or not self.is_open(branch, now):
                reason = "alerts disabled" if not policy.enabled else "branch closed"
                events += self._stand_down(rule, now, reason)
                continue
            since = dev.offline_since
            limit = silence_limit_s(policy.heartbeat_timeout_s, dev.heartbeat_s)
            if since is None and now - dev.last_seen >= limit:
                since = dev.last_seen + limit
            if since is not None:
                since = max(since, self._opened_at.get(branch, since))
            offline_for = now - since if since is not None else None
            summary = f"Device {device} at {branch} offline for {(offline_for or 0) / 60:.0f} min"
            if (
                dev.offline_since is None
                and dev.refused_at is not None
                and dev.refused_at > dev.last_seen
                and now - dev.refused_at < limit
            ):
                # silent only in valid messages: what it does send is refused
                summary = (
                    f"Device {device} at {branch}: no valid message for "
                    f"{(now - dev.last_seen) / 60:.0f} min; its messages are refused: "
                    f"{dev.refused_why}"
                )
            if since is None and rule.alert is not None:
                # back: the resolve tells how long it was away, not "offline for 0 min"
                offline_for = rule.alert.value
                summary = (
                    f"Device {device} at {branch} back online after "
                    f"{(offline_for or 0) / 60:.0f} min offline"
                )
            events += self._step(
                ("device_offline", branch, device),
                rule,
                "critical" if since is not None else None,
                since is None,
                now,
                policy,
                min_duration=policy.offline_after_s,
                summary=summary,
                value=offline_for,
                threshold=policy.offline_after_s,
                resolve_after=0.0,
                pending_from=since,
            )
        for (kind, branch, subject), rule in self._rules.items():
            alert = rule.alert
            if alert is None:
                continue
            policy = self._policy_for(branch, "" if kind == "device_offline" else subject)
            if not self.is_open(branch, now):
                events += self._stand_down(rule, now, "branch closed")
                continue
            if rule.clear_since is not None:
                # resolving (its condition gone, the hysteresis running): an
                # escalation or a reminder about "0 waiting" pages people for nothing
                continue
            if (
                policy.escalate_after_s > 0
                and not alert.escalated
                and now - alert.started_at >= policy.escalate_after_s
            ):
                events.append(self._emit(rule, "escalate", now, escalated=True))
            elif (
                policy.renotify_s > 0
                and alert.last_notified_at is not None
                and now - alert.last_notified_at >= policy.renotify_s
            ):
                events.append(self._emit(rule, "renotify", now))
        return events

    # --- restart ------------------------------------------------------------

    def snapshot(self) -> list[Alert]:
        """Open alerts, to persist; :meth:`restore` them after a restart."""
        return [r.alert for r in self._rules.values() if r.alert is not None]

    def restore(self, alerts: list[Alert]) -> None:
        """Re-adopt open alerts: they are not fired again, and resolve/renotify as usual."""
        for alert in alerts:
            if alert.state != "firing":
                continue
            rule = self._rules.setdefault((alert.kind, alert.branch, alert.subject), _RuleState())
            rule.alert = alert

    # --- mechanics ----------------------------------------------------------

    def _step(
        self,
        key: tuple[str, str, str],
        rule: _RuleState,
        severity: Severity | None,
        clear: bool,
        now: float,
        policy: AlertPolicy,
        *,
        min_duration: float,
        summary: str,
        value: float | None,
        threshold: float | None,
        resolve_after: float | None = None,
        pending_from: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> list[AlertEvent]:
        alert = rule.alert
        if alert is None:
            if severity is None:
                rule.pending_since = None
                return []
            if rule.pending_since is None:
                rule.pending_since = pending_from if pending_from is not None else now
            if now - rule.pending_since < min_duration:
                return []
            kind, branch, subject = key
            rule.pending_since = None
            rule.clear_since = None
            rule.held_since.clear()
            rule.lapsed_since.clear()
            rule.alert = Alert(
                alert_id=f"{kind}:{branch}:{subject}:{int(now)}",
                kind=kind,
                severity=severity,
                state="firing",
                branch=branch,
                subject=subject,
                region=self._region_for(branch),
                started_at=now,
                ended_at=None,
                summary=summary,
                value=value,
                threshold=threshold,
                last_notified_at=now,
                details=details,
            )
            return [AlertEvent.of(rule.alert, "fire", now)]

        rule.alert = dataclasses.replace(alert, value=value, summary=summary, details=details)
        events = []
        if severity == "critical" and alert.severity == "warning":
            events.append(
                self._emit(rule, "escalate", now, previous="warning", severity="critical")
            )
        if not clear:
            rule.clear_since = None
            return events
        if rule.clear_since is None:
            rule.clear_since = now
        wait = policy.resolve_after_s if resolve_after is None else resolve_after
        if now - rule.clear_since >= wait:
            events.append(self._resolve(rule, now))
        return events

    def _emit(
        self,
        rule: _RuleState,
        event: str,
        now: float,
        previous: str | None = None,
        **changes: Any,
    ) -> AlertEvent:
        assert rule.alert is not None
        rule.alert = dataclasses.replace(
            rule.alert, last_notified_at=now, revision=rule.alert.revision + 1, **changes
        )
        return AlertEvent.of(rule.alert, event, now, previous_severity=previous)

    def _resolve(self, rule: _RuleState, now: float, reason: str | None = None) -> AlertEvent:
        assert rule.alert is not None
        summary = rule.alert.summary if reason is None else f"{rule.alert.summary} ({reason})"
        event = self._emit(rule, "resolve", now, state="resolved", ended_at=now, summary=summary)
        rule.alert = None
        rule.clear_since = None
        rule.pending_since = None
        rule.held_since.clear()
        rule.lapsed_since.clear()
        return event

    def _stand_down(self, rule: _RuleState, now: float, reason: str) -> list[AlertEvent]:
        rule.pending_since = None
        rule.held_since.clear()
        rule.lapsed_since.clear()
        if rule.alert is None:
            return []
        return [self._resolve(rule, now, reason)]
