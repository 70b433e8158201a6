"""A TCP proxy on loopback that a test can cut or hang, in front of a real server.

Modes:

* ``pass``: forwards both ways (the real PostgreSQL answers).
* ``refuse``: open connections are reset, new ones are accepted and closed at once
  (a database that refuses connections).
* ``hang``: nothing is forwarded any more, new connections are accepted and never
  answered (a database host that hangs: TCP is up, no reply ever comes).

:meth:`restore` resets every connection held by the fault (as a network that comes
back does) and forwards again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---------------------------------------------------------------- control
    def refuse(self) -> None:
        self.mode = "refuse"
        self._reset_all()

    def hang(self) -> None:
        self.mode = "hang"

    def restore(self) -> None:
        self._reset_all()
        self.mode = "pass"

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._reset_all()

    # ---------------------------------------------------------------- internals
    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.extend(socks)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            if self.mode == "hang":
                self._track(client)  # held open, never answered, reset by restore()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                if self.mode == "hang":
                    time.sleep(0.05)  # forward nothing: the bytes wait in the kernel
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
