"""``lobbywatch demo``: the whole system on one machine.

What runs, in start order (stopped in reverse):

1. an MQTT 5 broker: a private Mosquitto on a free loopback port
   (:mod:`lobbywatch.demo.broker`), unless ``--broker`` names one;
2. when the model and the sample video are present, one real edge agent
   (``lobbywatch edge run``, a subprocess) on ``vtest.avi``, looped, with the
   zones of the packaged ``branch.yaml`` (= ``firmware_config/examples/branch-demo.yaml``);
3. the collector, in this process, on SQLite in a temporary folder, with its
   HTTP API, ``/metrics`` and the lobby board (``/board/``) on one port;
4. a simulated fleet: :mod:`lobbywatch.demo.simulator` branch-days published
   over MQTT exactly as edge devices would;
5. a live terminal view (:mod:`lobbywatch.demo.tui`).

One clock
---------
The collector judges every message by its timestamp (waits, service rates,
device liveness, alert durations), so everything it hears must share its clock.
The demo clock (:class:`DemoClock`) is given to the collector. It first replays
the simulated branches' last half hour before their 10:00 as fast as the
collector takes it (the clock reads the newest replayed timestamp, so nothing
looks late), which starts the board with warm queues and measured service
rates; then it runs at ``speed`` x real time from the wall time at which the
replay ends. The real edge agent stamps wall time and starts after the replay:
at ``--speed 1`` it publishes straight to the collector's topics; at any other
speed it publishes under a private topic root and :class:`EdgeRelay`
time-lapses its stream by the same factor (timestamps and the dwell times it
measured), so the camera branch and the simulated ones stay comparable.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from lobbywatch.errors import LobbywatchError
from lobbywatch.locate import SHARED_ENV, NotLocatedError, locate
from lobbywatch.protocol import (
    DEFAULT_ROOT,
    AnyMessage,
    StatusMessage,
    TicketMessage,
    ZoneMessage,
    encode_message,
    parse_message,
    subscription,
    topic_for,
)
from lobbywatch.server.http import HttpServer

log = logging.getLogger(__name__)

#: the demo branch's zones (package data; the same branch as
#: ``firmware_config/examples/branch-demo.yaml``, a test keeps them equal)
DEMO_BRANCH = Path(__file__).resolve().parent / "branch.yaml"
#: the sample clip below the shared data folder
SAMPLE_VIDEO = "data/video/vtest.avi"
#: topic root of the edge agent's raw (wall-clock) stream when it is time-lapsed
EDGE_RAW_ROOT = "lobbywatch-edge-raw"
#: simulated local hour that coincides with the demo's start
SIM_START_H = 10.0
#: scenario families cycled over the simulated branches (the first is short of staff
#: all day, the third loses counters at lunch)
FLEET_KINDS = ("understaffed", "normal", "lunch_break", "vip")
REGIONS = ("north", "south", "east", "west")


# --------------------------------------------------------------------------- clock


class DemoClock:
    """The demo's time: a replayed warm-up, then ``speed`` demo seconds per real second.

    The warm-up replays the simulated branches' last ``warmup_s`` demo seconds
    before ``live_start`` as fast as the collector keeps up: during it the clock
    reads the timestamp of the newest message published (:meth:`advance`), so
    the collector judges every message at its own time, only quicker, and the
    board starts with warm queues and measured service rates rather than an
    empty morning. :meth:`go_live` (called when the replay reaches
    ``live_start`` and the wall clock has too) switches to real time x ``speed``.
    """

    def __init__(self, speed: float, *, warmup_s: float = 0.0, live_start: float | None = None):
        if speed <= 0 or warmup_s < 0:
            raise ValueError("speed must be > 0 and warmup_s >= 0")
        self.speed = speed
        self.warmup_s = warmup_s
        self.live_start = time.time() if live_start is None else live_start
        self.start = self.live_start - warmup_s
        self._frontier = self.start
        self._lock = threading.Lock()
        self._mono_live: float | None = None
        self._wall_live = self.live_start
        self.live = threading.Event()
        if warmup_s == 0:
            self.go_live()

    def now(self) -> float:
        if self._mono_live is None:
            return self._frontier
        return self.live_start + (time.monotonic() - self._mono_live) * self.speed

    def advance(self, ts: float) -> None:
        """Warm-up: the replay has published up to ``ts``."""
        with self._lock:
            if self._mono_live is None:
                self._frontier = min(max(self._frontier, ts), self.live_start)

    def go_live(self) -> None:
        with self._lock:
            if self._mono_live is None:
                self._mono_live = time.monotonic()
                self._wall_live = time.time()
        self.live.set()

    def warming_up(self) -> bool:
        return self._mono_live is None

    def from_wall(self, ts: float) -> float:
        """Demo time of a wall-clock timestamp taken after the warm-up."""
        return self.live_start + (ts - self._wall_live) * self.speed

    def real_seconds_until(self, ts: float) -> float:
        """Real seconds until the (live) demo clock reads ``ts``; <= 0: already past."""
        if self._mono_live is None:
            return 0.0 if ts <= self._frontier else math.inf
        return self._mono_live + (ts - self.live_start) / self.speed - time.monotonic()


#: messages per real second the warm-up is planned for (broker, collector and
#: the fleet's publisher share the machine; ~2-3k/s measured on 2 busy cores).
#: Only a plan: the replay itself waits for the collector (see fleet_messages).
WARMUP_MSGS_PER_S = 1500.0
#: the warm-up replays at most this much simulated history (demo seconds)...
WARMUP_MAX_S = 1800.0
#: ...planned to take at most this many real seconds
WARMUP_MAX_REAL_S = 6.0
#: how far (demo seconds) the replay may run ahead of what the collector has
#: processed: the collector judges a message at the clock's "now", so a longer
#: lag would look like silent devices (liveness timeout 60 s) and stalled queues
WARMUP_MAX_LAG_S = 5.0


def warmup_plan(branches: int, speed: float) -> tuple[float, float]:
    """(demo seconds replayed, real seconds planned for it)."""
    msgs_per_demo_s = branches * 5 / report_interval(speed)  # a waiting zone + ~4 counters
    warm_s = min(WARMUP_MAX_S, WARMUP_MAX_REAL_S * WARMUP_MSGS_PER_S / msgs_per_demo_s)
    return warm_s, warm_s * msgs_per_demo_s / WARMUP_MSGS_PER_S


def report_interval(speed: float) -> float:
    """Seconds between two reports of a simulated zone (demo time).

    Keeps the wall-clock message rate modest at high speeds, and stays well
    under the collector's 60 s device-liveness timeout.
    """
    return min(30.0, max(5.0, speed / 2.0))


# --------------------------------------------------------------------------- fleet


def fleet_scenarios(branches: int, speed: float, day: int = 0, seed: int = 0) -> list[Any]:
    """The simulated branches of one branch-day (day ``day`` of the demo)."""
    from lobbywatch.demo import simulator

    interval = report_interval(speed)
    return [
        simulator.scenario(
            FLEET_KINDS[i % len(FLEET_KINDS)],
            i + 1,
            seed + 1000 * day,
            report_interval_s=interval,
        )
        for i in range(branches)
    ]


def fleet_messages(
    branches: int,
    clock: DemoClock,
    stop: threading.Event,
    *,
    seed: int = 0,
    in_flight: Callable[[], int] = lambda: 0,
    loop_days: bool = True,
) -> Iterator[ZoneMessage | StatusMessage]:
    """Simulated messages re-timed onto the demo clock and paced by it.

    The first branch-day is shifted so that its ``SIM_START_H`` is the clock's
    ``live_start``. Zone reports from before the warm-up window are dropped (the
    opening's device statuses are kept, stamped at the window's start). During
    the warm-up messages go out as fast as the collector takes them
    (published but not yet processed, ``in_flight()``, stays under
    ``WARMUP_MAX_LAG_S`` worth of messages) and advance the clock; the first message at or after
    ``live_start`` waits for the wall clock to get there and starts the live
    clock. At the end of a branch-day the next one follows (the night is
    skipped) and each device's ``seq`` continues, as a real device's does.
    Returns when ``stop`` is set.
    """
    from lobbywatch.demo import simulator

    shift: float | None = None
    seq_offset: dict[str, int] = {}
    last_ts = clock.start
    day = 0
    max_in_flight = max(5, int(branches * 5 / report_interval(clock.speed) * WARMUP_MAX_LAG_S))
    while not stop.is_set():
        scenarios = fleet_scenarios(branches, clock.speed, day, seed)
        first = scenarios[0]
        if shift is None:
            shift = clock.live_start - (first.midnight() + SIM_START_H * 3600.0)
        else:
            opening = first.midnight() + first.open_h * 3600.0
            shift = last_ts + first.report_interval_s - opening
        day_seq: dict[str, int] = {}
        for msg in simulator.merged_messages(scenarios, status=True):
            assert not isinstance(msg, TicketMessage)  # no ticket systems in the demo
            if isinstance(msg, StatusMessage):
                if loop_days and msg.state == "offline" and not msg.will:
                    continue  # closing time: the next day follows at once
            ts = msg.ts.timestamp() + shift
            if ts < clock.start:
                if isinstance(msg, ZoneMessage):
                    continue  # before the warm-up window
                ts = clock.start
            offset = seq_offset.get(msg.device, 0)
            out = msg.model_copy(
                update={"ts": datetime.fromtimestamp(ts, UTC), "seq": msg.seq + offset}
            )
            day_seq[msg.device] = max(day_seq.get(msg.device, -1), out.seq)
            if clock.warming_up():
                if ts < clock.live_start:
                    while in_flight() > max_in_flight:  # let the collector catch up
                        if stop.wait(0.005):
                            return
                    clock.advance(ts)
                else:
                    while time.time() < clock.live_start:  # replay ahead of plan
                        if stop.wait(min(0.2, clock.live_start - time.time())):
                            return
                    clock.go_live()
            while not clock.warming_up():  # live: pace on the demo clock, stop promptly
                wait = clock.real_seconds_until(ts)
                if wait <= 0:
                    break
                if stop.wait(min(wait, 0.5)):
                    return
            if stop.is_set():
                return
            last_ts = max(last_ts, ts)
            yield out
        if not loop_days:
            return
        for device, seq in day_seq.items():
            seq_offset[device] = seq + 1
        day += 1


class Fleet:
    """Publishes the simulated branches with ``simulator.publish`` on a thread."""

    def __init__(
        self,
        branches: int,
        clock: DemoClock,
        host: str,
        port: int,
        *,
        seed: int = 0,
        processed: Callable[[], int] = lambda: 0,
    ) -> None:
        self.processed = processed
        self.branches = branches
        self.clock = clock
        self.host, self.port = host, port
        self.seed = seed
        self.stop_event = threading.Event()
        self.sent = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self.scenarios = fleet_scenarios(branches, clock.speed, 0, seed)

    def _run(self) -> None:
        from lobbywatch.demo import simulator

        def count(msgs: Iterator[ZoneMessage | StatusMessage]) -> Iterator[Any]:
            for m in msgs:
                self.sent += 1
                yield m

        try:
            simulator.publish(
                count(
                    fleet_messages(
                        self.branches,
                        self.clock,
                        self.stop_event,
                        seed=self.seed,
                        in_flight=lambda: self.sent - self.processed(),
                    )
                ),
                host=self.host,
                port=self.port,
                qos=1,
                speed=0,  # paced by fleet_messages on the demo clock
                client_id=f"lobbywatch-demo-fleet-{os.getpid()}",
            )
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("simulated fleet stopped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 35.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            # publish() waits for the last QoS 1 acknowledgement (at most 30 s)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# --------------------------------------------------------------------------- edge


def find_video(explicit: Path | None = None) -> Path:
    """The sample video: ``explicit`` (``--video``), else ``data/video/vtest.avi``
    below ``$LOBBYWATCH_SHARED``, ``./shared`` or ``../shared``.

    Raises:
        NotLocatedError: not found (one line naming ``--video`` and the variable).
    """
    return locate(
        SAMPLE_VIDEO,
        what="the sample video",
        explicit=explicit,
        option="--video",
        env_var=SHARED_ENV,
    ).resolve()


def find_model() -> tuple[Path | None, str]:
    """(weights, "") or (None, why not)."""
    try:
        from lobbywatch.edge.detector import DetectorSettings
        from lobbywatch.models.registry import resolve_model

        return resolve_model(DetectorSettings().name).path, ""  # type: ignore[call-arg]
    except Exception as exc:
        return None, str(exc)


def edge_config(
    workdir: Path,
    video: Path,
    host: str,
    port: int,
    *,
    root: str,
    heartbeat_s: float,
    example: Path = DEMO_BRANCH,
) -> Path:
    """Write the demo edge device's config: the example's zones on the sample video."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(example.read_text())
    cam = data["cameras"][0]
    cam.update(source=str(video), loop=True)
    data["cameras"] = [cam]
    data["mqtt"] = {**data.get("mqtt", {}), "host": host, "port": port, "root": root}
    data["mqtt"].pop("password_file", None)
    data["mqtt"].pop("password_env", None)
    data["mqtt"].pop("username", None)
    data["mqtt"].pop("tls", None)
    publish = dict(data.get("publish", {}))
    publish["heartbeat_s"] = heartbeat_s
    publish["message_expiry_s"] = max(int(publish.get("message_expiry_s", 300)), 300)
    data["publish"] = publish
    from lobbywatch.demo.broker import free_port

    data["metrics"] = {"enabled": True, "bind": "127.0.0.1", "port": free_port()}
    data["buffer"] = {"path": str(workdir / "edge-outbox.sqlite"), "max_messages": 100_000}
    data["debug_view"] = {"enabled": False}
    path = workdir / "edge-demo.yaml"
    path.write_text(
        "# generated by `lobbywatch demo` from branch-demo.yaml\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


@dataclass
class EdgeProcess:
    """The real edge agent as a subprocess (its own process group, log to a file)."""

    config_path: Path
    log_path: Path
    branch: str
    device: str
    metrics_url: str
    timezone: str = "UTC"
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    def start(self) -> None:
        from lobbywatch.demo.broker import die_with_parent

        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lobbywatch.cli",
                "edge",
                "run",
                "--config",
                str(self.config_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Ctrl-C in the terminal reaches only the demo, which stops the agent
            # after the collector has stopped listening (no offline flapping)
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the agent publishes offline and flushes
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class EdgeRelay:
    """Time-lapses the edge agent's wall-clock stream onto the demo clock.

    Subscribes to the agent's private root and republishes every message on the
    collector's root with timestamps mapped by :meth:`DemoClock.from_wall` and
    every duration the agent measured (dwells, heartbeat) scaled by ``speed``.
    Retained flags are kept, so the agent's last will reaches the collector too.
    """

    def __init__(self, clock: DemoClock, host: str, port: int, *, root: str = DEFAULT_ROOT):
        import paho.mqtt.client as mqtt

        self.clock = clock
        self.root = root
        self.relayed = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"lobbywatch-demo-relay-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def rewrite(self, msg: AnyMessage) -> AnyMessage:
        k = self.clock.speed
        update: dict[str, Any] = {
            "ts": datetime.fromtimestamp(self.clock.from_wall(msg.ts.timestamp()), UTC)
        }
        if isinstance(msg, ZoneMessage):
            for name in ("dwell_p50_s", "dwell_p90_s", "dwell_max_s"):
                value = getattr(msg, name)
                update[name] = None if value is None else value * k
            update["completed_dwells_s"] = [d * k for d in msg.completed_dwells_s]
        elif isinstance(msg, StatusMessage) and msg.heartbeat_s is not None:
            update["heartbeat_s"] = msg.heartbeat_s * k
        return msg.model_copy(update=update)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(subscription(EDGE_RAW_ROOT), qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            out = self.rewrite(parse_message(message.payload))
        except ValueError:
            log.warning("relay: dropping an invalid edge message on %s", message.topic)
            return
        client.publish(topic_for(out, self.root), encode_message(out), qos=1, retain=message.retain)
        self.relayed += 1

    def start(self) -> None:
        self.client.connect(self.host, self.port)
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --------------------------------------------------------------------------- http


# --------------------------------------------------------------------------- demo


@dataclass
class DemoOptions:
    broker: str | None = None
    branches: int = 3
    speed: float = 1.0
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    edge: bool = True
    duration: float | None = None
    workdir: Path | None = None
    seed: int = 0
    video: Path | None = None


@dataclass
class Demo:
    """Starts, shows and stops everything; :meth:`run` returns the exit status."""

    opts: DemoOptions
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stop_event: threading.Event = field(default_factory=threading.Event)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = self._make_clock()
        self.broker: Any = None
        self.edge: EdgeProcess | None = None
        self.relay: EdgeRelay | None = None
        self.collector: Any = None
        self.http: HttpServer | None = None
        #: the generated password of the demo's board/API user (printed at start)
        self.login_secret = ""
        self.fleet: Fleet | None = None
        self._own_workdir = self.opts.workdir is None
        self.workdir = Path(
            self.opts.workdir or tempfile.mkdtemp(prefix="lobbywatch-demo-")
        ).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._cleanups: list[Callable[[], None]] = []
        self._after_broker = 0

    # ------------------------------------------------------------- helpers
    def _make_clock(self) -> DemoClock:
        warm_s, warm_real_s = warmup_plan(self.opts.branches, self.opts.speed)
        # live at the planned end of the replay, with slack for starting the
        # collector: a replay that finishes early waits for the wall clock
        live_start = time.time() + 1.5 * warm_real_s + 1.5
        return DemoClock(self.opts.speed, warmup_s=warm_s, live_start=live_start)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.stop_event.set()

    # ------------------------------------------------------------- parts
    def _start_broker(self) -> tuple[str, int]:
        from lobbywatch.demo.broker import EmbeddedBroker, parse_address, port_open

        if self.opts.broker:
            host, port = parse_address(self.opts.broker)
            if not port_open(host, port, timeout=2.0):
                raise LobbywatchError(f"no MQTT broker answers at {host}:{port} (--broker)")
            self.say(f"MQTT broker:  {host}:{port} (given with --broker)")
            return host, port
        broker = EmbeddedBroker(self.workdir / "broker")
        broker.start()
        self.broker = broker
        self._cleanups.append(broker.stop)
        self.say(
            f"MQTT broker:  {broker.name} pid {broker.pid} on {broker.host}:{broker.port} "
            "(embedded, private to this demo)"
        )
        return broker.host, broker.port

    def _plan_edge(self, host: str, port: int) -> None:
        """Start the real edge agent if its inputs exist; otherwise say what is missing."""
        if not self.opts.edge:
            self.notes.append("edge pipeline: off (--no-edge)")
            return
        model, why = find_model()
        missing = []
        if model is None:
            missing.append(f"the detector model ({why.strip().rstrip('.')}; run `make model`)")
        video: Path | None = None
        try:
            video = find_video(self.opts.video)
        except NotLocatedError as exc:
            missing.append(str(exc))
        if missing:
            self.notes.append("edge pipeline: SKIPPED, missing " + " and ".join(missing))
            return
        assert video is not None
        relay = self.opts.speed != 1.0
        from lobbywatch.edge.config import load_device_config

        path = edge_config(
            self.workdir,
            video,
            host,
            port,
            root=EDGE_RAW_ROOT if relay else DEFAULT_ROOT,
            # the relay stretches the heartbeat by the speed; keep it under the
            # collector's 60 s liveness timeout in demo time
            heartbeat_s=max(1.0, min(30.0, 20.0 / self.opts.speed)),
        )
        try:
            cfg = load_device_config(path)
        except LobbywatchError as exc:
            self.notes.append(f"edge pipeline: SKIPPED, generated config invalid: {exc}")
            return
        self.edge = EdgeProcess(
            path,
            self.workdir / "edge.log",
            cfg.branch_id,
            cfg.device_id,
            f"http://{cfg.metrics.bind}:{cfg.metrics.port}/metrics",
            timezone=cfg.timezone or "UTC",
        )
        how = (
            f"time-lapsed x{self.opts.speed:g} by a relay onto the demo clock"
            if relay
            else "publishing straight to the collector's topics"
        )
        self.notes.append(
            f"edge pipeline: branch {cfg.branch_id} on {video}, looped, {how}; "
            f"starts after the warm-up; log {self.edge.log_path}"
        )
        if relay:
            self.relay = EdgeRelay(self.clock, host, port)

    def _start_edge(self) -> None:
        """After the warm-up: the agent stamps wall time, which the demo clock now follows."""
        if self.edge is None:
            return
        # stopped after the collector (it would see the agent go offline) and
        # before the broker: slot them in just above the broker's cleanup
        if self.relay is not None:
            self.relay.start()
            self._cleanups.insert(self._after_broker, self.relay.stop)
        self.edge.start()
        self._cleanups.insert(self._after_broker, self.edge.stop)
        self.say(f"edge agent:   started, pid {self.edge.pid}")

    def _server_config(self, host: str, port: int) -> Any:
        from lobbywatch.server.config import parse_server_config

        branches = [
            {
                "id": sc.branch,
                "region": REGIONS[i % len(REGIONS)],
                "timezone": sc.timezone,
                "counters": sc.counters,
                "mean_service_s": sc.service.mean_s,
            }
            for i, sc in enumerate(fleet_scenarios(self.opts.branches, self.opts.speed))
        ]
        if self.edge is not None:
            # the edge branch keeps the time zone its config gives (branch-demo.yaml)
            branches.append(
                {
                    "id": self.edge.branch,
                    "region": "demo",
                    "counters": 2,
                    "timezone": self.edge.timezone,
                }
            )
        data: dict[str, Any] = {
            "mqtt": {"host": host, "port": port, "client_id": "lobbywatch-demo-collector"},
            "database": {"url": f"sqlite:///{self.workdir / 'collector.db'}"},
            "http": {
                "host": self.opts.http_host,
                "port": self.opts.http_port,
                "credentials_file": str(self._demo_credentials()),
            },
            "branches": branches,
        }
        if self.opts.speed > 1.0:
            # message stamps run ahead of the wall clock by (speed - 1) x elapsed;
            # the future-timestamp guard compares them with the wall-clock receive time
            data["ingest"] = {"max_clock_skew_s": 10 * 365 * 86400.0}
        return parse_server_config(data, "demo configuration")

    def _demo_credentials(self) -> Path:
        """A fresh board/API credential for this run (zero set-up, never a fixed password)."""
        from lobbywatch.server.auth import add_credential

        path = self.workdir / "http-credentials"
        path.unlink(missing_ok=True)
        self.login_secret = add_credential(path, "demo", "read")
        return path

    def _start_collector(self, host: str, port: int) -> None:
        from lobbywatch.server.api import create_app
        from lobbywatch.server.collector import Collector

        cfg = self._server_config(host, port)
        # the API (with the board) is served below on the demo's port, so the
        # collector's own HTTP server stays off
        self.collector = Collector(cfg, clock=self.clock.now, with_http=False)
        self.collector.start()
        self._cleanups.append(self.collector.stop)
        app = create_app(self.collector)
        self.http = HttpServer(
            app,
            self.opts.http_host,
            self.opts.http_port,
            hint="choose another with --http-port, 0 = any free port",
            name="demo-http",
        )
        self.http.start()
        self._cleanups.append(self.http.stop)

    def _start_fleet(self, host: str, port: int) -> None:
        state = self.collector.state

        def processed() -> int:
            # every message the collector has judged, whatever the verdict
            return sum(state.results.values())

        self.fleet = Fleet(
            self.opts.branches, self.clock, host, port, seed=self.opts.seed, processed=processed
        )
        self.fleet.start()
        self._cleanups.append(self.fleet.stop)

    # ------------------------------------------------------------- run
    def run(self) -> int:
        handlers = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        self._setup_logging()
        # --duration bounds the whole run, warm-up included
        self._deadline = (
            time.monotonic() + self.opts.duration if self.opts.duration is not None else None
        )
        try:
            self.say(f"lobbywatch demo: working folder {self.workdir}")
            host, port = self._start_broker()
            self._after_broker = len(self._cleanups)
            # the warm-up starts now: the collector and the fleet come up in ~1 s
            self.clock = self._make_clock()
            self._plan_edge(host, port)
            self._start_collector(host, port)
            self._start_fleet(host, port)
            self._print_urls()
            self._warm_up()
            if not self.stop_event.is_set() and not self._expired():
                self._start_edge()
                self._show()
            why = "signal" if self.stop_event.is_set() else "duration reached"
            self.say(f"stopping ({why})...")
            return 0
        finally:
            self._shutdown()
            for s, h in handlers.items():
                signal.signal(s, h)

    def _setup_logging(self) -> None:
        # the terminal belongs to the live view: everything else goes to a file
        handler = logging.FileHandler(self.workdir / "demo.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self._log_handler = handler

    def _print_urls(self) -> None:
        assert self.http is not None
        base = self.http.base_url
        self.say(f"lobby board:  {base}/board/")
        self.say(f"board login:  user demo, password {self.login_secret}")
        self.say(f"API token:    Authorization: Bearer demo.{self.login_secret}")
        self.say(f"HTTP API:     {base}/api/v1/branches   (OpenAPI docs: {base}/docs)")
        self.say(f"metrics:      {base}/metrics   (same token, or basic auth demo:<password>)")
        if self.edge is not None:
            self.say(f"edge metrics: {self.edge.metrics_url}")
        speed = self.opts.speed
        self.say(
            f"simulated:    {self.opts.branches} branch(es) at x{speed:g} "
            f"(1 real second = {speed:g} demo second{'s' if speed != 1 else ''})"
        )
        for note in self.notes:
            self.say(note)
        kept = "" if not self._own_workdir else "   (removed on exit; --workdir DIR keeps it)"
        self.say(f"logs:         {self.workdir / 'demo.log'}{kept}")
        until = f"for {self.opts.duration:g} s" if self.opts.duration else "until Ctrl-C"
        self.say(f"running {until}")

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _warm_up(self) -> None:
        c = self.clock
        if not c.warming_up():
            return
        self.say(
            f"warming up:   replaying the simulated branches' last {c.warmup_s / 60:.0f} "
            f"minutes as fast as the collector takes them..."
        )
        # the fleet starts the live clock; should it fail, go live anyway
        limit = c.live_start - time.time() + 60.0
        if self._deadline is not None:
            limit = min(limit, max(0.0, self._deadline - time.monotonic()))
        end = time.monotonic() + limit
        while not c.live.is_set() and not self.stop_event.is_set():
            if time.monotonic() >= end or (self.fleet is not None and not self.fleet.alive):
                break
            c.live.wait(0.1)
        c.go_live()

    def _show(self) -> None:
        from lobbywatch.demo.tui import LiveView

        deadline = time.monotonic() + self.opts.duration if self.opts.duration is not None else None
        view = LiveView(self, file=self.out)
        with view:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                view.refresh()
                self.stop_event.wait(1.0)

    def status_lines(self) -> list[str]:
        """Problems worth showing under the live table."""
        lines = []
        if self.fleet is not None and self.fleet.error:
            lines.append(f"simulated fleet stopped: {self.fleet.error}")
        if self.edge is not None:
            rc = self.edge.returncode()
            if rc is not None:
                lines.append(f"edge agent exited with status {rc}; see {self.edge.log_path}")
        if self.collector is not None and self.collector.mqtt is not None:
            if not self.collector.mqtt.connected.is_set():
                lines.append("collector: not connected to the MQTT broker")
        return lines

    def _shutdown(self) -> None:
        # newest first: fleet, HTTP, collector, relay, edge, broker
        while self._cleanups:
            step = self._cleanups.pop()
            t0 = time.monotonic()
            try:
                step()
            except Exception:
                log.exception("demo shutdown step failed")
            log.info(
                "shutdown: %s took %.2f s",
                getattr(step, "__qualname__", step),
                time.monotonic() - t0,
            )
        if getattr(self, "_log_handler", None) is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.say("demo stopped")


def run_demo(opts: DemoOptions, out: TextIO | None = None) -> int:
    return Demo(opts, out=out or sys.stdout).run()
