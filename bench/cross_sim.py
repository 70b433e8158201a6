"""Independent cross-check of the W1 wait prediction and warnings.

A queue simulation written without the product's simulator, estimator or alert
code: it drives ``lobbywatch server replay`` only through its documented
interfaces (docs/protocol.md payloads, docs/collector.md "Replay" formats, the
collector config reference) and scores what comes out.

Model (one branch-day per seed and family)
------------------------------------------
* One branch (timezone Asia/Jakarta, UTC+7, business hours Mon-Fri 09:00-17:00),
  one waiting zone ``W1`` (kind ``waiting``, T = 600 s) served by ``c`` counters
  (c in {3, 4, 5}).  Doors open 09:00, the last customer arrives 16:45; people
  still inside at 17:00 are served.  The edge runs 08:45-17:30.
* Service: lognormal durations at the counter, mean drawn per branch-day from
  U(180, 480) s, coefficient of variation U(0.6, 1.2).  A freed counter calls the
  next customer after U(2, 10) s; the customer leaves the queue at the call
  (that is the service start: the true wait ends) and reaches the counter
  U(3, 6) s later.  Queue discipline: priority first, FIFO within a class,
  non-preemptive.  The collector is configured with the nominal
  ``mean_service_s: 300`` and the nominal counter count, never the truth.
* Arrivals: non-homogeneous Poisson (thinning).  Load
  rho(t) = rho0 + lunch bump (Gaussian at 12:30 +- U(-20,20) min, sd 45 min)
  + a small 15:45 bump, times nominal capacity c/mean; plus an opening burst of
  Poisson(c + 3) people in the first 4 minutes.
* Patience: Weibull(shape 5, scale 1100 s) (median about 17 min, 90 % between 12
  and 21 min); an impatient customer walks out.  Balking: an arrival who sees L
  people waiting joins with probability 1 if L <= b0 = 2c + U(0, 4), else
  max(0.3, 1 - 0.06 (L - b0)); balkers never enter the zone.
* Families:
  ``normal``      the shape above (rho0 U(0.55, 0.75), lunch +U(0.35, 0.6));
  ``lunch``       counters take 30-60 min lunch breaks in turn from 11:30
                  (one away at a time, two when c >= 5); a counter that closes
                  finishes its customer first;
  ``absent``      one or two configured counters never open;
  ``understaffed`` rho0 U(0.7, 0.85) and one or two spells of 60-150 min at
                  rho U(1.15, 1.4);
  ``priority``    10-25 % priority customers (config says 0.15);
  ``restart``     the edge crashes once between 11:00 and 14:30 and is back
                  after U(40, 150) s: the broker publishes its will after 30 s,
                  seq restarts at 1, cumulative counters restart at 0, every
                  person in view gets a new track (dwell restarts).
* Edge detection noise (waiting zone): entries/exits confirmed 1 s after they
  happen; occlusion spells (rate 1 per 3 min per person, 2-8 s) hide a person
  from ``people``/``raw_count`` but keep them in the dwell statistics
  (docs/protocol.md: "counted or briefly unseen"); lost tracks (rate 1 per 15
  min per waiting person): the track ends 3 s after the loss (a departure with
  the dwell so far in ``completed_dwells_s``) and the person is a new track
  1-3 s after the loss; phantoms: 10 per hour, 70 % raw-only blips (<1 s,
  ``raw_count`` only), 30 % confirmed false people for 2-40 s.
* Publishing (docs/protocol.md "When messages are sent"): frames at 2 fps; a
  zone is published when ``people``, a cumulative counter or a completed dwell
  changes, at most every 1 s (dwells accumulate); every 30 s a heartbeat with
  every zone, the camera status and the device status.  Receive time =
  ts + 0.2 s.  ``--variant basic``: only the waiting zone's required fields.
  ``--variant full``: plus ``service_starts_total`` / ``walk_outs_total`` /
  ``departures_unseen_total`` (95 % of service starts and 85 % of walk-outs
  classified, lost tracks and phantoms unseen; classification 5 s after the
  exit) and a ``cash_counter`` zone per open-or-configured counter (people 0/1,
  completed dwell = service duration), listed as the zone's
  ``service_points``.

Metrics (the product's published definitions, implemented here)
-----------------------------------------------------------------
* MAE: for every served customer, |predicted_wait_s of the latest estimate line
  at or before the arrival - true wait (arrival to service start)|, minutes;
  also the mean signed error (prediction - truth), by class.
* breach: anyone still waiting at arrival + T (served after it, or walked out
  after it); breach moment = arrival + T.  Only breach moments inside business
  hours are scored (no alert can fire after closing).
* episode: breach moments less than 1800 s apart.
* recall: share of episodes with a ``w1_wait`` alert firing (started at or
  before, not yet resolved) at the episode's first breach moment.
* lead: first breach moment - fire time of that alert; median, minutes.
* precision: share of ``w1_wait`` fires followed by a breach moment while the
  alert is open or within T + 300 s of the fire; every re-fire counts.
* warned_3min: share of episodes with an alert firing 180 s before the first
  breach moment.
* mu/true: median over estimate lines taken while somebody truly waits of
  ``service_rate_per_s`` / true capacity (open counters / mean cycle, cycle =
  call delay + walk + service).
* oldest: ``oldest_wait_s`` minus the longest true wait, on the same estimate
  lines: its mean absolute value (minutes) and the shares more than 1 min under
  (a head's clock lost) and over (a wait put on somebody who is not there).

Usage::

    .venv/bin/python bench/cross_sim.py --seeds 5 --first-seed 5000 \
        --variant full --families normal,lunch --workdir /tmp/xsim

``--lost-track-s``, ``--occlusion-s`` and ``--phantoms-per-h`` set the edge
noise (``--lost-track-s 1e9 --occlusion-s 1e9 --phantoms-per-h 0``: a perfect
edge).  Each day's ``server.yaml``, ``in.jsonl``, ``out.jsonl`` and
``truth.json`` (arrival, leave, served, priority per customer) stay in
``WORKDIR/VARIANT/FAMILY-SEED/``.  The per-day lines list first breach moments
(local time) of episodes warned less than 60 s ahead ("late") and of missed
episodes, for reproducing.  Nothing from ``lobbywatch`` is imported: the
payloads are written from docs/protocol.md.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

FAMILIES = ("normal", "lunch", "absent", "understaffed", "priority", "restart")
T = 600.0
TZ_OFFSET_H = 7  # Asia/Jakarta, no DST
BRANCH, DEVICE, CAMERA, ZONE = "xb-01", "xedge-01", "cam1", "W1"
ROOT = "lobbywatch"
FRAME = 0.5
EPISODE_GAP = 1800.0
# edge noise levels (set from the command line)
NOISE = {"lost_track_s": 900.0, "occlusion_s": 180.0, "phantoms_per_h": 10.0}


def hm(h: float, m: float = 0.0) -> float:
    """Seconds after local midnight."""
    return h * 3600 + m * 60


OPEN, LAST_ARRIVAL, CLOSE = hm(9), hm(16, 45), hm(17)
EDGE_START, EDGE_END = hm(8, 45), hm(17, 30)


# --------------------------------------------------------------------------- truth


@dataclass
class Customer:
    cid: int
    arrival: float
    prio: bool
    patience: float
    leave: float | None = None  # left the waiting zone
    served: bool = False
    counter: int | None = None
    service: float = 0.0
    reach: float = 0.0  # reached the counter


@dataclass
class Day:
    family: str
    seed: int
    date: datetime  # local midnight as UTC-aware datetime of the local date
    counters: int  # configured
    mean_s: float
    cv: float
    customers: list[Customer] = field(default_factory=list)
    open_intervals: list[list[tuple[float, float]]] = field(default_factory=list)
    overhead_s: float = 10.5
    prio_share: float = 0.0
    restart: tuple[float, float] | None = None  # (crash, back)
    balked: int = 0
    walked: int = 0

    def open_at(self, t: float) -> int:
        return sum(any(a <= t < b for a, b in iv) for iv in self.open_intervals)


def lognormal(rng: np.random.Generator, mean: float, cv: float) -> float:
    s2 = math.log(1 + cv * cv)
    return float(rng.lognormal(math.log(mean) - s2 / 2, math.sqrt(s2)))


def simulate_day(family: str, seed: int) -> Day:
    rng = np.random.default_rng(seed * 7 + FAMILIES.index(family))
    c = int(rng.choice([3, 4, 5]))
    day = Day(
        family=family,
        seed=seed,
        date=datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=(seed % 5)),
        counters=c,
        mean_s=float(rng.uniform(180, 480)),
        cv=float(rng.uniform(0.6, 1.2)),
    )
    # opening intervals per counter
    ivs: list[list[tuple[float, float]]] = [[(OPEN, 1e9)] for _ in range(c)]
    if family == "absent":
        k = int(rng.choice([1, 2])) if c >= 4 else 1
        for i in range(c - k, c):
            ivs[i] = []
    if family == "lunch":
        order = list(rng.permutation(c))
        away = 2 if c >= 5 else 1
        t0 = hm(11, 30)
        slots = [t0] * away
        for i in order:
            j = int(np.argmin(slots))
            start = slots[j] + float(rng.uniform(0, 300))
            dur = float(rng.uniform(1800, 3600))
            ivs[i] = [(OPEN, start), (start + dur, 1e9)]
            slots[j] = start + dur
    day.open_intervals = ivs
    # arrival rate
    cap = c / day.mean_s
    rho0 = float(rng.uniform(0.55, 0.75))
    lunch_a = float(rng.uniform(0.35, 0.6))
    lunch_mu = hm(12, 30) + float(rng.uniform(-1200, 1200))
    spells: list[tuple[float, float, float]] = []
    if family == "understaffed":
        rho0 = float(rng.uniform(0.7, 0.85))
        for _ in range(int(rng.choice([1, 2]))):
            s = float(rng.uniform(hm(9, 30), hm(15)))
            spells.append((s, s + float(rng.uniform(3600, 9000)), float(rng.uniform(1.15, 1.4))))
    if family == "restart":
        lunch_a += 0.1
    if family == "priority":
        day.prio_share = float(rng.uniform(0.10, 0.25))

    def rho(t: float) -> float:
        r = rho0 + lunch_a * math.exp(-0.5 * ((t - lunch_mu) / 2700) ** 2)
        r += 0.15 * math.exp(-0.5 * ((t - hm(15, 45)) / 1800) ** 2)
        for a, b, level in spells:
            if a <= t < b:
                r = max(r, level)
        return r

    lam_max = 1.6 * cap
    arrivals: list[float] = []
    t = OPEN
    while True:
        t += float(rng.exponential(1 / lam_max))
        if t >= LAST_ARRIVAL:
            break
        if rng.random() < rho(t) * cap / lam_max:
            arrivals.append(t)
    for _ in range(int(rng.poisson(c + 3))):
        arrivals.append(OPEN + float(rng.uniform(0, 240)))
    arrivals.sort()
    if family == "restart":
        crash = float(rng.uniform(hm(11), hm(14, 30)))
        day.restart = (crash, crash + float(rng.uniform(40, 150)))
    b0 = 2 * c + float(rng.uniform(0, 4))

    # event simulation
    ev: list[tuple[float, int, int, int]] = []  # (t, order, kind, arg)
    seqn = 0

    def push(t: float, kind: int, arg: int) -> None:
        nonlocal seqn
        seqn += 1
        heapq.heappush(ev, (t, seqn, kind, arg))

    ARR, READY, ABANDON = 0, 1, 2
    for a in arrivals:
        push(a, ARR, -1)
    idle = [True] * c  # counter free and waiting for a customer
    # a counter becomes ready at its opening times
    for i in range(c):
        for a, _b in ivs[i]:
            push(a + 0.01, READY, i)
    waiting: list[Customer] = []  # in arrival order
    custs: list[Customer] = []
    busy_until = [0.0] * c

    def is_open(i: int, t: float) -> bool:
        return any(a <= t < b for a, b in ivs[i])

    def call(i: int, t: float) -> None:
        """Counter i is ready at t: take the next customer or go idle."""
        if not is_open(i, t) or t < busy_until[i] - 1e-9:
            idle[i] = False
            return
        if not waiting:
            idle[i] = True
            return
        pr = [w for w in waiting if w.prio]
        cust = pr[0] if pr else waiting[0]
        waiting.remove(cust)
        cust.leave = t
        cust.served = True
        cust.counter = i
        cust.reach = t + float(rng.uniform(3, 6))
        cust.service = lognormal(rng, day.mean_s, day.cv)
        end = cust.reach + cust.service
        busy_until[i] = end
        idle[i] = False
        push(end + float(rng.uniform(2, 10)), READY, i)

    cid = 0
    while ev:
        t, _, kind, arg = heapq.heappop(ev)
        if kind == ARR:
            if len(waiting) > b0 and rng.random() > max(0.3, 1 - 0.06 * (len(waiting) - b0)):
                day.balked += 1
                continue
            cust = Customer(
                cid, t, bool(rng.random() < day.prio_share), float(rng.weibull(5) * 1100)
            )
            cid += 1
            custs.append(cust)
            waiting.append(cust)
            push(t + cust.patience, ABANDON, cust.cid)
            for i in rng.permutation(c):
                if idle[i] and is_open(int(i), t):
                    idle[i] = False
                    push(t + float(rng.uniform(2, 10)), READY, int(i))
                    break
        elif kind == READY:
            call(arg, t)
        else:
            cust = custs[arg]
            if cust.leave is None:
                cust.leave = t
                waiting.remove(cust)
                day.walked += 1
    # counters that close while busy: the service already started finishes; the
    # READY at its end finds the counter closed and it stays idle until reopening
    # (READY pushed at each opening time).
    day.customers = custs
    return day


# --------------------------------------------------------------------------- edge


@dataclass
class Track:
    origin: float  # first seen (dwell origin)
    exit: float | None  # left the zone (None: still there at edge end)
    cls: str  # service | walkout | unseen
    occl: list[tuple[float, float]] = field(default_factory=list)


def waiting_tracks(day: Day, rng: np.random.Generator) -> list[Track]:
    tracks: list[Track] = []
    for cu in day.customers:
        a, gone = cu.arrival, cu.leave if cu.leave is not None else EDGE_END
        final = "service" if cu.served else "walkout"
        start = a
        t = a
        while True:
            t += float(rng.exponential(NOISE["lost_track_s"]))
            if t >= gone - 2:
                break
            tracks.append(Track(start, t, "unseen"))
            start = t + float(rng.uniform(1, 3))
            t = start
        tracks.append(Track(start, gone if cu.leave is not None else None, final))
    hours = (EDGE_END - EDGE_START) / 3600
    for _ in range(int(rng.poisson(NOISE["phantoms_per_h"] * hours * 0.3))):
        s = float(rng.uniform(EDGE_START, EDGE_END - 60))
        tracks.append(Track(s, s + float(rng.uniform(2, 40)), "unseen"))
    for tr in tracks:
        end = tr.exit if tr.exit is not None else EDGE_END
        t = tr.origin
        while True:
            t += float(rng.exponential(NOISE["occlusion_s"]))
            if t >= end - 1:
                break
            d = float(rng.uniform(2, 8))
            tr.occl.append((t, min(t + d, end - 0.5)))
            t += d
    return tracks


def blips(rng: np.random.Generator) -> list[float]:
    hours = (EDGE_END - EDGE_START) / 3600
    n = int(rng.poisson(NOISE["phantoms_per_h"] * hours * 0.7))
    return sorted(float(rng.uniform(EDGE_START, EDGE_END)) for _ in range(n))


def counter_tracks(day: Day) -> list[list[Track]]:
    out: list[list[Track]] = [[] for _ in range(day.counters)]
    for cu in day.customers:
        if cu.served and cu.counter is not None:
            out[cu.counter].append(Track(cu.reach, cu.reach + cu.service, "service"))
    return out


def qround(t: float) -> float:
    return math.ceil(t / FRAME - 1e-9) * FRAME


def zone_messages(
    tracks: list[Track],
    kind: str,
    zone: str,
    full: bool,
    blip_times: list[float],
    restart: tuple[float, float] | None,
    rng: np.random.Generator,
) -> list[tuple[float, dict]]:
    """Sweep a zone's edge events at 2 fps; return (ts_local_s, payload-without-seq)."""
    HYST, CLASSIFY = 1.0, 5.0
    events: list[tuple[float, int, int]] = []  # (t, kind, track index)
    # kinds: 0 confirm entry, 1 occl start, 2 occl end, 3 exit, 4 classify
    for k, tr in enumerate(tracks):
        events.append((qround(tr.origin + HYST), 0, k))
        for a, b in tr.occl:
            events.append((qround(a), 1, k))
            events.append((qround(b), 2, k))
        if tr.exit is not None:
            exit_at = tr.exit + (3.0 if tr.cls == "unseen" and kind == "waiting" else HYST)
            events.append((qround(exit_at), 3, k))
            events.append((qround(exit_at + CLASSIFY * float(rng.uniform(0.2, 1))), 4, k))
    events.sort()
    classes: list[str] = []
    for tr in tracks:
        cls = tr.cls
        if cls == "service" and rng.random() < 0.05:
            cls = "unseen"
        if cls == "walkout" and rng.random() < 0.15:
            cls = "unseen"
        classes.append(cls)
    blip_set = {qround(b) for b in blip_times}

    members: dict[int, float] = {}  # track -> dwell origin
    hidden: set[int] = set()
    departed: set[int] = set()
    arr = dep = svc = wlk = uns = 0
    completed: list[float] = []
    out: list[tuple[float, dict]] = []
    last_pub = -1e9
    dirty = False
    ei = 0
    n = len(events)
    t = EDGE_START
    down = False
    while t <= EDGE_END + 1e-9:
        if restart and restart[0] <= t < restart[1]:
            while ei < n and events[ei][0] <= t:
                ei += 1
            down = True
            t += FRAME
            continue
        if down:  # pipeline back: everything restarts
            down = False
            alive = [
                k
                for k, tr in enumerate(tracks)
                if tr.origin + HYST <= t and (tr.exit is None or tr.exit > t)
            ]
            members = {k: t for k in alive}
            hidden = set()
            departed = set()
            arr, dep, svc, wlk, uns = len(alive), 0, 0, 0, 0
            completed = []
            dirty = True
            last_pub = -1e9
        while ei < n and events[ei][0] <= t:
            _, ek, k = events[ei]
            ei += 1
            if ek == 0:
                if k not in members and k not in departed:
                    origin = tracks[k].origin
                    if restart and t >= restart[1]:
                        origin = max(origin, restart[1])
                    members[k] = origin
                    arr += 1
                    dirty = True
            elif ek == 1:
                if k in members:
                    hidden.add(k)
                    dirty = True
            elif ek == 2:
                if k in hidden:
                    hidden.discard(k)
                    dirty = True
            elif ek == 3:
                if k in members:
                    origin = members.pop(k)
                    hidden.discard(k)
                    departed.add(k)
                    dep += 1
                    exit_t = tracks[k].exit or t
                    completed.append(round(max(0.0, exit_t - origin), 1))
                    dirty = True
            elif ek == 4:
                if k in departed:
                    departed.discard(k)
                    if classes[k] == "service":
                        svc += 1
                    elif classes[k] == "walkout":
                        wlk += 1
                    else:
                        uns += 1
                    if full and kind == "waiting":
                        dirty = True
        heartbeat = abs((t - EDGE_START) / 30.0 - round((t - EDGE_START) / 30.0)) < 1e-6
        if (dirty and t - last_pub >= 1.0 - 1e-9) or heartbeat:
            people = len(members) - len(hidden)
            raw = people + (1 if t in blip_set else 0)
            dw = [t - o for o in members.values()]
            dstats: tuple[float | None, float | None, float | None] = (None, None, None)
            if dw:
                p50, p90 = np.percentile(dw, [50, 90])
                dstats = (round(float(p50), 1), round(float(p90), 1), round(max(dw), 1))
            msg = {
                "kind": kind,
                "zone": zone,
                "blueprint": "W1" if kind == "waiting" else None,
                "people": people,
                "raw_count": raw,
                "dwell_p50_s": dstats[0],
                "dwell_p90_s": dstats[1],
                "dwell_max_s": dstats[2],
                "arrivals_total": arr,
                "departures_total": dep,
                "completed_dwells_s": completed[:500],
                "wait_threshold_s": T if kind == "waiting" else None,
            }
            if full and kind == "waiting":
                msg["service_starts_total"] = svc
                msg["walk_outs_total"] = wlk
                msg["departures_unseen_total"] = uns
            out.append((t, msg))
            completed = completed[500:]
            last_pub = t
            dirty = False
        t += FRAME
    return out


