"""Discrete-event bank-branch simulator producing the edge's ZoneMessage stream.

Pure core, time simulated (no wall clock, no network):

1. :func:`simulate_customers` / :func:`simulate_day` — one branch-day:
   non-homogeneous Poisson arrivals (base rate plus Gaussian peaks: opening
   burst, lunch, after work; drawn by thinning), counters opening and closing on
   a staffing schedule (lunch breaks, a counter absent all day), lognormal or
   gamma service times whose mean differs from the configured one, FCFS or
   non-preemptive priority (VIP first), customers who give up after a drawn
   patience (walk-outs) and customers who do not join a long queue (balking).
2. :func:`branch_messages` — what the branch's edge device would publish: one
   waiting zone plus one zone per counter, with cumulative arrivals/departures,
   departures by destination (``service_starts_total``, ``walk_outs_total``,
   ``departures_unseen_total``, as an edge with configured flows classifies
   them), completed dwells, dwell p50/p90/max, ``seq`` and ``ts``. Published
   either every ``report_interval_s`` (``publish_mode="interval"``) or as the
   real agent does (``"on_change"``: a changed zone at most every
   ``min_interval_s``, every zone on the ``heartbeat_s`` grid). Sensing noise:
   missed/extra people per observation, tracker id switches, occlusion spells
   that hide the head of the queue (out of ``people`` and the dwell statistics),
   phantom tracks and lost tracks (unseen departures, re-acquired as new
   arrivals with a fresh dwell), messages lost in transit, and an optional edge
   restart (cumulative counters restart from 0, occupants are re-detected as new
   arrivals; ``seq`` continues, as the agent stores it with its outbox).

3. :func:`ticket_messages` — optionally, what the branch's ticket system would
   publish (``TicketMessage``: a ticket ``issued`` at each arrival that joins the
   queue, ``called`` at its service start, ``cancelled`` at a walk-out), the
   ground truth the collector learns the priority share and class waits from.

The MQTT side (:func:`publish`) is in this module too but is the only part that
touches the network or the wall clock.

Ground truth API (stable; the bench and the replay measurements use it)
----------------------------------------------------------------------

* ``simulate_customers(sc) -> list[Customer]`` ordered by arrival, and
  ``simulate_day(sc) -> SimulatedDay`` (the same customers plus the staffing
  timeline). Both deterministic in ``sc.seed``.
* :class:`Customer` (times are Unix seconds, durations seconds):
  ``id``, ``arrival``, ``vip`` (priority class), ``klass`` (``"ordinary"`` or
  ``"priority"``), ``outcome`` (``"served"``, ``"walked_out"``, ``"balked"``),
  ``served``, ``service_start`` (NaN unless served), ``service_s`` (drawn
  service time), ``service_end``, ``counter`` (0-based, -1 unless served),
  ``left_queue`` (service start, walk-out time, or arrival for a balker),
  ``wait_s`` (true time in the queue: ``left_queue - arrival``),
  ``patience_s`` (inf for a customer who never gives up), ``queue_at_arrival``
  (people waiting, not in service, when they arrived).
* :class:`SimulatedDay`: ``scenario``, ``customers``, ``open_counters_at(t)``,
  ``capacity_per_s(t)`` (true service capacity: open counters / true mean
  service time, customers per second), ``walk_out_share`` (walk-outs / customers
  who joined the queue), ``staffing`` (``(t, open counters)`` change points).
* ``BranchScenario.nominal_counters`` is what the branch's configuration says
  (an absent counter is in it); ``scenario(kind, index, seed)`` draws a family's
  branch-day. Families: :data:`SCENARIO_KINDS` (classic) and
  :data:`HARD_SCENARIO_KINDS` (every ingredient above). Seeds 1000-1039 are the
  training seeds, 2000-2029 the held-out ones (see ``bench/alert_quality.py``).
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lobbywatch.protocol import (
    DEFAULT_ROOT,
    MAX_COMPLETED_DWELLS,
    AnyMessage,
    StatusMessage,
    TicketMessage,
    ZoneMessage,
    encode_message,
    topic_for,
)
from lobbywatch.zone_state import ZoneKind


class Peak(BaseModel):
    """A Gaussian bump in the arrival rate (e.g. the lunch peak)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_h: float = Field(description="local hour of the peak's centre")
    width_h: float = Field(gt=0, description="standard deviation, hours")
    extra_per_h: float = Field(ge=0, description="extra arrivals per hour at the centre")


class StaffChange(BaseModel):
    """From ``at_h`` (local hour) on, counters ``0..counters-1`` are open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_h: float
    counters: int = Field(ge=0)


class ServiceDist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lognormal", "gamma"] = "lognormal"
    mean_s: float = Field(default=300.0, gt=0)
    cv: float = Field(default=0.6, gt=0, description="coefficient of variation (std / mean)")
    vip_factor: float = Field(default=1.0, gt=0, description="VIP service time multiplier")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.kind == "lognormal":
            sigma2 = math.log1p(self.cv**2)
            mu = math.log(self.mean_s) - sigma2 / 2
            return rng.lognormal(mu, math.sqrt(sigma2), size)
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, self.mean_s / shape, size)


class PatienceSettings(BaseModel):
    """How long customers wait before they give up and walk out (abandonment).

    A share ``share`` of customers has a finite patience drawn uniformly from
    ``[min_s, max_s]``; the others never give up. ``share = 0`` disables walk-outs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(default=0.0, ge=0, le=1, description="share of impatient customers")
    min_s: float = Field(default=900.0, gt=0, description="shortest patience, seconds")
    max_s: float = Field(default=1200.0, gt=0, description="longest patience, seconds")

    @model_validator(mode="after")
    def _order(self) -> PatienceSettings:
        if self.max_s < self.min_s:
            raise ValueError("patience max_s must be >= min_s")
        return self

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        impatient = rng.uniform(size=size) < self.share
        drawn = rng.uniform(self.min_s, self.max_s, size)
        return np.where(impatient, drawn, np.inf)


