"""database.retention_days is enforced: the collector prunes old minute aggregates daily,
on its own clock, against SQLite and the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config
from lobbywatch.server.retention import DAY_S, RetentionSchedule
from lobbywatch.server.store import MinuteRow, Store

NOW = 1_750_000_020.0  # a few seconds into a minute


def _minute(m: float, zone: str = "W1") -> MinuteRow:
    return MinuteRow(
        "b1", zone, int(m // 60 * 60), 3, 2.5, 4, 300.0, 360.0, 200.0, 500.0, 4, 3, 0.75, 600.0
    )


def test_schedule_prunes_at_first_tick_then_daily() -> None:
    sched = RetentionSchedule(retention_days=30)
    assert sched.due(NOW) == NOW - 30 * DAY_S
    assert sched.due(NOW + 1) is None
    assert sched.due(NOW + DAY_S - 1) is None
    assert sched.due(NOW + DAY_S) == NOW + DAY_S - 30 * DAY_S
    assert sched.next_at == NOW + 2 * DAY_S


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_collector_prunes_minutes_older_than_retention_days(db_url: str) -> None:
    now = [NOW]
    cfg = parse_server_config({"database": {"url": db_url, "retention_days": 30}})
    collector = Collector(cfg, clock=lambda: now[0], with_mqtt=False, with_http=False)
    collector.store.migrate()
    old = _minute(NOW - 31 * DAY_S)
    edge = _minute(NOW - 30 * DAY_S + 60)  # inside at the first prune, outside a day later
    young = _minute(NOW - 29 * DAY_S + 3600)  # still inside after the second prune
    recent = _minute(NOW - 600, zone="W2")
    collector.store.write_minutes([old, edge, young, recent])

    collector.tick(now[0])  # first tick: prune now
    now[0] += DAY_S - 60
    collector.tick(now[0])  # not a day later yet: nothing more goes
    collector.wait_for_store_writes()
    assert _kept(collector.store) == {(m.zone, m.minute) for m in (edge, young, recent)}

    now[0] += 60
    collector.tick(now[0])  # a day after the first prune: the next one
    collector.stop()  # waits for the store writer
    store = Store(db_url)
    try:
        assert _kept(store) == {(m.zone, m.minute) for m in (young, recent)}
    finally:
        store.close()


def _kept(store: Store) -> set[tuple[str, int]]:
    return {(r.zone, r.minute) for r in store.minutes("b1", limit=100)}
