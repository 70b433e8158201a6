"""The lobby board in a real headless Chromium, fed by a real ``lobbywatch demo``.

Chromium is driven over the DevTools protocol (a websocket), so one page is
watched across its own polls: it must render the simulated branches and their
zone rows from the API, update by itself, and fetch nothing but the collector.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_demo_support import RUNNING_RE, DemoRun

websockets_sync = pytest.importorskip("websockets.sync.client")

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


class DevTools:
    """A minimal DevTools-protocol client for one page target."""

    def __init__(self, ws_url: str) -> None:
        # entered as a context manager: newer websockets releases deprecate a bare connect()
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            websockets_sync.connect(ws_url, max_size=None, open_timeout=10)
        )
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == mine:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg:
                self.events.append(msg)

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_js(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        self._stack.close()


def start_chromium(profile: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-proxy-server",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",  # Chromium writes the port it chose below
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(profile.parent / "chromium.log").open("wb"),
        start_new_session=True,  # its zygote/renderers share a group we can kill
    )
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if active.is_file() and active.read_text().strip():
            port = int(active.read_text().split()[0])
            return proc, f"http://127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_chromium(proc)
    log = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
    raise AssertionError(f"chromium did not open its DevTools port:\n{log}")


def stop_chromium(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto binary not installed")
def test_board_shows_simulated_branches_and_updates(tmp_path: Path) -> None:
    run = DemoRun(["--duration", "120", "--no-edge", "--branches", "2"], tmp_path / "wd").start()
    chromium = None
    devtools = None
    try:
        run.wait_for_line(RUNNING_RE)
        api = run.wait_until(
            lambda: (bs := run.get("/api/v1/branches")) and all(b["zones"] for b in bs) and bs,
            timeout=30,
            what="branches with zones",
        )
        expected = {b["id"]: b["zones"] for b in api}
        assert set(expected) == {"sim-b0001", "sim-b0002"}

        board_url = run.base_url + "/board/"
        chromium, devtools_url = start_chromium(tmp_path / "profile", board_url)
        targets = httpx.get(devtools_url + "/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        # the board is behind a login: the browser lands on the form and signs in with
        # the credentials the demo printed (a POST form: nothing secret in any URL)
        user, password = run.login()
        devtools.wait_js("document.querySelector('#password') !== null")
        assert devtools.js("location.pathname") == "/login"
        devtools.js(
            f"document.querySelector('#user').value = {json.dumps(user)};"
            f"document.querySelector('#password').value = {json.dumps(password)};"
            "document.querySelector('form').submit(); true"
        )
        devtools.wait_js("location.pathname === '/board/' && document.readyState === 'complete'")
        cookies = devtools.call("Network.getCookies", urls=[run.base_url])["cookies"]
        (session,) = [c for c in cookies if c["name"] == "lw_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        # watch every request from a fresh load
        devtools.call("Network.enable")
        devtools.call("Page.reload", ignoreCache=True)

        # rendered from the API by the script (the HTML itself has no branch)
        devtools.wait_js("document.querySelectorAll('tbody[data-branch]').length >= 2")
        # the simulator may still be announcing zones: compare the board with the API
        # until both agree (the board polls every 2 s), not with a snapshot taken earlier
        deadline = time.monotonic() + 20
        while True:
            shown = devtools.js(
                "Object.fromEntries([...document.querySelectorAll('tbody[data-branch]')].map("
                "b => [b.dataset.branch, b.querySelectorAll('tr[data-zone]').length]))"
            )
            expected = {b["id"]: b["zones"] for b in run.get("/api/v1/branches")}
            if shown == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(shown) == set(expected)
        for branch, zones in expected.items():
            assert shown[branch] == zones, (branch, shown)
        text = devtools.js("document.body.innerText")
        for branch in expected:
            assert branch in text
        assert "waiting" in text and "W1" in text
        # the waiting zone's row carries a predicted wait and a status level
        row = devtools.js(
            "(() => { const r = document.querySelector('tr[data-kind=\"waiting\"]');"
            " return [r.querySelector('.wait').textContent, r.dataset.level]; })()"
        )
        assert not row[0].startswith("—") and row[1] in {"ok", "near", "over"}, row
        # accessibility landmarks the page promises
        assert devtools.js("document.querySelector('#alerts').getAttribute('aria-live')")
        assert devtools.js("document.querySelector('#status').getAttribute('role')") == "status"
        assert devtools.js("document.querySelectorAll('thead th[scope=col]').length") == 9
        assert devtools.js("document.querySelectorAll('th[scope=rowgroup]').length") == 2

        # the same page updates by itself: new data time and more polls
        first = devtools.js(
            "[document.querySelector('#data-time').getAttribute('datetime'),"
            " Number(document.body.dataset.polls)]"
        )
        assert first[0], "no data time shown"
        devtools.wait_js(
            f"document.querySelector('#data-time').getAttribute('datetime') !== {first[0]!r}"
            f" && Number(document.body.dataset.polls) > {first[1]}",
            timeout=30,
        )

        # nothing but the collector was asked for anything (works offline)
        urls = [
            e["params"]["request"]["url"]
            for e in devtools.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        assert any("/api/v1/board" in u for u in urls), urls
        outside = [u for u in urls if not u.startswith(run.base_url)]
        assert outside == [], outside
        assert not [u for u in urls if password in u], "a secret ended up in a URL"

        # optional artefact for the docs: kept only when small
        shot = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        assert shot.startswith(b"\x89PNG")
        (tmp_path / "board.png").write_bytes(shot)
    finally:
        if devtools is not None:
            devtools.close()
        if chromium is not None:
            stop_chromium(chromium)
        if run.process is not None and run.process.poll() is None:
            assert run.interrupt() == 0, run.output
        run.kill()
