"""Store-and-forward outbox: every MQTT message waits in SQLite until the broker acks it.

The agent never hands a message straight to the MQTT client. It appends the
message here (assigning the device's next sequence number in the same
transaction), and the publisher deletes it only when its PUBACK arrives. So a
message in flight when the connection drops, or when the agent is killed, is
still here and is sent again (in order, with its original ``ts``) on the next
connection: delivery is at-least-once and the collector de-duplicates by seq.

The table is bounded: beyond ``max_messages`` the oldest rows are deleted and
counted (``dropped_total``, logged), never lost silently.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    retain   INTEGER NOT NULL,
    expiry_s INTEGER,            -- MQTT 5 message expiry at creation; NULL = none
    created  REAL    NOT NULL    -- epoch seconds the message was queued
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    retain: bool
    expiry_s: int | None
    created: float

    def remaining_expiry(self, now: float | None = None) -> int | None:
        """Expiry left after the time spent in the outbox (None: no expiry; <= 0: expired)."""
        if self.expiry_s is None:
            return None
        age = (time.time() if now is None else now) - self.created
        return int(self.expiry_s - age)


@dataclass(frozen=True, slots=True)
class Draft:
    """A message before it has a sequence number."""

    topic: str
    payload: bytes
    retain: bool = True
    expiry_s: int | None = None


class Outbox:
    """Thread-safe bounded SQLite outbox. ``put`` from any thread; ``ack`` from the publisher."""

    def __init__(
        self,
        path: Path | str,
        max_messages: int,
        *,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL + NORMAL: a commit survives a crash of the agent (the case that matters
        # on an edge box); a power cut may lose the last few, which seq gaps reveal.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        top = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        self._last_seq = max(row[0] if row else 0, top or 0)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self.dropped_total = 0

    # ------------------------------------------------------------------ writing

    def put(self, build: Callable[[int], Draft]) -> OutboxMessage:
        """Assign the next seq, build the message with it and store it, atomically."""
        with self._lock:
            seq = self._last_seq + 1
            draft = build(seq)
            created = time.time()
            dropped = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._depth >= self.max_messages:
                    dropped = self._depth - self.max_messages + 1
                    self._db.execute(
                        "DELETE FROM outbox WHERE seq IN "
                        "(SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (dropped,),
                    )
                self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload, retain, expiry_s, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, draft.topic, draft.payload, int(draft.retain), draft.expiry_s, created),
                )
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (seq,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_seq = seq
            self._depth += 1 - dropped
            if dropped:
                self.dropped_total += dropped
        if dropped:
            log.warning(
                "outbox full (%d messages): dropped the %d oldest (%d dropped so far)",
                self.max_messages,
                dropped,
                self.dropped_total,
            )
            if self._on_drop is not None:
                self._on_drop(dropped)
        return OutboxMessage(seq, draft.topic, draft.payload, draft.retain, draft.expiry_s, created)

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it (no-op if it was already dropped)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._depth -= cur.rowcount

    # ------------------------------------------------------------------ reading

    def after(self, seq: int, limit: int) -> list[OutboxMessage]:
        """Up to ``limit`` messages with a larger seq, oldest first."""
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, expiry_s, created FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [OutboxMessage(r[0], r[1], bytes(r[2]), bool(r[3]), r[4], r[5]) for r in rows]

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def last_seq(self) -> int:
        """The last seq assigned (0 if none ever was)."""
        return self._last_seq

    def close(self) -> None:
        with self._lock:
            self._db.close()