def iso(day: Day, local_s: float) -> str:
    dt = day.date + timedelta(seconds=local_s - TZ_OFFSET_H * 3600)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(day: Day, local_s: float) -> float:
    return day.date.timestamp() + local_s - TZ_OFFSET_H * 3600


def edge_stream(day: Day, full: bool) -> list[dict]:
    rng = np.random.default_rng(day.seed * 131 + FAMILIES.index(day.family) + (1 if full else 0))
    msgs: list[tuple[float, int, dict]] = []  # (local t, order, payload-part)
    w = zone_messages(waiting_tracks(day, rng), "waiting", ZONE, full, blips(rng), day.restart, rng)
    for t, m in w:
        msgs.append((t, 1, m))
    if full:
        for i, trs in enumerate(counter_tracks(day)):
            for t, m in zone_messages(trs, "cash_counter", f"c{i + 1}", True, [], day.restart, rng):
                msgs.append((t, 1, m))
    # statuses: at start, every heartbeat, after the restart
    t = EDGE_START
    while t <= EDGE_END + 1e-9:
        if not (day.restart and day.restart[0] <= t < day.restart[1]):
            msgs.append((t, 0, {"status": "device"}))
            msgs.append((t, 0, {"status": "camera"}))
        t += 30.0
    if day.restart:
        back = qround(day.restart[1])
        msgs.append((back, -1, {"status": "device"}))
        msgs.append((back, -1, {"status": "camera"}))
    msgs.sort(key=lambda x: (x[0], x[1]))
    lines: list[dict] = []
    seq = 0
    will_sent = False
    connect_seq = 0
    connect_t = EDGE_START
    for t, _, m in msgs:
        if day.restart and not will_sent and t >= day.restart[0] + 30:
            will_sent = True
            wt = day.restart[0] + 30
            lines.append(
                {
                    "received_at": epoch(day, wt) + 0.2,
                    "topic": f"{ROOT}/v1/{BRANCH}/_device/{DEVICE}/status",
                    "payload": status(day, connect_t, connect_seq, None, "offline", will=True),
                }
            )
        if day.restart and t >= day.restart[1] and connect_t < day.restart[1]:
            seq = 0  # outbox lost: seq restarts at 1
            connect_t = t
            connect_seq = 0
        seq += 1
        if "status" in m:
            if m["status"] == "device":
                payload = status(day, t, seq, None, "online")
                topic = f"{ROOT}/v1/{BRANCH}/_device/{DEVICE}/status"
            else:
                payload = status(day, t, seq, CAMERA, "online")
                topic = f"{ROOT}/v1/{BRANCH}/{CAMERA}/status"
        else:
            payload = {
                "v": 1,
                "type": "zone",
                "device": DEVICE,
                "seq": seq,
                "ts": iso(day, t),
                "branch": BRANCH,
                "camera": CAMERA,
                **m,
            }
            topic = f"{ROOT}/v1/{BRANCH}/{CAMERA}/zones/{m['zone']}"
        lines.append(
            {"received_at": round(epoch(day, t) + 0.2, 3), "topic": topic, "payload": payload}
        )
    lines.sort(key=lambda x: x["received_at"])
    return lines


