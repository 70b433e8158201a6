"""Helpers shared by the collector tests (no tests here): message builders, a real
MQTT publisher, a real HTTP webhook receiver, a real Alertmanager and a scraper."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for_port
from prometheus_client.parser import text_string_to_metric_families

from lobbywatch.protocol import StatusMessage, TicketMessage, ZoneMessage, topic_for
from lobbywatch.zone_state import ZoneKind

ROOT = "lobbywatch"


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def zone_msg(
    seq: int,
    at: float,
    *,
    people: int = 0,
    branch: str = "b1",
    camera: str = "cam1",
    zone: str = "W1",
    device: str = "edge-1",
    kind: ZoneKind = ZoneKind.WAITING,
    arrivals: int = 0,
    departures: int = 0,
    dwells: list[float] | None = None,
    dwell_max: float | None = None,
) -> ZoneMessage:
    return ZoneMessage(
        device=device,
        seq=seq,
        ts=ts(at),
        branch=branch,
        camera=camera,
        zone=zone,
        kind=kind,
        people=people,
        raw_count=people,
        dwell_max_s=dwell_max,
        arrivals_total=arrivals,
        departures_total=departures,
        completed_dwells_s=dwells or [],
    )


def status_msg(
    seq: int,
    at: float,
    state: str = "online",
    *,
    branch: str = "b1",
    camera: str = "cam1",
    device: str = "edge-1",
) -> StatusMessage:
    return StatusMessage(
        device=device, seq=seq, ts=ts(at), branch=branch, camera=camera, state=state
    )


def device_status_msg(
    seq: int,
    at: float,
    state: str = "online",
    *,
    will: bool = False,
    branch: str = "b1",
    device: str = "edge-1",
    cameras: list[str] | None = None,
) -> StatusMessage:
    """The device-level status (camera null); ``will=True`` is the MQTT last will."""
    return StatusMessage.model_validate(
        {
            "device": device,
            "seq": seq,
            "ts": ts(at),
            "branch": branch,
            "camera": None,
            "state": state,
            "will": will,
            "cameras": cameras if cameras is not None else ["cam1"],
        }
    )


def ticket_msg(
    seq: int,
    at: float,
    event: str,
    ticket: str,
    klass: str = "ordinary",
    *,
    branch: str = "b1",
    zone: str = "W1",
    source: str = "qms-1",
    counter: str | None = None,
) -> TicketMessage:
    """A ticket-system event (``issued`` / ``called`` / ``cancelled``)."""
    return TicketMessage.model_validate(
        {
            "source": source,
            "seq": seq,
            "ts": ts(at),
            "branch": branch,
            "zone": zone,
            "event": event,
            "ticket": ticket,
            "class": klass,
            "counter": counter,
        }
    )


def topic_of(msg: ZoneMessage | StatusMessage | TicketMessage, root: str = ROOT) -> str:
    """The topic the protocol puts ``msg`` on (zone, camera status or device status)."""
    return topic_for(msg, root)


def raw(msg: ZoneMessage | StatusMessage | TicketMessage) -> tuple[str, bytes]:
    return topic_of(msg), msg.model_dump_json().encode()


class Publisher:
    """A real MQTT 5 client publishing as an edge device would (QoS 1, retained)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-pub-{port}-{time.time_ns()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, msg: ZoneMessage | StatusMessage, retain: bool = True, qos: int = 1) -> None:
        topic, payload = raw(msg)
        self.send_raw(topic, payload, retain=retain, qos=qos)

    def send_raw(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    ok: bool = True
    #: when the receiver had read the request (wall clock: comparable across processes)
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server in a thread; answers ``fail_first`` requests with 500."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                failing = len(receiver.requests) < receiver.fail_first
                receiver.requests.append(
                    Received(self.path, dict(self.headers), body, ok=not failing)
                )
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@dataclass
class Alertmanager:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        resp.raise_for_status()
        return list(resp.json())


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """The real Debian Alertmanager binary on a free port (no clustering)."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager not installed")
    port = free_port()
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n"
    )
    storage = tmp_path / "am-data"
    storage.mkdir()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={conf}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=15)
        am = Alertmanager(port, proc)
        wait_until(lambda: _am_ready(am), 15)
        yield am
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _am_ready(am: Alertmanager) -> bool:
    try:
        return httpx.get(f"{am.url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(port: int) -> Samples:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    resp.raise_for_status()
    return parse_metrics(resp.text)


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def server_config(
    *,
    mqtt_port: int,
    db_url: str,
    sinks: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    alerts: dict[str, Any] | None = None,
    branches: list[dict[str, Any]] | None = None,
    shared_group: str | None = "lw-test",
) -> dict[str, Any]:
    return {
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "shared_group": shared_group,
            "bootstrap_s": 1.0,
        },
        "database": {"url": db_url},
        "http": {"host": "127.0.0.1", "port": 0},
        "alerts": {
            "w1_threshold_s": 300,
            "min_duration_s": 0,
            "resolve_after_s": 0,
            "renotify_s": 0,
            "escalate_after_s": 0,
            **(alerts or {}),
        },
        "branches": branches
        if branches is not None
        else [
            {
                "id": "b1",
                "region": "north",
                "timezone": "Europe/Berlin",
                "counters": 1,
                "mean_service_s": 60,
            }
        ],
        "notify": {"sinks": sinks or {"log": {"type": "log"}}, "routes": routes or []},
    }
