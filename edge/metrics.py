"""Prometheus metrics of the edge agent (own registry, so tests can run several agents).

Served on ``metrics.bind`` (loopback by default). With ``metrics.credentials_file``
every request needs ``Authorization: Bearer <name>.<secret>`` or basic auth (what
Prometheus' ``authorization``/``basic_auth`` scrape settings send); the config
refuses a non-loopback bind without credentials unless ``allow_anonymous``.

Names are a contract with the dashboard; see docs/protocol.md. Labels are bounded:
``camera`` and ``zone`` come from the device config, ``reason`` from a fixed set.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

from lobbywatch.credentials import ROLES, Credential, Verifier

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

    def serve(self, bind: str, port: int, credentials: dict[str, Credential] | None = None) -> None:
        """Serve ``/metrics``; with ``credentials``, only to requests presenting one."""
        if credentials is None:
            server, thread = start_http_server(port, addr=bind, registry=self.registry)
            self._server, self._thread = server, thread
            return
        httpd = ThreadingHTTPServer(
            (bind, port), _auth_handler(self.registry, Verifier(credentials))
        )
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, name="edge-metrics", daemon=True)
        thread.start()
        self._server, self._thread = httpd, thread

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (for tests and the benchmark)."""
        return self.registry.get_sample_value(name, labels or {})


def _auth_handler(registry: CollectorRegistry, verifier: Verifier) -> type[BaseHTTPRequestHandler]:
    # every role of the collector's credentials file may read metrics
    roles = frozenset(ROLES)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self._reply(404, b"not found\n", "text/plain")
                return
            cred = verifier.from_authorization(self.headers.get("Authorization"))
            if cred is None or cred.role not in roles:
                self._reply(
                    401,
                    b"credentials required (metrics.credentials_file)\n",
                    "text/plain",
                    {"WWW-Authenticate": 'Basic realm="lobbywatch-edge"'},
                )
                return
            self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)

        def _reply(
            self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass  # a scrape every few seconds: no log line each

    return Handler
