"""Database faults during a burst of alert events, against the real parts.

Real Mosquitto, the real PostgreSQL behind a loopback TCP proxy the test cuts and
hangs (tests/fault_proxy.py), a real webhook receiver, the collector in-process.
What must hold (issue 12): every alert event produced is delivered exactly once
(by event id) after the database comes back, in order per alert; ingest keeps its
freshness during the fault; ``/healthz`` answers throughout and says 503 with the
reason while the database fails. The run prints the figures docs/operations.md
quotes (``pytest tests/test_db_faults.py -s``).
"""

# ruff: noqa: F811 - fixtures imported from test_server_support are parameters below
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import free_port
from fault_proxy import FaultProxy
from test_server_support import (  # noqa: F401 - fixtures
    Publisher,
    server_config,
    wait_until,
    webhook,
    zone_msg,
)

from lobbywatch.edge.state import ZoneKind
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config
from lobbywatch.server.state import ZoneKey
from lobbywatch.server.store import Store, mask_url

pytestmark = pytest.mark.slow

ZONES = [f"Z{i:02d}" for i in range(12)]


def _pg_direct(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def record_produced(c: Collector) -> list[str]:
    """The ids of every alert event the collector's engine produces, in order (the
    truth a delivery count is checked against), filled as the collector runs."""
    produced: list[str] = []
    handle = c._handle_events

    def spy(events: list[Any], now: float) -> None:
        produced.extend(str(e.event_id) for e in events)
        handle(events, now)

    c._handle_events = spy  # type: ignore[method-assign]
    return produced


def test_postgres_refusing_then_hanging_during_an_alert_burst(
    mosquitto: Any, pg_url: str, webhook: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    proxy = FaultProxy(5432)
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=url,
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
    )
    cfg["database"].update(
        connect_timeout_s=2, statement_timeout_s=2, spool_file=str(tmp_path / "spool.jsonl")
    )
    cfg["notify"].update(retry_initial_s=0.2, retry_max_s=1.0)
    c = Collector(parse_server_config(cfg))
    produced = record_produced(c)
    c.start()
    assert c.mqtt is not None
    wait_until(c.mqtt.connected.is_set, 10)
    pub = Publisher(broker.port)
    seq = iter(range(1, 10**9))
    stop = threading.Event()
    ages: list[tuple[str, float]] = []
    health: list[tuple[str, int, float, str | None]] = []
    phase = ["ok"]

    def burst() -> None:
        people = 6
        while not stop.is_set():
            for z in ZONES:
                pub.send(zone_msg(next(seq), time.time(), people=people, zone=z), qos=0)
            people = 0 if people else 6
            stop.wait(0.6)

    def probe() -> None:
        key = ZoneKey("b1", "probe")
        while not stop.is_set():
            now = time.time()
            msg = zone_msg(next(seq), now, people=1, zone="probe", kind=ZoneKind.ENTRANCE)
            pub.send(msg, qos=0)
            stop.wait(0.1)
            with c.state.lock:
                rec = c.state.zones.get(key)
                ts = rec.ts if rec is not None else None
            if ts is not None:
                ages.append((phase[0], time.time() - ts))
            stop.wait(0.1)

    def healthz() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = httpx.get(f"http://127.0.0.1:{c.http_port}/healthz", timeout=10)
                health.append((phase[0], r.status_code, time.monotonic() - t0,
                               r.json()["reason"]))  # fmt: skip
            except httpx.HTTPError as exc:
                health.append((phase[0], 0, time.monotonic() - t0, str(exc)))
            stop.wait(0.5)

    threads = [threading.Thread(target=f, daemon=True) for f in (burst, probe, healthz)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        phase[0] = "refuse"
        proxy.refuse()
        time.sleep(12)
        phase[0] = "ok"
        proxy.restore()
        time.sleep(3)
        phase[0] = "hang"
        proxy.hang()
        time.sleep(12)
        phase[0] = "recovery"
        proxy.restore()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=15)

        def delivered_ids() -> list[str]:
            return [r.json()["event_id"] for r in list(webhook.requests) if r.ok]

        t_restore = time.monotonic()
        wait_until(lambda: set(delivered_ids()) >= set(produced), 120)
        drained_s = time.monotonic() - t_restore
        time.sleep(2)  # anything re-sent late would show now
        delivered = delivered_ids()
    finally:
        stop.set()
        pub.close()
        c.stop()
        proxy.close()

    counts = collections.Counter(delivered)
    duplicates = sum(n - 1 for n in counts.values())
    during = [a for p, a in ages if p in ("refuse", "hang")]
    fault_health = [h for h in health if h[0] in ("refuse", "hang")]
    print(
        f"\nDB fault run: events produced {len(produced)}, delivered {len(counts)}, "
        f"duplicates {duplicates}, lost {len(set(produced) - set(counts))}; "
        f"max state age ok {max(a for p, a in ages if p == 'ok'):.3f} s, "
        f"during fault {max(during):.3f} s (p50 {sorted(during)[len(during) // 2]:.3f} s); "
        f"/healthz answered {len(health)}/{len(health)}, slowest {max(h[2] for h in health):.3f}"
        f" s, 503 during fault {sum(1 for h in fault_health if h[1] == 503)}/"
        f"{len(fault_health)}; all delivered {drained_s:.1f} s after the database came back"
    )
    assert len(produced) > 200, "the burst produced too few events to mean anything"
    assert len(set(produced)) == len(produced)
    assert set(counts) == set(produced), set(produced) ^ set(counts)
    assert duplicates == 0, [e for e, n in counts.items() if n > 1][:10]
    # in order per alert: revisions ascend
    last: dict[str, int] = {}
    for eid in delivered:
        alert_id, rev = eid.rsplit("#", 1)
        assert int(rev) > last.get(alert_id, -1), f"{eid} after revision {last[alert_id]}"
        last[alert_id] = int(rev)
    # ingest was not held up by the database (it was 8.9 s before this change)
    assert max(during) < 5.0, sorted(during)[-5:]
    # /healthz answered every time and said why while the database failed
    assert all(h[1] in (200, 503) for h in health), [h for h in health if h[1] == 0]
    reasons = [h[3] or "" for h in fault_health if h[1] == 503]
    assert any("database" in r for r in reasons), fault_health
    assert any("has not returned" in r for r in reasons), "the hang was not reported"
    # no database call is left hanging after the fault (the watchdog cuts calls hung past
    # the statement timeout; whether one was in flight at the hang's start is timing, so
    # the test checks the outcome, not the count of cuts)
    stuck = {op: time.monotonic() - t0 for op, t0 in list(c.db_health.busy.values())}
    assert all(age < 10.0 for age in stuck.values()), stuck
    # the database holds every event once
    with psycopg.connect(_pg_direct(pg_url)) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM alert_events")
        assert stored.fetchone() == (len(produced), len(produced))
        pending = conn.execute("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")
        assert pending.fetchone() == (0,)


def test_three_collectors_migrate_one_fresh_postgres_at_the_same_instant(pg_url: str) -> None:
    """Regional collectors starting together: all three migrate (one at a time)."""
    start_at = time.time() + 2.0
    code = (
        "import sys, time\n"
        "from lobbywatch.server.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "s.migrate()\n"
        "print('migrated')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "migrated"
    store = Store(pg_url)
    assert store.active_alerts() == []
    store.close()


def test_three_collectors_migrate_one_fresh_sqlite_file_at_the_same_instant(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    start_at = time.time() + 2.0
    code = (
        "import sys, time\n"
        "from lobbywatch.server.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "s.migrate()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(start_at)], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]


def _run_collector(cfg_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lobbywatch.cli", "server", "run", "--config", str(cfg_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _write_cfg(tmp_path: Path, db_url: str, mqtt_port: int, **db: Any) -> Path:
    import yaml

    cfg = server_config(mqtt_port=mqtt_port, db_url=db_url)
    cfg["database"].update(db)
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_start_against_a_closed_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://lw:hunter2@127.0.0.1:{port}/lw"
    proc = _run_collector(_write_cfg(tmp_path, url, free_port(), connect_timeout_s=2))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: database postgresql+psycopg://lw:***@127.0.0.1:{port}/lw")
    assert "hunter2" not in err
    assert "Fix: check database.url" in lines[0]


def test_start_against_a_port_that_never_answers_gives_up_after_the_connect_timeout(
    tmp_path: Path,
) -> None:
    proxy = FaultProxy(free_port())
    proxy.hang()  # accepts, never answers
    url = f"postgresql+psycopg://lw@127.0.0.1:{proxy.port}/lw"
    try:
        proc = _run_collector(_write_cfg(tmp_path, url, free_port(), connect_timeout_s=2))
        _out, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "database.connect_timeout_s=2 s" in lines[0]
    assert mask_url(url) in lines[0]


def test_sigterm_during_a_hung_start_is_honoured(tmp_path: Path) -> None:
    proxy = FaultProxy(free_port())
    proxy.hang()
    url = f"postgresql+psycopg://lw@127.0.0.1:{proxy.port}/lw"
    try:
        proc = _run_collector(_write_cfg(tmp_path, url, free_port(), connect_timeout_s=120))
        wait_until(lambda: len(proxy._conns) > 0, 30)  # it is connecting now
        os.kill(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert "stopped by a signal during start-up" in err


def test_sqlite_refusing_writes_delays_but_never_repeats_a_notification(tmp_path: Path) -> None:
    """SQLite refusing every write (each new connection is made read-only with SQLite's
    own ``PRAGMA query_only``: the refused-write path a full disk takes; a real full
    file system cannot be made on this shared machine). The alert event waits in the
    spool and nobody is told before it is stored; /healthz says why; a notification
    delivered while its state cannot be recorded is not POSTed again (it was re-POSTed
    187 times in 188 s before); when writes work again the delivery is recorded and the
    WAL is checkpointed and truncated (SQLite's answer checked; closing the last
    connection also removes the WAL, so its size proves nothing here)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sqlalchemy import event

    from lobbywatch.server.alerts import AlertEngine, AlertPolicy
    from lobbywatch.server.estimator import WaitEstimate

    full = {"on": False}
    posts: list[str] = []
    db = tmp_path / "c.db"

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            import json

            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append(json.loads(body)["event_id"])
            # the disk fills while the notification is on its way: it is sent, but
            # its delivery cannot be recorded
            full["on"] = True
            c.store.engine.dispose()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = server_config(
        mqtt_port=1,
        db_url=f"sqlite:///{db}",
        sinks={"hook": {"type": "webhook", "url": f"http://127.0.0.1:{server.server_port}/"}},
    )
    cfg["notify"].update(retry_initial_s=0.1, retry_max_s=0.2)
    c = Collector(parse_server_config(cfg), with_mqtt=False)

    @event.listens_for(c.store.engine, "connect")
    def _refuse_writes(dbapi_conn: Any, _record: Any) -> None:
        if full["on"]:
            dbapi_conn.execute("PRAGMA query_only = 1")

    def set_full(on: bool) -> None:
        full["on"] = on
        c.store.engine.dispose()  # every new connection follows the switch

    c.start()
    base = f"http://127.0.0.1:{c.http_port}"
    try:
        eng = AlertEngine(lambda b, z: AlertPolicy(min_duration_s=0), lambda b: None,
                          lambda b: "north")  # fmt: skip
        est = WaitEstimate(queue_length=9, predicted_wait_s=5000.0, service_rate_per_s=0.01,
                           method="observed", realised_wait_p50_s=None, realised_wait_p90_s=None,
                           oldest_wait_s=None, forecast_wait_s=None, forecast_horizon_s=300.0,
                           served_within_threshold_ratio=None)  # fmt: skip
        set_full(True)
        events = [e for e in eng.evaluate("b1", "W1", est, time.time()) if e.kind == "w1_wait"]
        assert [e.event for e in events] == ["fire"]
        eid = events[0].event_id
        c._handle_events(events, time.time())
        h = wait_until(lambda: (r := httpx.get(f"{base}/healthz", timeout=5)).status_code == 503
                       and r.json(), 20)  # fmt: skip
        assert "database write failing" in h["reason"] and "readonly" in h["reason"], h
        assert h["alert_events_spooled"] == 1
        assert posts == []  # not durable yet: nobody is told
        set_full(False)
        wait_until(lambda: posts == [eid], 20)  # stored, sent; the hook made the DB refuse
        wait_until(lambda: c.dispatcher.counts[("hook", "unrecorded")] == 1, 10)
        time.sleep(3)  # three dispatcher passes
        assert posts == [eid], posts
        assert c.store.delivery_status(eid) == {"hook": "pending"}
        h = httpx.get(f"{base}/healthz", timeout=5).json()
        assert "mark_delivered" in h["reason"], h
        full["on"] = False
        c.store.engine.dispose()
        wait_until(lambda: c.store.delivery_status(eid) == {"hook": "delivered"}, 20)
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, 20)
        # the recovery checkpoint truncated the WAL (later writes start it again, small)
        # the end of each failure period checkpointed the WAL, completely (not busy)
        wait_until(lambda: c.db_writer.recoveries == 2, 20)
        assert c.db_writer.last_checkpoint is not None
        assert c.db_writer.last_checkpoint[0] == 0, c.db_writer.last_checkpoint
        assert posts == [eid]
        m = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'lobbywatch_collector_database_errors_total{op="record_event"}' in m
        assert 'lobbywatch_notifications_total{result="unrecorded",sink="hook"} 1.0' in m
    finally:
        c.stop()
        server.shutdown()


def test_history_while_postgres_refuses_is_503_naming_the_database(
    pg_url: str, tmp_path: Path
) -> None:
    proxy = FaultProxy(5432)
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = server_config(mqtt_port=1, db_url=url)
    cfg["database"].update(connect_timeout_s=2, statement_timeout_s=2)
    c = Collector(parse_server_config(cfg), with_mqtt=False)
    c.start()
    try:
        base = f"http://127.0.0.1:{c.http_port}"
        assert httpx.get(f"{base}/api/v1/alerts/history", timeout=10).json() == []
        proxy.refuse()
        r = httpx.get(f"{base}/api/v1/alerts/history", timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["detail"].startswith("database unavailable: ")
        assert r.headers["retry-after"] == "10"
        # the in-memory state still answers
        assert httpx.get(f"{base}/api/v1/branches", timeout=10).status_code == 200
        proxy.restore()
        assert httpx.get(f"{base}/api/v1/alerts/history", timeout=10).status_code == 200
    finally:
        c.stop()
        proxy.close()


def test_one_branchs_unstorable_minute_does_not_cost_the_others_theirs(pg_url: str) -> None:
    """A value PostgreSQL refuses (integer out of range) in one branch's minute row: the
    other branches' rows of the same minute are stored, the bad one is dropped and
    counted (it failed the whole batch, for every branch, for 10 minutes before)."""
    from lobbywatch.server.store import MinuteRow

    cfg = server_config(mqtt_port=1, db_url=pg_url)
    c = Collector(parse_server_config(cfg), with_mqtt=False, with_http=False)
    c.start()
    try:

        def row(branch: str, served: int) -> MinuteRow:
            return MinuteRow(branch, "W1", 1_750_000_020, 6, 2.0, 3, 60.0, None, None, None,
                             served, served, 1.0, 600.0)  # fmt: skip

        c._write_minutes([row("good-1", 4), row("bad", 10**12), row("good-2", 5)])
        assert [r.served for r in c.store.minutes("good-1")] == [4]
        assert [r.served for r in c.store.minutes("good-2")] == [5]
        assert c.store.minutes("bad") == []
        assert c.db_health.errors == {"write_minutes_refused": 1}
        assert c.db_health.ok  # the database is fine; one row was not
    finally:
        c.stop()


def _mount_tmpfs(path: Path, size_kb: int) -> None:
    """A small real file system; skip (saying why) where mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the real full-disk test cannot run here")
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {out.stderr.strip()}")


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system says ENOSPC; bytes written."""
    import errno

    chunk = b"\0" * 4096
    n = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return n


def test_sqlite_on_a_really_full_disk_loses_and_repeats_nothing_and_recovers(
    mosquitto: Any, webhook: Any, tmp_path: Path
) -> None:
    """The collector's SQLite database, its WAL and its spool file (the default: beside
    the database) on a real 8 MB tmpfs that a filler file makes full during a burst of
    alert events. /healthz must say 503 with SQLite's reason; no event may be lost (they
    wait in the spool's memory while the spool file cannot grow either); no
    notification is POSTed twice; once the filler is deleted the collector recovers by
    itself (WAL checkpointed and truncated) and every event is delivered once."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 8 * 1024)
    broker = mosquitto()
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=f"sqlite:///{disk / 'c.db'}",
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
    )
    cfg["notify"].update(retry_initial_s=0.2, retry_max_s=1.0)
    c = Collector(parse_server_config(cfg))
    produced = record_produced(c)
    stop = threading.Event()
    pub: Publisher | None = None
    health: list[tuple[str, int, str | None]] = []
    phase = ["ok"]
    base = ""
    try:
        c.start()
        assert c.mqtt is not None
        wait_until(c.mqtt.connected.is_set, 10)
        base = f"http://127.0.0.1:{c.http_port}"
        pub = Publisher(broker.port)
        seq = iter(range(1, 10**9))

        def burst() -> None:
            assert pub is not None
            people = 6
            while not stop.is_set():
                for z in ZONES[:8]:
                    pub.send(zone_msg(next(seq), time.time(), people=people, zone=z), qos=0)
                people = 0 if people else 6
                stop.wait(0.6)

        def healthz() -> None:
            while not stop.is_set():
                try:
                    r = httpx.get(f"{base}/healthz", timeout=10)
                    health.append((phase[0], r.status_code, r.json()["reason"]))
                except httpx.HTTPError as exc:
                    health.append((phase[0], 0, str(exc)))
                stop.wait(0.5)

        threads = [threading.Thread(target=f, daemon=True) for f in (burst, healthz)]
        for t in threads:
            t.start()
        wait_until(lambda: len(webhook.requests) >= 8, 30)
        phase[0] = "full"
        filled = _fill(disk / "filler")
        produced_at_full = len(produced)
        wait_until(lambda: any(h[0] == "full" and h[1] == 503 for h in health), 30)
        time.sleep(6)  # the burst goes on against the full disk
        spooled_max = len(c.spool)
        produced_while_full = len(produced) - produced_at_full
        phase[0] = "freed"
        (disk / "filler").unlink()
        wait_until(lambda: health[-1][0] == "freed" and health[-1][1] == 200, 60)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        # every queue empties: every alert ends resolved
        now = time.time()
        for z in ZONES[:8]:
            pub.send(zone_msg(next(seq), now, people=0, zone=z), qos=1)

        def delivered_ids() -> list[str]:
            return [r.json()["event_id"] for r in list(webhook.requests) if r.ok]

        wait_until(lambda: produced and set(delivered_ids()) >= set(produced), 120)
        wait_until(lambda: c.store.pending_count() == 0, 60)
        time.sleep(2)  # anything re-sent late would show now
        delivered = delivered_ids()
        wal = disk / "c.db-wal"
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        disk_free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        checkpoint = c.db_writer.last_checkpoint
        recoveries = c.db_writer.recoveries
        m = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        stop.set()
        if pub is not None:
            pub.close()
        c.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)

    counts = collections.Counter(delivered)
    duplicates = sum(n - 1 for n in counts.values())
    full_health = [h for h in health if h[0] == "full"]
    print(
        f"\nSQLite full disk: filler {filled // 1024} KiB; events produced {len(produced)} "
        f"({produced_while_full} while full, up to {spooled_max} spooled), delivered "
        f"{len(counts)}, duplicates {duplicates}, lost {len(set(produced) - set(counts))}; "
        f"503 while full {sum(1 for h in full_health if h[1] == 503)}/{len(full_health)}; "
        f"recoveries {recoveries}, last checkpoint {checkpoint}, WAL {wal_bytes} B, "
        f"free after {disk_free // 1024} KiB"
    )
    assert produced_while_full > 0, "no alert event was produced while the disk was full"
    assert set(counts) == set(produced), f"lost: {set(produced) - set(counts)}"
    assert duplicates == 0, [e for e, n in counts.items() if n > 1]
    reasons = [h[2] or "" for h in full_health if h[1] == 503]
    assert any("database or disk is full" in r for r in reasons), full_health
    assert all(h[1] in (200, 503) for h in health), [h for h in health if h[1] not in (200, 503)]
    # recovered by itself: the end of the failure period checkpointed the WAL completely
    assert recoveries >= 1
    assert checkpoint is not None and checkpoint[0] == 0, checkpoint
    assert 'lobbywatch_collector_database_errors_total{op="record_event"}' in m
    # the WAL does not hold the space (it kept ~4 MB of the 8 MB at SQLite's defaults):
    # checkpointed every 256 pages and cut back to 1 MiB (slack: one more checkpoint's worth)
    assert wal_bytes <= 2 * 1024 * 1024, f"WAL holds {wal_bytes} B after recovery"
    assert disk_free > 5 * 1024 * 1024, f"only {disk_free} B free after the filler went"
