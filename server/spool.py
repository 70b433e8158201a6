"""Alert events on their way into the database: a bounded spool and its writer thread.

Why: the processing thread must never wait for the database (a hung PostgreSQL
stalled ingest for seconds), and an event the database refuses must not be lost
(it was logged and dropped). So the processing thread only *spools* an event:

* :class:`AlertSpool` keeps it in memory, in order, and appends it to a local file
  (``database.spool_file``; flushed and fsync'ed, so it survives a crash of the
  process). The file is truncated whenever the spool becomes empty, and replayed
  into the database at the next start (``Store.record_event`` ignores an event id
  it already holds, so a replay never duplicates). It is bounded
  (``database.spool_max_events``); an event beyond the bound is counted as lost
  and logged (it is never silent).
* :class:`DbWriter` is one thread that writes the spool's head to the outbox
  (``Store.record_event``) and retries with exponential backoff and jitter
  (tenacity) until it succeeds; the events behind it wait, so the database never
  sees them out of order and no notification overtakes an earlier one. A sink is
  woken only after its event was committed: the event is durable before anything
  depends on it.

The writer also keeps :class:`DbHealth`, read by ``/healthz`` and ``/metrics``
without touching the database: the last error, since when writes fail, and a
watchdog that reports a database call hung for longer than the statement timeout.
SQLite recovers by itself after a full disk: when a write succeeds again after
failures, the WAL is checkpointed and truncated.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from lobbywatch.server.store import AlertRow, EventRecord, Store

log = logging.getLogger(__name__)


class SpoolError(RuntimeError):
    """The spool file cannot be used (locked by another collector, unreadable)."""


@dataclass(frozen=True, slots=True)
class Spooled:
    """One alert event and the sinks it is routed to."""

    record: EventRecord
    sinks: tuple[str, ...]

    def to_json(self) -> str:
        r = self.record
        return json.dumps(
            {
                "event_id": r.event_id,
                "alert": asdict(r.alert),
                "event": r.event,
                "created_at": r.created_at,
                "payload": r.payload,
                "sinks": list(self.sinks),
            },
            sort_keys=True,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, line: str) -> Spooled:
        d = json.loads(line)
        rec = EventRecord(
            d["event_id"], AlertRow(**d["alert"]), d["event"], d["created_at"], d["payload"]
        )
        return cls(rec, tuple(d["sinks"]))


class AlertSpool:
    """FIFO of events not yet committed; memory plus an append-only local file.

    Args:
        path: the file (None: memory only). Locked exclusively (``flock``) while open,
            so two collectors can never share one.
        max_events: bound; :meth:`put` beyond it drops the event and counts it.

    Thread safety: :meth:`put` from the processing thread, :meth:`head`/:meth:`pop`
    from the writer thread.
    """

    def __init__(self, path: Path | None, max_events: int = 10_000) -> None:
        self.path = path
        self.max_events = max_events
        self._q: deque[Spooled] = deque()
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self.lost = 0
        self.disk_errors = 0
        #: event ids already in the queue (the same event spooled twice is one event)
        self._ids: set[str] = set()

    def open(self) -> list[Spooled]:
        """Lock the file and load what a previous run left; they are queued first."""
        if self.path is None:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.close()
            raise SpoolError(
                f"database.spool_file {self.path} is locked by another collector: give each "
                "collector its own spool_file"
            ) from exc
        f.seek(0)
        left: list[Spooled] = []
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                left.append(Spooled.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                # a torn last line after a crash mid-write: everything before it is whole
                log.warning("spool %s line %d unreadable (%s); skipped", self.path, n, exc)
        self._file = f
        with self._lock:
            for s in left:
                if s.record.event_id not in self._ids:
                    self._q.append(s)
                    self._ids.add(s.record.event_id)
        if left:
            log.warning("spool %s: %d alert events from the last run", self.path, len(left))
        return left

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def put(self, item: Spooled) -> bool:
        """Queue one event (and append it to the file); False if it was dropped."""
        with self._lock:
            if item.record.event_id in self._ids:
                return True
            if len(self._q) >= self.max_events:
                self.lost += 1
                log.error(
                    "alert spool full (%d events): event %s LOST; the database has been "
                    "failing for long, see /healthz",
                    self.max_events,
                    item.record.event_id,
                )
                return False
            self._q.append(item)
            self._ids.add(item.record.event_id)
            f = self._file
            if f is not None:
                try:
                    f.write(item.to_json() + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                except (OSError, ValueError) as exc:
                    # a full local disk: the event stays in memory and is still written
                    self.disk_errors += 1
                    if self.disk_errors % 100 == 1:  # a burst on a full disk: not a line each
                        log.warning(
                            "alert spool file %s: %s (kept in memory; %d such errors)",
                            self.path,
                            exc,
                            self.disk_errors,
                        )
        return True

    def head(self) -> Spooled | None:
        with self._lock:
            return self._q[0] if self._q else None

    def pop(self, item: Spooled) -> None:
        """Drop ``item`` (the head) once committed; truncate the file when empty."""
        with self._lock:
            if self._q and self._q[0] is item:
                self._q.popleft()
                self._ids.discard(item.record.event_id)
            if not self._q and self._file is not None:
                try:
                    self._file.truncate(0)
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except OSError as exc:
                    self.disk_errors += 1
                    log.warning("alert spool file %s: truncate failed: %s", self.path, exc)

    def __len__(self) -> int:
        return len(self._q)


@dataclass
class DbHealth:
    """What the collector knows about its database, without asking it."""

    ok: bool = True
    last_error: str | None = None
    failing_since: float | None = None
    last_ok_at: float | None = None
    #: operation -> failed calls (record_event, write_minutes, mark_delivered, ping...)
    errors: dict[str, int] = field(default_factory=dict)
    #: thread id -> (operation, started monotonic) of each database call in progress
    busy: dict[int, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failed(self, op: str, exc: BaseException, now: float) -> None:
        with self._lock:
            self.errors[op] = self.errors.get(op, 0) + 1
            self.ok = False
            self.last_error = f"{op}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            if self.failing_since is None:
                self.failing_since = now

    def refused(self, op: str) -> None:
        """Count a call the database refused for its data (it is up: health unchanged)."""
        with self._lock:
            self.errors[op] = self.errors.get(op, 0) + 1

    def succeeded(self, now: float) -> bool:
        """Record a success; True if this ends a failure period."""
        with self._lock:
            recovered = not self.ok
            self.ok = True
            self.failing_since = None
            self.last_ok_at = now
            return recovered

    @contextlib.contextmanager
    def call(self, op: str) -> Iterator[None]:
        """Mark a database call in progress on this thread (the watchdog's view)."""
        me = threading.get_ident()
        self.busy[me] = (op, time.monotonic())
        try:
            yield
        finally:
            self.busy.pop(me, None)

    def problem(self, hung_after_s: float) -> str | None:
        """Why the database is unhealthy now (for ``/healthz``), or None."""
        now = time.monotonic()
        for op, started in list(self.busy.values()):
            if now - started > hung_after_s:
                return f"database call {op} has not returned for {now - started:.0f} s"
        with self._lock:
            if not self.ok:
                return f"database write failing: {self.last_error}"
        return None


class DbWriter:
    """The one thread that writes spooled alert events to the outbox, in order.

    Args:
        store: the database.
        spool: the events to write.
        health: updated on every attempt.
        on_stored: called (on this thread) after each commit (wakes the sinks).
        retry_initial_s, retry_max_s: backoff between attempts (jittered, doubling).
        ping_interval_s: while idle, a ``SELECT 1`` this often keeps :class:`DbHealth`
            current (a dead database shows in ``/healthz`` before an alert needs it).
        cut_after_s: a watchdog cuts the connection of any database call (this thread's,
            the sinks', the minute writer's) running longer than this (``Store.cut``).
    """

    def __init__(
        self,
        store: Store,
        spool: AlertSpool,
        health: DbHealth,
        on_stored: Callable[[], None] = lambda: None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        ping_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        cut_after_s: float = 15.0,
    ) -> None:
        self.store = store
        self.spool = spool
        self.health = health
        self.on_stored = on_stored
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.ping_interval_s = ping_interval_s
        self.clock = clock
        #: a database call running this long (statement timeout + margin) is cut
        self.cut_after_s = cut_after_s
        self.stored = 0
        #: failure periods that ended, and SQLite's answer to the checkpoint after the last
        self.recoveries = 0
        self.last_checkpoint: tuple[int, int, int] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ping = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watchdog, name="db-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        """Cut database calls (any thread's) hung for longer than ``cut_after_s``."""
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for tid, (op, started) in list(self.health.busy.items()):
                waited = now - started
                if waited > self.cut_after_s and self.store.cut(tid):
                    why = TimeoutError(f"{op} cut after {waited:.0f} s")
                    self.health.failed("hung", why, self.clock())
                    log.warning("database call %s hung for %.0f s: connection cut", op, waited)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop after trying to write what is spooled for up to ``drain_s``."""
        deadline = time.monotonic() + drain_s
        while len(self.spool) and time.monotonic() < deadline and self.health.ok:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_s + 5)

    def _retrying(self) -> Retrying:
        def _log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                self.health.failed("record_event", exc, self.clock())
                log.warning(
                    "storing alert event failed (attempt %d, %d spooled): %s",
                    state.attempt_number,
                    len(self.spool),
                    self.health.last_error,
                )

        return Retrying(
            retry=retry_if_exception_type(Exception),
            # doubling from retry_initial_s up to retry_max_s, plus up to one initial
            # step of jitter so several collectors do not retry in step
            wait=wait_exponential(multiplier=self.retry_initial_s, max=self.retry_max_s)
            + wait_random(0, self.retry_initial_s),
            stop=lambda _state: self._stop.is_set(),
            before_sleep=_log,
            sleep=self._sleep,  # a stop request cuts the backoff short
            reraise=True,
        )

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def write_one(self, item: Spooled) -> None:
        """Write one spooled event, retrying until it is stored (or the writer stops)."""
        for attempt in self._retrying():
            with attempt, self.health.call("record_event"):
                self.store.record_event(item.record, item.sinks)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.spool.head()
            if item is None:
                self._idle()
                continue
            try:
                self.write_one(item)
            except Exception:
                if self._stop.is_set():
                    return  # left in the spool file: replayed at the next start
                continue
            self.spool.pop(item)
            self.stored += 1
            if self.health.succeeded(self.clock()):
                self._recovered()
            self.on_stored()

    def _idle(self) -> None:
        now = time.monotonic()
        if now - self._last_ping >= self.ping_interval_s:
            self._last_ping = now
            try:
                with self.health.call("ping"):
                    self.store.ping_or_raise()
            except Exception as exc:
                self.health.failed("ping", exc, self.clock())
            else:
                if self.health.succeeded(self.clock()):
                    self._recovered()
        self._wake.wait(min(1.0, self.ping_interval_s))
        self._wake.clear()

    def _recovered(self) -> None:
        log.warning("database writes work again")
        self.recoveries += 1
        try:
            self.last_checkpoint = self.store.checkpoint()
        except Exception as exc:  # the next failure period reports it
            log.warning("WAL checkpoint after recovery failed: %s", exc)