class BalkSettings(BaseModel):
    """Customers who see a long queue and do not join it.

    ``P(balk | L waiting) = min(max_p, per_person * max(0, L - from_queue + 1))``;
    ``per_person = 0`` disables balking.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_queue: int = Field(default=8, ge=1, description="shortest queue anybody balks at")
    per_person: float = Field(default=0.0, ge=0, le=1, description="added P(balk) per person")
    max_p: float = Field(default=0.5, ge=0, le=1, description="largest P(balk)")

    def p_balk(self, waiting: int) -> float:
        return min(self.max_p, self.per_person * max(0, waiting - self.from_queue + 1))


class NoiseSettings(BaseModel):
    """Sensing noise of the edge (0 everywhere = perfect sensing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p_miss: float = Field(
        default=0.03, ge=0, le=1, description="P(a present person is not counted)"
    )
    extra_per_obs: float = Field(
        default=0.05, ge=0, description="mean phantom people per observation"
    )
    raw_p_miss: float = Field(
        default=0.10, ge=0, le=1, description="same for raw_count (unconfirmed)"
    )
    raw_extra_per_obs: float = Field(default=0.3, ge=0)
    id_switch_per_min: float = Field(
        default=0.005,
        ge=0,
        description="per occupant-minute, checked at each report: the tracker loses and "
        "re-acquires a person, counting one unseen departure + arrival and restarting the "
        "dwell",
    )
    p_drop: float = Field(default=0.01, ge=0, le=1, description="P(a message is lost in transit)")
    occlusions_per_h: float = Field(
        default=0.0,
        ge=0,
        description="occlusion spells per hour: the head of the waiting queue (oldest "
        "visible waiter) is hidden from people and the dwell statistics",
    )
    occlusion_s: tuple[float, float] = Field(
        default=(2.0, 8.0), description="occlusion spell length, uniform in [lo, hi] seconds"
    )
    phantoms_per_h: float = Field(
        default=0.0,
        ge=0,
        description="phantom tracks per hour in the waiting zone (an arrival and an unseen "
        "departure, counted while they last)",
    )
    phantom_mean_s: float = Field(default=20.0, gt=0, description="mean phantom lifetime, s")
    lost_tracks_per_min: float = Field(
        default=0.0,
        ge=0,
        description="per waiting-customer minute: the track is lost (an unseen departure, "
        "its dwell completed) and re-acquired reacquire_s later as a new arrival",
    )
    reacquire_s: float = Field(default=2.0, ge=0, description="gap before a lost track returns")
    p_exit_unseen: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="P(a walk-out leaves where the camera cannot see: reported unseen)",
    )

    @classmethod
    def none(cls) -> NoiseSettings:
        return cls(
            p_miss=0,
            extra_per_obs=0,
            raw_p_miss=0,
            raw_extra_per_obs=0,
            id_switch_per_min=0,
            p_drop=0,
        )


