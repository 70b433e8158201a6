"""Collector throughput and latency under a flood of simulated zone states.

Starts a real Mosquitto on a free port and one collector process
(``lobbywatch server run``), then a publisher process sends the simulator's
messages (``--branches`` branches x (1 waiting zone + up to 4 counter zones),
plus each simulated device's device-level and camera status; retained, QoS
``--qos``) to the broker for ``--seconds``:

* by default two runs: a flood (as fast as the broker takes them) for the
  capacity, then a run paced at ``--target-rate`` (20,000 msgs/s, the issue's
  target) for the latency under that load; the last line is
  ``msgs_per_s=<capacity> p99_ms=<p99 at the target load>``;
* ``--rate 0``: one flood run only; ``--rate N``: one run paced at N msgs/s
  (in 1 ms steps).

The publisher writes pre-encoded MQTT PUBLISH packets straight to its socket
(MQTT 3.1.1, no paho): on this shared 2-core machine every CPU cycle the load
generator spends is taken from Mosquitto and the collector, and real edge boxes
publish from elsewhere. Timestamps are rebased to "now" so the collector sees
live devices.

Measured over the steady window (``--warmup`` seconds after the start until the
publisher stops):

* throughput: increase of the collector's processed-message counter (all
  results; ``/healthz`` ``messages_total``, the same counter as
  ``lobbywatch_collector_messages_total``) divided by the window;
* whether the publisher or the collector was the limit: the backlog (published
  but not yet processed) at the start and end of the window;
* CPU of Mosquitto, the collector, the publisher and this process (probe and
  polling), and of everything else on the machine (other users), from /proc;
* latency: every ``--probe-interval`` s a probe (a waiting zone of branch
  ``probe`` with a new people count) is published on its own connection; the time
  until the collector's HTTP API shows that count (polled every 5 ms over one
  keep-alive connection) is one sample of publish -> updated state (the state
  ``/metrics`` is rendered from). Probes continue while a backlog drains; p99 is
  the nearest-rank 99th percentile of all samples (with fewer than 100 samples,
  that is the maximum).

Last line: ``msgs_per_s=N p99_ms=N``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: messages per pre-encoded chunk: 1 ms of traffic at 20k msgs/s
CHUNK = 20
TICK = os.sysconf("SC_CLK_TCK")


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


# ------------------------------------------------------------------ MQTT by hand


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str) -> bytes:
    # MQTT 3.1.1, clean session, keepalive 0 (the run is short; no PINGREQ needed)
    body = _str(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _str(client_id.encode())
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int, mid: int) -> bytes:
    body = _str(topic.encode()) + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | 1]) + _varint(len(body)) + body


# ------------------------------------------------------------------ load


def make_payloads(branches: int, rate: float, count: int) -> list[tuple[str, bytes]]:
    """``count`` simulated messages, rebased to start now, paced for ``rate`` msgs/s."""
    from lobbywatch.demo.simulator import merged_messages, scenario
    from lobbywatch.protocol import encode_message, topic_for

    now = datetime.now(UTC)
    hour = now.hour + now.minute / 60 + now.second / 3600
    # one report per zone every zones/rate seconds keeps simulated time close to
    # wall time at the target rate (the collector refuses far-future timestamps)
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
    out: list[tuple[str, bytes]] = []
    for msg in merged_messages(scenarios, status=True):
        out.append((topic_for(msg), encode_message(msg)))
        if len(out) >= count:
            break
    return out


def publisher(port: int, args: dict[str, Any], ready, go, sent, result) -> None:  # type: ignore[no-untyped-def]
    """Child process: prepare, connect, wait for ``go``, publish; report (sent, seconds)."""
    import threading

    rate, qos, seconds = args["rate"], args["qos"], args["seconds"]
    t = time.monotonic()
    msgs = make_payloads(args["branches"], rate or args["sim_rate"], args["count"])
    zones = len({topic for topic, _ in msgs if "/zones/" in topic})
    chunks = [
        b"".join(
            publish_packet(topic, payload, qos, (k % 65535) + 1)
            for k, (topic, payload) in enumerate(msgs[i : i + CHUNK], start=i)
        )
        for i in range(0, len(msgs), CHUNK)
    ]
    n_msgs = len(msgs)
    del msgs
    prep_s = time.monotonic() - t
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"bench-flood-{os.getpid()}"))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")

    def discard_acks() -> None:  # PUBACKs (QoS 1); nothing else comes back
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    threading.Thread(target=discard_acks, daemon=True).start()
    ready.put((n_msgs, zones, prep_s))
    go.wait()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    deadline = t0 + seconds
    i = 0
    burst = 50  # chunks per write when flooding (1000 messages)
    while i < len(chunks):
        now = time.monotonic()
        if now >= deadline:
            break
        if rate:
            due = min(len(chunks), int((now - t0) * rate / CHUNK) + 1)
            if due <= i:
                time.sleep(0.0005)
                continue
            j = due
        else:
            j = min(len(chunks), i + burst)
        sock.sendall(b"".join(chunks[i:j]))
        i = j
        sent.value = min(i * CHUNK, n_msgs)
    elapsed = time.monotonic() - t0
    result.put((min(i * CHUNK, n_msgs), elapsed, time.process_time() - cpu0))
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    time.sleep(0.2)
    sock.close()


# ------------------------------------------------------------------ observing


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(vals[:8])
    idle = vals[3] + vals[4]
    return (total - idle) / TICK, total / TICK


class Api:
    """One keep-alive HTTP connection to the collector."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str) -> Any:
        for attempt in range(2):
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
                return json.loads(body) if resp.status in (200, 503) else None
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        return None

    def processed(self) -> int:
        return int(self.get("/healthz")["messages_total"])

    def probe_people(self) -> int | None:
        data = self.get("/api/v1/branches/probe")
        if not data:
            return None
        for zone in data.get("zone_states", []):
            if zone.get("zone") == "waiting":
                return int(zone.get("people", -1))
        return None


