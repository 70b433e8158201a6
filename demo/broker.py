"""An embedded MQTT broker for ``lobbywatch demo``: the system's Mosquitto, private.

Every lobbywatch client speaks MQTT 5 (the collector uses shared subscriptions
and subscription identifiers, the edge agent message expiry and delayed wills),
so the broker must too. The pure-Python brokers on PyPI do not: amqtt (0.12)
refuses a v5 CONNECT ("Invalid protocol ... 5") and mqttools has no QoS 1. The
demo therefore starts the system's ``mosquitto`` binary on a free loopback port
with a throw-away config, and when it is missing says how to get it (or to pass
``--broker HOST:PORT``) instead of starting something the clients cannot use.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from lobbywatch.errors import LobbywatchError

INSTALL_HINT = (
    "no MQTT 5 broker available: install Mosquitto (`apt-get install mosquitto`, "
    "`brew install mosquitto`) or point the demo at a running broker with --broker HOST:PORT"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc
        return None


# Resolved here, in the parent: the child between fork and exec must not load
# libraries (the loader's lock may be held by another thread of the parent).
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """``preexec_fn``: the kernel sends the child SIGTERM when its parent dies.

    If the demo is killed with SIGKILL it cannot stop its broker or edge agent;
    this makes sure they do not outlive it. (Linux; a no-op elsewhere. The kernel
    clears it when a process changes user, which mosquitto started as root does:
    there only the demo's own orderly shutdown stops the broker.)
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A private ``mosquitto`` on ``127.0.0.1:<free port>``; use as a context manager."""

    def __init__(self, workdir: Path, *, binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.binary = binary or shutil.which("mosquitto")
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    @staticmethod
    def available() -> bool:
        return shutil.which("mosquitto") is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def name(self) -> str:
        return "mosquitto"

    def start(self, timeout: float = 10.0) -> None:
        if not self.binary:
            raise LobbywatchError(INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a free port can be taken between the probe and mosquitto's bind: retry
        last_error = ""
        for _ in range(3):
            port = free_port(self.host)
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} {self.host}\n"
                "allow_anonymous true\n"
                "persistence false\n"
                f"log_dest file {self.log_path}\n"
                "log_type error\nlog_type warning\nlog_type notice\n"
                # the demo fleet publishes in bursts while it warms up
                "max_queued_messages 100000\n"
            )
            proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if port_open(self.host, port):
                    self.process, self.port = proc, port
                    return
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=5)
            last_error = (err or b"").decode(errors="replace").strip()
            if self.log_path.exists():
                last_error += " " + self.log_path.read_text(errors="replace")[-500:]
        raise LobbywatchError(f"mosquitto did not start: {last_error.strip() or 'no output'}")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_address(value: str, default_port: int = 1883) -> tuple[str, int]:
    """``HOST:PORT`` / ``HOST`` / ``[v6]:PORT`` -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_s = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port_s = value.split(":")
    else:
        host, port_s = value, ""
    try:
        port = int(port_s) if port_s else default_port
    except ValueError:
        raise LobbywatchError(f"--broker {value!r}: port must be a number") from None
    if not host or not 0 < port < 65536:
        raise LobbywatchError(f"--broker {value!r}: expected HOST:PORT")
    return host, port
