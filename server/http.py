"""Serving an ASGI app (the collector's API, ``/metrics`` and the lobby board)
with uvicorn on a background thread: the one HTTP start-up path of the
collector and the demo.

The socket is bound here, before uvicorn starts, so a taken port is a clear
one-line error at start-up (not a log line from another thread) and port 0
gives a free port whose number is known at once.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from lobbywatch.errors import LobbywatchError


class HttpServer:
    """``app`` served by uvicorn on a daemon thread.

    Args:
        app: the ASGI application.
        host: address to bind (``0.0.0.0`` = all interfaces).
        port: TCP port; 0 picks a free one (read it from :attr:`port`).
        hint: how to choose another address, appended to the bind error
            (e.g. ``"set http.port in the server config"``).
        name: thread name (for logs and debuggers).

    Raises:
        LobbywatchError: the address cannot be bound (one line, with ``hint``).
    """

    def __init__(
        self, app: Any, host: str, port: int, *, hint: str = "", name: str = "http"
    ) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            tail = f" ({hint})" if hint else ""
            raise LobbywatchError(
                f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}{tail}"
            ) from None
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name=name, daemon=True
        )

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; wait up to ``timeout`` seconds for uvicorn to be ready.

        Raises:
            LobbywatchError: uvicorn did not report ready in time.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise LobbywatchError(f"the HTTP server on {self.base_url} did not start")

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait up to ``timeout`` seconds, close the socket."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.sock.close()

    @property
    def base_url(self) -> str:
        """``http://host:port`` reachable from this machine."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"