def metric_values(port: int) -> dict[str, float]:
    """Message results, refusal reasons and queue drops from ``/metrics`` (once, at the end)."""
    import re

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^lobbywatch_collector_messages_total\{result="(\w+)"\} (\S+)$', text, re.M
    ):
        if float(m.group(2)):
            out[m.group(1)] = float(m.group(2))
    for m in re.finditer(
        r'^lobbywatch_collector_invalid_messages_total\{result="(\w+)",reason="(\w+)"\} (\S+)$',
        text,
        re.M,
    ):
        out[f"{m.group(1)}/{m.group(2)}"] = float(m.group(3))
    buckets = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(
            r'^lobbywatch_collector_processing_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
        )
    ]
    if buckets and buckets[-1][1]:
        n = buckets[-1][1]
        for q in (0.5, 0.99):
            out[f"receive_to_applied_p{round(q * 100)}_le_ms"] = next(
                1000 * le for le, c in buckets if c >= q * n
            )
    m = re.search(r"^lobbywatch_collector_queue_dropped_total (\S+)$", text, re.M)
    out["queue_dropped"] = float(m.group(1)) if m else 0.0
    return out


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


class Prober:
    def __init__(self, mport: int, api: Api, qos: int) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5
        )
        self.client.connect("127.0.0.1", mport)
        self.client.loop_start()
        self.api = api
        self.qos = qos
        self.seq = 0
        self.latencies: list[float] = []
        self.polls: list[float] = []
        self.lost = 0

    def probe(self, timeout: float = 30.0) -> None:
        self.seq += 1
        people = self.seq % 50 + 1
        t_pub = time.monotonic()
        self.client.publish(
            "lobbywatch/v1/probe/cam1/zones/waiting",
            probe_payload(self.seq, people),
            qos=self.qos,
            retain=True,
        )
        while time.monotonic() - t_pub < timeout:
            t_poll = time.monotonic()
            seen = self.api.probe_people()
            self.polls.append(time.monotonic() - t_poll)
            if seen == people:
                self.latencies.append(time.monotonic() - t_pub)
                return
            time.sleep(0.005)
        self.lost += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--branches", type=int, default=1000, help="simulated branches (x5 zones)")
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="one run paced at N msgs/s (0 = one flood run); default: a flood run for "
        "capacity, then a run paced at --target-rate for latency",
    )
    ap.add_argument(
        "--target-rate",
        type=float,
        default=20_000,
        help="the load at which latency is judged (the issue's target: 20,000 msgs/s)",
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="publishing time")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds excluded at the start")
    ap.add_argument(
        "--messages",
        type=int,
        default=0,
        help="messages prepared (default: rate x seconds, or 60k/s x seconds when flooding)",
    )
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--probe-interval", type=float, default=0.25)
    args = ap.parse_args(argv)
    if shutil.which("mosquitto") is None:
        print("mosquitto not installed", file=sys.stderr)
        return 2
    if args.rate is not None:
        rate, lat = run(args)
        print(f"msgs_per_s={rate:.0f} p99_ms={lat:.0f}")
        return 0
    # Latency at saturation is only the age of the backlog the flood builds, so
    # the two figures come from two runs of the same set-up: capacity from a
    # flood, p99 publish -> updated state at the target load.
    print("== run 1: flood (capacity)")
    capacity, flood_p99 = run(argparse.Namespace(**{**vars(args), "rate": 0.0}))
    print(f"== run 2: paced at {args.target_rate:.0f} msgs/s (latency under the target load)")
    paced, lat = run(argparse.Namespace(**{**vars(args), "rate": args.target_rate}))
    print(
        f"summary: capacity {capacity:.0f} msgs/s (p99 {flood_p99:.0f} ms at saturation = "
        f"backlog age); at {args.target_rate:.0f} msgs/s offered the collector processed "
        f"{paced:.0f} msgs/s with p99 {lat:.0f} ms"
    )
    print(f"msgs_per_s={capacity:.0f} p99_ms={lat:.0f}")
    return 0


