"""Helpers shared by the agent/publisher/ACL tests (no tests here).

* :class:`StubPipeline`: a model-free stand-in with the ``CameraPipeline`` API
  (``process(frame, ts) -> result.zones``) whose counts are a pure function of
  the step number, so tests can predict what must arrive;
* :class:`Collector`: a real MQTT 5 subscriber (the collector's point of view);
* :func:`device_config`: a valid device config around a video file and a broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lobbywatch.edge.config import CameraConfig, DeviceConfig
from lobbywatch.edge.state import ZoneState
from lobbywatch.protocol import json_schema
from lobbywatch.zone_state import ZoneKind

SCHEMA = json_schema()


def validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


@dataclass(frozen=True)
class StubResult:
    zones: tuple[ZoneState, ...]


class StubPipeline:
    """Step n: people = n % 3 in every zone, one arrival per step, one 1.5 s dwell completed
    every other step (so dwells accumulate between publishes)."""

    def __init__(self, camera: CameraConfig) -> None:
        self.zones = [(z.id, z.kind, z.blueprint) for z in camera.zones]
        self.steps = 0
        self.completed = 0  # dwells handed to the agent, per zone

    def process(self, frame_bgr: Any, ts: float, wall_ts: float | None = None) -> StubResult:
        assert isinstance(frame_bgr, np.ndarray) and frame_bgr.ndim == 3
        n = self.steps = self.steps + 1
        dwells = (1.5,) if n % 2 == 0 else ()
        self.completed += len(dwells)
        states = tuple(
            ZoneState(
                zone=zid,
                kind=ZoneKind(kind),
                blueprint=bp,
                ts=ts if wall_ts is None else wall_ts,
                people=n % 3,
                raw_count=n % 4,
                dwell_p50_s=float(n) if n % 3 else None,
                dwell_p90_s=float(n) if n % 3 else None,
                dwell_max_s=float(n) if n % 3 else None,
                arrivals_total=n,
                departures_total=n // 2,
                completed_dwells_s=dwells,
            )
            for zid, kind, bp in self.zones
        )
        return StubResult(states)


def stub_factory(store: dict[str, StubPipeline] | None = None) -> Callable[..., StubPipeline]:
    def make(camera: CameraConfig, config: DeviceConfig) -> StubPipeline:
        pipe = StubPipeline(camera)
        if store is not None:
            store[camera.id] = pipe
        return pipe

    return make


def write_video(
    path: Path, frames: int = 20, fps: float = 10.0, size: tuple[int, int] = (160, 120)
) -> Path:
    """A small MJPG AVI (tests must not depend on the shared folder for camera loss)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), (i * 10) % 255, np.uint8)
        writer.write(img)
    writer.release()
    return path


def device_dict(
    *,
    video: Path,
    port: int,
    tmp: Path,
    branch: str = "b-test",
    device: str = "edge-test",
    cameras: int = 1,
    loop: bool = True,
    fps: float = 5.0,
    **sections: Any,
) -> dict[str, Any]:
    cams = [
        {
            "id": f"cam{i + 1}",
            "source": str(video),
            "loop": loop,
            "fps": fps,
            "zones": [
                {
                    "id": "W1",
                    "kind": "waiting",
                    "blueprint": "W1",
                    "wait_threshold_s": 600,
                    "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                },
                {
                    "id": "cash-1",
                    "kind": "cash_counter",
                    "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]],
                },
            ],
        }
        for i in range(cameras)
    ]
    cfg: dict[str, Any] = {
        "device_id": device,
        "branch_id": branch,
        "cameras": cams,
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "will_delay_s": 2,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "keepalive_s": 5,
        },
        "publish": {"min_interval_s": 0.2, "heartbeat_s": 5, "message_expiry_s": 60},
        "metrics": {"enabled": False},
        "buffer": {"path": str(tmp / "outbox.sqlite"), "max_messages": 10000},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def device_config(**kwargs: Any) -> DeviceConfig:
    return DeviceConfig.model_validate(device_dict(**kwargs))


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.payload))


class Collector:
    """MQTT 5 subscriber; with ``persistent=True`` its session (and queued QoS 1
    messages) survives its own disconnects and a broker restart with persistence."""

    def __init__(
        self,
        port: int,
        topic: str,
        *,
        client_id: str = "",
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.2, 0.5)
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = 600
        self.client.connect(
            "127.0.0.1", port, keepalive=5, clean_start=not persistent, properties=props
        )
        self.client.loop_start()
        assert self.subscribed.wait(5), "collector could not subscribe"

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            self.connected.set()
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.snapshot()
            if predicate(msgs):
                return msgs
            time.sleep(0.05)
        raise AssertionError(
            f"condition not met within {timeout}s; got {len(self.snapshot())} msgs"
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_retained(port: int, topics: set[str]) -> None:
    """Remove retained messages a test left on a shared broker."""
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
    client.disconnect()
    client.loop_stop()


def seqs(messages: list[Received]) -> list[int]:
    return [m.data["seq"] for m in messages if m.payload and not m.data.get("will")]
