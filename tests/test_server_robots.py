"""WeCom and DingTalk robot sinks against a local receiver that checks what the
services check: the markdown message format, DingTalk's URL signature and a
20-messages-a-minute limit; the outbox holds back what the limit refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lobbywatch.errors import ConfigError
from lobbywatch.server.config import DingTalkSink, NotifySettings, WeComSink, parse_server_config
from lobbywatch.server.notify import (
    DingTalkNotifier,
    Dispatcher,
    RateLimit,
    SinkError,
    WeComNotifier,
    dingtalk_sign,
)
from lobbywatch.server.store import AlertRow, EventRecord, Store

SECRET = "SEC0123456789abcdef"


@dataclass
class Robot:
    """A chat-robot endpoint: WeCom (``/cgi-bin/webhook/send``) or DingTalk (``/robot/send``)."""

    clock: Callable[[], float] = time.time
    limit: int = 20
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def check(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        url = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/cgi-bin/webhook/send":
            if q.get("key") != ["k-123"]:
                return 93000, "invalid webhook url"
            md = body.get("markdown") or {}
            if body.get("msgtype") != "markdown" or not isinstance(md.get("content"), str):
                return 40008, "invalid message type"
            if len(md["content"].encode()) > 4096:
                return 40058, "content exceed max length"
        elif url.path == "/robot/send":
            if q.get("access_token") != ["t-456"]:
                return 300001, "token is not exist"
            ts, sign = q.get("timestamp", [""])[0], q.get("sign", [""])[0]
            if not ts.isdigit() or abs(int(ts) / 1000 - time.time()) > 3600:
                return 310000, "timestamp invalid"
            mac = hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
            if sign != base64.b64encode(mac).decode():  # parse_qs has url-decoded it
                return 310000, "sign not match"
            md = body.get("markdown") or {}
            if body.get("msgtype") != "markdown" or not md.get("title") or not md.get("text"):
                return 40035, "missing markdown title or text"
        else:
            return 404, "not found"
        now = self.clock()
        recent = [a for a in self.accepted if now - a["_at"] < 60]
        if len(recent) >= self.limit:
            return 45009, "api freq out of limit"
        self.accepted.append({**body, "_at": now, "_path": path})
        return 0, "ok"

    def start(self) -> Robot:
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    code, msg = 40001, "invalid json"
                else:
                    code, msg = robot.check(self.path, body)
                if code:
                    robot.refused.append((code, msg))
                out = json.dumps({"errcode": code, "errmsg": msg}).encode()
                # both services answer HTTP 200 and put the error in the body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def robot() -> Iterator[Robot]:
    r = Robot().start()
    yield r
    r.stop()


def payload(i: int = 0, locale: str = "zh_CN") -> dict[str, Any]:
    return {
        "event_id": f"w1_wait:b1:W1:{i}#0",
        "event": "fire",
        "alert_id": f"w1_wait:b1:W1:{i}",
        "kind": "w1_wait",
        "severity": "warning",
        "state": "firing",
        "branch": "b1",
        "zone": "W1",
        "value": 540.0,
        "threshold": 600.0,
        "started_at_ts": time.time(),
        "context": {
            "branch_name": "Harbour",
            "zone_name": "Hall",
            "timezone": "Asia/Shanghai",
            "locale": locale,
            "threshold_s": 600.0,
            "predicted_wait_s": 540.0,
            "people": 5,
            "counters_open": 2,
            "counters_source": "configured",
            "wait_with_one_more_s": 360.0,
            "board_url": "https://board.example/board/branch?id=b1",
        },
    }


def url_file(tmp_path: Path, url: str) -> Path:
    f = tmp_path / "robot-url"
    f.write_text(url + "\n")
    return f


def test_dingtalk_signature_matches_the_documented_example() -> None:
    # computed independently: base64(HMAC-SHA256("SEC...", "1700000000000\nSEC...")), url-encoded
    mac = hmac.new(SECRET.encode(), f"1700000000000\n{SECRET}".encode(), hashlib.sha256).digest()
    expected = urllib.parse.quote_plus(base64.b64encode(mac).decode())
    assert dingtalk_sign(SECRET, 1_700_000_000_000) == expected
    assert "%" in expected or expected.isalnum()  # url-safe either way


def test_wecom_markdown_in_the_branch_language(robot: Robot, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{robot.port}/cgi-bin/webhook/send?key=k-123"
    sink = WeComNotifier("wecom", WeComSink(url_file=url_file(tmp_path, url)))
    sink.send(payload())
    (msg,) = robot.accepted
    assert msg["msgtype"] == "markdown"
    assert msg["markdown"]["content"] == (
        "**W1 预警：Harbour，Hall**\n"
        "> 预计等候 9分00秒，阈值 10分00秒；5 人在等候。\n"
        "> 开放柜台 2 个（配置值）。\n"
        "> 再开一个柜台，预计等候可降至约 6分00秒。\n"
        "[https://board.example/board/branch?id=b1](https://board.example/board/branch?id=b1)"
    )
    # a sink-level locale wins over the branch's
    en = WeComNotifier("wecom-en", WeComSink(url_file=url_file(tmp_path, url), locale="en"))
    en.send(payload())
    assert robot.accepted[1]["markdown"]["content"].startswith(
        "**W1 warning: Harbour, Hall**\n> Predicted wait 9 min 00 s against a threshold of"
    )
    # the service's error code is a failed delivery (retried by the outbox)
    bad = WeComNotifier("bad", WeComSink(url_file=url_file(tmp_path, url.replace("k-123", "nope"))))
    with pytest.raises(SinkError, match="errcode 93000: invalid webhook url"):
        bad.send(payload())


def test_dingtalk_signed_markdown(
    robot: Robot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{robot.port}/robot/send?access_token=t-456"
    monkeypatch.setenv("DT_SECRET", SECRET)
    sink = DingTalkNotifier(
        "ding", DingTalkSink(url_file=url_file(tmp_path, url), secret_env="DT_SECRET", locale="en")
    )
    sink.send(payload())
    assert robot.refused == []
    (msg,) = robot.accepted
    assert msg["markdown"]["title"] == "W1 warning: Harbour, Hall"
    assert msg["markdown"]["text"].startswith("**W1 warning: Harbour, Hall**\n> Predicted wait")
    assert "&timestamp=" in msg["_path"] and "&sign=" in msg["_path"]
    # a wrong secret is refused by the receiver, and reported with its message
    monkeypatch.setenv("DT_SECRET", "SECwrong")
    wrong = DingTalkNotifier(
        "ding2", DingTalkSink(url_file=url_file(tmp_path, url), secret_env="DT_SECRET")
    )
    with pytest.raises(SinkError, match="errcode 310000: sign not match"):
        wrong.send(payload())


def test_robot_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"notify\.sinks\.w.*give exactly one of url_env"):
        parse_server_config({"notify": {"sinks": {"w": {"type": "wecom"}}}})
    with pytest.raises(ConfigError, match=r"url_env: \$NOPE_URL is not set"):
        WeComSink(url_env="NOPE_URL").url()
    f = url_file(tmp_path, "ftp://x")
    with pytest.raises(ConfigError, match="webhook URL must start with https://"):
        WeComSink(url_file=f).url()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def row(i: int) -> AlertRow:
    return AlertRow(
        f"w1_wait:b1:W1:{i}", "w1_wait", "warning", "firing", "b1", "W1", "W1", "north",
        1.0, None, "s", 1.0, 2.0, "fire", False, 1.0, 0, 1.0,
    )  # fmt: skip


def test_rate_limit_holds_back_a_burst_and_loses_nothing(robot: Robot, tmp_path: Path) -> None:
    clock = FakeClock()
    robot.clock = clock
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    url = f"http://127.0.0.1:{robot.port}/cgi-bin/webhook/send?key=k-123"
    settings = NotifySettings.model_validate(
        {"sinks": {"wecom": {"type": "wecom", "url_file": str(url_file(tmp_path, url))}}}
    )
    sink = WeComNotifier("wecom", settings.sinks["wecom"])  # type: ignore[arg-type]
    sink.limit = RateLimit(20, 60.0, clock=clock)
    for i in range(25):
        p = payload(i)
        store.record_event(EventRecord(p["event_id"], row(i), "fire", 0.0, p), ["wecom"])
    d = Dispatcher(store, {"wecom": sink}, settings, clock=clock)
    assert d.deliver_due("wecom") == 20
    assert robot.refused == [] and len(robot.accepted) == 20
    assert store.pending_count() == 5  # held back, not failed
    clock.t += 30
    assert d.deliver_due("wecom") == 0  # window still full
    clock.t += 31
    assert d.deliver_due("wecom") == 5
    assert robot.refused == [] and len(robot.accepted) == 25
    assert store.pending_count() == 0
    assert d.counts[("wecom", "error")] == 0
    store.close()


def test_rate_limit_window() -> None:
    clock = FakeClock()
    lim = RateLimit(2, 60.0, clock=clock)
    assert lim.wait_s() == 0
    lim.record()
    clock.t += 10
    lim.record()
    assert lim.wait_s() == 50.0
    clock.t += 50
    assert lim.wait_s() == 0
