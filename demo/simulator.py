"""Discrete-event bank-branch simulator producing the edge's ZoneMessage stream.

Pure core, time simulated:

1. :func:`simulate_customers` — one branch-day: non-homogeneous Poisson
   arrivals (base rate plus Gaussian morning/lunch peaks, drawn by thinning),
   counters opening and closing on a staffing schedule (lunch breaks), lognormal
   or gamma service times, FCFS or non-preemptive VIP priority. Every customer's
   true wait is recorded.
2. :func:`branch_messages` — what the branch's edge device would publish: one
   waiting zone plus one zone per counter, every ``report_interval_s``, with
   cumulative arrivals/departures, completed dwells (for the waiting zone: the
   realised waits of the customers who left it), dwell p50/p90/max, ``seq`` and
   ``ts``; with detection noise (missed and extra people, track id switches),
   messages lost in transit, and an optional edge restart (the cumulative
   counters restart from 0 and occupants are re-detected as new arrivals; ``seq``
   continues, as the agent stores it with its outbox).

The MQTT side (:func:`publish`) is in this module too but is the only part that
touches the network or the wall clock.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lobbywatch.protocol import (
    DEFAULT_ROOT,
    StatusMessage,
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


class NoiseSettings(BaseModel):
    """Detection noise of the edge, per observation (0 everywhere = perfect sensing)."""

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
        description="per occupant-minute: the tracker loses and re-acquires a person, "
        "counting one spurious departure + arrival and restarting the dwell",
    )
    p_drop: float = Field(default=0.01, ge=0, le=1, description="P(a message is lost in transit)")

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
    counters: int = Field(default=4, ge=1)
    staffing: tuple[StaffChange, ...] = Field(
        default=(), description="counter changes during the day (lunch breaks); sorted by at_h"
    )
    service: ServiceDist = ServiceDist()
    discipline: Literal["fcfs", "vip"] = "fcfs"
    vip_share: float = Field(default=0.0, ge=0, le=1)
    report_interval_s: float = Field(default=5.0, gt=0)
    min_visible_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="customers who wait less are never confirmed in the waiting zone "
        "(they walk straight to a free counter; edge entry hysteresis)",
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
        return max([self.counters, *(s.counters for s in self.staffing)])


@dataclass(frozen=True, slots=True)
class Customer:
    """Ground truth for one simulated customer (times are Unix seconds)."""

    id: int
    arrival: float
    vip: bool
    service_s: float
    service_start: float
    counter: int

    @property
    def wait_s(self) -> float:
        return self.service_start - self.arrival

    @property
    def service_end(self) -> float:
        return self.service_start + self.service_s


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


def simulate_customers(sc: BranchScenario) -> list[Customer]:
    """Run the queue for one branch-day; customers ordered by arrival.

    Doors close at ``close_h``; everybody inside is served. A counter that is
    closed while busy finishes its customer first. Service is non-preemptive.
    """
    rng = np.random.default_rng([sc.seed, 1])
    midnight = sc.midnight()
    hours = _arrivals(sc, rng)
    n = len(hours)
    arrivals = midnight + hours * 3600.0
    vip = rng.uniform(size=n) < sc.vip_share
    service = sc.service.sample(rng, n)
    service = np.where(vip, service * sc.service.vip_factor, service)

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
    waiting: list[tuple[int, float, int]] = []  # heap of (class, arrival, id)
    start = [math.nan] * n
    counter_of = [-1] * n

    def dispatch(now: float) -> None:
        for c in range(slots):
            if not waiting:
                return
            if is_open[c] and busy[c] is None:
                _, _, cid = heapq.heappop(waiting)
                busy[c] = cid
                start[cid] = now
                counter_of[cid] = c
                heapq.heappush(events, (now + float(service[cid]), 0, "done", c))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            klass = 0 if (sc.discipline == "vip" and vip[payload]) else 1
            heapq.heappush(waiting, (klass, now, payload))
        elif kind == "done":
            busy[payload] = None
        else:
            target = sc.staffing[payload].counters
            for c in range(slots):
                is_open[c] = c < target
        dispatch(now)
    if waiting:
        raise RuntimeError("simulation ended with customers waiting and no open counter")
    return [
        Customer(
            id=i,
            arrival=float(arrivals[i]),
            vip=bool(vip[i]),
            service_s=float(service[i]),
            service_start=start[i],
            counter=counter_of[i],
        )
        for i in range(n)
    ]


@dataclass
class _ZoneTracker:
    """What an edge pipeline knows about one zone (confirmed entries/exits, dwells)."""

    zone: str
    kind: ZoneKind
    blueprint: str | None
    threshold: float | None
    entries: dict[int, float] = field(default_factory=dict)
    arrivals: int = 0
    departures: int = 0
    pending: list[float] = field(default_factory=list)
    counting: bool = True

    def enter(self, cid: int, t: float) -> None:
        self.entries[cid] = t
        if self.counting:
            self.arrivals += 1

    def leave(self, cid: int, t: float) -> None:
        entered = self.entries.pop(cid)
        if self.counting:
            self.departures += 1
            self.pending.append(t - entered)

    def restart(self, t: float) -> None:
        """Pipeline restarted at ``t``: counters from 0, occupants re-detected now."""
        self.counting = True
        self.arrivals = len(self.entries)
        self.departures = 0
        self.pending = []
        for cid in self.entries:
            self.entries[cid] = t


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
) -> ZoneMessage:
    noise = sc.noise
    if noise.id_switch_per_min > 0 and tracker.entries:
        p = noise.id_switch_per_min * sc.report_interval_s / 60.0
        for cid in [c for c in tracker.entries if rng.uniform() < p]:
            # the track breaks: its dwell so far is reported as completed and the
            # same person is counted again as a new arrival with a fresh dwell
            tracker.leave(cid, t)
            tracker.enter(cid, t)
    true = len(tracker.entries)
    dwells = sorted(t - e for e in tracker.entries.values())
    completed = tracker.pending[-500:]
    tracker.pending = []
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
        wait_threshold_s=tracker.threshold if tracker.kind == ZoneKind.WAITING else None,
    )


def branch_messages(
    sc: BranchScenario, customers: list[Customer], *, status: bool = False
) -> Iterator[ZoneMessage | StatusMessage]:
    """The messages the branch's edge device publishes, in time order.

    Reports start one interval after opening and continue until the last
    customer has left the last counter. Lost messages still consume a ``seq``
    (the collector sees the gap) and their completed dwells are lost. With
    ``status``, the device's status messages are included too: ``online`` when
    it starts (and after a restart), ``offline`` when it stops (the MQTT last
    will, at a restart) — they share the device's ``seq`` sequence.
    """
    rng = np.random.default_rng([sc.seed, 2])
    waiting = _ZoneTracker(sc.waiting_zone, ZoneKind.WAITING, "W1", sc.wait_threshold_s)
    counters = [
        _ZoneTracker(f"counter{c + 1}", ZoneKind.CASH_COUNTER, None, None)
        for c in range(sc.max_counters)
    ]
    # zone events: (time, order, tracker index (-1 = waiting), +1 enter / -1 leave, id)
    # order: leaves before entries at the same instant, waiting zone before counters
    events: list[tuple[float, int, int, int]] = []
    for cu in customers:
        if cu.wait_s >= sc.min_visible_wait_s:
            events.append((cu.arrival, 1, -1, cu.id))
            events.append((cu.service_start, 0, -1, cu.id))
        if sc.counter_zones:
            events.append((cu.service_start, 1, cu.counter, cu.id))
            events.append((cu.service_end, 0, cu.counter, cu.id))
    events.sort()
    end = max((cu.service_end for cu in customers), default=sc.midnight() + sc.close_h * 3600)
    t = sc.midnight() + sc.open_h * 3600.0
    restart_t = sc.midnight() + sc.restart_at_h * 3600.0 if sc.restart_at_h is not None else None
    resume_t = restart_t + sc.restart_downtime_s if restart_t is not None else None
    trackers = [waiting, *counters] if sc.counter_zones else [waiting]
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
                "heartbeat_s": sc.report_interval_s,
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

    if status:
        yield from status_msg(t, "online")
    i = 0
    while t <= end + sc.report_interval_s:
        t += sc.report_interval_s
        while i < len(events) and events[i][0] <= t:
            ev_t, order, which, cid = events[i]
            tracker = waiting if which == -1 else counters[which]
            if order == 1:
                tracker.enter(cid, ev_t)
            else:
                tracker.leave(cid, ev_t)
            i += 1
        if restart_t is not None and resume_t is not None:
            if restart_t < t <= resume_t:
                if waiting.counting and status:
                    yield from status_msg(t, "offline", will=True)
                for tr in trackers:
                    tr.counting = False
                continue  # the device is down: nothing published
            if t > resume_t and not waiting.counting:
                for tr in trackers:
                    tr.restart(resume_t)
                restart_t = resume_t = None
                if status:
                    yield from status_msg(t, "online")
        for tr in trackers:
            msg = _report(tr, t, sc, rng, seq)
            seq += 1
            if sc.noise.p_drop > 0 and rng.uniform() < sc.noise.p_drop:
                continue
            yield msg
    if status:
        yield from status_msg(t, "offline")


def merged_messages(
    scenarios: Iterable[BranchScenario], *, status: bool = False
) -> Iterator[ZoneMessage | StatusMessage]:
    """All branches' messages merged in ``ts`` order (for many branches at once)."""
    streams = [branch_messages(sc, simulate_customers(sc), status=status) for sc in scenarios]
    return heapq.merge(*streams, key=lambda m: m.ts)


SCENARIO_KINDS = ("normal", "lunch_break", "understaffed", "vip", "restart")


def scenario(kind: str, index: int, seed: int, **overrides: object) -> BranchScenario:
    """Named, randomised scenario families (see ``docs/wait-estimation.md``).

    ``seed`` and ``index`` draw the family's free parameters (demand level,
    peak sizes, service time), so many branch-days differ from one another.
    """
    if kind not in SCENARIO_KINDS:
        raise ValueError(f"unknown scenario {kind!r}; choose from {', '.join(SCENARIO_KINDS)}")
    rng = np.random.default_rng([seed, index, 7])
    # Calibrated so the families' average lobby wait spans roughly the OpsDog
    # benchmark range for retail branches (130-738 s, mean 364 s), with the
    # morning and lunch peaks driving the W1 breaches.
    demand = float(rng.uniform(0.75, 1.05))
    mean_s = float(rng.uniform(240, 300))
    params: dict[str, object] = {
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


# --- MQTT side ---------------------------------------------------------------


def publish(
    messages: Iterable[ZoneMessage | StatusMessage],
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
    """Publish messages (retained) as the edge would; returns the number sent.

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
            info = client.publish(topic_for(msg, root), encode_message(msg), qos=qos, retain=True)
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
