"""More than one collector (issue 12), as real processes against the real Mosquitto and
the real PostgreSQL: an active/standby pair of one partition where the active is
killed with SIGKILL during a burst of alert events, and two regional collectors
started at the same instant. ``pytest tests/test_cluster.py -s`` prints the figures
docs/collector.md quotes."""

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
import yaml
from conftest import free_port
from test_server_support import (  # noqa: F401 - fixtures
    Publisher,
    server_config,
    wait_until,
    webhook,
    zone_msg,
)

pytestmark = pytest.mark.slow

ZONES = [f"Z{i:02d}" for i in range(8)]


def start_collector(cfg: dict[str, Any], path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = {**cfg, "http": {"host": "127.0.0.1", "port": port}}
    path.write_text(yaml.safe_dump(cfg))
    log = path.with_suffix(".log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lobbywatch.cli", "server", "run", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, port


def health(port: int) -> dict[str, Any] | None:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return None


def role(port: int) -> str | None:
    h = health(port)
    return None if h is None else str(h["role"])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_kill_9_of_the_active_during_a_burst_loses_and_repeats_nothing(
    mosquitto: Any, pg_url: str, webhook: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    base = server_config(
        mqtt_port=broker.port,
        db_url=pg_url,
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
        shared_group=None,  # both receive everything: the standby stays warm
    )
    base["cluster"] = {"partition": "north", "check_interval_s": 0.5}
    base["notify"].update(retry_initial_s=0.2, retry_max_s=1.0)
    procs: list[subprocess.Popen[bytes]] = []
    pub = Publisher(broker.port)
    stop_burst = threading.Event()
    try:
        cfg_a = {**base, "database": {"url": pg_url, "spool_file": str(tmp_path / "a.spool")}}
        a, port_a = start_collector(cfg_a, tmp_path / "a.yaml")
        procs.append(a)
        wait_until(lambda: role(port_a) == "active", 60)
        cfg_b = {**base, "database": {"url": pg_url, "spool_file": str(tmp_path / "b.spool")}}
        b, port_b = start_collector(cfg_b, tmp_path / "b.yaml")
        procs.append(b)
        wait_until(lambda: role(port_b) == "standby", 60)

        seq = iter(range(1, 10**9))

        def burst() -> None:
            people = 6
            while not stop_burst.is_set():
                for z in ZONES:
                    pub.send(zone_msg(next(seq), time.time(), people=people, zone=z), qos=1)
                people = 0 if people else 6
                stop_burst.wait(0.6)

        t = threading.Thread(target=burst, daemon=True)
        t.start()
        wait_until(lambda: len(webhook.requests) >= 40, 60)
        before_kill = len(webhook.requests)
        killed_at = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        wait_until(lambda: role(port_b) == "active", 60, interval=0.05)
        handover_s = time.monotonic() - killed_at
        time.sleep(5)
        stop_burst.set()
        t.join(timeout=10)
        # every queue empties: every alert must end resolved, delivered
        now = time.time()
        for z in ZONES:
            pub.send(zone_msg(next(seq), now, people=0, zone=z), qos=1)

        def settled() -> bool:
            with psycopg.connect(pg(pg_url)) as conn:
                firing = conn.execute("SELECT count(*) FROM alerts WHERE state = 'firing'")
                pending = conn.execute(
                    "SELECT count(*) FROM deliveries WHERE status <> 'delivered'"
                )
                return firing.fetchone() == (0,) and pending.fetchone() == (0,)

        wait_until(settled, 60, interval=0.5)
        time.sleep(2)
        with psycopg.connect(pg(pg_url)) as conn:
            stored = [r[0] for r in conn.execute("SELECT event_id FROM alert_events")]
            delivered_at = dict(
                conn.execute("SELECT event_id, delivered_at FROM deliveries").fetchall()
            )
        metrics_b = httpx.get(f"http://127.0.0.1:{port_b}/metrics", timeout=10).text
    finally:
        stop_burst.set()
        pub.close()
        for p in procs:
            stop(p)

    received = [r for r in list(webhook.requests) if r.ok]
    delivered = [r.json()["event_id"] for r in received]
    counts = collections.Counter(delivered)
    duplicates = sum(n - 1 for n in counts.values())
    # A receiver that keeps Idempotency-Keys (or honours the redelivery marker) drops
    # every repeat; what it must never see is a repeat that is *not* marked.
    seen: set[str] = set()
    unmarked_repeats: list[str] = []
    marked: list[str] = []
    for r in received:
        eid = r.json()["event_id"]
        is_marked = r.headers.get("X-Lobbywatch-Redelivery") == "1" and r.json().get("redelivery")
        if is_marked:
            marked.append(eid)
        elif eid in seen:
            unmarked_repeats.append(eid)
        seen.add(eid)
    by_alert: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for r in received:
        body = r.json()
        by_alert[body["alert_id"]].append((int(body["event_id"].rsplit("#", 1)[1]), body["event"]))
    record = {
        line.split()[0]: float(line.split()[1])
        for line in metrics_b.splitlines()
        if line.startswith("lobbywatch_notification_record_seconds_")
    }
    # receiver has the request -> the sender has its reply and calls mark_delivered
    # (delivered_at); the histogram adds reply -> committed: together the in-doubt window
    first_at: dict[str, float] = {}
    for r in received:
        first_at.setdefault(r.json()["event_id"], r.at)
    to_reply = sorted(
        1000 * (delivered_at[e] - t) for e, t in first_at.items() if delivered_at.get(e)
    )
    n_rec = record.get("lobbywatch_notification_record_seconds_count", 0.0)
    mean_ms = 1000 * record.get("lobbywatch_notification_record_seconds_sum", 0.0) / max(n_rec, 1)
    print(
        f"\nactive/standby: events stored {len(stored)}, delivered {len(counts)} "
        f"({before_kill} before the kill), repeats at the receiver {duplicates} "
        f"(marked redeliveries {len(marked)}, unmarked {len(unmarked_repeats)}), "
        f"lost {len(set(stored) - set(counts))}; hand-over {handover_s:.2f} s after SIGKILL; "
        f"receiver->reply median {to_reply[len(to_reply) // 2]:.2f} ms max {to_reply[-1]:.2f} ms, "
        f"reply->recorded mean {mean_ms:.2f} ms over {n_rec:.0f} deliveries"
    )
    assert len(stored) > 80
    assert set(counts) == set(stored), f"lost or unknown events: {set(stored) ^ set(counts)}"
    # The claim committed before each send lets the new active tell "never attempted"
    # (sent plain) from "in doubt" (sent again, marked, same Idempotency-Key). One sink
    # thread has at most one send in flight when the active dies: at most one marked
    # redelivery, and never an unmarked repeat.
    assert unmarked_repeats == [], f"repeated without the redelivery marker: {unmarked_repeats}"
    assert len(marked) <= 1, f"more than the one in-flight delivery re-sent: {marked}"
    assert duplicates <= len(marked), (duplicates, marked)
    for alert_id, events in by_alert.items():
        revs = sorted({rev for rev, _ in events})
        assert revs == list(range(len(revs))), (alert_id, events)  # nothing skipped
        assert min(events)[1] == "fire" and max(events)[1] == "resolve", (alert_id, events)


def test_two_regional_collectors_started_together_each_own_only_their_branches(
    mosquitto: Any, pg_url: str, tmp_path: Path
) -> None:
    broker = mosquitto()
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    regions = {"north": ["n1", "n2"], "south": ["s1"]}
    try:
        for region, ids in regions.items():
            cfg = server_config(
                mqtt_port=broker.port,
                db_url=pg_url,
                branches=[{"id": b, "region": region, "counters": 1} for b in ids],
                shared_group=None,
            )
            cfg["mqtt"]["subscribe"] = "configured_branches"
            cfg["database"]["spool_file"] = str(tmp_path / f"{region}.spool")
            cfg["cluster"] = {"partition": region}
            proc, port = start_collector(cfg, tmp_path / f"{region}.yaml")
            procs.append(proc)
            ports[region] = port
        # both processes were launched back to back on one fresh database
        for port in ports.values():
            wait_until(lambda p=port: role(p) == "active", 60)
        pub = Publisher(broker.port)
        now = time.time()
        for i, branch in enumerate(["n1", "n2", "s1", "x9"]):
            pub.send(zone_msg(1, now - 1, people=2 + i, branch=branch, device=f"edge-{branch}"))
        pub.close()

        def seen(port: int) -> dict[str, int]:
            bs = httpx.get(f"http://127.0.0.1:{port}/api/v1/branches", timeout=5).json()
            return {b["id"]: b["zones"] for b in bs}

        north = wait_until(lambda: (s := seen(ports["north"])) and s.get("n2") and s, 20)
        south = wait_until(lambda: (s := seen(ports["south"])) and s.get("s1") and s, 20)
        assert north == {"n1": 1, "n2": 1}, north
        assert south == {"s1": 1}, south
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            stop(p)
