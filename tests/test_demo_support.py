"""Helpers shared by the demo tests (no tests here): run ``lobbywatch demo`` as a real
subprocess, read what it printed, and check that nothing it started is left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import REPO, free_port

BROKER_RE = re.compile(r"MQTT broker:\s+mosquitto pid (\d+) on ([\d.]+):(\d+)")
EDGE_RE = re.compile(r"edge agent:\s+started, pid (\d+)")
RUNNING_RE = re.compile(r"^running (for|until)")
#: the demo prints a fresh login per run (the API and board need credentials)
LOGIN_RE = re.compile(r"board login: +user (\S+), password (\S+)")


@dataclass
class DemoRun:
    """One ``lobbywatch demo`` process; its output is collected on a thread."""

    args: list[str]
    workdir: Path
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start(self) -> DemoRun:
        cmd = [
            sys.executable,
            "-m",
            "lobbywatch.cli",
            "demo",
            "--http-port",
            str(self.http_port),
            "--workdir",
            str(self.workdir),
            *self.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.process = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = pattern.search(line)
                if m:
                    return m
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern.pattern!r}; output:\n{self.output}")

    def login(self) -> tuple[str, str]:
        """(user, password) the demo printed."""
        m = self.wait_for_line(LOGIN_RE)
        return m.group(1), m.group(2)

    @property
    def headers(self) -> dict[str, str]:
        user, password = self.login()
        return {"Authorization": f"Bearer {user}.{password}"}

    def get(self, path: str) -> Any:
        r = httpx.get(self.base_url + path, timeout=5, headers=self.headers)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    def wait_until(self, check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        """Poll ``check()`` (exceptions count as not yet) until it returns truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"demo exited early ({self.process.returncode}):\n{self.output}"
                )
            try:
                value = check()
                if value:
                    return value
                last = value
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r}):\n{self.output}")

    def interrupt(self, timeout: float = 45.0) -> int:
        """SIGINT, as Ctrl-C would send; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self._reader is not None:
                self._reader.join(5)

    def kill(self) -> None:
        """Teardown after a failure: SIGTERM first so the demo stops its children
        (mosquitto drops root privileges on start, which clears the parent-death
        signal the demo asks for, so a SIGKILLed demo would leave it running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its parent's wait() is missing
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (e.g. the demo's workdir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and pid_alive(int(proc.name)):
            found.append(f"{proc.name}: {cmdline}")
    return found


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
