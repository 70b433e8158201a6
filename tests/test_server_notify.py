"""Notification sinks against real receivers: an HTTP webhook server, a local SMTP
server (aiosmtpd) and the real Alertmanager; the outbox dispatcher's retries."""

# ruff: noqa: F811 - fixtures imported from test_server_support are parameters below
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from test_server_support import alertmanager, wait_until, webhook  # noqa: F401 - fixtures

from lobbywatch.server.config import (
    AlertmanagerSink,
    NotifySettings,
    SmtpSink,
    WebhookSink,
    parse_server_config,
)
from lobbywatch.server.notify import (
    SIGNATURE_HEADER,
    AlertmanagerNotifier,
    Dispatcher,
    SinkError,
    SmtpNotifier,
    WebhookNotifier,
    sign,
    verify,
)
from lobbywatch.server.store import AlertRow, EventRecord, Store


def payload(event: str = "fire", state: str = "firing", **kw: Any) -> dict[str, Any]:
    now = time.time()
    p = {
        "event_id": f"w1_wait:b1:W1:1#{kw.pop('rev', 0)}",
        "event": event,
        "alert_id": "w1_wait:b1:W1:1",
        "kind": "w1_wait",
        "severity": "warning",
        "state": state,
        "branch": "b1",
        "region": "north",
        "zone": "W1",
        "summary": "W1 at b1: predicted wait 9 min",
        "value": 540.0,
        "threshold": 600.0,
        "started_at_ts": now - 60,
        "ended_at_ts": now if state == "resolved" else None,
    }
    p.update(kw)
    return p


def test_signature_roundtrip() -> None:
    header = sign(b"k", b"{}", int(time.time()))
    assert verify(b"k", b"{}", header)
    assert not verify(b"k", b"{ }", header)
    assert not verify(b"k", b"{}", sign(b"k", b"{}", int(time.time()) - 3600))  # replay
    assert not verify(b"k", b"{}", "garbage")


