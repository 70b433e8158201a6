"""Collector throughput and latency under a flood of simulated zone states.

Starts a real Mosquitto on a free port and one collector process
(``lobbywatch server run``), then a publisher process floods the broker with
the simulator's zone messages (``--branches`` branches x (1 waiting zone + up
to 4 counter zones), retained, QoS ``--qos``) as fast as it can for
``--seconds``. Timestamps are rebased to "now" so the collector sees live
devices.

* throughput: increase of ``lobbywatch_collector_messages_total`` (all results)
  on ``/metrics`` over the flood, divided by its duration (steady state: the
  first ``--warmup`` seconds are excluded);
* latency: every 0.5 s a probe message (a waiting zone of branch ``probe`` with
  a new people count) is published on its own connection; the time until the
  collector's HTTP API shows that count (polled every 10 ms) is one sample of
  publish -> updated state (the same state ``/metrics`` is rendered from).

Last line: ``msgs_per_s=N p99_ms=N``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def processed_total(http: int) -> float:
    text = http_get(f"http://127.0.0.1:{http}/metrics", timeout=30).decode()
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^lobbywatch_collector_messages_total\{[^}]*\} (\S+)$", text, re.M)
    )


def make_payloads(branches: int, rate: float, seconds: float) -> list[tuple[str, bytes]]:
    """Simulated messages, rebased to start now, enough for ``seconds`` at ``rate``."""
    from lobbywatch.protocol import encode_message, topic_for
    from lobbywatch.server.simulator import merged_messages, scenario

    now = datetime.now(UTC)
    hour = now.hour + now.minute / 60 + now.second / 3600
    # one report per zone every zones/rate seconds keeps simulated time close to
    # wall time at the target rate (the collector clamps far-future timestamps)
    zones_per_branch = 5
    interval = max(0.05, branches * zones_per_branch / rate)
    scenarios = [
        scenario(
            "normal",
            i,
            seed=7,
            timezone="UTC",
            day=now.date(),
            open_h=min(hour, 23.0),
            close_h=min(hour + 0.5, 23.99),
            base_per_h=120.0,
            report_interval_s=interval,
        )
        for i in range(branches)
    ]
    wanted = int(rate * seconds)
    out: list[tuple[str, bytes]] = []
    for msg in merged_messages(scenarios, status=True):
        out.append((topic_for(msg), encode_message(msg)))
        if len(out) >= wanted:
            break
    return out


def publisher(port: int, qos: int, payloads: list[tuple[str, bytes]], ready, go, result) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="bench-flood", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.set()
    go.wait()
    t0 = time.monotonic()
    info = None
    for k, (topic, payload) in enumerate(payloads):
        info = client.publish(topic, payload, qos=qos, retain=True)
        if qos and k % 2000 == 1999:
            info.wait_for_publish(timeout=60)
    if info is not None and qos:
        info.wait_for_publish(timeout=60)
    result.put((len(payloads), time.monotonic() - t0))
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()


def probe_payload(seq: int, people: int) -> bytes:
    from lobbywatch.protocol import ZoneMessage, encode_message

    msg = ZoneMessage.model_validate(
        {
            "device": "probe-d",
            "seq": seq,
            "ts": datetime.now(UTC),
            "branch": "probe",
            "camera": "cam1",
            "zone": "waiting",
            "kind": "waiting",
            "people": people,
            "raw_count": people,
            "arrivals_total": people,
            "departures_total": 0,
        }
    )
    return encode_message(msg)


def probe_people(http: int) -> int | None:
    import json

    try:
        data = json.loads(http_get(f"http://127.0.0.1:{http}/api/v1/branches/probe", timeout=5))
    except Exception:
        return None
    for zone in data.get("zone_states", []):
        if zone.get("zone") == "waiting":
            return int(zone.get("people", -1))
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--branches", type=int, default=1000, help="simulated branches (x5 zones)")
    ap.add_argument("--rate", type=float, default=25000, help="messages prepared per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="flood length at --rate")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    args = ap.parse_args(argv)
    if shutil.which("mosquitto") is None:
        print("mosquitto not installed", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="lw-throughput-"))
    mport, hport = free_port(), free_port()
    (tmp / "mosquitto.conf").write_text(
        f"listener {mport} 127.0.0.1\npersistence false\nallow_anonymous true\n"
        "max_queued_messages 1000000\nmax_inflight_messages 0\n"
    )
    (tmp / "server.yaml").write_text(
        f"mqtt: {{host: 127.0.0.1, port: {mport}}}\n"
        f"http: {{host: 127.0.0.1, port: {hport}}}\n"
        f"database: {{url: 'sqlite:///{tmp}/collector.db'}}\n"
        "notify: {}\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t = time.monotonic()
        payloads = make_payloads(args.branches, args.rate, args.seconds)
        zones = len({topic for topic, _ in payloads if "/zones/" in topic})
        print(
            f"prepared {len(payloads)} messages for {zones} zones of {args.branches} branches "
            f"in {time.monotonic() - t:.1f} s"
        )
        broker = subprocess.Popen(
            ["mosquitto", "-c", str(tmp / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(broker)
        wait_port(mport)
        collector = subprocess.Popen(
            [
                str(REPO / ".venv/bin/lobbywatch"),
                "server",
                "run",
                "--config",
                str(tmp / "server.yaml"),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "collector.log", "wb"),
        )
        procs.append(collector)
        wait_port(hport, timeout=60)
        time.sleep(3.5)  # past the collector's retained-state bootstrap window

        ctx = mp.get_context("spawn")
        ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
        pub = ctx.Process(target=publisher, args=(mport, args.qos, payloads, ready, go, result))
        pub.start()
        ready.wait(60)

        import paho.mqtt.client as mqtt

        prober = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5
        )
        prober.connect("127.0.0.1", mport)
        prober.loop_start()
        topic = "lobbywatch/v1/probe/cam1/zones/waiting"

        base = processed_total(hport)
        go.set()
        t_go = time.monotonic()
        latencies: list[float] = []
        samples: list[tuple[float, float]] = []
        seq = 0
        while pub.is_alive() or not samples:
            seq += 1
            people = seq % 50 + 1
            t_pub = time.monotonic()
            prober.publish(topic, probe_payload(seq, people), qos=args.qos, retain=True)
            while time.monotonic() - t_pub < 30:
                if probe_people(hport) == people:
                    latencies.append(time.monotonic() - t_pub)
                    break
                time.sleep(0.01)
            if time.monotonic() - t_go >= args.warmup and not samples:
                samples.append((time.monotonic(), processed_total(hport)))
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t_pub)))
            if time.monotonic() - t_go > args.seconds * 10:
                break
        sent, pub_s = result.get(timeout=60)
        # keep probing while the collector drains its backlog: those samples
        # are part of publish -> updated latency under this load
        last = processed_total(hport)
        while True:
            seq += 1
            people = seq % 50 + 1
            t_pub = time.monotonic()
            prober.publish(topic, probe_payload(seq, people), qos=args.qos, retain=True)
            while time.monotonic() - t_pub < 30:
                if probe_people(hport) == people:
                    latencies.append(time.monotonic() - t_pub)
                    break
                time.sleep(0.01)
            now_total = processed_total(hport)
            if now_total - last < 2:  # only the probe itself: drained
                break
            last = now_total
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t_pub)))
        t_end, end_total = time.monotonic(), last
        pub.join(10)
        prober.loop_stop()
        prober.disconnect()

        t_start, start_total = samples[0]
        window = t_end - t_start
        rate = (end_total - start_total) / window
        print(
            f"published {sent} messages in {pub_s:.1f} s ({sent / pub_s:.0f}/s, QoS {args.qos}); "
            f"collector processed {end_total - base:.0f} in total"
        )
        lat_ms = sorted(x * 1000 for x in latencies)
        p99 = lat_ms[min(len(lat_ms) - 1, int(0.99 * len(lat_ms)))] if lat_ms else float("nan")
        print(
            f"steady window {window:.1f} s: {rate:.0f} msgs/s; probe latency over "
            f"{len(lat_ms)} samples: p50 {statistics.median(lat_ms):.0f} ms, "
            f"max {max(lat_ms):.0f} ms"
        )
        print(f"msgs_per_s={rate:.0f} p99_ms={p99:.0f}")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
