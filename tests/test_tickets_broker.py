"""Ticket-system events end to end: a real Mosquitto with the production ACL scheme (a
ticket system writes only its own branch's ticket topic, an edge device cannot write
there), the real collector over MQTT, and what its API and /metrics show."""

from __future__ import annotations

import getpass
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from test_server_support import raw, sample, scrape, server_config, ticket_msg, wait_until, zone_msg

from lobbywatch.edge.provision import (
    hash_password_line,
    provision_device,
    provision_ticket_source,
)
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed"
    ),
]

REPO = Path(__file__).resolve().parents[1]


class Client:
    """An MQTT 5 client that reports each PUBACK's reason code."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.acks: dict[int, mqtt.ReasonCode] = {}
        self.connack: mqtt.ReasonCode | None = None
        self._ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{time.time_ns()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5)
        assert self.connack is not None and not self.connack.is_failure, self.connack

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = rc
        self._ready.set()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        wait_until(lambda: info.mid in self.acks, 5)
        return self.acks[info.mid]

    def send(self, msg: Any, retain: bool = False) -> mqtt.ReasonCode:
        return self.publish(*raw(msg), retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_ticket_system_through_broker_acl_to_api_and_metrics(
    tmp_path: Path, mosquitto: Any
) -> None:
    out = tmp_path / "provisioned"
    edge = provision_device(branch="b1", device="edge-1", cameras=["cam1"], out=out)
    # `lobbywatch device provision-tickets`: one account per ticket system
    t1 = provision_ticket_source(branch="b1", source="qms-1", out=out)
    t2 = provision_ticket_source(branch="b2", source="qms-2", out=out, user="qms-b2")
    assert t1.user == "tickets.b1.qms-1"
    assert t1.acl_block.read_text().splitlines()[1:] == [
        "user tickets.b1.qms-1",
        "topic write lobbywatch/v1/b1/_tickets/qms-1/events",
    ]
    line, hashed = hash_password_line("collector", "collector-pw")
    assert hashed
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(p.passwd_line.read_text() for p in (edge, t1, t2)) + line + "\n")
    template = (REPO / "firmware_config" / "mosquitto" / "acl.template").read_text()
    acl = tmp_path / "acl"
    acl.write_text(template + "\n" + "\n".join(p.acl_block.read_text() for p in (edge, t1, t2)))
    broker = mosquitto(
        extra_config=f"user {getpass.getuser()}\nallow_anonymous false\n"
        f"password_file {passwd}\nacl_file {acl}\n"
    )
    pw_file = tmp_path / "collector.password"
    pw_file.write_text("collector-pw\n")
    pw_file.chmod(0o600)
    cfg = server_config(mqtt_port=broker.port, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    cfg["mqtt"].update(username="collector", password_file=str(pw_file))
    cfg["branches"][0].update(priority_share=0.1, zones={"W1": {}})
    cfg["branches"].append({"id": "b2", "region": "north"})
    cfg["tickets"] = {"min_share_tickets": 4, "share_prior_tickets": 0}
    collector = Collector(parse_server_config(cfg))
    collector.start()
    dev = qms = qms2 = None
    try:
        assert collector.mqtt is not None
        wait_until(collector.mqtt.connected.is_set, 10)
        dev = Client(broker.port, "edge-1", edge.password_file.read_text().strip())
        qms = Client(broker.port, t1.user, t1.password_file.read_text().strip())
        qms2 = Client(broker.port, "qms-b2", t2.password_file.read_text().strip())
        now = time.time()
        t0 = now - 600
        assert not dev.send(zone_msg(1, now - 1, people=4, arrivals=4), retain=True).is_failure

        tickets = [
            ticket_msg(1, t0, "issued", "A001"),
            ticket_msg(2, t0 + 10, "issued", "P001", "priority"),
            ticket_msg(3, t0 + 20, "issued", "A002"),
            ticket_msg(4, t0 + 30, "issued", "P002", "priority"),
            ticket_msg(5, t0 + 100, "called", "P001", "priority", counter="C1"),
            ticket_msg(6, t0 + 300, "called", "A001", counter="C1"),
            ticket_msg(7, t0 + 420, "called", "A002", counter="C2"),
        ]
        for m in tickets:
            rc = qms.send(m)
            assert not rc.is_failure, rc
        # refused by the broker (135 Not authorized): another branch's or source's ticket
        # topic, and any device topic; an edge device cannot write ticket topics
        b2_ticket = ticket_msg(8, t0 + 430, "issued", "A003", branch="b2", source="qms-2")
        p_b2 = b2_ticket.model_dump_json().encode()
        for client, topic in [
            (qms, "lobbywatch/v1/b2/_tickets/qms-2/events"),
            (qms, "lobbywatch/v1/b1/_tickets/qms-9/events"),
            (qms, "lobbywatch/v1/b1/cam1/zones/W1"),
            (qms, "lobbywatch/v1/b1/_device/edge-1/status"),
            (dev, "lobbywatch/v1/b1/_tickets/qms-1/events"),
        ]:
            rc = client.publish(topic, p_b2)
            assert rc.is_failure and rc.value == 135, (topic, rc)
        # b2's own ticket system may write b2's topic; its zone W1 is unknown there
        assert not qms2.send(b2_ticket).is_failure

        def w1() -> dict[str, Any] | None:
            r = httpx.get(f"http://127.0.0.1:{collector.http_port}/api/v1/branches/b1", timeout=5)
            r.raise_for_status()
            zones = {z["zone"]: z for z in r.json()["zone_states"]}
            est = zones.get("W1", {}).get("estimate")
            if est and est.get("ticket_waits_ordinary") == 2:
                return est
            return None

        est = wait_until(w1, 10)
        # 4 issued, 2 priority, no prior weight: 0.5 learned (configured 0.1)
        assert (est["priority_share"], est["priority_share_method"]) == (0.5, "tickets")
        assert est["priority_share_tickets"] == 4
        # ordinary waits 300 and 400 s: p50 350, p90 390; priority 90 s; P002 open
        assert est["ticket_wait_ordinary_p50_s"] == pytest.approx(350.0)
        assert est["ticket_wait_ordinary_p90_s"] == pytest.approx(390.0)
        assert est["ticket_wait_priority_p50_s"] == pytest.approx(90.0)
        assert (est["ticket_waits_priority"], est["tickets_open_priority"]) == (1, 1)
        assert est["tickets_open_ordinary"] == 0
        assert est["calibration_source"] in ("camera", "tickets")

        m = scrape(collector.http_port)
        bz = {"branch": "b1", "zone": "W1"}
        assert sample(m, "lobbywatch_zone_priority_share", method="tickets", **bz) == 0.5
        assert (
            sample(
                m,
                "lobbywatch_zone_ticket_realised_wait_seconds",
                quantile="0.5",
                **{"class": "ordinary"},
                **bz,
            )
            == 350.0
        )
        assert (
            sample(
                m, "lobbywatch_zone_tickets_total", event="issued", **{"class": "priority"}, **bz
            )
            == 2
        )
        assert sample(m, "lobbywatch_zone_tickets_open", **{"class": "priority"}, **bz) == 1
        # the b2 event reached the collector and was refused: W1 is no zone of b2
        assert (
            sample(
                m,
                "lobbywatch_collector_invalid_messages_total",
                result="rejected",
                reason="unknown_zone",
            )
            == 1
        )
    finally:
        for c in (dev, qms, qms2):
            if c is not None:
                c.close()
        collector.stop()
