"""Active/standby per partition: a PostgreSQL session advisory lock decides who notifies.

Collectors configured with the same ``cluster.partition`` run side by side against
one PostgreSQL and one broker. Each keeps its state warm from MQTT; the one holding
the partition's advisory lock is *active*: it writes alert events to the shared
outbox and delivers them. The others are *standby*: they evaluate but store and send
nothing. No home-made consensus: PostgreSQL grants the lock to one session, and
releases it when that session ends (process killed: at once, the kernel closes the
socket; host or network lost: when the server's TCP keepalive gives up, tune
``tcp_keepalives_*`` on the server for the take-over target).

The active checks its lock session every ``check_interval_s``; if the check fails
it steps down at once (it may have lost the lock), so two collectors never notify
for long at the same time. A standby tries the lock at the same interval.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def lock_key(partition: str) -> int:
    """Stable 63-bit advisory lock key of a partition name (CRC-32 based, namespaced)."""
    return (0x4C57 << 32) | zlib.crc32(partition.encode())


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Leadership:
    """Holds (or waits for) one partition's advisory lock on a dedicated connection.

    Args:
        url: SQLAlchemy PostgreSQL URL.
        partition: the partition name.
        on_acquire, on_lose: called on this thread when the role changes.
        check_interval_s: how often to try / verify the lock.
        connect_timeout_s: bound on connecting (a hung database is a lost lock).
    """

    def __init__(
        self,
        url: str,
        partition: str,
        on_acquire: Callable[[], None],
        on_lose: Callable[[], None],
        check_interval_s: float = 1.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = libpq_url(url)
        self.partition = partition
        self.key = lock_key(partition)
        self.on_acquire = on_acquire
        self.on_lose = on_lose
        self.interval = check_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.active = threading.Event()
        self.became_active_at: float | None = None
        self._conn: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + self.connect_timeout_s + 5)
        self._close()  # ends the session: the lock goes to a standby at once

    def _connect(self) -> Any:
        import psycopg

        timeout_ms = int(self.connect_timeout_s * 1000)
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            options=f"-c statement_timeout={timeout_ms}",
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=timeout_ms,
            application_name=f"lobbywatch-{self.partition}",
        )

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing the lock session: %s", exc)

    def _step(self) -> None:
        if self._conn is None:
            self._conn = self._connect()
        if self.active.is_set():
            self._conn.execute("SELECT 1").fetchone()  # the session, hence the lock, lives
            return
        got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if got and got[0]:
            self.active.set()
            self.became_active_at = time.time()
            log.warning("partition %s: this collector is now ACTIVE", self.partition)
            self.on_acquire()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:
                self._close()
                if self.active.is_set():
                    self.active.clear()
                    log.error(
                        "partition %s: lock session lost (%s); standing down", self.partition, exc
                    )
                    self.on_lose()
                else:
                    log.debug("partition %s: lock not reachable: %s", self.partition, exc)
            self._stop.wait(self.interval)