def status(
    day: Day, t: float, seq: int, camera: str | None, state: str, will: bool = False
) -> dict:
    return {
        "v": 1,
        "type": "status",
        "device": DEVICE,
        "seq": seq,
        "ts": iso(day, t),
        "branch": BRANCH,
        "camera": camera,
        "state": state,
        "camera_health": (
            {"up": True, "fps": 2.0, "target_fps": 2.0, "last_frame_age_s": 0.3, "error": None}
            if camera
            else None
        ),
        "cameras": None if camera else [CAMERA],
        "will": will,
        "heartbeat_s": 30.0,
        "model": "bytetrack_nano/fp32",
        "software": "cross-sim 0.1",
    }


def server_yaml(day: Day, full: bool) -> str:
    lines = [
        "branches:",
        f"  - id: {BRANCH}",
        "    timezone: Asia/Jakarta",
        "    business_hours:",
        "      weekly:",
    ]
    for d in ("mon", "tue", "wed", "thu", "fri"):
        lines.append(f'        {d}: [["09:00", "17:00"]]')
    lines += [
        f"    counters: {day.counters}",
        "    mean_service_s: 300",
        f"    priority_share: {0.15 if day.family == 'priority' else 0.0}",
        f"    devices: [{DEVICE}]",
        "    zones:",
        f"      {ZONE}:",
    ]
    if full:
        pts = ", ".join(f"c{i + 1}" for i in range(day.counters))
        lines.append(f"        service_points: [{pts}]")
    else:
        lines.append("        name: waiting hall")
    alerts = {**SETTINGS["alerts"], "w1_threshold_s": int(T)}
    lines += [f"alerts: {json.dumps(alerts)}"]
    if SETTINGS["estimator"]:
        lines += [f"estimator: {json.dumps(SETTINGS['estimator'])}"]
    return "\n".join([*lines, ""])


