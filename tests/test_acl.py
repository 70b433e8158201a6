"""Broker security with provisioned credentials: a device writes only its own topics,
reads nothing, and wrong or missing credentials are refused (real Mosquitto)."""

from __future__ import annotations

import getpass
import shutil
import stat
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from test_agent_support import Collector

from lobbywatch.edge.config import load_device_config
from lobbywatch.edge.provision import hash_password_line, provision_device

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed"
)


class Device:
    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.acks: dict[int, mqtt.ReasonCode] = {}
        self.received: list[str] = []
        self.connack: mqtt.ReasonCode | None = None
        self.done = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}",
            protocol=mqtt.MQTTv5,
        )
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.done.wait(5)

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = rc
        self.done.set()

    def publish(self, topic: str) -> mqtt.ReasonCode:
        info = self.client.publish(topic, b'{"x":1}', qos=1)
        info.wait_for_publish(5)
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def secured(tmp_path: Path, mosquitto):
    out = tmp_path / "provisioned"
    a = provision_device(branch="jkt-042", device="edge-a", cameras=["lobby", "counters"], out=out)
    b = provision_device(branch="sby-007", device="edge-b", cameras=["lobby"], out=out)
    line, hashed = hash_password_line("collector", "collector-pw")
    assert hashed and not line.endswith("collector-pw")
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(p.passwd_line.read_text() for p in (a, b)) + line + "\n")
    template = (
        Path(__file__).resolve().parents[1] / "firmware_config" / "mosquitto" / "acl.template"
    )
    acl = tmp_path / "acl"
    acl.write_text(template.read_text() + "\n" + a.acl_block.read_text() + b.acl_block.read_text())
    # run as the test's own user: started as root, mosquitto would switch to the
    # `mosquitto` user and could not read files in the private tmp_path
    broker = mosquitto(
        extra_config=f"user {getpass.getuser()}\nallow_anonymous false\n"
        f"password_file {passwd}\nacl_file {acl}\n"
    )
    return broker, a, b


def test_provisioned_files(secured) -> None:
    _, a, _ = secured
    for private in (a.password_file, a.passwd_line):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "edge-a:$7$" in a.passwd_line.read_text()  # hashed, not the password
    cfg = load_device_config(a.config, check_files=False)
    assert cfg.mqtt.username == "edge-a" and cfg.branch_id == "jkt-042"
    assert [c.id for c in cfg.cameras] == ["lobby", "counters"]
    assert cfg.mqtt.password() == a.password_file.read_text().strip()


def test_device_publishes_only_its_own_topics(secured) -> None:
    broker, a, b = secured
    collector = Collector(
        broker.port, "lobbywatch/v1/#", username="collector", password="collector-pw"
    )
    dev_a = Device(broker.port, "edge-a", a.password_file.read_text().strip())
    dev_b = Device(broker.port, "edge-b", b.password_file.read_text().strip())
    try:
        assert dev_a.connack is not None and not dev_a.connack.is_failure
        dev_a.client.subscribe("#", qos=1)  # a device reads nothing
        own = [
            "lobbywatch/v1/jkt-042/lobby/zones/W1",
            "lobbywatch/v1/jkt-042/counters/status",
            "lobbywatch/v1/jkt-042/_device/edge-a/status",
        ]
        for topic in own:
            assert not dev_a.publish(topic).is_failure
        foreign = [
            "lobbywatch/v1/sby-007/lobby/zones/W1",  # another branch
            "lobbywatch/v1/jkt-042/atm/zones/W1",  # a camera it does not have
            "lobbywatch/v1/sby-007/_device/edge-b/status",  # spoofing a device's status
            "lobbywatch/v1/jkt-042/_device/edge-b/status",
            "other/topic",
        ]
        for topic in foreign:
            rc = dev_a.publish(topic)
            assert rc.is_failure and rc.value == 135, (topic, rc)  # "Not authorized"
        assert not dev_b.publish("lobbywatch/v1/sby-007/lobby/zones/W1").is_failure
        msgs = collector.wait_for(lambda ms: len(ms) >= 4, timeout=5)
        import time

        time.sleep(0.5)
        assert sorted(m.topic for m in collector.snapshot()) == sorted(
            [*own, "lobbywatch/v1/sby-007/lobby/zones/W1"]
        ), msgs
        assert dev_a.received == []
    finally:
        for c in (dev_a, dev_b):
            c.close()
        collector.close()


def test_wrong_or_missing_credentials_rejected(secured) -> None:
    broker, _, _ = secured
    for user, password in [
        ("edge-a", "wrong"),
        ("edge-a", None),
        (None, None),
        ("edge-zz", "whatever"),
    ]:
        dev = Device(broker.port, user, password)
        try:
            assert dev.connack is not None and dev.connack.is_failure, (user, password)
            assert dev.connack.value in (134, 135)  # bad user name or password / not authorized
        finally:
            dev.close()