def run(args: argparse.Namespace) -> tuple[float, float]:
    """One measured run; prints its details, returns (processed msgs/s, p99 latency ms)."""
    count = args.messages or int((args.rate or 60_000) * args.seconds)

    tmp = Path(tempfile.mkdtemp(prefix="lw-throughput-"))
    mport, hport = free_port(), free_port()
    (tmp / "mosquitto.conf").write_text(
        f"listener {mport} 127.0.0.1\npersistence false\nallow_anonymous true\n"
        "max_queued_messages 1000000\nmax_inflight_messages 0\nset_tcp_nodelay true\n"
    )
    (tmp / "server.yaml").write_text(
        f"mqtt: {{host: 127.0.0.1, port: {mport}}}\n"
        f"http: {{host: 127.0.0.1, port: {hport}}}\n"
        f"database: {{url: 'sqlite:///{tmp}/collector.db'}}\n"
        "notify: {}\n"
    )
    procs: list[Any] = []
    try:
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

        ctx = mp.get_context("spawn")
        ready, go, result = ctx.Queue(), ctx.Event(), ctx.Queue()
        sent = ctx.Value("q", 0, lock=False)
        pub_args = {
            "rate": args.rate,
            "sim_rate": 40_000,
            "qos": args.qos,
            "seconds": args.seconds,
            "branches": args.branches,
            "count": count,
        }
        pub = ctx.Process(target=publisher, args=(mport, pub_args, ready, go, sent, result))
        pub.start()
        procs.append(pub)
        wait_port(hport, timeout=60)
        n_msgs, zones, prep_s = ready.get(timeout=300)
        print(
            f"prepared {n_msgs} messages for {zones} zones of {args.branches} branches "
            f"in {prep_s:.1f} s; mode: "
            + (f"paced at {args.rate:.0f} msgs/s" if args.rate else "saturation (flood)")
            + f", QoS {args.qos}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} before the run"
        )
        time.sleep(3.5)  # past the collector's retained-state bootstrap window

        api = Api(hport)
        prober = Prober(mport, api, args.qos)
        pids = {"mosquitto": broker.pid, "collector": collector.pid}

        def snapshot() -> dict[str, float]:
            snap = {name: cpu_seconds(pid) for name, pid in pids.items()}
            snap["bench"] = cpu_seconds(os.getpid())
            snap["busy"], snap["total"] = machine_cpu()
            snap["t"] = time.monotonic()
            snap["processed"] = api.processed() - prober.seq  # the probes are not load
            snap["published"] = sent.value
            return snap

        base = api.processed()
        go.set()
        t_go = time.monotonic()
        start: dict[str, float] | None = None
        while pub.is_alive() and result.empty():
            if start is None and time.monotonic() - t_go >= args.warmup:
                start = snapshot()
            t_probe = time.monotonic()
            prober.probe()
            time.sleep(max(0.0, args.probe_interval - (time.monotonic() - t_probe)))
        at_pub_end = snapshot()
        if start is None:
            raise SystemExit("the publisher finished within the warm-up; use more --messages")
        published, pub_s, pub_cpu = result.get(timeout=60)
        # keep probing while the collector drains its backlog: those samples are part
        # of publish -> updated latency under this load
        t_end = time.monotonic()
        target = base + published
        last, last_change = api.processed(), time.monotonic()
        while time.monotonic() - t_end < 120:
            prober.probe()
            now_total = api.processed()
            if now_total >= target + prober.seq:  # everything, probes included
                break
            if now_total - last > prober.seq + 5:
                last, last_change = now_total, time.monotonic()
            elif time.monotonic() - last_change > 3:
                break  # nothing more arrives: the rest was dropped on the way
            time.sleep(args.probe_interval)
        drained = snapshot()
        drain_s = time.monotonic() - t_end
        total = api.processed() - base - prober.seq
        results = metric_values(hport)
        pub.join(10)
        prober.close()

        # paced: the window ends with the publisher; flood: the collector is saturated
        # until its backlog is gone, so the window runs until then
        end = at_pub_end if args.rate else drained
        window = end["t"] - start["t"]
        pub_window = at_pub_end["t"] - start["t"]
        pub_rate = (at_pub_end["published"] - start["published"]) / pub_window
        rate = (end["processed"] - start["processed"]) / window
        backlog_start = start["published"] - (start["processed"] - base)
        backlog_end = at_pub_end["published"] - (at_pub_end["processed"] - base)
        cores = os.cpu_count() or 1

        def pct(name: str) -> float:
            return 100 * (end[name] - start[name]) / window

        pub_pct = 100 * pub_cpu / pub_s
        pub_share = pub_cpu * min(1.0, pub_window / pub_s) * 100 / window
        ours = sum(pct(n) for n in ("mosquitto", "collector", "bench")) + pub_share
        busy = 100 * (end["busy"] - start["busy"]) / window
        print(
            f"published {published} messages in {pub_s:.1f} s ({published / pub_s:.0f}/s, "
            f"publisher CPU {pub_pct:.0f}% of a core); collector processed {total} of them, "
            f"{drain_s:.1f} s after the publisher stopped; {published - total} never "
            f"processed, of which {results.get('queue_dropped', 0):.0f} shed by the "
            "collector's full queue"
        )
        print(
            "results: "
            + ", ".join(
                f"{k} {v:.0f}"
                for k, v in results.items()
                if k != "queue_dropped" and not k.startswith("receive")
            )
            + "; collector receive -> applied (all messages, histogram bucket bounds): "
            f"p50 <= {results.get('receive_to_applied_p50_le_ms', math.nan):g} ms, "
            f"p99 <= {results.get('receive_to_applied_p99_le_ms', math.nan):g} ms"
        )
        print(
            f"{'paced' if args.rate else 'saturated'} window {window:.1f} s: publisher "
            f"{pub_rate:.0f} msgs/s, collector {rate:.0f} msgs/s; backlog (published, not "
            f"processed) {backlog_start:.0f} at the start, {backlog_end:.0f} when the "
            "publisher stopped"
        )
        print(
            f"CPU over the window, % of one core ({cores} cores = {100 * cores}%): "
            f"collector {pct('collector'):.0f}, mosquitto {pct('mosquitto'):.0f}, "
            f"publisher {pub_share:.0f}, bench probe/poll {pct('bench'):.0f}, "
            f"other processes on the machine {max(0.0, busy - ours):.0f}, "
            f"idle {max(0.0, 100 * cores - busy):.0f}"
        )
        grew = backlog_end - backlog_start
        dropped = results.get("queue_dropped", 0)
        saturated = [
            f"{name} ({pct(name):.0f}% of a core)"
            for name in ("collector", "mosquitto")
            if pct(name) >= 90
        ]
        if busy >= 100 * cores - 10:
            saturated.append(f"the machine ({100 * cores - busy:.0f}% idle)")
        if dropped or grew > 0.02 * max(1.0, at_pub_end["published"] - start["published"]):
            limit = (
                f"the collector (backlog {backlog_start:.0f} -> {backlog_end:.0f} while "
                f"publishing; {dropped:.0f} shed by its full queue)"
            )
        elif args.rate and pub_rate < 0.97 * args.rate:
            limit = f"the publisher (it reached {pub_rate:.0f} of {args.rate:.0f} msgs/s)"
        elif args.rate:
            limit = "the requested rate (the collector kept up)"
        else:
            limit = "the publisher/broker (the collector's backlog did not grow)"
        if saturated:
            limit += "; saturated: " + ", ".join(saturated)
            if any(x.startswith("collector") for x in saturated):
                limit += " (one Python process: its threads share the GIL, about one core)"
        print(f"limit: {limit}")
        lat_ms = [x * 1000 for x in prober.latencies]
        print(
            f"probe latency publish -> API over {len(lat_ms)} samples ({prober.lost} lost): "
            f"p50 {statistics.median(lat_ms):.0f} ms, p99 {p99(lat_ms):.0f} ms, "
            f"max {max(lat_ms):.0f} ms (one API poll took p50 "
            f"{1000 * statistics.median(prober.polls):.1f} ms, {len(prober.polls)} polls)"
        )
        return rate, p99(lat_ms)
    finally:
        for p in reversed(procs):
            if isinstance(p, subprocess.Popen):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            elif p.is_alive():
                p.terminate()
                p.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