#: collector settings over the defaults (``--alerts`` / ``--estimator``; JSON is YAML)
SETTINGS: dict[str, dict[str, object]] = {"alerts": {}, "estimator": {}}


# --------------------------------------------------------------------------- scoring


@dataclass
class Result:
    family: str
    seed: int
    errs: list[tuple[float, bool]] = field(default_factory=list)  # (pred - true, prio)
    errs_cls: list[tuple[float, bool]] = field(default_factory=list)
    episodes: int = 0
    detected: int = 0
    warned3: int = 0
    leads: list[float] = field(default_factory=list)
    fires: int = 0
    good_fires: int = 0
    mu_ratio: list[float] = field(default_factory=list)
    # oldest_wait_s - the longest true wait, s, while somebody truly waits
    hol_errs: list[float] = field(default_factory=list)
    served: int = 0
    walked: int = 0
    balked: int = 0
    late_alerts: list[tuple[float, float]] = field(default_factory=list)  # (first breach, lead s)
    missed: list[float] = field(default_factory=list)
    stderr: str = ""
    summary: str = ""
    methods: dict = field(default_factory=dict)


def score(day: Day, out_path: Path) -> Result:
    res = Result(
        day.family,
        day.seed,
        served=sum(c.served for c in day.customers),
        walked=day.walked,
        balked=day.balked,
    )
    est_t: list[float] = []
    est: list[dict] = []
    alerts: dict[str, dict] = {}
    for line in out_path.read_text().splitlines():
        o = json.loads(line)
        if o.get("type") == "estimate" and o.get("zone") == ZONE:
            ts = o["ts"]
            est_t.append(
                float(ts)
                if isinstance(ts, (int, float))
                else datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
            )
            est.append(o)
        elif o.get("type") == "alert" and o.get("kind") == "w1_wait":
            a = alerts.setdefault(o["alert_id"], {"start": o["started_at_ts"], "end": None})
            if o.get("ended_at_ts") is not None:
                a["end"] = o["ended_at_ts"]
    base = epoch(day, 0.0)
    est_t_arr = np.array(est_t) - base  # local seconds
    for o in est:
        res.methods[o.get("method")] = res.methods.get(o.get("method"), 0) + 1

    def estimate_at(t: float) -> dict | None:
        i = int(np.searchsorted(est_t_arr, t, side="right")) - 1
        return est[i] if i >= 0 else None

    for cu in day.customers:
        if not cu.served or cu.leave is None:
            continue
        e = estimate_at(cu.arrival)
        if e is None or e.get("predicted_wait_s") is None:
            continue
        truth = cu.leave - cu.arrival
        res.errs.append((float(e["predicted_wait_s"]) - truth, cu.prio))
        key = "predicted_wait_priority_s" if cu.prio else "predicted_wait_ordinary_s"
        if e.get(key) is not None:
            res.errs_cls.append((float(e[key]) - truth, cu.prio))
    # breaches and episodes
    moments = sorted(
        cu.arrival + T
        for cu in day.customers
        if (cu.leave is None or cu.leave > cu.arrival + T) and cu.arrival + T < CLOSE
    )
    episodes: list[float] = []
    prev = -1e9
    for b in moments:
        if b - prev >= EPISODE_GAP:
            episodes.append(b)
        prev = b
    fires = sorted(
        (a["start"] - base, (a["end"] - base) if a["end"] is not None else 1e9)
        for a in alerts.values()
    )
    res.episodes = len(episodes)
    for fb in episodes:
        firing = [(s, e) for s, e in fires if s <= fb < e]
        if firing:
            res.detected += 1
            lead = fb - min(s for s, _ in firing)
            res.leads.append(lead)
            if lead < 60:
                res.late_alerts.append((fb, lead))
        else:
            res.missed.append(fb)
        if any(s <= fb - 180 < e for s, e in fires):
            res.warned3 += 1
    mom = np.array(moments)
    for f_start, f_end in fires:
        res.fires += 1
        hi = max(f_end if f_end < 1e8 else CLOSE + 3600, f_start + T + 300)
        if np.any((mom >= f_start) & (mom <= hi)):
            res.good_fires += 1
    # service rate vs true capacity while people truly wait
    arr = np.array([c.arrival for c in day.customers])
    lv = np.array([c.leave if c.leave is not None else 1e9 for c in day.customers])
    cycle = day.mean_s + 6.0 + 4.5
    for t_loc, e in zip(est_t_arr, est, strict=True):
        mu = e.get("service_rate_per_s")
        if mu is None or not (OPEN <= t_loc < CLOSE):
            continue
        waiting = (arr <= t_loc) & (lv > t_loc)
        if np.any(waiting):
            res.hol_errs.append(float(e.get("oldest_wait_s") or 0.0) - (t_loc - arr[waiting].min()))
            cap = day.open_at(t_loc) / cycle
            if cap > 0:
                res.mu_ratio.append(float(mu) / cap)
    return res


