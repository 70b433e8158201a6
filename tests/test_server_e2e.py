"""End to end with the real Mosquitto: edge-style retained QoS 1 zone states in,
metrics (scraped over HTTP), API state, a real webhook receiver and a real
Alertmanager out; restarts; and a flood of hostile messages."""

# ruff: noqa: F811 - fixtures imported from test_server_support are parameters below
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import (  # noqa: F401 - fixtures
    Publisher,
    alertmanager,
    device_status_msg,
    raw,
    sample,
    scrape,
    server_config,
    status_msg,
    wait_until,
    webhook,
    zone_msg,
)

from lobbywatch.protocol import MAX_PAYLOAD_BYTES
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config
from lobbywatch.server.notify import SIGNATURE_HEADER, verify
from lobbywatch.zone_state import ZoneKind

pytestmark = pytest.mark.slow


def start(cfg: dict[str, Any]) -> Collector:
    c = Collector(parse_server_config(cfg))
    c.start()
    assert c.mqtt is not None
    wait_until(c.mqtt.connected.is_set, 10)
    return c


def api(c: Collector, path: str) -> Any:
    resp = httpx.get(f"http://127.0.0.1:{c.http_port}{path}", timeout=5)
    resp.raise_for_status()
    return resp.json()


def events(hook: Any, event: str | None = None, ok_only: bool = True) -> list[dict[str, Any]]:
    out = []
    for r in hook.requests:
        if ok_only and not r.ok:
            continue
        body = r.json()
        if event is None or body["event"] == event:
            out.append(body)
    return out


