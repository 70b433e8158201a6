"""The one HTTP start-up helper of the collector and the demo, on real sockets."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi import FastAPI

from lobbywatch.errors import LobbywatchError
from lobbywatch.server.http import HttpServer


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def test_serves_on_a_free_port_and_stops() -> None:
    server = HttpServer(_app(), "127.0.0.1", 0)
    assert server.port > 0
    server.start()
    try:
        assert httpx.get(f"{server.base_url}/ping").json() == {"pong": "yes"}
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/ping", timeout=2)


def test_taken_port_is_one_line_naming_address_and_hint() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(LobbywatchError) as err:
            HttpServer(_app(), "127.0.0.1", port, hint="set http.port in the server config")
    finally:
        holder.close()
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and "set http.port in the server config" in msg
    assert "\n" not in msg