# --------------------------------------------------------------------------- driver


def run_one(family: str, seed: int, variant: str, workdir: Path, exe: str) -> Result:
    day = simulate_day(family, seed)
    full = variant == "full"
    d = workdir / variant / f"{family}-{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "server.yaml").write_text(server_yaml(day, full))
    lines = edge_stream(day, full)
    with (d / "in.jsonl").open("w") as f:
        for ln in lines:
            f.write(json.dumps(ln) + "\n")
    truth = {
        "family": family,
        "seed": seed,
        "counters": day.counters,
        "mean_s": day.mean_s,
        "cv": day.cv,
        "prio_share": day.prio_share,
        "restart": day.restart,
        "open_intervals": day.open_intervals,
        "customers": [[c.arrival, c.leave, c.served, c.prio] for c in day.customers],
    }
    (d / "truth.json").write_text(json.dumps(truth))
    p = subprocess.run(
        [
            exe,
            "server",
            "replay",
            "--config",
            str(d / "server.yaml"),
            "--messages",
            str(d / "in.jsonl"),
            "--out",
            str(d / "out.jsonl"),
            "--estimates-every",
            "5",
        ],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit(
            f"replay failed for {family}-{seed}: rc={p.returncode}\n{p.stderr[-3000:]}"
        )
    res = score(day, d / "out.jsonl")
    res.stderr = p.stderr
    res.summary = (p.stdout.strip().splitlines() or [""])[-1]
    return res


def fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def aggregate(rs: list[Result]) -> dict:
    errs = [e for r in rs for e, _ in r.errs]
    eo = [e for r in rs for e, p in r.errs if not p]
    ep = [e for r in rs for e, p in r.errs if p]
    ec = [e for r in rs for e, _ in r.errs_cls]
    ecp = [e for r in rs for e, p in r.errs_cls if p]
    eps = sum(r.episodes for r in rs)
    det = sum(r.detected for r in rs)
    fires = sum(r.fires for r in rs)
    leads = [x for r in rs for x in r.leads]
    mu = [x for r in rs for x in r.mu_ratio]
    hol = np.array([x for r in rs for x in r.hol_errs]) / 60
    m = statistics.mean
    return {
        "n": len(rs),
        "served": sum(r.served for r in rs),
        "walked": sum(r.walked for r in rs),
        "balked": sum(r.balked for r in rs),
        "mae": m(abs(e) for e in errs) / 60 if errs else float("nan"),
        "bias": m(errs) / 60 if errs else float("nan"),
        "mae_ord": m(abs(e) for e in eo) / 60 if eo else float("nan"),
        "bias_ord": m(eo) / 60 if eo else float("nan"),
        "mae_pri": m(abs(e) for e in ep) / 60 if ep else float("nan"),
        "bias_pri": m(ep) / 60 if ep else float("nan"),
        "mae_cls": m(abs(e) for e in ec) / 60 if ec else float("nan"),
        "mae_cls_pri": m(abs(e) for e in ecp) / 60 if ecp else float("nan"),
        "episodes": eps,
        "recall": det / eps if eps else float("nan"),
        "fires": fires,
        "precision": sum(r.good_fires for r in rs) / fires if fires else float("nan"),
        "lead": statistics.median(leads) / 60 if leads else float("nan"),
        "warned3": sum(r.warned3 for r in rs) / eps if eps else float("nan"),
        "mu": statistics.median(mu) if mu else float("nan"),
        "hol_mae": float(np.abs(hol).mean()) if hol.size else float("nan"),
        "hol_under": float((hol < -1).mean()) if hol.size else float("nan"),
        "hol_over": float((hol > 1).mean()) if hol.size else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=5000)
    ap.add_argument("--variant", choices=("basic", "full"), default="full")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cross_sim"))
    ap.add_argument("--jobs", type=int, default=2, help="replays at a time")
    ap.add_argument(
        "--lost-track-s",
        type=float,
        default=900.0,
        help="mean time between lost tracks per waiting person (1e9: none)",
    )
    ap.add_argument(
        "--occlusion-s",
        type=float,
        default=180.0,
        help="mean time between occlusion spells per person (1e9: none)",
    )
    ap.add_argument("--phantoms-per-h", type=float, default=10.0)
    ap.add_argument("--lobbywatch", default=str(Path(sys.executable).parent / "lobbywatch"))
    for name in ("alerts", "estimator"):
        ap.add_argument(
            f"--{name}",
            default="{}",
            metavar="JSON",
            help=f"the server config's {name} settings over the defaults",
        )
    args = ap.parse_args(argv)
    for name in ("alerts", "estimator"):
        value = json.loads(getattr(args, name))
        if not isinstance(value, dict):
            ap.error(f"--{name}: a JSON object of settings is needed")
        SETTINGS[name] = value
    NOISE.update(
        lost_track_s=args.lost_track_s,
        occlusion_s=args.occlusion_s,
        phantoms_per_h=args.phantoms_per_h,
    )
    fams = [f for f in args.families.split(",") if f]
    for f in fams:
        if f not in FAMILIES:
            ap.error(f"unknown family {f!r}; choose from {','.join(FAMILIES)}")
    t0 = time.time()
    jobs = [(f, s) for f in fams for s in range(args.first_seed, args.first_seed + args.seeds)]
    with ThreadPoolExecutor(args.jobs) as ex:
        results = list(
            ex.map(
                lambda fs: run_one(fs[0], fs[1], args.variant, args.workdir, args.lobbywatch), jobs
            )
        )
    print(
        f"variant={args.variant} seeds={args.first_seed}..{args.first_seed + args.seeds - 1} "
        f"noise={NOISE}"
    )
    hdr = (
        f"{'family':13s} {'days':>4s} {'served':>6s} {'walk':>5s} {'balk':>5s} {'mae':>5s} "
        f"{'bias':>6s} {'maeO':>5s} {'maeP':>5s} {'maeCls':>6s} {'eps':>4s} {'recall':>6s} "
        f"{'fires':>5s} {'prec':>5s} {'lead':>5s} {'warn3':>5s} {'mu/true':>7s}"
    )
    print(hdr)
    rows = [(f, [r for r in results if r.family == f]) for f in fams] + [("ALL", results)]
    for name, rs in rows:
        a = aggregate(rs)
        print(
            f"{name:13s} {a['n']:4d} {a['served']:6d} {a['walked']:5d} {a['balked']:5d} "
            f"{fmt(a['mae']):>5s} {fmt(a['bias']):>6s} {fmt(a['mae_ord']):>5s} "
            f"{fmt(a['mae_pri']):>5s} {fmt(a['mae_cls']):>6s} {a['episodes']:4d} "
            f"{fmt(a['recall']):>6s} {a['fires']:5d} {fmt(a['precision']):>5s} "
            f"{fmt(a['lead']):>5s} {fmt(a['warned3']):>5s} {fmt(a['mu']):>7s}"
        )
    print(
        "per day: family seed | episodes detected fires good | late(<60 s lead) / missed "
        "first breaches (local time) | methods | replay summary"
    )
    for r in results:

        def clock(s: float) -> str:
            return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}"

        late = " ".join(f"{clock(b)}({lead:.0f}s)" for b, lead in r.late_alerts)
        miss = " ".join(clock(b) for b in r.missed)
        print(
            f"  {r.family}-{r.seed} | {r.episodes} {r.detected} {r.fires} {r.good_fires} | "
            f"late: {late or '-'} missed: {miss or '-'} | {r.methods} | {r.summary}"
        )
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if err:
            print("    stderr: " + " // ".join(err[:5]))
    a = aggregate(results)
    print(
        f"wall_s={time.time() - t0:.1f} mu_over_true={fmt(a['mu'])} "
        f"mae_priority_min={fmt(a['mae_pri'])} mae_class_aware_min={fmt(a['mae_cls'])}"
    )
    print(
        f"oldest_mae_min={fmt(a['hol_mae'])} oldest_under_1min={fmt(a['hol_under'], 3)} "
        f"oldest_over_1min={fmt(a['hol_over'], 3)}"
    )
    print(
        f"wait_mae_min={fmt(a['mae'])} recall={fmt(a['recall'])} "
        f"precision={fmt(a['precision'])} lead_min={fmt(a['lead'])} "
        f"warned_3min={fmt(a['warned3'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
