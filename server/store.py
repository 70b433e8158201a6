"""Persistent storage: alert history, notification outbox, per-zone minute aggregates.

SQLAlchemy 2 Core over SQLite (default) or PostgreSQL (by URL); the schema is
owned by the Alembic migrations in ``server/migrations`` and upgraded
programmatically at start (:meth:`Store.migrate`), so an operator never runs
a separate migration step. Times are stored as float UTC epoch seconds: the
same on both databases, no time-zone conversion surprises.

Outbox: :meth:`Store.record_event` writes an alert event, the alert's current
row and one pending delivery per routed sink in one transaction, keyed by the
event id. A second ``record_event`` with the same id (a restart re-deriving the
same event) is a no-op, so nobody is notified twice; the notifier marks each
``(event_id, sink)`` delivered once the sink accepted it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

metadata = MetaData()

# Mirrors migrations/versions/ (0001_initial.py, 0002_zone_minute_flows.py,
# 0003_delivery_claims.py, 0004_identity_bindings.py; the
# migrations are the source of truth for DDL; these Table objects only build queries).
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(255), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("branch", String(64), nullable=False),
    Column("zone", String(64)),
    Column("subject", String(64), nullable=False),
    Column("region", String(64)),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("summary", Text),
    Column("value", Float),
    Column("threshold", Float),
    Column("last_event", String(16)),
    Column("escalated", Boolean, nullable=False),
    Column("last_notified_at", Float),
    Column("revision", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("alert_id", String(255), nullable=False),
    Column("event", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("sink", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Column("created_at", Float, nullable=False),
    # 0003: committed before a send starts; still set on a pending row = "in doubt"
    Column("sending_at", Float),
)

identity_bindings = Table(
    "identity_bindings",
    metadata,
    Column("subject", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("bound_at", Float, nullable=False),
)

zone_minutes = Table(
    "zone_minutes",
    metadata,
    Column("branch", String(64), primary_key=True),
    Column("zone", String(64), primary_key=True),
    Column("minute", Integer, primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("queue_length_avg", Float, nullable=False),
    Column("queue_length_max", Integer, nullable=False),
    Column("predicted_wait_s_avg", Float),
    Column("forecast_wait_s_avg", Float),
    Column("realised_wait_p50_s", Float),
    Column("realised_wait_p90_s", Float),
    Column("served", Integer, nullable=False),
    Column("served_within_threshold", Integer, nullable=False),
    Column("served_within_threshold_ratio", Float),
    Column("threshold_s", Float),
    # 0002: flows through the zone in the minute (null before the migration, and the
    # departure classes null while the zone's edge does not classify departures)
    Column("arrivals", Integer),
    Column("service_starts", Integer),
    Column("walk_outs", Integer),
    Column("departures_unseen", Integer),
)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert as stored (one row per alert id, updated by each of its events)."""

    alert_id: str
    kind: str
    severity: str
    state: str
    branch: str
    #: the zone of zone alerts (w1_wait, service_stalled), None for device alerts
    zone: str | None
    #: what the alert is about: the zone, or the device of a device_offline alert
    subject: str
    region: str | None
    started_at: float
    ended_at: float | None
    summary: str | None
    value: float | None
    threshold: float | None
    last_event: str | None
    escalated: bool
    last_notified_at: float | None
    revision: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One alert event to store and deliver; ``payload`` is the JSON sinks receive."""

    event_id: str
    alert: AlertRow
    event: str
    created_at: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    sink: str
    attempts: int
    created_at: float
    payload: dict[str, Any]
    #: claimed by a send whose outcome was never recorded: the sink may have it
    in_doubt: bool = False


@dataclass(frozen=True, slots=True)
class MinuteRow:
    branch: str
    zone: str
    minute: int
    samples: int
    queue_length_avg: float
    queue_length_max: int
    predicted_wait_s_avg: float | None
    forecast_wait_s_avg: float | None
    realised_wait_p50_s: float | None
    realised_wait_p90_s: float | None
    served: int
    served_within_threshold: int
    served_within_threshold_ratio: float | None
    threshold_s: float | None
    #: confirmed entries into the zone in the minute (the arrival history of forecasts)
    arrivals: int | None = None
    #: departures into a service point (service starts), None when not classified
    service_starts: int | None = None
    #: departures through an exit without service (walk-outs), None when not classified
    walk_outs: int | None = None
    #: departures whose destination the camera did not see, None when not classified
    departures_unseen: int | None = None


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def make_engine(
    url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float = 10.0
) -> Engine:
    """An engine whose calls cannot hang for ever.

    PostgreSQL: libpq ``connect_timeout`` bounds connecting, the server-side
    ``statement_timeout`` bounds a statement, TCP keepalives and ``tcp_user_timeout``
    notice a peer that vanished, and ``pool_timeout`` bounds waiting for a pooled
    connection. SQLite: the busy timeout is the statement timeout.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": statement_timeout_s},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL: API reads do not block the processing/notifier writers.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # The WAL file keeps its high-water mark: at SQLite's default (checkpoint at
            # 1000 pages, never shrink) that is ~4 MB held on a disk that may be the one
            # that filled up. Checkpoint at 256 pages (~1 MB) and cut the file back to
            # 1 MiB when a checkpoint resets it; measured on a full 8 MB tmpfs
            # (tests/test_db_faults.py, docs/operations.md).
            cur.execute("PRAGMA wal_autocheckpoint=256")
            cur.execute("PRAGMA journal_size_limit=1048576")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=connect_timeout_s + statement_timeout_s,
        connect_args={
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}"
            f" -c lock_timeout={int(statement_timeout_s * 1000)}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": int((connect_timeout_s + statement_timeout_s) * 1000),
        },
    )