def test_webhook_posts_signed_json(webhook: Any, tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("topsecret")
    sink = WebhookNotifier("hook", WebhookSink(url=webhook.url, secret_file=key))
    sink.send(payload())
    (req,) = webhook.requests
    assert req.json()["alert_id"] == "w1_wait:b1:W1:1"
    assert req.headers["Content-Type"] == "application/json"
    assert verify(b"topsecret", req.body, req.headers[SIGNATURE_HEADER])
    webhook.fail_first = 10
    with pytest.raises(SinkError, match="HTTP 500"):
        sink.send(payload())
    dead = WebhookNotifier("dead", WebhookSink(url=f"http://127.0.0.1:{free_port()}/", timeout_s=1))
    with pytest.raises(SinkError, match=r"ConnectError: .*Connection refused"):
        dead.send(payload())


def test_smtp_sends_mail(smtp_server: tuple[int, list[Any]]) -> None:
    port, received = smtp_server
    cfg = SmtpSink.model_validate(
        {"host": "127.0.0.1", "port": port, "from": "lw@example.com", "to": ["m@example.com"]}
    )
    SmtpNotifier("mail", cfg).send(payload(severity="critical"))
    (env,) = received
    assert env.mail_from == "lw@example.com" and env.rcpt_tos == ["m@example.com"]
    text = env.content.decode()
    assert "Subject: [lobbywatch] CRITICAL: W1 at b1" in text
    assert "X-Lobbywatch-Event-Id: w1_wait:b1:W1:1#0" in text
    with pytest.raises(SinkError, match=r"ConnectionRefusedError: .*Connection refused"):
        SmtpNotifier("x", cfg.model_copy(update={"port": free_port(), "timeout_s": 1})).send(
            payload()
        )


def test_alertmanager_push_escalate_resend_and_resolve(alertmanager: Any) -> None:
    sink = AlertmanagerNotifier(
        "am", AlertmanagerSink(url=alertmanager.url, resend_interval_s=1, ends_after_s=30)
    )
    sink.send(payload())
    (a,) = wait_until(lambda: alertmanager.alerts())
    assert a["labels"] == {
        "alertname": "LobbywatchW1Wait",
        "kind": "w1_wait",
        "severity": "warning",
        "branch": "b1",
        "region": "north",
        "zone": "W1",
    }
    assert a["annotations"]["summary"].startswith("W1 at b1")
    # escalation: the critical alert appears and the warning one is ended
    sink.send(payload("escalate", severity="critical", previous_severity="warning", rev=1))
    wait_until(lambda: [x["labels"]["severity"] for x in alertmanager.alerts()] == ["critical"])
    # re-sending keeps it alive with a fresh endsAt
    before = alertmanager.alerts()[0]["endsAt"]
    time.sleep(1.1)
    sink.resend([payload(severity="critical")], time.time())
    assert alertmanager.alerts()[0]["endsAt"] > before
    sink.send(payload("resolve", "resolved", severity="critical", rev=2))
    wait_until(lambda: alertmanager.alerts() == [])
    # resolved alerts are re-sent (as resolved) for a while, firing ones forever
    sink.resend([], time.time())
    assert alertmanager.alerts() == []


def row() -> AlertRow:
    return AlertRow(
        "w1_wait:b1:W1:1", "w1_wait", "warning", "firing", "b1", "W1", "W1", "north",
        1.0, None, "s", 1.0, 2.0, "fire", False, 1.0, 0, 1.0,
    )  # fmt: skip


def test_dispatcher_retries_with_backoff_until_delivered(webhook: Any, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    settings = NotifySettings.model_validate(
        {
            "sinks": {"hook": {"type": "webhook", "url": webhook.url}},
            "retry_initial_s": 0.1,
            "retry_max_s": 0.4,
        }
    )
    webhook.fail_first = 3
    p = payload()
    store.record_event(EventRecord(p["event_id"], row(), "fire", time.time(), p), ["hook"])
    sinks = {"hook": WebhookNotifier("hook", settings.sinks["hook"])}  # type: ignore[arg-type]
    d = Dispatcher(store, sinks, settings)
    d.start()
    try:
        wait_until(lambda: store.delivery_status(p["event_id"]) == {"hook": "delivered"}, 10)
    finally:
        d.stop()
    assert [r.ok for r in webhook.requests] == [False, False, False, True]
    assert d.counts[("hook", "error")] == 3 and d.counts[("hook", "delivered")] == 1
    # nothing is re-sent once delivered
    assert store.due_deliveries(time.time() + 3600) == []
    store.close()


def test_in_doubt_deliveries_are_resent_marked_and_refused_ones_plain(tmp_path: Path) -> None:
    """A claim is committed before each send. A send that may have arrived (the
    receiver timed out after reading the request; or the sender died after claiming)
    is re-sent with the same Idempotency-Key and marked as a redelivery; one the
    receiver refused (HTTP 500) or never got (connection refused) is re-sent plain."""
    got: list[tuple[str, str | None, bool]] = []
    plan = {"slow": 1, "fail": 0}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            got.append(
                (
                    body["event_id"],
                    self.headers.get("X-Lobbywatch-Redelivery"),
                    bool(body.get("redelivery")),
                )
            )
            if plan["slow"]:
                plan["slow"] -= 1
                time.sleep(1.5)  # beyond the sink's timeout: the sender cannot know
            code = 500 if plan["fail"] else 200
            plan["fail"] = max(plan["fail"] - 1, 0)
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    url = f"http://127.0.0.1:{server.server_port}/"
    settings = NotifySettings.model_validate(
        {
            "sinks": {"hook": {"type": "webhook", "url": url, "timeout_s": 0.5}},
            "retry_initial_s": 0.01,
            "retry_max_s": 0.01,
        }
    )
    sinks = {"hook": WebhookNotifier("hook", settings.sinks["hook"])}  # type: ignore[arg-type]
    d = Dispatcher(store, sinks, settings)
    try:
        # 1. timeout after the request went out: in doubt -> the retry is marked
        p1 = payload(rev=1)
        store.record_event(EventRecord(p1["event_id"], row(), "fire", time.time(), p1), ["hook"])
        assert d.deliver_due("hook") == 0
        time.sleep(0.05)
        assert d.deliver_due("hook") == 1
        assert got == [(p1["event_id"], None, False), (p1["event_id"], "1", True)], got
        assert d.counts[("hook", "redelivered")] == 1
        # 2. HTTP 500: the receiver answered "not taken" -> the retry is plain
        got.clear()
        plan["fail"] = 1
        p2 = payload(rev=2)
        store.record_event(EventRecord(p2["event_id"], row(), "fire", time.time(), p2), ["hook"])
        assert d.deliver_due("hook") == 0
        time.sleep(0.05)
        assert d.deliver_due("hook") == 1
        assert got == [(p2["event_id"], None, False), (p2["event_id"], None, False)], got
        # 3. a sender that died after its claim (the previous active): the next one marks
        got.clear()
        p3 = payload(rev=3)
        store.record_event(EventRecord(p3["event_id"], row(), "fire", time.time(), p3), ["hook"])
        assert store.claim(p3["event_id"], "hook", time.time())
        assert d.deliver_due("hook") == 1
        assert got == [(p3["event_id"], "1", True)], got
        # 4. delivered rows cannot be claimed (a late second active sends nothing)
        assert not store.claim(p3["event_id"], "hook", time.time())
        assert store.due_deliveries(time.time() + 3600) == []
    finally:
        server.shutdown()
        store.close()


def test_dispatcher_expires_after_give_up(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    settings = NotifySettings.model_validate(
        {
            "sinks": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/"}},
            "give_up_after_s": 10,
        }
    )
    p = payload()
    store.record_event(EventRecord(p["event_id"], row(), "fire", 100.0, p), ["hook"])
    sinks = {"hook": WebhookNotifier("hook", settings.sinks["hook"])}  # type: ignore[arg-type]
    d = Dispatcher(store, sinks, settings, clock=lambda: 200.0)
    assert d.deliver_due("hook") == 0
    assert store.delivery_status(p["event_id"]) == {"hook": "expired"}
    assert d.counts[("hook", "expired")] == 1
    store.close()


def test_routing_by_branch_and_region() -> None:
    cfg = parse_server_config(
        {
            "notify": {
                "sinks": {
                    "log": {"type": "log"},
                    "north": {"type": "webhook", "url": "http://n/"},
                    "vip": {"type": "webhook", "url": "http://v/"},
                },
                "routes": [
                    {"sinks": ["vip"], "branches": ["hq"], "min_severity": "critical"},
                    {"sinks": ["north"], "regions": ["north"], "continue": False},
                    {"sinks": ["log"]},
                ],
            }
        }
    )
    n = cfg.notify
    assert n.sinks_for("hq", "north", "w1_wait", "critical") == ["vip", "north"]
    assert n.sinks_for("hq", "north", "w1_wait", "warning") == ["north"]
    assert n.sinks_for("b7", "south", "device_offline", "warning") == ["log"]