def test_edge_states_become_metrics_api_state_and_notifications(
    mosquitto: Any, tmp_path: Path, webhook: Any, alertmanager: Any
) -> None:
    broker = mosquitto()
    secret = tmp_path / "hook.key"
    secret.write_text("s3cret\n")
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        sinks={
            "hook": {"type": "webhook", "url": webhook.url, "secret_file": str(secret)},
            "am": {
                "type": "alertmanager",
                "url": alertmanager.url,
                "resend_interval_s": 1,
                "ends_after_s": 60,
            },
            "south-mail": {
                "type": "smtp",
                "host": "127.0.0.1",
                "port": 1,
                "from": "lw@example.com",
                "to": ["south@example.com"],
            },
        },
        routes=[
            {"sinks": ["hook", "am"], "regions": ["north"]},
            {"sinks": ["south-mail"], "regions": ["south"]},
        ],
    )
    pub = Publisher(broker.port)
    now = time.time()
    # Retained before the collector exists: only the bootstrap subscription sees these.
    pub.send(status_msg(1, now - 5))
    pub.send(zone_msg(2, now - 4, people=1, zone="C1", kind=ZoneKind.CASH_COUNTER))
    c = start(cfg)
    try:
        people_c1 = {"branch": "b1", "camera": "cam1", "zone": "C1", "kind": "cash_counter"}
        wait_until(lambda: sample(scrape(c.http_port), "lobbywatch_zone_people", **people_c1) == 1)

        # The queue builds: 6 waiting, fallback capacity 1 counter x 60 s -> (6 + 1) x 60 s.
        pub.send(zone_msg(3, now - 1, people=6, arrivals=6, dwells=[30.0, 90.0], dwell_max=100))
        bz = {"branch": "b1", "zone": "W1"}
        m = wait_until(
            lambda: (
                (s := scrape(c.http_port))
                and sample(s, "lobbywatch_zone_predicted_wait_seconds", **bz) == 420.0
                and s
            )
        )
        assert sample(m, "lobbywatch_branch_info", branch="b1", region="north") == 1
        assert sample(m, "lobbywatch_zone_wait_threshold_seconds", **bz) == 300
        assert sample(m, "lobbywatch_zone_alert_state", kind="w1_wait", **bz) == 2
        assert sample(m, "lobbywatch_zone_alert_state", kind="service_stalled", **bz) == 0
        assert sample(m, "lobbywatch_zone_realised_wait_seconds", quantile="0.5", **bz) == 60.0
        assert sample(m, "lobbywatch_zone_service_rate_per_second", **bz) == pytest.approx(1 / 60)
        assert sample(m, "lobbywatch_zone_oldest_wait_seconds", **bz) >= 100
        dev = {"branch": "b1", "camera": "cam1", "device": "edge-1"}
        assert sample(m, "lobbywatch_device_up", **dev) == 1
        assert sample(m, "lobbywatch_device_last_message_timestamp_seconds", **dev) == (
            pytest.approx(now - 1, abs=1e-3)
        )
        assert sample(m, "lobbywatch_collector_messages_total", result="ok") == 3
        assert sample(m, "lobbywatch_alerts_active", severity="critical") == 1
        assert sample(m, "lobbywatch_collector_processing_seconds_count") >= 3
        assert not any(name.endswith("_created") for name, _ in m)

        # API state
        branches = api(c, "/api/v1/branches")
        assert [b["id"] for b in branches] == ["b1"]
        assert branches[0]["people_waiting"] == 6
        assert branches[0]["worst_alert_severity"] == "critical"
        detail = api(c, "/api/v1/branches/b1")
        w1 = next(z for z in detail["zone_states"] if z["zone"] == "W1")
        assert w1["estimate"]["predicted_wait_s"] == 420.0
        assert w1["estimate"]["method"] == "fallback"
        assert detail["devices"][0]["status"] == "online"
        active = api(c, "/api/v1/alerts?active=true")
        assert [(a["kind"], a["severity"], a["zone"]) for a in active] == [
            ("w1_wait", "critical", "W1")
        ]
        assert httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/branches/nope").status_code == 404
        assert "/api/v1/alerts/history" in api(c, "/openapi.json")["paths"]

        # Webhook: one signed "fire", routed by region (the south mail sink got nothing)
        fired = wait_until(lambda: events(webhook, "fire"))
        assert len(fired) == 1 and fired[0]["severity"] == "critical"
        req = next(r for r in webhook.requests if r.json()["event"] == "fire")
        assert verify(b"s3cret", req.body, req.headers[SIGNATURE_HEADER])
        assert not verify(b"wrong", req.body, req.headers[SIGNATURE_HEADER])
        assert req.headers["Idempotency-Key"] == fired[0]["event_id"]
        assert c.store.delivery_status(fired[0]["event_id"]) == {
            "hook": "delivered",
            "am": "delivered",
        }

        # Alertmanager holds the pushed alert
        am_alerts = wait_until(lambda: alertmanager.alerts(filter='alertname="LobbywatchW1Wait"'))
        labels = am_alerts[0]["labels"]
        assert (labels["branch"], labels["zone"], labels["severity"]) == ("b1", "W1", "critical")
        assert labels["region"] == "north"

        # The queue drains: resolve (resolve_after_s = 0 in the test policy)
        pub.send(zone_msg(4, now, people=0, arrivals=6, departures=6))
        resolved = wait_until(lambda: events(webhook, "resolve"))
        assert resolved[0]["alert_id"] == fired[0]["alert_id"]
        assert len(events(webhook, "fire")) == 1
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_zone_alert_state", kind="w1_wait", **bz) == 0
        assert sample(m, "lobbywatch_alerts_active", severity="critical") == 0
        assert api(c, "/api/v1/alerts?active=true") == []
        history = api(c, "/api/v1/alerts/history?branch=b1")
        assert [(h["alert_id"], h["state"]) for h in history] == [
            (fired[0]["alert_id"], "resolved")
        ]
        assert api(c, "/api/v1/alerts?active=false")[0]["state"] == "resolved"
        # Alertmanager no longer lists it as active (sent as resolved with its endsAt)
        wait_until(lambda: not alertmanager.alerts(filter='alertname="LobbywatchW1Wait"'))
        health = httpx.get(f"http://127.0.0.1:{c.http_port}/healthz").json()
        assert health["status"] == "ok" and health["mqtt_connected"] and health["database"]
        # every collector serves the lobby board, not only the demo
        board = httpx.get(f"http://127.0.0.1:{c.http_port}/board/")
        assert board.status_code == 200 and "Lobby board" in board.text
        assert "Content-Security-Policy" in board.headers
    finally:
        c.stop()
        pub.close()


def test_restart_keeps_open_alert_and_does_not_notify_twice(
    mosquitto: Any, tmp_path: Path, webhook: Any
) -> None:
    broker = mosquitto()
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
    )
    cfg["notify"]["retry_initial_s"] = 0.2
    pub = Publisher(broker.port)
    now = time.time()
    webhook.fail_first = 10**6  # the receiver is down during the first run
    c1 = start(cfg)
    try:
        pub.send(zone_msg(1, now - 2, people=8, arrivals=8))
        wait_until(lambda: len(webhook.requests) >= 2)  # tried and retried, never accepted
        alert_id = c1.state.alerts and next(iter(c1.state.alerts))
        assert alert_id
    finally:
        c1.stop()
    assert events(webhook) == []

    webhook.fail_first = 0
    c2 = start(cfg)
    try:
        # the pending "fire" goes out exactly once after the restart...
        fired = wait_until(lambda: events(webhook, "fire"))
        assert fired[0]["alert_id"] == alert_id
        # ...the retained queue state is reloaded and the restored alert is not re-fired
        bz = {"branch": "b1", "zone": "W1"}
        wait_until(
            lambda: (
                sample(scrape(c2.http_port), "lobbywatch_zone_predicted_wait_seconds", **bz)
                == 540.0
            )
        )
        assert (
            sample(scrape(c2.http_port), "lobbywatch_zone_alert_state", kind="w1_wait", **bz) == 2
        )
        time.sleep(1.5)  # give a wrong second "fire" time to show up
        assert len(events(webhook, "fire")) == 1
        assert [a["alert_id"] for a in api(c2, "/api/v1/alerts?active=true")] == [alert_id]
        pub.send(zone_msg(2, now, people=0, arrivals=8, departures=8))
        resolved = wait_until(lambda: events(webhook, "resolve"))
        assert [r["alert_id"] for r in resolved] == [alert_id]
        assert len({r["event_id"] for r in events(webhook)}) == len(events(webhook)) == 2
    finally:
        c2.stop()
        pub.close()


