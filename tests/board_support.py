"""Simulated branches for the board, branch page and report tests (and the board bench).

A real :class:`Collector` (real store, real estimator and alert engine, real HTTP
server) is fed protocol messages through ``process_batch`` on an injected clock, so
the alert persistence windows pass without waiting; the minute history of the
previous weeks is written to the store as the collector would have written it.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lobbywatch.protocol import StatusMessage, ZoneMessage, topic_for
from lobbywatch.server.collector import Collector
from lobbywatch.server.store import MinuteRow
from lobbywatch.zone_state import ZoneKind

TZ = "Asia/Shanghai"


def afternoon_tz(now: float) -> str:
    """A fixed-offset zone where ``now`` is about 15:00, so "today" has an afternoon."""
    hour = datetime.fromtimestamp(now, UTC).hour
    offset = (15 - hour + 12) % 24 - 12  # -12..+11 hours east of UTC
    # POSIX sign: Etc/GMT+8 is eight hours *behind* UTC
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


@dataclass
class Clock:
    """Settable clock: ``now`` until :meth:`follow_real_time`, then the wall clock."""

    now: float
    offset: float | None = None

    def __call__(self) -> float:
        import time

        if self.offset is not None:
            return time.time() + self.offset
        return self.now

    def follow_real_time(self) -> None:
        import time

        self.offset = self.now - time.time()


@dataclass
class Feed:
    """Sequence numbers per device, and the raw messages of one batch."""

    seq: dict[str, int] = field(default_factory=dict)
    #: cumulative (arrivals, departures) per (branch, zone), as an edge counts them
    flow: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def _next(self, device: str) -> int:
        self.seq[device] = self.seq.get(device, 0) + 1
        return self.seq[device]

    def zone(
        self,
        at: float,
        branch: str,
        zone: str,
        people: int,
        kind: ZoneKind = ZoneKind.WAITING,
        dwells: list[float] | None = None,
        dwell_max: float | None = None,
        camera: str = "cam1",
        served: int = 0,
    ) -> tuple[str, bytes, float]:
        device = f"{branch}-edge"
        flow = self.flow.setdefault((branch, zone), [people, 0])
        flow[0] += served
        flow[1] += served
        msg = ZoneMessage(
            device=device,
            seq=self._next(device),
            ts=datetime.fromtimestamp(at, UTC),
            branch=branch,
            camera=camera,
            zone=zone,
            kind=kind,
            people=people,
            raw_count=people,
            dwell_max_s=dwell_max,
            arrivals_total=flow[0],
            departures_total=flow[1],
            completed_dwells_s=dwells or [],
        )
        return topic_for(msg, "lobbywatch"), msg.model_dump_json().encode(), at

    def status(self, at: float, branch: str, camera: str = "cam1") -> tuple[str, bytes, float]:
        device = f"{branch}-edge"
        msg = StatusMessage(
            device=device,
            seq=self._next(device),
            ts=datetime.fromtimestamp(at, UTC),
            branch=branch,
            camera=camera,
            state="online",
        )
        return topic_for(msg, "lobbywatch"), msg.model_dump_json().encode(), at


def board_config(db_url: str, extra_branches: int = 0, tz: str = TZ, **top: Any) -> dict[str, Any]:
    """Three named branches (near W1, stale, in breach) plus ``extra_branches`` quiet ones.

    Every branch has counters=2 and 240 s service, so the fallback estimate of a
    joining customer's wait is about ``people * 120 s``.
    """
    named = [
        {"id": "br-near", "name": "Riverside", "region": "east"},
        {"id": "br-stale", "name": "Old Town", "region": "east"},
        {"id": "br-breach", "name": "Harbour", "region": "south"},
    ]
    branches = [
        {
            **b,
            "timezone": tz,
            "counters": 2,
            "mean_service_s": 240.0,
            "zones": {"W1": {"name": "Main hall queue"}},
        }
        for b in named
    ]
    branches += [
        {"id": f"br-{i:05d}", "region": f"r{i % 20:02d}", "timezone": tz}
        for i in range(extra_branches)
    ]
    return {
        "mqtt": {"host": "127.0.0.1", "port": 1},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"url": db_url},
        "alerts": {"min_duration_s": 30, "w1_threshold_s": 600},
        "branches": branches,
        **top,
    }


def feed_scenario(collector: Any, clock: Clock, feed: Feed, now: float) -> None:
    """Drive the three named branches to their states at ``now``.

    * br-near: 4 waiting (about 480 s against 600 s: near W1);
    * br-stale: last heard 10 minutes before ``now``;
    * br-breach: 7 waiting for the last 5 minutes (about 840 s: a W1 alert).
    Service points (two counters per branch) report too.
    """
    start = now - 600
    t = start
    while t <= now:
        batch = []
        clock.now = t
        if t <= start + 1:
            batch.append(feed.zone(t, "br-stale", "W1", 2))
            batch.append(feed.zone(t, "br-stale", "C1", 1, ZoneKind.CASH_COUNTER))
        # one customer served per counter every 4 minutes: departures every 2 minutes
        served = 1 if int(t - start) % 120 == 0 else 0
        batch.append(feed.zone(t, "br-near", "W1", 4, dwell_max=200.0, served=served))
        people = 7 if t >= now - 300 else 3
        batch.append(feed.zone(t, "br-breach", "W1", people, dwell_max=400.0, served=served))
        for b in ("br-near", "br-breach"):
            batch.append(feed.zone(t, b, "C1", 1, ZoneKind.CASH_COUNTER))
            batch.append(feed.zone(t, b, "C2", 1, ZoneKind.NON_CASH_COUNTER))
            batch.append(feed.status(t, b))
        collector.process_batch(batch)
        collector.flush(t)
        collector.tick(t)
        t += 15
    wait_stored(collector)


def wait_stored(collector: Collector, timeout_s: float = 20.0) -> None:
    """Block until the alert spool is written to the database and minute writes are done:
    alert events reach the store through the spool's writer thread, not synchronously."""
    deadline = time.monotonic() + timeout_s
    while len(collector.spool) and time.monotonic() < deadline:
        collector.db_writer.wake()
        time.sleep(0.05)
    assert not len(collector.spool), f"{len(collector.spool)} alert events still unstored"
    collector.wait_for_store_writes()