class BranchScenario(BaseModel):
    """One simulated branch-day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = "sim-b0001"
    device: str = "sim-d0001"
    camera: str = "cam1"
    waiting_zone: str = "waiting"
    timezone: str = "Europe/Berlin"
    day: date = date(2025, 6, 2)
    open_h: float = 9.0
    close_h: float = 17.0
    base_per_h: float = 30.0
    peaks: tuple[Peak, ...] = (
        Peak(at_h=10.0, width_h=0.6, extra_per_h=22.0),
        Peak(at_h=12.5, width_h=0.6, extra_per_h=30.0),
    )
    counters: int = Field(default=4, ge=0, description="counters open at opening")
    nominal_counters: int | None = Field(
        default=None,
        ge=1,
        description="counters the branch's configuration lists (absent ones included); "
        "default: counters",
    )
    staffing: tuple[StaffChange, ...] = Field(
        default=(), description="counter changes during the day (lunch breaks); sorted by at_h"
    )
    service: ServiceDist = ServiceDist()
    discipline: Literal["fcfs", "vip"] = "fcfs"
    vip_share: float = Field(default=0.0, ge=0, le=1)
    patience: PatienceSettings = PatienceSettings()
    balking: BalkSettings = BalkSettings()
    report_interval_s: float = Field(default=5.0, gt=0)
    publish_mode: Literal["interval", "on_change"] = Field(
        default="interval",
        description="interval: every zone every report_interval_s; on_change: as the edge "
        "agent (a changed zone at most every min_interval_s, all zones every heartbeat_s)",
    )
    min_interval_s: float = Field(default=1.0, ge=0)
    heartbeat_s: float = Field(default=30.0, gt=0)
    min_visible_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="customers who wait less are never confirmed in the waiting zone "
        "(they walk straight to a free counter; edge entry hysteresis)",
    )
    classify_departures: bool = Field(
        default=True,
        description="publish service_starts/walk_outs/departures_unseen (an edge with flows "
        "configured); false: an older edge that omits them",
    )
    counters_visible: bool = Field(
        default=True,
        description="the counters are on the waiting zone's camera (else a service start "
        "is an unseen departure)",
    )
    noise: NoiseSettings = NoiseSettings()
    restart_at_h: float | None = Field(
        default=None, description="edge restart (counters reset) time"
    )
    restart_downtime_s: float = Field(default=30.0, ge=0)
    wait_threshold_s: float | None = 600.0
    counter_zones: bool = Field(default=True, description="also publish one zone per counter")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> BranchScenario:
        if self.close_h <= self.open_h:
            raise ValueError("close_h must be after open_h")
        if list(self.staffing) != sorted(self.staffing, key=lambda s: s.at_h):
            raise ValueError("staffing must be sorted by at_h")
        if self.max_counters < 1:
            raise ValueError("at least one counter must open during the day")
        return self

    def midnight(self) -> float:
        """Local midnight of ``day`` as a Unix timestamp."""
        return datetime.combine(self.day, datetime.min.time(), ZoneInfo(self.timezone)).timestamp()

    def arrival_rate_per_h(self, hour: float) -> float:
        return self.base_per_h + sum(
            p.extra_per_h * math.exp(-0.5 * ((hour - p.at_h) / p.width_h) ** 2) for p in self.peaks
        )

    @property
    def max_counters(self) -> int:
        return max(
            [self.counters, self.nominal_counters or 0, *(s.counters for s in self.staffing)]
        )

    @property
    def configured_counters(self) -> int:
        """What the branch's configuration says (the collector's fallback capacity)."""
        return self.nominal_counters or self.counters


@dataclass(frozen=True, slots=True)
class Customer:
    """Ground truth for one simulated customer (times are Unix seconds).

    See the module docstring for the meaning of every field; the API is stable.
    """

    id: int
    arrival: float
    vip: bool
    service_s: float
    service_start: float
    counter: int
    outcome: Literal["served", "walked_out", "balked"] = "served"
    #: when the customer left the queue (service start, walk-out, or arrival if balked)
    left_queue: float = math.nan
    patience_s: float = math.inf
    queue_at_arrival: int = 0

    @property
    def served(self) -> bool:
        return self.outcome == "served"

    @property
    def klass(self) -> Literal["ordinary", "priority"]:
        return "priority" if self.vip else "ordinary"

    @property
    def wait_s(self) -> float:
        """True time in the queue (until service start, walk-out; 0 for a balker)."""
        end = self.service_start if self.outcome == "served" else self.left_queue
        return end - self.arrival

    @property
    def service_end(self) -> float:
        return self.service_start + self.service_s


@dataclass(frozen=True, slots=True)
class SimulatedDay:
    """One simulated branch-day's ground truth (see the module docstring)."""

    scenario: BranchScenario
    customers: list[Customer]
    #: ``(unix time, counters open from then on)``, the first at midnight
    staffing: tuple[tuple[float, int], ...]

    def open_counters_at(self, t: float) -> int:
        i = bisect_right([s[0] for s in self.staffing], t) - 1
        return self.staffing[max(i, 0)][1]

    def capacity_per_s(self, t: float) -> float:
        """True service capacity at ``t``: open counters / true mean service time."""
        return self.open_counters_at(t) / self.scenario.service.mean_s

    @property
    def walk_out_share(self) -> float:
        joined = [c for c in self.customers if c.outcome != "balked"]
        if not joined:
            return 0.0
        return sum(c.outcome == "walked_out" for c in joined) / len(joined)