def test_flood_of_hostile_messages_is_counted_and_valid_state_survives(
    mosquitto: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    cfg = server_config(mqtt_port=broker.port, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    c = start(cfg)
    pub = Publisher(broker.port)
    now = time.time()
    good_topic = "lobbywatch/v1/b1/cam1/zones/W1"
    valid = zone_msg(1, now - 10, people=1).model_dump()
    hostile: list[tuple[str, bytes, str]] = []
    for i in range(150):
        hostile += [
            (good_topic, b"\x00\xff not json" + bytes([i]), "malformed"),
            (good_topic, b'{"v":1,"type":"zone"}', "malformed"),
            (good_topic, b"[" * 5000, "malformed"),
            (
                good_topic,
                json.dumps({**valid, "seq": 10_000 + i, "v": 2}, default=str).encode(),
                "wrong_version",
            ),
            (good_topic, b"x" * (MAX_PAYLOAD_BYTES + 1), "oversized"),
            (
                "lobbywatch/v1/b1/cam1/zones/OTHER",
                json.dumps({**valid, "seq": 20_000 + i}, default=str).encode(),
                "malformed",
            ),
            ("lobbywatch/v1/b1/cam1/zones/W1/extra", b"{}", "malformed"),
        ]
    expected: dict[str, int] = {}
    for _, _, reason in hostile:
        expected[reason] = expected.get(reason, 0) + 1
    # the valid stream (interleaved): people counts 1..20, plus one duplicate of each
    sender_done = threading.Event()

    def flood() -> None:
        for i, (topic, payload, _) in enumerate(hostile):
            pub.client.publish(topic, payload, qos=0)
            if i % 50 == 0:
                time.sleep(0.005)
        sender_done.set()

    t = threading.Thread(target=flood)
    t.start()
    try:
        for seq in range(1, 21):
            msg = zone_msg(seq, now - 10 + seq * 0.1, people=seq, arrivals=seq)
            pub.send(msg, retain=True)
            pub.send(msg, retain=False)  # at-least-once redelivery
        t.join()
        results = {}

        def all_counted() -> bool:
            m = scrape(c.http_port)
            for r in ("ok", "duplicate", "malformed", "oversized", "wrong_version"):
                results[r] = sample(m, "lobbywatch_collector_messages_total", result=r)
            return sum(results.values()) >= len(hostile) + 40

        wait_until(all_counted, 30)
        assert results["ok"] == 20
        assert results["duplicate"] == 20
        for reason, n in expected.items():
            assert results[reason] == n, reason
        detail = api(c, "/api/v1/branches/b1")
        assert [(z["zone"], z["people"]) for z in detail["zone_states"]] == [("W1", 20)]
        assert c._thread is not None and c._thread.is_alive()
        assert httpx.get(f"http://127.0.0.1:{c.http_port}/healthz").status_code == 200
    finally:
        c.stop()
        pub.close()


def test_device_last_will_takes_the_device_offline_and_raises_the_offline_alert(
    mosquitto: Any, tmp_path: Path, webhook: Any
) -> None:
    """An edge connection dies: the broker publishes its last will (device status,
    camera null, ``will: true``, composed at connect time) on
    ``{root}/v1/{branch}/_device/{device}/status``; the collector takes the device and
    its cameras down at once, keeps them down whatever late zone state arrives, fires
    ``device_offline`` and resolves it when the device says online again."""
    import paho.mqtt.client as mqtt

    broker = mosquitto()
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
        alerts={"offline_after_s": 1, "heartbeat_timeout_s": 600},
    )
    c = start(cfg)
    pub = Publisher(broker.port)
    now = time.time()
    will = device_status_msg(3, now - 3, "offline", will=True)  # seq before this connect
    edge = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="edge-1-test", protocol=mqtt.MQTTv5
    )
    will_topic, will_payload = raw(will)
    assert will_topic == "lobbywatch/v1/b1/_device/edge-1/status"
    edge.will_set(will_topic, will_payload, qos=1, retain=True)
    edge.connect("127.0.0.1", broker.port)
    edge.loop_start()
    try:
        for msg in (
            device_status_msg(4, now - 2, "online"),
            status_msg(5, now - 2, "online"),
            zone_msg(6, now - 1, people=2, arrivals=2),
        ):
            topic, payload = raw(msg)
            edge.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
        dev = {"branch": "b1", "camera": "cam1", "device": "edge-1"}
        node = {"branch": "b1", "device": "edge-1"}
        wait_until(lambda: sample(scrape(c.http_port), "lobbywatch_device_up", **dev) == 1)
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_device_online", **node) == 1
        assert sample(m, "lobbywatch_collector_messages_total", result="malformed") == 0
        assert sample(m, "lobbywatch_collector_messages_total", result="ok") == 3

        # the connection dies without DISCONNECT: the broker publishes the will
        edge.loop_stop()
        sock = edge.socket()
        assert sock is not None
        sock.close()
        wait_until(lambda: sample(scrape(c.http_port), "lobbywatch_device_up", **dev) == 0)
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_device_online", **node) == 0
        assert sample(m, "lobbywatch_collector_messages_total", result="ok") == 4
        detail = api(c, "/api/v1/branches/b1")
        assert detail["devices_up"] == 0
        assert [
            (d["camera"], d["status"], d["device_status"], d["up"]) for d in detail["devices"]
        ] == [("cam1", "online", "offline", False)]
        # a late retained zone state (an outbox replay) does not bring the device back
        pub.send(zone_msg(7, now - 0.5, people=3, arrivals=3))
        wait_until(
            lambda: (
                sample(
                    scrape(c.http_port),
                    "lobbywatch_zone_people",
                    kind="waiting",
                    branch="b1",
                    camera="cam1",
                    zone="W1",
                )
                == 3
            )
        )
        assert sample(scrape(c.http_port), "lobbywatch_device_up", **dev) == 0
        # offline for offline_after_s during business hours -> device_offline fires
        fired = wait_until(lambda: events(webhook, "fire"), 15)
        assert [(e["kind"], e["device"], e["severity"]) for e in fired] == [
            ("device_offline", "edge-1", "critical")
        ]
        # the box is back: its device status says online -> up again, alert resolved
        pub.send(device_status_msg(8, time.time(), "online"))
        wait_until(lambda: sample(scrape(c.http_port), "lobbywatch_device_up", **dev) == 1)
        resolved = wait_until(lambda: events(webhook, "resolve"), 15)
        assert resolved[0]["alert_id"] == fired[0]["alert_id"]
    finally:
        c.stop()
        pub.close()


