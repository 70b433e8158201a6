"""Shared fixtures: paths to the shared data set and model, free ports, real
Mosquitto brokers started per test, and throw-away PostgreSQL databases."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder beside the repository (override: ``LOBBYWATCH_SHARED``)."""
    return Path(os.environ.get("LOBBYWATCH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not present (set LOBBYWATCH_SHARED)")
    return path


@pytest.fixture(scope="session")
def people_dir(shared: Path) -> Path:
    path = shared / "data" / "people"
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def vtest_video(shared: Path) -> Path:
    path = shared / "data" / "video" / "vtest.avi"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The YOLOX-Nano weights as the product resolves them; skip when absent."""
    from lobbywatch.models.registry import resolve_model  # local: keeps collection light

    try:
        return resolve_model("yolox_nano").path
    except Exception as exc:
        pytest.skip(f"model weights not available ({exc}); run `make model`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for_ready(port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Wait for a Prometheus or Alertmanager to answer ``/-/ready`` with 200: both
    listen before they can serve (503 while the TSDB opens, which takes seconds on a
    loaded machine), so an open port is not enough before querying their API."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = "nothing listening"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port}/-/ready not 200 after {timeout}s ({last})")


@dataclass
class Broker:
    """A real Mosquitto process owned by one test."""

    port: int
    config_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory: ``mosquitto(extra_config="...")`` starts a broker on a free port.

    The config always has a listener on 127.0.0.1:<port>; ``extra_config`` adds
    lines (``password_file``, ``acl_file``, ``allow_anonymous false``...).
    Every broker started is stopped at teardown.
    """
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto binary not installed")
    brokers: list[Broker] = []

    def start(extra_config: str = "allow_anonymous true\n", port: int | None = None) -> Broker:
        port = port or free_port()
        conf = tmp_path / f"mosquitto-{port}.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n{extra_config}"
        )
        broker = Broker(port=port, config_path=conf)
        broker.start()
        brokers.append(broker)
        return broker

    yield start
    for b in brokers:
        b.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    admin = os.environ.get("LOBBYWATCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"lw_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {admin}: {exc}")
    base = admin.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    """A real local SMTP server (aiosmtpd) on a free port: (port, received envelopes)."""
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, received
    controller.stop()