def history_rows(
    branch: str, zone: str, day: date, tz: str, seed: int, peak: float = 1.0
) -> list[MinuteRow]:
    """A plausible opening day (09:00-17:00 local) of minute rows for one waiting zone.

    Queue follows two humps (late morning, mid afternoon) scaled by ``peak``;
    waits are the fallback's ``queue * 120 s``; a few customers served per minute.
    """
    rng = random.Random(seed)
    zone_tz = ZoneInfo(tz)
    rows = []
    opening = datetime.combine(day, datetime.min.time(), zone_tz) + timedelta(hours=9)
    for m in range(8 * 60):
        at = opening + timedelta(minutes=m)
        h = m / 60
        level = peak * (3.5 * math.exp(-((h - 2.0) ** 2) / 1.2) + 2.5 * math.exp(-((h - 6) ** 2)))
        q = max(0.0, level + rng.gauss(0, 0.4))
        wait = q * 120.0
        served = rng.randint(0, 2)
        waits = [max(0.0, rng.gauss(wait, 60)) for _ in range(served)]
        within = sum(w <= 600 for w in waits)
        rows.append(
            MinuteRow(
                branch=branch,
                zone=zone,
                minute=int(at.timestamp()),
                samples=60,
                queue_length_avg=q,
                queue_length_max=math.ceil(q),
                predicted_wait_s_avg=wait,
                forecast_wait_s_avg=wait,
                realised_wait_p50_s=sorted(waits)[len(waits) // 2] if waits else None,
                realised_wait_p90_s=max(waits) if waits else None,
                served=served,
                served_within_threshold=within,
                served_within_threshold_ratio=within / served if served else None,
                threshold_s=600.0,
            )
        )
    return rows


def write_history(
    store: Any,
    branches: list[str],
    today: date,
    days: int,
    tz: str = TZ,
    until: float | None = None,
) -> int:
    """Minute rows for ``days`` days before ``today`` and today up to ``until``."""
    n = 0
    for i, b in enumerate(branches):
        for d in range(days, -1, -1):
            day = today - timedelta(days=d)
            rows = history_rows(b, "W1", day, tz, seed=1000 * i + d, peak=1.0 + 0.6 * (i == 2))
            if until is not None:
                rows = [r for r in rows if r.minute < until]
            store.write_minutes(rows)
            n += len(rows)
    return n


def make_collector(cfg: dict[str, Any], clock: Callable[[], float]) -> Any:
    from lobbywatch.server.collector import Collector
    from lobbywatch.server.config import parse_server_config

    return Collector(parse_server_config(cfg), clock=clock, with_mqtt=False, with_http=True)


@contextlib.contextmanager
def fleet_behind_login(
    tmp_path: Path, now: float, tz: str, tweak: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[tuple[Any, Clock, str, str]]:
    """The three named branches fed up to ``now`` (:func:`feed_scenario`) on a started
    collector whose board is behind a login (issue 12): yields ``(collector, clock, base
    URL, secret)`` of a manager's read-only credential ``manager``. ``tweak`` edits the
    config first."""
    from lobbywatch.server.auth import add_credential

    clock = Clock(now - 700)
    cfg = board_config(f"sqlite:///{tmp_path / 'b.db'}", tz=tz)
    if tweak is not None:
        tweak(cfg)
    creds = tmp_path / "credentials"
    secret = add_credential(creds, "manager", "read")
    cfg.setdefault("http", {})["credentials_file"] = str(creds)
    collector = make_collector(cfg, clock)
    collector.start()
    try:
        feed_scenario(collector, clock, Feed(), now)
        yield collector, clock, f"http://127.0.0.1:{collector.http_port}", secret
    finally:
        collector.stop()