def test_topic_payload_mismatch_over_the_broker_is_counted_with_its_reason(
    mosquitto: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    c = start(server_config(mqtt_port=broker.port, db_url=f"sqlite:///{tmp_path / 'c.db'}"))
    pub = Publisher(broker.port)
    now = time.time()
    try:
        bad = [
            # another camera's zone state on cam2's topic
            ("lobbywatch/v1/b1/cam2/zones/W1", zone_msg(1, now - 5, people=9)),
            # a device status published on another device's device topic
            ("lobbywatch/v1/b1/_device/edge-9/status", device_status_msg(2, now - 5)),
            # a camera status on the device topic, a device status on a camera topic
            ("lobbywatch/v1/b1/_device/edge-1/status", status_msg(3, now - 5)),
            ("lobbywatch/v1/b1/cam1/status", device_status_msg(4, now - 5)),
            # another branch's will
            (
                "lobbywatch/v1/b2/_device/edge-1/status",
                device_status_msg(5, now - 5, "offline", will=True),
            ),
        ]
        for topic, msg in bad:
            pub.send_raw(topic, msg.model_dump_json().encode())
        good = zone_msg(6, now - 1, people=1)
        pub.send(good)
        people = {"branch": "b1", "camera": "cam1", "zone": "W1", "kind": "waiting"}
        wait_until(lambda: sample(scrape(c.http_port), "lobbywatch_zone_people", **people) == 1)
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_collector_messages_total", result="malformed") == len(bad)
        assert sample(m, "lobbywatch_collector_messages_total", result="ok") == 1
        assert sample(
            m,
            "lobbywatch_collector_invalid_messages_total",
            result="malformed",
            reason="topic_mismatch",
        ) == len(bad)
        # nothing of the refused messages reached the state
        assert sample(m, "lobbywatch_device_online", branch="b1", device="edge-9") is None
        assert sample(m, "lobbywatch_device_online", branch="b2", device="edge-1") is None
        assert [d["camera"] for d in api(c, "/api/v1/branches/b1")["devices"]] == ["cam1"]
    finally:
        c.stop()
        pub.close()
