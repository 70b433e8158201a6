"""Prometheus metrics of the edge agent (own registry, so tests can run several agents).

Names are a contract with the dashboard; see docs/protocol.md. Labels are bounded:
``camera`` and ``zone`` come from the device config, ``reason`` from a fixed set.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

#: reasons in lobbywatch_edge_messages_dropped_total
DROP_BUFFER_FULL = "buffer_full"
DROP_REJECTED = "rejected"
DROP_EXPIRED = "expired"

_INFERENCE_BUCKETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Same choice as the collector (server/metrics.py): no ``*_created`` series. They
        # double the series count of every counter and no dashboard or rule uses them.
        # prometheus_client's switch is process-wide and must precede metric creation.
        disable_created_metrics()
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_processed = Counter(
            "lobbywatch_edge_frames_processed",
            "Frames run through the pipeline.",
            ["camera"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "lobbywatch_edge_frames_dropped",
            "Sampling slots skipped because the pipeline fell behind (never queued).",
            ["camera"],
            registry=r,
        )
        self.inference_seconds = Histogram(
            "lobbywatch_edge_inference_seconds",
            "Time of one pipeline step (detector, tracker, zones) per frame.",
            ["camera"],
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.zone_people = Gauge(
            "lobbywatch_edge_zone_people",
            "Confirmed people in the zone.",
            ["camera", "zone"],
            registry=r,
        )
        self.camera_up = Gauge(
            "lobbywatch_edge_camera_up",
            "1 while the camera delivers frames.",
            ["camera"],
            registry=r,
        )
        self.camera_fps = Gauge(
            "lobbywatch_edge_camera_fps",
            "Frames processed per second (measured over the last seconds).",
            ["camera"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "lobbywatch_edge_mqtt_connected", "1 while connected to the broker.", registry=r
        )
        self.buffer_depth = Gauge(
            "lobbywatch_edge_buffer_depth",
            "Messages in the outbox not yet acknowledged by the broker.",
            registry=r,
        )
        self.messages_published = Counter(
            "lobbywatch_edge_messages_published",
            "Messages acknowledged by the broker.",
            registry=r,
        )
        self.messages_dropped = Counter(
            "lobbywatch_edge_messages_dropped",
            "Messages given up: buffer_full (oldest dropped), rejected (broker refused), expired.",
            ["reason"],
            registry=r,
        )
        for reason in (DROP_BUFFER_FULL, DROP_REJECTED, DROP_EXPIRED):
            self.messages_dropped.labels(reason=reason)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def add_camera(self, camera: str, zones: list[str]) -> None:
        """Create the series of a camera up front: 0 for series known to exist."""
        self.frames_processed.labels(camera=camera)
        self.frames_dropped.labels(camera=camera)
        self.inference_seconds.labels(camera=camera)
        self.camera_up.labels(camera=camera).set(0)
        self.camera_fps.labels(camera=camera).set(0)
        for zone in zones:
            self.zone_people.labels(camera=camera, zone=zone).set(0)

    def serve(self, bind: str, port: int) -> None:
        server, thread = start_http_server(port, addr=bind, registry=self.registry)
        self._server, self._thread = server, thread

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (for tests and the benchmark)."""
        return self.registry.get_sample_value(name, labels or {})