def _upsert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: list[str]
) -> None:
    if not rows:
        return
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )
    conn.execute(stmt, list(rows))


def _insert_ignore(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert unless the primary key exists; True if inserted.

    RETURNING (not rowcount, which drivers report differently for ON CONFLICT)
    tells whether the row was new.
    """
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(**row).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**row).on_conflict_do_nothing()
    pk = next(iter(table.primary_key.columns))
    return conn.execute(stmt.returning(pk)).first() is not None


#: key of the PostgreSQL advisory lock that serialises migrations across processes
MIGRATION_LOCK_KEY = 0x6C77_6D69  # "lwmi"


class Store:
    def __init__(
        self, url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.engine = make_engine(url, connect_timeout_s, statement_timeout_s)
        #: thread id -> the DBAPI connection that thread has checked out (for cut())
        self._in_use: dict[int, Any] = {}
        event.listen(self.engine, "checkout", self._checked_out)
        event.listen(self.engine, "checkin", self._checked_in)

    def _checked_out(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        self._in_use[threading.get_ident()] = dbapi_conn

    def _checked_in(self, dbapi_conn: Any, _record: Any) -> None:
        for tid, conn in list(self._in_use.items()):
            if conn is dbapi_conn:
                self._in_use.pop(tid, None)

    def cut(self, thread_id: int) -> bool:
        """Shut down the socket of the PostgreSQL connection ``thread_id`` is using.

        A server that accepts but never answers keeps a call waiting for ever: neither
        ``statement_timeout`` (enforced by that very server) nor TCP timeouts (the peer
        acknowledges) end it. Shutting the socket down makes the call fail at once, so
        the caller retries on a new connection. True if a socket was shut down.
        """
        conn = self._in_use.get(thread_id)
        pgconn = getattr(conn, "pgconn", None)
        if pgconn is None:
            return False
        try:
            fd = os.dup(pgconn.socket)
        except (OSError, ValueError, AttributeError):
            return False
        with socket.socket(fileno=fd) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                return False
        return True

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------- schema
    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        # Several collectors may start at once on one fresh database (regional
        # collectors, a standby): migrations run one process at a time. PostgreSQL:
        # a transaction-scoped advisory lock taken before Alembic looks at the schema
        # (concurrent CREATE TABLE failed with UniqueViolation on pg_type); SQLite: an
        # exclusive lock on a file beside the database.
        with self._sqlite_file_lock(), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def _sqlite_file_lock(self) -> Iterator[None]:
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate.lock", "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def ping(self) -> bool:
        try:
            self.ping_or_raise()
            return True
        except Exception:
            return False

    def ping_or_raise(self) -> None:
        """``SELECT 1``, and on SQLite a write test: a full disk fails writes, not reads."""
        with self.engine.begin() as conn:
            conn.execute(select(1))
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA user_version = 0")

    def checkpoint(self) -> tuple[int, int, int] | None:
        """SQLite: checkpoint and truncate the WAL (after a full disk it held the space).

        Returns SQLite's ``(busy, wal frames, checkpointed frames)``; None elsewhere.
        """
        if self.engine.dialect.name != "sqlite":
            return None
        # outside any transaction, or SQLite refuses the checkpoint (busy) silently
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        result = (int(row[0]), int(row[1]), int(row[2]))
        if result[0]:
            log.warning("WAL checkpoint incomplete: a reader held the WAL")
        return result

    # ------------------------------------------------------------- outbox
    def record_event(self, ev: EventRecord, sinks: Iterable[str]) -> bool:
        """Store an event, its alert row and pending deliveries atomically.

        Returns False (and changes nothing) if the event id was already stored.
        """
        with self.engine.begin() as conn:
            inserted = _insert_ignore(
                conn,
                alert_events,
                {
                    "event_id": ev.event_id,
                    "alert_id": ev.alert.alert_id,
                    "event": ev.event,
                    "created_at": ev.created_at,
                    "payload": json.dumps(ev.payload, sort_keys=True),
                },
            )
            if not inserted:
                return False
            _upsert(conn, alerts, [asdict(ev.alert)], ["alert_id"])
            for sink in sinks:
                _insert_ignore(
                    conn,
                    deliveries,
                    {
                        "event_id": ev.event_id,
                        "sink": sink,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": ev.created_at,
                        "created_at": ev.created_at,
                    },
                )
        return True

    def record_message(
        self, event_id: str, subject: str, payload: dict[str, Any], sinks: Iterable[str], now: float
    ) -> bool:
        """Store a non-alert message (a daily report) and its pending deliveries, once.

        ``subject`` groups its deliveries like an alert id does. Returns False (and
        changes nothing) when ``event_id`` was already stored: a report is sent once.
        """
        with self.engine.begin() as conn:
            inserted = _insert_ignore(
                conn,
                alert_events,
                {
                    "event_id": event_id,
                    "alert_id": subject,
                    "event": str(payload.get("event", "message")),
                    "created_at": now,
                    "payload": json.dumps(payload, sort_keys=True),
                },
            )
            if not inserted:
                return False
            for sink in sinks:
                _insert_ignore(
                    conn,
                    deliveries,
                    {
                        "event_id": event_id,
                        "sink": sink,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                )
        return True

    def has_event(self, event_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(alert_events.c.event_id).where(alert_events.c.event_id == event_id)
                ).first()
                is not None
            )

    def due_deliveries(
        self,
        now: float,
        limit: int = 100,
        sink: str | None = None,
        branches: Sequence[str] | None = None,
    ) -> list[Delivery]:
        """Pending deliveries due by ``now``, oldest first; only of alerts of ``branches``
        when given (collectors partitioned by region share one outbox)."""
        q = (
            select(
                deliveries.c.event_id,
                deliveries.c.sink,
                deliveries.c.attempts,
                deliveries.c.created_at,
                alert_events.c.payload,
                deliveries.c.sending_at,
            )
            .join(alert_events, alert_events.c.event_id == deliveries.c.event_id)
            .where(and_(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now))
            .order_by(deliveries.c.created_at, deliveries.c.event_id)
            .limit(limit)
        )
        if sink is not None:
            q = q.where(deliveries.c.sink == sink)
        if branches is not None:
            q = q.join(alerts, alerts.c.alert_id == alert_events.c.alert_id).where(
                alerts.c.branch.in_(list(branches))
            )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            Delivery(r[0], r[1], r[2], r[3], json.loads(r[4]), in_doubt=r[5] is not None)
            for r in rows
        ]

    def pending_count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status == "pending")
                ).scalar_one()
            )

    def claim(self, event_id: str, sink: str, now: float) -> bool:
        """Commit that a send of a pending delivery starts now (before the send).

        If the sender dies before :meth:`mark_delivered`, the claim stays on the
        pending row and the next sender knows the sink may already have it. False if
        the delivery is no longer pending (another collector recorded it meanwhile).
        """
        with self.engine.begin() as conn:
            res = conn.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.event_id == event_id,
                        deliveries.c.sink == sink,
                        deliveries.c.status == "pending",
                    )
                )
                .values(sending_at=now)
            )
        return bool(res.rowcount == 1)

    def mark_delivered(self, event_id: str, sink: str, now: float) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Until this commits, a crash of the collector makes the next sender re-send
                # (marked). Not waiting for the WAL flush cuts that window from ~4 ms to
                # ~0.7 ms (measured, docs/collector.md); a *database* crash may then lose
                # the mark, which costs the same marked redelivery, never a loss: the claim
                # before the send is committed synchronously.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            conn.execute(
                update(deliveries)
                .where(and_(deliveries.c.event_id == event_id, deliveries.c.sink == sink))
                .values(status="delivered", delivered_at=now, attempts=deliveries.c.attempts + 1)
            )

    def mark_failed(
        self,
        event_id: str,
        sink: str,
        error: str,
        next_attempt_at: float,
        expire: bool = False,
        in_doubt: bool = False,
    ) -> None:
        """Reschedule (or expire) a failed send. ``in_doubt``: the request may have
        reached the sink (a timeout after connecting), so the claim stays and the
        retry is marked as a redelivery; otherwise the claim is cleared."""
        values: dict[str, Any] = {
            "status": "expired" if expire else "pending",
            "last_error": error[:1000],
            "next_attempt_at": next_attempt_at,
            "attempts": deliveries.c.attempts + 1,
        }
        if not in_doubt:
            values["sending_at"] = None
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(and_(deliveries.c.event_id == event_id, deliveries.c.sink == sink))
                .values(**values)
            )
            # Later events of the same alert wait for this one: a "resolved" must not
            # overtake the "firing" it resolves.
            same_alert = select(alert_events.c.alert_id).where(alert_events.c.event_id == event_id)
            later = select(alert_events.c.event_id).where(
                alert_events.c.alert_id.in_(same_alert.scalar_subquery())
            )
            conn.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.sink == sink,
                        deliveries.c.status == "pending",
                        deliveries.c.event_id != event_id,
                        deliveries.c.next_attempt_at < next_attempt_at,
                        deliveries.c.event_id.in_(later),
                    )
                )
                .values(next_attempt_at=next_attempt_at)
            )

    # ------------------------------------------------------------- identities
    def save_bindings(self, rows: Sequence[tuple[str, str, float]]) -> None:
        """Upsert ``(subject, owner, bound_at)`` identity bindings (the newest wins)."""
        with self.engine.begin() as conn:
            _upsert(
                conn,
                identity_bindings,
                [{"subject": s, "owner": o, "bound_at": t} for s, o, t in rows],
                ["subject"],
            )

    def load_bindings(self) -> list[tuple[str, str, float]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    identity_bindings.c.subject,
                    identity_bindings.c.owner,
                    identity_bindings.c.bound_at,
                )
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def delivery_status(self, event_id: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.sink, deliveries.c.status).where(
                    deliveries.c.event_id == event_id
                )
            ).all()
        return {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------- alerts
    def active_alerts(self, branches: Sequence[str] | None = None) -> list[AlertRow]:
        q = select(alerts).where(alerts.c.state == "firing").order_by(alerts.c.started_at)
        if branches is not None:
            q = q.where(alerts.c.branch.in_(list(branches)))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [AlertRow(**r._mapping) for r in rows]

    def alert_history(
        self,
        *,
        branch: str | None = None,
        region: str | None = None,
        kind: str | None = None,
        active: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AlertRow]:
        q = select(alerts)
        if branch is not None:
            q = q.where(alerts.c.branch == branch)
        if region is not None:
            q = q.where(alerts.c.region == region)
        if kind is not None:
            q = q.where(alerts.c.kind == kind)
        if active is not None:
            q = q.where(alerts.c.state == ("firing" if active else "resolved"))
        if since is not None:
            q = q.where(alerts.c.started_at >= since)
        if until is not None:
            q = q.where(alerts.c.started_at < until)
        q = q.order_by(alerts.c.started_at.desc(), alerts.c.alert_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [AlertRow(**r._mapping) for r in rows]

    def events_of(self, alert_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alert_events.c.payload)
                .where(alert_events.c.alert_id == alert_id)
                .order_by(alert_events.c.created_at, alert_events.c.event_id)
            ).all()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------- aggregates
    def write_minutes(self, rows: Sequence[MinuteRow]) -> None:
        """Upsert a batch of minute aggregates (one transaction, one statement)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            _upsert(conn, zone_minutes, [asdict(r) for r in rows], ["branch", "zone", "minute"])

    def minutes(
        self, branch: str, zone: str | None = None, since: float | None = None, limit: int = 1440
    ) -> list[MinuteRow]:
        q = select(zone_minutes).where(zone_minutes.c.branch == branch)
        if zone is not None:
            q = q.where(zone_minutes.c.zone == zone)
        if since is not None:
            q = q.where(zone_minutes.c.minute >= int(since))
        q = q.order_by(zone_minutes.c.minute.desc(), zone_minutes.c.zone).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [MinuteRow(**r._mapping) for r in rows]

    def walk_outs_since(self, since_by_branch: dict[str, float]) -> dict[tuple[str, str], int]:
        """(branch, zone) -> walk-outs in the stored minutes since each branch's start time.

        One query per distinct start time (branches sharing a time zone share local
        midnight). Empty when this schema has no ``walk_outs`` column (a collector
        whose edges do not classify departures).
        """
        from sqlalchemy import func

        col = zone_minutes.c.get("walk_outs")
        if col is None or not since_by_branch:
            return {}
        groups: dict[float, list[str]] = {}
        for branch, since in since_by_branch.items():
            groups.setdefault(since, []).append(branch)
        out: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for since, branches in groups.items():
                q = (
                    select(zone_minutes.c.branch, zone_minutes.c.zone, func.sum(col))
                    .where(
                        and_(
                            zone_minutes.c.branch.in_(branches),
                            zone_minutes.c.minute >= int(since),
                            col.is_not(None),
                        )
                    )
                    .group_by(zone_minutes.c.branch, zone_minutes.c.zone)
                )
                for branch, zone, total in conn.execute(q):
                    out[(branch, zone)] = int(total or 0)
        return out

    def prune_minutes(self, before: float) -> int:
        """Delete minute aggregates whose minute starts before ``before`` (epoch seconds);
        returns how many rows went. Called daily by the collector (``server/retention.py``)."""
        from sqlalchemy import delete

        with self.engine.begin() as conn:
            res = conn.execute(delete(zone_minutes).where(zone_minutes.c.minute < int(before)))
        return int(res.rowcount or 0)
