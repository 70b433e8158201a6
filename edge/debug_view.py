"""Opt-in debug view: annotated snapshots and an MJPEG stream per camera.

This is the only code path that turns frames into bytes on a socket, so it is
off by default, binds to 127.0.0.1 unless the config says ``allow_remote``
explicitly, and serves on demand only (nothing is encoded when nobody looks).
Use it through an SSH tunnel: ``ssh -L 8089:127.0.0.1:8089 edge-box``.

Endpoints: ``/`` (camera list), ``/snapshot/{camera}.jpg``, ``/stream/{camera}.mjpg``.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

#: camera id -> JPEG bytes of the newest annotated frame, or None if no frame yet
SnapshotFn = Callable[[str], bytes | None]


class DebugView:
    def __init__(self, bind: str, port: int, cameras: list[str], snapshot: SnapshotFn) -> None:
        self.cameras = cameras
        self.snapshot = snapshot
        self._stopping = threading.Event()
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("debug view: " + format, *args)

            def do_GET(self) -> None:
                view._handle(self)

        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="debug-view", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("debug view on http://%s:%d/", *self.server.server_address[:2])

    def close(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        if path == "/":
            links = "".join(
                f'<li>{html.escape(c)}: <a href="/snapshot/{html.escape(c)}.jpg">snapshot</a> '
                f'<a href="/stream/{html.escape(c)}.mjpg">stream</a></li>'
                for c in self.cameras
            )
            body = f"<html><body><h1>lobbywatch debug view</h1><ul>{links}</ul></body></html>"
            self._send(req, HTTPStatus.OK, "text/html; charset=utf-8", body.encode())
            return
        for prefix, suffix, stream in (("/snapshot/", ".jpg", False), ("/stream/", ".mjpg", True)):
            if path.startswith(prefix) and path.endswith(suffix):
                camera = path[len(prefix) : -len(suffix)]
                if camera not in self.cameras:
                    break
                if stream:
                    self._stream(req, camera)
                    return
                jpeg = self.snapshot(camera)
                if jpeg is None:
                    self._send(req, HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                else:
                    self._send(req, HTTPStatus.OK, "image/jpeg", jpeg)
                return
        self._send(req, HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _stream(self, req: BaseHTTPRequestHandler, camera: str) -> None:
        req.send_response(HTTPStatus.OK)
        req.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        try:
            while not self._stopping.is_set():
                jpeg = self.snapshot(camera)
                if jpeg is not None:
                    req.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode()
                        + b"\r\n\r\n"
                        + jpeg
                        + b"\r\n"
                    )
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: HTTPStatus, ctype: str, body: bytes) -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(body)