def _arrivals(sc: BranchScenario, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (hours) on [open_h, close_h) by thinning a homogeneous process."""
    peak_rate = sc.base_per_h + sum(p.extra_per_h for p in sc.peaks)
    if peak_rate <= 0:
        return np.empty(0)
    span = sc.close_h - sc.open_h
    n = rng.poisson(peak_rate * span)
    hours = np.sort(rng.uniform(sc.open_h, sc.close_h, n))
    keep = rng.uniform(0, peak_rate, n) < np.array([sc.arrival_rate_per_h(h) for h in hours])
    return hours[keep]


def simulate_day(sc: BranchScenario) -> SimulatedDay:
    """Customers of the day plus its staffing timeline (see :func:`simulate_customers`)."""
    midnight = sc.midnight()
    changes = [(midnight + s.at_h * 3600.0, s.counters) for s in sc.staffing]
    staffing = ((midnight, sc.counters), *changes)
    return SimulatedDay(sc, simulate_customers(sc), staffing)


def simulate_customers(sc: BranchScenario) -> list[Customer]:
    """Run the queue for one branch-day; customers ordered by arrival.

    Doors close at ``close_h``; everybody inside is served unless they give up.
    A counter that is closed while busy finishes its customer first. Service is
    non-preemptive. A customer whose patience runs out before service leaves the
    queue then (walk-out); one who arrives to ``L`` waiting people does not join
    with probability ``balking.p_balk(L)``.

    Raises:
        RuntimeError: customers left waiting with no counter open at the end.
    """
    rng = np.random.default_rng([sc.seed, 1])
    midnight = sc.midnight()
    hours = _arrivals(sc, rng)
    n = len(hours)
    arrivals = midnight + hours * 3600.0
    vip = rng.uniform(size=n) < sc.vip_share
    service = sc.service.sample(rng, n)
    service = np.where(vip, service * sc.service.vip_factor, service)
    # separate streams: adding walk-outs or balking does not change the arrivals,
    # classes and service times above (so the classic families stay as they were)
    prng = np.random.default_rng([sc.seed, 3])
    patience = sc.patience.sample(prng, n) if sc.patience.share > 0 else np.full(n, np.inf)
    balk_u = prng.uniform(size=n)

    # event queue: (time, priority, kind, payload); at equal times completions
    # and staffing changes come before arrivals so a freed counter is reused.
    events: list[tuple[float, int, str, int]] = []
    for i in range(n):
        events.append((float(arrivals[i]), 2, "arrive", i))
    for k, change in enumerate(sc.staffing):
        events.append((midnight + change.at_h * 3600.0, 1, "staff", k))
    heapq.heapify(events)
    slots = sc.max_counters
    is_open = [i < sc.counters for i in range(slots)]
    busy: list[int | None] = [None] * slots
    waiting: list[tuple[int, float, int]] = []  # heap of (class, arrival, id); lazy deletion
    n_waiting = 0
    start = [math.nan] * n
    left = [math.nan] * n
    outcome: list[Literal["served", "walked_out", "balked"]] = ["served"] * n
    queue_at = [0] * n
    counter_of = [-1] * n

    def dispatch(now: float) -> None:
        nonlocal n_waiting
        for c in range(slots):
            if not n_waiting:
                return
            if is_open[c] and busy[c] is None:
                while True:
                    _, _, cid = heapq.heappop(waiting)
                    if math.isnan(left[cid]):
                        break  # skip the ones who walked out
                n_waiting -= 1
                busy[c] = cid
                start[cid] = left[cid] = now
                counter_of[cid] = c
                heapq.heappush(events, (now + float(service[cid]), 0, "done", c))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            queue_at[payload] = n_waiting
            if sc.balking.per_person > 0 and balk_u[payload] < sc.balking.p_balk(n_waiting):
                outcome[payload] = "balked"
                left[payload] = now
                continue
            klass = 0 if (sc.discipline == "vip" and vip[payload]) else 1
            heapq.heappush(waiting, (klass, now, payload))
            n_waiting += 1
            if math.isfinite(patience[payload]):
                heapq.heappush(events, (now + float(patience[payload]), 3, "abandon", payload))
        elif kind == "abandon":
            if math.isnan(left[payload]):
                outcome[payload] = "walked_out"
                left[payload] = now
                n_waiting -= 1
            continue
        elif kind == "done":
            busy[payload] = None
        else:
            target = sc.staffing[payload].counters
            for c in range(slots):
                is_open[c] = c < target
        dispatch(now)
    if n_waiting:
        raise RuntimeError("simulation ended with customers waiting and no open counter")
    return [
        Customer(
            id=i,
            arrival=float(arrivals[i]),
            vip=bool(vip[i]),
            service_s=float(service[i]),
            service_start=start[i] if outcome[i] == "served" else math.nan,
            counter=counter_of[i],
            outcome=outcome[i],
            left_queue=left[i],
            patience_s=float(patience[i]),
            queue_at_arrival=queue_at[i],
        )
        for i in range(n)
    ]


# ------------------------------------------------------------------ the edge's view

#: How a departure from the waiting zone is classified (the edge's flows).
_SERVICE, _WALK_OUT, _UNSEEN = 0, 1, 2


@dataclass
class _ZoneTracker:
    """What an edge pipeline knows about one zone (confirmed entries/exits, dwells)."""

    zone: str
    kind: ZoneKind
    blueprint: str | None
    threshold: float | None
    entries: dict[int, float] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    arrivals: int = 0
    departures: int = 0
    #: departures by class: service starts, walk-outs, unseen
    by_class: list[int] = field(default_factory=lambda: [0, 0, 0])
    pending: list[float] = field(default_factory=list)
    counting: bool = True
    published: tuple[int, ...] | None = None
    last_pub: float = -math.inf
    due: float = math.inf

    def enter(self, cid: int, t: float) -> None:
        self.entries[cid] = t
        if self.counting:
            self.arrivals += 1

    def leave(self, cid: int, t: float, how: int = _UNSEEN) -> None:
        entered = self.entries.pop(cid)
        self.hidden.discard(cid)
        if self.counting:
            self.departures += 1
            self.by_class[how] += 1
            self.pending.append(t - entered)

    def restart(self, t: float) -> None:
        """Pipeline restarted at ``t``: counters from 0, occupants re-detected now."""
        self.counting = True
        self.arrivals = len(self.entries)
        self.departures = 0
        self.by_class = [0, 0, 0]
        self.pending = []
        self.hidden.clear()
        for cid in self.entries:
            self.entries[cid] = t

    def visible(self) -> int:
        return len(self.entries) - len(self.hidden)

    def key(self) -> tuple[int, ...]:
        """What the agent counts as a change (occupancy and flows)."""
        return (self.visible(), self.arrivals, self.departures, *self.by_class)


def _quantile(sorted_values: list[float], q: float) -> float:
    """numpy's default (linear) quantile of sorted values, without numpy's overhead."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _noisy(true: int, p_miss: float, extra: float, rng: np.random.Generator) -> int:
    seen = int(rng.binomial(true, 1.0 - p_miss)) if p_miss > 0 and true > 0 else true
    return seen + (int(rng.poisson(extra)) if extra > 0 else 0)


def _report(
    tracker: _ZoneTracker,
    t: float,
    sc: BranchScenario,
    rng: np.random.Generator,
    seq: int,
    since_s: float,
) -> ZoneMessage:
    noise = sc.noise
    if noise.id_switch_per_min > 0 and tracker.entries:
        p = noise.id_switch_per_min * since_s / 60.0
        for cid in [c for c in tracker.entries if rng.uniform() < p]:
            # the track breaks: its dwell so far is reported as completed and the
            # same person is counted again as a new arrival with a fresh dwell
            tracker.leave(cid, t, _UNSEEN)
            tracker.enter(cid, t)
    true = tracker.visible()
    hidden = tracker.hidden
    dwells = sorted(t - e for c, e in tracker.entries.items() if c not in hidden)
    completed = tracker.pending[-MAX_COMPLETED_DWELLS:]
    tracker.pending = []
    waiting = tracker.kind == ZoneKind.WAITING
    flows = waiting and sc.classify_departures
    return ZoneMessage(
        v=1,  # protocol v1 (explicit: mypy cannot see the default)
        device=sc.device,
        seq=seq,
        ts=datetime.fromtimestamp(t, UTC),
        branch=sc.branch,
        camera=sc.camera,
        zone=tracker.zone,
        kind=tracker.kind,
        blueprint=tracker.blueprint,
        people=_noisy(true, noise.p_miss, noise.extra_per_obs, rng),
        raw_count=_noisy(true, noise.raw_p_miss, noise.raw_extra_per_obs, rng),
        dwell_p50_s=_quantile(dwells, 0.5) if dwells else None,
        dwell_p90_s=_quantile(dwells, 0.9) if dwells else None,
        dwell_max_s=dwells[-1] if dwells else None,
        arrivals_total=tracker.arrivals,
        departures_total=tracker.departures,
        completed_dwells_s=completed,
        wait_threshold_s=tracker.threshold if waiting else None,
        service_starts_total=tracker.by_class[_SERVICE] if flows else None,
        walk_outs_total=tracker.by_class[_WALK_OUT] if flows else None,
        departures_unseen_total=tracker.by_class[_UNSEEN] if flows else None,
    )


# sensing events: (time, order, tiebreak, zone (-1 = waiting), action, id, arg)
_LEAVE, _ENTER, _OCCLUDE, _SHOW = 0, 1, 2, 3
_Event = tuple[float, int, int, int, int, int, float]


def _sensing_events(
    sc: BranchScenario, customers: list[Customer], rng: np.random.Generator
) -> list[_Event]:
    """Everything the edge would see happen, before publishing (a heap-ordered list).

    Order at equal times: leaves before entries (a freed counter is re-used at
    once), occlusions after both.
    """
    noise = sc.noise
    events: list[_Event] = []
    k = 0

    def add(t: float, action: int, zone: int, cid: int, arg: float = 0.0) -> None:
        nonlocal k
        order = 0 if action == _LEAVE else 1 if action == _ENTER else 2
        events.append((t, order, k, zone, action, cid, arg))
        k += 1

    for cu in customers:
        if cu.outcome != "balked" and cu.wait_s >= sc.min_visible_wait_s:
            if cu.served:
                how = _SERVICE if sc.counters_visible else _UNSEEN
            elif noise.p_exit_unseen > 0 and rng.uniform() < noise.p_exit_unseen:
                how = _UNSEEN
            else:
                how = _WALK_OUT
            enter = cu.arrival
            n_lost = (
                rng.poisson(noise.lost_tracks_per_min * cu.wait_s / 60.0)
                if (noise.lost_tracks_per_min > 0)
                else 0
            )
            if n_lost:
                gap = noise.reacquire_s
                for t_lost in np.sort(rng.uniform(cu.arrival, cu.left_queue, n_lost)):
                    if t_lost <= enter or t_lost + gap >= cu.left_queue:
                        continue  # one track loss at a time, and before the real exit
                    add(enter, _ENTER, -1, cu.id)
                    add(float(t_lost), _LEAVE, -1, cu.id, _UNSEEN)
                    enter = float(t_lost) + gap
            add(enter, _ENTER, -1, cu.id)
            add(cu.left_queue, _LEAVE, -1, cu.id, how)
        if sc.counter_zones and cu.served:
            add(cu.service_start, _ENTER, cu.counter, cu.id)
            add(cu.service_end, _LEAVE, cu.counter, cu.id)
    t_open = sc.midnight() + sc.open_h * 3600.0
    span = (sc.close_h - sc.open_h) * 3600.0
    if noise.phantoms_per_h > 0:
        n = rng.poisson(noise.phantoms_per_h * span / 3600.0)
        starts = rng.uniform(t_open, t_open + span, n)
        lives = rng.exponential(noise.phantom_mean_s, n)
        for j, (t0, life) in enumerate(zip(starts, lives, strict=True)):
            add(float(t0), _ENTER, -1, -(j + 1))
            add(float(t0 + life), _LEAVE, -1, -(j + 1), _UNSEEN)
    if noise.occlusions_per_h > 0:
        n = rng.poisson(noise.occlusions_per_h * span / 3600.0)
        lo, hi = noise.occlusion_s
        for t0, d in zip(
            rng.uniform(t_open, t_open + span, n), rng.uniform(lo, hi, n), strict=True
        ):
            add(float(t0), _OCCLUDE, -1, 0, float(d))
    heapq.heapify(events)
    return events


def branch_messages(
    sc: BranchScenario, customers: list[Customer], *, status: bool = False
) -> Iterator[ZoneMessage | StatusMessage]:
    """The messages the branch's edge device publishes, in time order.

    Reports start at opening and continue until the last customer has left the
    last counter. Lost messages still consume a ``seq`` (the collector sees the
    gap) and their completed dwells are lost. With ``status``, the device's
    status messages are included too: ``online`` when it starts (and after a
    restart), ``offline`` when it stops (the MQTT last will, at a restart) — they
    share the device's ``seq`` sequence.
    """
    rng = np.random.default_rng([sc.seed, 2])
    events = _sensing_events(sc, customers, np.random.default_rng([sc.seed, 4]))
    waiting = _ZoneTracker(sc.waiting_zone, ZoneKind.WAITING, "W1", sc.wait_threshold_s)
    counters = [
        _ZoneTracker(f"counter{c + 1}", ZoneKind.CASH_COUNTER, None, None)
        for c in range(sc.max_counters)
    ]
    trackers = [waiting, *counters] if sc.counter_zones else [waiting]
    end = max(
        (cu.service_end if cu.served else cu.left_queue for cu in customers),
        default=sc.midnight() + sc.close_h * 3600,
    )
    start = sc.midnight() + sc.open_h * 3600.0
    on_change = sc.publish_mode == "on_change"
    grid = sc.heartbeat_s if on_change else sc.report_interval_s
    last_grid = start
    next_grid = start + grid
    stop_at = end + grid
    restart_t = sc.midnight() + sc.restart_at_h * 3600.0 if sc.restart_at_h is not None else None
    resume_t = restart_t + sc.restart_downtime_s if restart_t is not None else None
    down = False
    seq = 0

    def status_msg(
        at: float, state: Literal["online", "offline"], *, will: bool = False
    ) -> Iterator[StatusMessage]:
        # model_validate: the protocol models' positional Field defaults are
        # invisible to mypy without the pydantic plugin
        nonlocal seq
        common = {"device": sc.device, "ts": datetime.fromtimestamp(at, UTC), "branch": sc.branch}
        if will:
            # composed at connect time, published by the broker: it repeats the
            # seq of the last message assigned before that connect
            yield StatusMessage.model_validate(
                {**common, "seq": max(seq - 1, 0), "state": "offline", "will": True}
            )
            return
        yield StatusMessage.model_validate(
            {
                **common,
                "seq": seq,
                "state": state,
                "cameras": [sc.camera],
                "heartbeat_s": grid,
            }
        )
        seq += 1
        if state == "online":
            health = {"up": True, "fps": 5.0, "target_fps": 5.0}
            yield StatusMessage.model_validate(
                {
                    **common,
                    "seq": seq,
                    "camera": sc.camera,
                    "state": "online",
                    "camera_health": health,
                }
            )
            seq += 1

    def report(tr: _ZoneTracker, t: float, since_s: float) -> ZoneMessage | None:
        nonlocal seq
        msg = _report(tr, t, sc, rng, seq, since_s if math.isfinite(since_s) else 0.0)
        seq += 1
        tr.published = tr.key()
        tr.last_pub = t
        tr.due = math.inf
        if sc.noise.p_drop > 0 and rng.uniform() < sc.noise.p_drop:
            return None
        return msg

    def touched(tr: _ZoneTracker, t: float) -> None:
        if on_change and not down and tr.due == math.inf:
            if tr.key() != tr.published or tr.pending:
                tr.due = max(t, tr.last_pub + sc.min_interval_s)

    if status:
        yield from status_msg(start, "online")
    while True:
        t_event = events[0][0] if events else math.inf
        t_due = min(tr.due for tr in trackers) if on_change else math.inf
        t_restart = restart_t if restart_t is not None and not down else math.inf
        t_resume = resume_t if down and resume_t is not None else math.inf
        t = min(t_event, t_due, next_grid, t_restart, t_resume)
        if t > stop_at and t_event == math.inf:
            break
        if t == t_restart:
            down = True
            if status:
                yield from status_msg(t, "offline", will=True)
            for tr in trackers:
                tr.counting = False
                tr.due = math.inf
            continue
        if t == t_resume:
            down = False
            restart_t = resume_t = None
            for tr in trackers:
                tr.restart(t)
            if status:
                yield from status_msg(t, "online")
            for tr in trackers:  # after a (re)connect: every zone's current state
                msg = report(tr, t, 0.0)
                if msg is not None:
                    yield msg
            continue
        if t == t_event and t <= min(t_due, next_grid):
            _, _, _, zone, action, cid, arg = heapq.heappop(events)
            tr = waiting if zone == -1 else counters[zone]
            if zone != -1 and not sc.counter_zones:
                continue
            if action == _ENTER:
                tr.enter(cid, t)
            elif action == _LEAVE:
                tr.leave(cid, t, int(arg))
            elif action == _OCCLUDE:
                shown = [(e, c) for c, e in tr.entries.items() if c >= 0 and c not in tr.hidden]
                if not shown:
                    continue
                head = min(shown)[1]
                tr.hidden.add(head)
                heapq.heappush(events, (t + arg, 1, -1, -1, _SHOW, head, 0.0))
            elif action == _SHOW:
                if cid not in tr.hidden:
                    continue
                tr.hidden.discard(cid)
            touched(tr, t)
            continue
        if t == next_grid:
            since = t - last_grid
            last_grid = t
            next_grid += grid
            if down:
                continue
            for tr in trackers:
                msg = report(tr, t, since)
                if msg is not None:
                    yield msg
            continue
        for tr in trackers:  # a changed zone is due
            if tr.due <= t:
                msg = report(tr, t, t - tr.last_pub)
                if msg is not None:
                    yield msg
    if status:
        yield from status_msg(last_grid, "offline")


#: the ticket system's id in simulated branches (topic ``.../_tickets/qms-1/events``)
TICKET_SOURCE = "qms-1"


def ticket_messages(
    sc: BranchScenario, customers: list[Customer], *, source: str = TICKET_SOURCE
) -> Iterator[TicketMessage]:
    """What the branch's ticket system publishes, in time order, one ``seq`` sequence.

    Every customer who joins the queue draws a ticket at arrival (``A001``, ``A002``...
    for ordinary customers, ``P001``... for priority ones); it is ``called`` at the
    service start (by ``counter{c}``) or ``cancelled`` when the customer walks out.
    Balkers draw no ticket. No sensing noise: the ticket system is the ground truth.
    """
    events: list[tuple[float, int, int, str, str, str, str | None]] = []
    numbers = {"ordinary": 0, "priority": 0}
    for cu in customers:
        if cu.outcome == "balked":
            continue
        numbers[cu.klass] += 1
        ticket = f"{'P' if cu.vip else 'A'}{numbers[cu.klass]:03d}"
        events.append((cu.arrival, 0, cu.id, "issued", ticket, cu.klass, None))
        if cu.served:
            by = f"counter{cu.counter + 1}"
            events.append((cu.service_start, 1, cu.id, "called", ticket, cu.klass, by))
        else:
            events.append((cu.left_queue, 1, cu.id, "cancelled", ticket, cu.klass, None))
    events.sort()
    for seq, (at, _, _, event, ticket, klass, counter) in enumerate(events, 1):
        yield TicketMessage.model_validate(
            {
                "source": source,
                "seq": seq,
                "ts": datetime.fromtimestamp(at, UTC),
                "branch": sc.branch,
                "zone": sc.waiting_zone,
                "event": event,
                "ticket": ticket,
                "class": klass,
                "counter": counter,
            }
        )


def merged_messages(
    scenarios: Iterable[BranchScenario], *, status: bool = False, tickets: bool = False
) -> Iterator[AnyMessage]:
    """All branches' messages merged in ``ts`` order (for many branches at once); with
    ``tickets``, their ticket systems' events too (after the edge's at equal ``ts``)."""
    streams: list[Iterator[AnyMessage]] = []
    for sc in scenarios:
        customers = simulate_customers(sc)
        streams.append(branch_messages(sc, customers, status=status))
        if tickets:
            streams.append(ticket_messages(sc, customers))
    return heapq.merge(*streams, key=lambda m: m.ts)


SCENARIO_KINDS = ("normal", "lunch_break", "understaffed", "vip", "restart")
#: Families of the harder simulator: every branch-day has an opening burst, lunch and
#: after-work peaks, service times with a mean of 3-8 min and CV 0.6-1.2 (unlike the
#: configured 5 min), 5-15 % priority customers served first (20-35 % in
#: hard_priority), walk-outs after 7-20 min, balking at long queues, occlusion spells,
#: phantom and lost tracks, and publishes on change plus heartbeat.
HARD_SCENARIO_KINDS = (
    "hard_normal",
    "hard_lunch",
    "hard_absent",
    "hard_understaffed",
    "hard_priority",
    "hard_restart",
)
ALL_SCENARIO_KINDS = SCENARIO_KINDS + HARD_SCENARIO_KINDS


def scenario(kind: str, index: int, seed: int, **overrides: object) -> BranchScenario:
    """Named, randomised scenario families (see ``docs/wait-estimation.md``).

    ``seed`` and ``index`` draw the family's free parameters (demand level,
    peak sizes, service time), so many branch-days differ from one another.

    Raises:
        ValueError: unknown family.
    """
    if kind not in ALL_SCENARIO_KINDS:
        raise ValueError(f"unknown scenario {kind!r}; choose from {', '.join(ALL_SCENARIO_KINDS)}")
    rng = np.random.default_rng([seed, index, 7])
    if kind in HARD_SCENARIO_KINDS:
        family = HARD_SCENARIO_KINDS.index(kind) + 1
        params = _hard_params(kind, index, np.random.default_rng([seed, index, 7, family]))
        params.update(overrides)
        return BranchScenario.model_validate(params)
    # Calibrated so the families' average lobby wait spans roughly the OpsDog
    # benchmark range for retail branches (130-738 s, mean 364 s), with the
    # morning and lunch peaks driving the W1 breaches.
    demand = float(rng.uniform(0.75, 1.05))
    mean_s = float(rng.uniform(240, 300))
    params = {
        "branch": f"sim-b{index:04d}",
        "device": f"sim-d{index:04d}",
        "seed": int(rng.integers(0, 2**31)),
        "base_per_h": 30.0 * demand,
        "peaks": (
            Peak(at_h=float(rng.uniform(9.7, 10.5)), width_h=0.6, extra_per_h=22.0 * demand),
            Peak(at_h=float(rng.uniform(12.2, 12.8)), width_h=0.6, extra_per_h=30.0 * demand),
        ),
        "service": ServiceDist(kind="lognormal", mean_s=mean_s, cv=0.6),
    }
    if kind == "lunch_break":
        params["staffing"] = (
            StaffChange(at_h=12.0, counters=3),
            StaffChange(at_h=13.5, counters=4),
        )
    elif kind == "understaffed":
        params["counters"] = 3
        params["base_per_h"] = 22.0 * demand
        params["peaks"] = tuple(
            p.model_copy(update={"extra_per_h": p.extra_per_h * 0.75})
            for p in params["peaks"]  # type: ignore[attr-defined]
        )
        params["service"] = ServiceDist(kind="gamma", mean_s=mean_s, cv=0.8)
    elif kind == "vip":
        params["discipline"] = "vip"
        params["vip_share"] = 0.1
    elif kind == "restart":
        params["restart_at_h"] = float(rng.uniform(10.0, 15.0))
        params["noise"] = NoiseSettings(p_miss=0.06, extra_per_obs=0.1, p_drop=0.03)
    params.update(overrides)
    return BranchScenario.model_validate(params)


def _hard_params(kind: str, index: int, rng: np.random.Generator) -> dict[str, object]:
    """Free parameters of a harder family's branch-day (drawn from ``rng``)."""
    mean_s = float(rng.uniform(180.0, 480.0))  # 3-8 min, unlike the configured 5 min
    cv = float(rng.uniform(0.6, 1.2))
    nominal = 4
    open_counters = nominal
    # Demand follows the true capacity of a fully staffed branch (a branch is staffed
    # for its demand): the base load is 55-75 % of it, the peaks push it past 100 %.
    capacity_per_h = nominal * 3600.0 / mean_s
    load = float(rng.uniform(0.65, 0.85))
    lunch_at = float(rng.uniform(12.1, 12.7))
    after_work_at = float(rng.uniform(16.6, 17.2))
    peaks = [
        Peak(at_h=9.1, width_h=0.15, extra_per_h=capacity_per_h * float(rng.uniform(0.5, 0.9))),
        Peak(at_h=lunch_at, width_h=0.5, extra_per_h=capacity_per_h * float(rng.uniform(0.4, 0.7))),
        Peak(
            at_h=after_work_at,
            width_h=0.4,
            extra_per_h=capacity_per_h * float(rng.uniform(0.3, 0.6)),
        ),
    ]
    # staggered lunch breaks: one counter closed over lunch
    lunch_off = float(rng.uniform(11.8, 12.3))
    staffing = [
        StaffChange(at_h=lunch_off, counters=nominal - 1),
        StaffChange(at_h=lunch_off + 1.0, counters=nominal),
    ]
    params: dict[str, object] = {
        "branch": f"sim-b{index:04d}",
        "device": f"sim-d{index:04d}",
        "seed": int(rng.integers(0, 2**31)),
        "open_h": 9.0,
        "close_h": 17.5,
        "nominal_counters": nominal,
        "service": ServiceDist(kind="lognormal", mean_s=mean_s, cv=cv),
        "patience": PatienceSettings(
            share=float(rng.uniform(0.7, 0.95)),
            min_s=float(rng.uniform(420.0, 720.0)),
            max_s=float(rng.uniform(900.0, 1200.0)),
        ),
        "balking": BalkSettings(from_queue=int(rng.integers(8, 13)), per_person=0.05, max_p=0.5),
        "publish_mode": "on_change",
        "noise": NoiseSettings(
            p_miss=0.0,
            extra_per_obs=0.0,
            id_switch_per_min=0.0,
            p_drop=0.01,
            occlusions_per_h=float(rng.uniform(20.0, 60.0)),
            occlusion_s=(2.0, 8.0),
            phantoms_per_h=float(rng.uniform(0.3, 1.5)),
            phantom_mean_s=20.0,
            lost_tracks_per_min=float(rng.uniform(0.003, 0.012)),
            p_exit_unseen=0.1,
        ),
    }
    if kind == "hard_lunch":
        # two counters at lunch at once
        staffing = [
            StaffChange(at_h=lunch_off, counters=nominal - 2),
            StaffChange(at_h=lunch_off + 1.25, counters=nominal),
        ]
    elif kind == "hard_absent":
        # a counter absent all day, and the lunch break on top
        open_counters = nominal - 1
        staffing = [
            StaffChange(at_h=lunch_off, counters=nominal - 2),
            StaffChange(at_h=lunch_off + 1.0, counters=nominal - 1),
        ]
    elif kind == "hard_understaffed":
        nominal = open_counters = 3
        staffing = [
            StaffChange(at_h=lunch_off, counters=2),
            StaffChange(at_h=lunch_off + 1.0, counters=3),
        ]
        params["nominal_counters"] = nominal
        params["base_per_h"] = capacity_per_h * 0.75 * load
    elif kind == "hard_priority":
        params["vip_share"] = float(rng.uniform(0.2, 0.35))
    elif kind == "hard_restart":
        params["restart_at_h"] = float(rng.uniform(10.0, 16.0))
        params["counters_visible"] = False  # the counters are on another camera
    params.setdefault("base_per_h", capacity_per_h * load)
    # every family has priority customers, served first (drawn last, so the draws
    # above are the same with or without them)
    priority_share = float(rng.uniform(0.05, 0.15))
    params["discipline"] = "vip"
    params.setdefault("vip_share", priority_share)
    params["counters"] = open_counters
    params["staffing"] = tuple(staffing)
    params["peaks"] = tuple(peaks)
    return params


# --- MQTT side ---------------------------------------------------------------


def publish(
    messages: Iterable[AnyMessage],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    qos: int = 0,
    speed: float = 1.0,
    root: str = DEFAULT_ROOT,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Publish messages as the edge (retained) and a ticket system (ticket events, not
    retained) would; returns the number sent.

    ``speed`` > 0 paces messages by their ``ts`` (1 = real time, 60 = a minute
    per second); ``speed`` = 0 sends as fast as the broker accepts. One MQTT
    connection carries every simulated device, so per-device last wills are
    replaced by the explicit ``offline`` status messages of the stream.
    """
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"lobbywatch-sim-{int(time.time() * 1000) % 10**9}",
        protocol=mqtt.MQTTv5,
    )
    if username:
        client.username_pw_set(username, password)
    # many in-flight QoS 1 messages: let paho queue them instead of refusing
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    sent = 0
    t0_sim: float | None = None
    t0_wall = clock()
    info = None
    try:
        for msg in messages:
            ts = msg.ts.timestamp()
            if t0_sim is None:
                t0_sim = ts
            if speed > 0:
                delay = t0_wall + (ts - t0_sim) / speed - clock()
                if delay > 0:
                    sleep(delay)
            retain = not isinstance(msg, TicketMessage)  # events, not states
            info = client.publish(topic_for(msg, root), encode_message(msg), qos=qos, retain=retain)
            sent += 1
            if qos > 0 and sent % 1000 == 0:
                # bound paho's queue of unacknowledged messages
                info.wait_for_publish(timeout=30)
            if on_progress is not None and sent % 10000 == 0:
                on_progress(sent)
        if info is not None:
            info.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent
