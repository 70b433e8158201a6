"""Storage: the same tests against SQLite and the real PostgreSQL (``pg_url``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from lobbywatch.server.store import AlertRow, EventRecord, MinuteRow, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    s.migrate()
    yield s
    s.close()


def alert(aid: str = "w1_wait:b1:W1:100", **kw: object) -> AlertRow:
    base = AlertRow(
        alert_id=aid,
        kind="w1_wait",
        severity="warning",
        state="firing",
        branch="b1",
        zone="W1",
        subject="W1",
        region="north",
        started_at=100.0,
        ended_at=None,
        summary="W1 at b1",
        value=400.0,
        threshold=600.0,
        last_event="fire",
        escalated=False,
        last_notified_at=100.0,
        revision=0,
        updated_at=100.0,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def ev(a: AlertRow, rev: int, event: str, at: float) -> EventRecord:
    eid = f"{a.alert_id}#{rev}"
    return EventRecord(eid, a, event, at, {"event_id": eid, "alert_id": a.alert_id, "event": event})


def test_migrate_is_idempotent_and_creates_the_schema(store: Store) -> None:
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"alerts", "alert_events", "deliveries", "zone_minutes", "alembic_version"} <= tables
    assert store.ping()


def test_event_is_stored_once_with_one_delivery_per_sink(store: Store) -> None:
    a = alert()
    assert store.record_event(ev(a, 0, "fire", 100.0), ["hook", "mail"])
    # the same event again (a restart re-deriving it) changes nothing
    assert not store.record_event(ev(a, 0, "fire", 100.0), ["hook", "mail", "am"])
    assert store.delivery_status(f"{a.alert_id}#0") == {"hook": "pending", "mail": "pending"}
    due = store.due_deliveries(100.0)
    assert [(d.sink, d.attempts) for d in due] == [("hook", 0), ("mail", 0)]
    assert store.due_deliveries(99.0) == []
    assert [d.sink for d in store.due_deliveries(100.0, sink="mail")] == ["mail"]
    store.mark_delivered(f"{a.alert_id}#0", "hook", 101.0)
    assert [d.sink for d in store.due_deliveries(200.0)] == ["mail"]
    assert store.pending_count() == 1
    assert store.active_alerts() == [a]


def test_failed_delivery_backs_off_and_holds_later_events_of_the_alert(store: Store) -> None:
    a = alert()
    store.record_event(ev(a, 0, "fire", 100.0), ["hook"])
    resolved = dataclasses.replace(a, state="resolved", ended_at=150.0, revision=1)
    store.record_event(ev(resolved, 1, "resolve", 150.0), ["hook"])
    store.mark_failed(f"{a.alert_id}#0", "hook", "HTTP 500", next_attempt_at=200.0)
    # the resolve must not overtake the fire it resolves
    assert store.due_deliveries(160.0) == []
    due = store.due_deliveries(200.0)
    assert [(d.event_id, d.attempts) for d in due] == [
        (f"{a.alert_id}#0", 1),
        (f"{a.alert_id}#1", 0),
    ]
    store.mark_failed(f"{a.alert_id}#0", "hook", "gone", next_attempt_at=300.0, expire=True)
    assert store.delivery_status(f"{a.alert_id}#0") == {"hook": "expired"}


def test_alert_rows_follow_their_events_and_history_filters(store: Store) -> None:
    a = alert()
    store.record_event(ev(a, 0, "fire", 100.0), [])
    esc = dataclasses.replace(a, severity="critical", escalated=True, revision=1, updated_at=130.0)
    store.record_event(ev(esc, 1, "escalate", 130.0), [])
    assert store.active_alerts() == [esc]
    done = dataclasses.replace(esc, state="resolved", ended_at=200.0, revision=2)
    store.record_event(ev(done, 2, "resolve", 200.0), [])
    other = alert(
        "device_offline:b2:edge-9:300",
        kind="device_offline",
        branch="b2",
        zone=None,
        subject="edge-9",
        region="south",
        started_at=300.0,
    )
    store.record_event(ev(other, 0, "fire", 300.0), [])
    assert store.active_alerts() == [other]
    assert [r.alert_id for r in store.alert_history()] == [other.alert_id, a.alert_id]
    assert [r.alert_id for r in store.alert_history(branch="b1")] == [a.alert_id]
    assert [r.alert_id for r in store.alert_history(region="south")] == [other.alert_id]
    assert [r.alert_id for r in store.alert_history(active=False)] == [a.alert_id]
    assert [r.alert_id for r in store.alert_history(since=200.0)] == [other.alert_id]
    assert [r.alert_id for r in store.alert_history(until=200.0)] == [a.alert_id]
    assert [r.alert_id for r in store.alert_history(kind="device_offline")] == [other.alert_id]
    assert [r.alert_id for r in store.alert_history(limit=1, offset=1)] == [a.alert_id]
    row = store.alert_history(branch="b1")[0]
    assert (row.severity, row.state, row.escalated, row.revision) == (
        "critical",
        "resolved",
        True,
        2,
    )
    assert [e["event"] for e in store.events_of(a.alert_id)] == ["fire", "escalate", "resolve"]


def minute(m: int, samples: int, zone: str = "W1") -> MinuteRow:
    return MinuteRow("b1", zone, m, samples, 2.5, 4, 300.0, 360.0, 200.0, 500.0, 4, 3, 0.75, 600.0)


def test_minute_aggregates_upsert_query_and_prune(store: Store) -> None:
    store.write_minutes([minute(60, 3), minute(120, 5), minute(120, 2, zone="W2")])
    store.write_minutes([minute(120, 6)])  # a re-flushed minute replaces, never duplicates
    rows = store.minutes("b1", "W1")
    assert [(r.minute, r.samples) for r in rows] == [(120, 6), (60, 3)]
    assert rows[0] == minute(120, 6)
    assert len(store.minutes("b1")) == 3
    assert [r.minute for r in store.minutes("b1", since=100)] == [120, 120]
    assert store.prune_minutes(before=100) == 1
    assert len(store.minutes("b1")) == 2


def test_minute_flows_round_trip(store: Store) -> None:
    row = dataclasses.replace(
        minute(180, 4), arrivals=7, service_starts=5, walk_outs=1, departures_unseen=1
    )
    store.write_minutes([row, minute(180, 2, zone="W2")])
    got = {r.zone: r for r in store.minutes("b1", since=180)}
    assert got["W1"] == row
    # a zone whose edge does not classify departures keeps them unknown
    assert (got["W2"].arrivals, got["W2"].walk_outs) == (None, None)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_flows_migration_keeps_existing_minutes(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from lobbywatch.server.store import MIGRATIONS

    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    s = Store(url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with s.engine.begin() as conn:  # a database of the previous release
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        with s.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO zone_minutes (branch, zone, minute, samples, queue_length_avg,"
                    " queue_length_max, served, served_within_threshold)"
                    " VALUES ('b1', 'W1', 60, 6, 1.5, 3, 2, 2)"
                )
            )
        s.migrate()
        (old,) = s.minutes("b1")
        assert (old.minute, old.samples, old.served) == (60, 6, 2)
        assert (old.arrivals, old.service_starts, old.walk_outs, old.departures_unseen) == (
            None,
            None,
            None,
            None,
        )
        cols = {c["name"] for c in inspect(s.engine).get_columns("zone_minutes")}
        assert {"arrivals", "service_starts", "walk_outs", "departures_unseen"} <= cols
        with s.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
    finally:
        s.close()
