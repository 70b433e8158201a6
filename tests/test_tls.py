"""TLS end to end against a real Mosquitto, with certificates made at test time:
the edge agent publishes over TLS, a TLS subscriber and the collector (whose fast
receive path reads the SSL socket itself) receive it, TLS is really enforced, and
the production firmware_config/mosquitto/mosquitto.conf starts and serves TLS."""

from __future__ import annotations

import getpass
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, Broker, free_port, wait_for_port
from test_agent_support import device_config as agent_device_config
from test_agent_support import stub_factory, write_video
from test_server_support import sample, scrape, server_config, wait_until, zone_msg
from tls_support import (
    Pki,
    TlsPublisher,
    TlsSubscriber,
    connack_of,
    make_pki,
    missing_tools,
    password_file,
    secret_file,
    tls_listener_lines,
)

from lobbywatch.edge.agent import EdgeAgent
from lobbywatch.edge.config import DeviceConfig
from lobbywatch.edge.provision import provision_device
from lobbywatch.protocol import StatusMessage, ZoneMessage, parse_message, topic_for
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_tools() is not None, reason=f"TLS tests: {missing_tools()}"),
]

DEVICE_USER, DEVICE_PW = "edge-tls", "device-secret-1"
COLLECTOR_USER, COLLECTOR_PW = "collector", "collector-secret-2"
BRANCH = "b-tls"


@dataclass
class TlsBroker:
    broker: Broker
    pki: Pki
    tmp: Path

    @property
    def port(self) -> int:
        return self.broker.port


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _start_tls_broker(
    mosquitto: Any, pki: Pki, tmp_path: Path, *, require_certificate: bool = False
) -> TlsBroker:
    passwd = password_file(
        tmp_path / "passwd", {DEVICE_USER: DEVICE_PW, COLLECTOR_USER: COLLECTOR_PW}
    )
    # `user`: started as root, mosquitto would drop to the `mosquitto` user and could
    # not read the private tmp_path. `max_queued_messages` as in production: the
    # default (1000) makes the broker itself drop QoS 1 messages of a fast burst.
    # The cafile/certfile/keyfile lines apply to the fixture's listener, which comes
    # first in the file.
    broker = mosquitto(
        extra_config=f"user {getpass.getuser()}\nallow_anonymous false\n"
        f"password_file {passwd}\nmax_queued_messages 10000\n"
        + tls_listener_lines(pki, require_certificate=require_certificate)
    )
    return TlsBroker(broker, pki, tmp_path)


@pytest.fixture
def tls_broker(mosquitto: Any, pki: Pki, tmp_path: Path) -> TlsBroker:
    return _start_tls_broker(mosquitto, pki, tmp_path)


def _device_config(tb: TlsBroker, *, ca: Path | None = None, **tls: Any) -> DeviceConfig:
    video = write_video(tb.tmp / "v.avi")
    pw = secret_file(tb.tmp / "device.password", DEVICE_PW)
    return agent_device_config(
        video=video,
        port=tb.port,
        tmp=tb.tmp,
        branch=BRANCH,
        device=DEVICE_USER,
        mqtt={
            "tls": {"ca_file": str(ca or tb.pki.ca), **tls},
            "username": DEVICE_USER,
            "password_file": str(pw),
        },
    )


@contextmanager
def running_agent(cfg: DeviceConfig) -> Iterator[EdgeAgent]:
    agent = EdgeAgent(cfg, pipeline_factory=stub_factory())
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        assert agent.started.wait(10), "agent did not start"
        yield agent
    finally:
        agent.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "agent did not stop"


def _collector_cfg(
    tb: TlsBroker, *, ca: Path | None = None, host: str = "localhost", qos: int = 0
) -> dict[str, Any]:
    cfg = server_config(
        mqtt_port=tb.port,
        db_url=f"sqlite:///{tb.tmp / 'collector.db'}",
        branches=[{"id": BRANCH, "region": "north", "counters": 1, "mean_service_s": 60}],
    )
    cfg["mqtt"].update(
        host=host,  # the broker certificate names localhost as well as 127.0.0.1
        qos=qos,
        username=COLLECTOR_USER,
        password_file=str(secret_file(tb.tmp / "collector.password", COLLECTOR_PW)),
        tls={"ca_file": str(ca or tb.pki.ca)},
    )
    return cfg


@contextmanager
def running_collector(cfg: dict[str, Any], *, wait: bool = True) -> Iterator[Collector]:
    c = Collector(parse_server_config(cfg))
    c.start()
    try:
        assert c.mqtt is not None
        if wait:
            wait_until(c.mqtt.connected.is_set, 10)
        yield c
    finally:
        c.stop()


def _client_context(ca: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca) if ca else None)


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the collector prefers this variable over its password_file
    monkeypatch.delenv("LOBBYWATCH_MQTT_PASSWORD", raising=False)


# --------------------------------------------------------------------- 1. edge side


def test_edge_agent_publishes_zone_states_over_tls(tls_broker: TlsBroker) -> None:
    tb = tls_broker
    sub = TlsSubscriber(
        tb.port,
        f"lobbywatch/v1/{BRANCH}/#",
        ca=tb.pki.ca,
        username=COLLECTOR_USER,
        password=COLLECTOR_PW,
    )
    try:
        with running_agent(_device_config(tb)) as agent:
            assert agent.publisher is not None
            assert agent.publisher.wait_connected(10), agent.publisher.last_error
            # the publisher's socket really is TLS, verified against our CA
            msgs = sub.wait_for(
                lambda ms: (
                    {
                        (m.data["camera"], m.data.get("zone"))
                        for m in ms
                        if m.payload and m.data["type"] == "zone"
                    }
                    >= {("cam1", "W1"), ("cam1", "cash-1")}
                ),
                timeout=15,
            )
            assert agent.publisher.connects == 1 and agent.publisher.last_error is None
    finally:
        sub.close()
    zones = 0
    for m in msgs:
        if not m.payload:
            continue
        parsed = parse_message(m.payload)
        assert topic_for(parsed) == m.topic
        assert parsed.branch == BRANCH and parsed.device == DEVICE_USER
        if isinstance(parsed, ZoneMessage):
            zones += 1
            assert parsed.camera == "cam1" and parsed.zone in {"W1", "cash-1"}
        else:
            assert isinstance(parsed, StatusMessage)
    assert zones >= 2


def test_edge_agent_with_client_certificate_on_mutual_tls_broker(
    mosquitto: Any, pki: Pki, tmp_path: Path
) -> None:
    """``require_certificate true``: the agent's cert_file/key_file are really presented."""
    tb = _start_tls_broker(mosquitto, pki, tmp_path, require_certificate=True)
    # without a client certificate the broker ends the handshake
    rc = connack_of(
        tb.port, tls=_client_context(pki.ca), username=COLLECTOR_USER, password=COLLECTOR_PW
    )
    assert isinstance(rc, (ssl.SSLError, OSError)) or rc is None, rc
    cfg = _device_config(tb, cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    with running_agent(cfg) as agent:
        assert agent.publisher is not None
        assert agent.publisher.wait_connected(10), agent.publisher.last_error
        wait_until(lambda: agent.publisher is not None and agent.publisher.published_total >= 3)


# ------------------------------------------------------------------ 2. collector side


def test_collector_ingests_agent_states_over_tls(tls_broker: TlsBroker) -> None:
    tb = tls_broker
    with running_collector(_collector_cfg(tb)) as c, running_agent(_device_config(tb)):
        assert c.http_port is not None
        w1 = {"branch": BRANCH, "camera": "cam1", "zone": "W1", "kind": "waiting"}
        m = wait_until(
            lambda: (
                (s := scrape(c.http_port))
                and sample(s, "lobbywatch_zone_people", **w1) is not None
                and sample(s, "lobbywatch_collector_messages_total", result="ok")
                and s
            ),
            timeout=15,
        )
        assert sample(m, "lobbywatch_zone_people", **w1) in (0, 1, 2)  # stub: n % 3
        dev = {"branch": BRANCH, "camera": "cam1", "device": DEVICE_USER}
        assert sample(m, "lobbywatch_device_up", **dev) == 1
        assert not sample(m, "lobbywatch_collector_messages_total", result="malformed")
        detail = httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/branches/{BRANCH}").json()
        assert {z["zone"] for z in detail["zone_states"]} >= {"W1", "cash-1"}
        health = httpx.get(f"http://127.0.0.1:{c.http_port}/healthz").json()
        assert health["mqtt_connected"] is True


@pytest.mark.parametrize("qos", [0, 1])
def test_collector_fast_receive_path_over_tls_loses_nothing(
    tls_broker: TlsBroker, qos: int
) -> None:
    """A burst far larger than one TLS record (16 KiB) and one read: MQTT packets are
    split across records and reads; every one must arrive exactly once (QoS 1: the
    fast path also writes the PUBACKs to the SSL socket)."""
    tb = tls_broker
    n = 3000
    now = time.time()
    items = []
    for i in range(n):
        zone = f"Z{i % 7}"
        msg = zone_msg(
            i + 1,
            now - (n - i) * 0.001,
            people=i % 5,
            branch=BRANCH,
            zone=zone,
            device="edge-burst",
            arrivals=i,
            dwells=[1.0 + (i % 9)] * (i % 40),  # payload sizes vary, up to ~1 KiB
        )
        items.append((topic_for(msg), msg.model_dump_json().encode()))
    # one big message (500 dwells, the protocol's cap): half a TLS record on its own
    big = zone_msg(
        n + 1,
        now,
        people=3,
        branch=BRANCH,
        zone="BIG",
        device="edge-burst",
        dwells=[1000 + i + 0.123456789012 for i in range(500)],
    )
    big_payload = big.model_dump_json().encode()
    assert len(big_payload) > 8_000
    items.append((topic_for(big), big_payload))

    with running_collector(_collector_cfg(tb, qos=qos, host="127.0.0.1")) as c:
        pub = TlsPublisher(tb.port, ca=tb.pki.ca, username=COLLECTOR_USER, password=COLLECTOR_PW)
        try:
            pub.burst(items, qos=1)
            m = wait_until(
                lambda: (
                    (s := scrape(c.http_port))
                    and (sample(s, "lobbywatch_collector_messages_total", result="ok") or 0)
                    >= n + 1
                    and s
                ),
                timeout=15,
            )
        finally:
            pub.close()
        time.sleep(0.3)  # nothing more should trickle in (no re-deliveries)
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_collector_messages_total", result="ok") == n + 1
        for bad in ("malformed", "oversized", "wrong_version"):
            assert not sample(m, "lobbywatch_collector_messages_total", result=bad), bad
        assert (
            sample(
                m,
                "lobbywatch_zone_people",
                branch=BRANCH,
                camera="cam1",
                zone="BIG",
                kind="waiting",
            )
            == 3
        )
        assert c.mqtt is not None and c.mqtt.connects == 1  # no reconnect on the way


# ------------------------------------------------------------------- 3. enforcement


def test_tls_is_enforced(tls_broker: TlsBroker) -> None:
    tb = tls_broker
    creds = {"username": COLLECTOR_USER, "password": COLLECTOR_PW}

    # control: the right CA and credentials get a successful CONNACK
    ok = connack_of(tb.port, tls=_client_context(tb.pki.ca), **creds)
    assert ok is not None and not isinstance(ok, Exception) and not ok.is_failure, ok
    # ...by host name too: the certificate's SAN names localhost
    ok = connack_of(tb.port, tls=_client_context(tb.pki.ca), host="localhost", **creds)
    assert ok is not None and not isinstance(ok, Exception) and not ok.is_failure, ok
    # ...and the broker really speaks TLS with the certificate we made
    ctx = _client_context(tb.pki.ca)
    with (
        socket.create_connection(("127.0.0.1", tb.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    # a client trusting another CA (or the system CAs) rejects the broker certificate
    for untrusted in (tb.pki.rogue_ca, None):
        err = connack_of(tb.port, tls=_client_context(untrusted), **creds)
        assert isinstance(err, ssl.SSLCertVerificationError), err
        assert "certificate verify failed" in str(err)

    # plain MQTT to the TLS port: the TCP connection opens, but no CONNACK ever comes
    rc = connack_of(tb.port, tls=None, timeout=2, **creds)
    assert rc is None or isinstance(rc, Exception), f"plain TCP client got CONNACK {rc}"
    with socket.create_connection(("127.0.0.1", tb.port), timeout=3) as s:
        # MQTT 5 CONNECT, clean start, keepalive 10, empty client id, no properties
        s.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 0x02, 0, 10, 0, 0, 0]))
        try:
            reply = s.recv(64)
        except (TimeoutError, ConnectionResetError):
            reply = b""
        assert not reply.startswith(b"\x20"), f"plain CONNECT answered with CONNACK {reply!r}"


def test_product_clients_fail_closed_on_untrusted_broker(tls_broker: TlsBroker) -> None:
    """The edge publisher and the collector, given a CA that did not sign the broker
    certificate, never connect and say why."""
    tb = tls_broker
    cfg = _device_config(tb, ca=tb.pki.rogue_ca)
    with (
        running_collector(_collector_cfg(tb, ca=tb.pki.rogue_ca), wait=False) as c,
        running_agent(cfg) as agent,
    ):
        assert agent.publisher is not None
        assert not agent.publisher.wait_connected(2)
        error = agent.publisher.last_error or ""
        assert "certificate verify failed" in error.lower() or "CERTIFICATE_VERIFY" in error
        assert c.mqtt is not None and not c.mqtt.connected.is_set()
        assert c.mqtt.connects == 0


# ------------------------------------------------------- 4. the production broker config


def _production_conf(tmp: Path, pki: Pki, tls_port: int, plain_port: int) -> Path:
    """firmware_config/mosquitto/mosquitto.conf with only paths, ports and logging
    changed: certificates, password/ACL files and persistence point into ``tmp``."""
    text = (REPO / "firmware_config" / "mosquitto" / "mosquitto.conf").read_text()
    out = tmp / "provisioned"
    dev = provision_device(branch=BRANCH, device=DEVICE_USER, cameras=["cam1"], out=out)
    passwd = tmp / "prod-passwd"
    passwd.write_text(
        dev.passwd_line.read_text()
        + password_file(tmp / "collector-line", {COLLECTOR_USER: COLLECTOR_PW}).read_text()
    )
    acl = tmp / "prod-acl"
    acl.write_text(
        (REPO / "firmware_config" / "mosquitto" / "acl.template").read_text()
        + "\n"
        + dev.acl_block.read_text()
    )
    persist = tmp / "persist"
    persist.mkdir()
    subs = {
        r"^listener 8883$": f"listener {tls_port}",
        r"^listener 1883 127\.0\.0\.1$": f"listener {plain_port} 127.0.0.1",
        r"^certfile .*$": f"certfile {pki.server_cert}",
        r"^keyfile .*$": f"keyfile {pki.server_key}",
        r"^cafile .*$": f"cafile {pki.ca}",
        r"^password_file .*$": f"password_file {passwd}",
        r"^acl_file .*$": f"acl_file {acl}",
        r"^persistence_location .*$": f"persistence_location {persist}/",
        r"^log_dest syslog$": "log_dest stderr",
    }
    for pattern, repl in subs.items():
        text, count = re.subn(pattern, repl, text, flags=re.M)
        assert count == 1, f"production config changed: {pattern!r} matched {count} times"
    conf = tmp / "production.conf"
    conf.write_text(f"user {getpass.getuser()}\n" + text)
    (tmp / "device-password").write_text(dev.password_file.read_text())
    return conf


def test_production_mosquitto_conf_starts_and_serves_tls(pki: Pki, tmp_path: Path) -> None:
    tls_port, plain_port = free_port(), free_port()
    conf = _production_conf(tmp_path, pki, tls_port, plain_port)
    broker = Broker(port=tls_port, config_path=conf)
    broker.start()
    try:
        wait_for_port(plain_port)
        assert broker.process is not None and broker.process.poll() is None
        device_pw = (tmp_path / "device-password").read_text().strip()

        # the provisioned device over TLS: connects, publishes its own topic
        ok = connack_of(
            tls_port, tls=_client_context(pki.ca), username=DEVICE_USER, password=device_pw
        )
        assert ok is not None and not isinstance(ok, Exception) and not ok.is_failure, ok
        # ...and the agent itself, end to end, to a TLS collector subscriber
        sub = TlsSubscriber(
            tls_port,
            f"lobbywatch/v1/{BRANCH}/#",
            ca=pki.ca,
            username=COLLECTOR_USER,
            password=COLLECTOR_PW,
        )
        try:
            video = write_video(tmp_path / "v.avi")
            pw = secret_file(tmp_path / "agent.password", device_pw)
            cfg = agent_device_config(
                video=video,
                port=tls_port,
                tmp=tmp_path,
                branch=BRANCH,
                device=DEVICE_USER,
                mqtt={
                    "tls": {"ca_file": str(pki.ca)},
                    "username": DEVICE_USER,
                    "password_file": str(pw),
                },
            )
            with running_agent(cfg):
                msgs = sub.wait_for(
                    lambda ms: any(m.payload and m.data["type"] == "zone" for m in ms), 15
                )
            for m in msgs:
                if m.payload:
                    assert topic_for(parse_message(m.payload)) == m.topic
        finally:
            sub.close()

        # the TLS listener enforces TLS; `tls_version tlsv1.2` still lets 1.2 through
        rc = connack_of(tls_port, tls=None, username=DEVICE_USER, password=device_pw, timeout=2)
        assert rc is None or isinstance(rc, Exception), rc
        assert isinstance(
            connack_of(tls_port, tls=_client_context(pki.rogue_ca)), ssl.SSLCertVerificationError
        )
        ctx12 = _client_context(pki.ca)
        ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
        ok = connack_of(tls_port, tls=ctx12, username=DEVICE_USER, password=device_pw)
        assert ok is not None and not isinstance(ok, Exception) and not ok.is_failure, ok
        # no anonymous access, on either listener
        for port, tls in ((tls_port, _client_context(pki.ca)), (plain_port, None)):
            rc = connack_of(port, tls=tls)
            assert rc is not None and not isinstance(rc, Exception) and rc.is_failure, rc
        # the loopback listener is plain MQTT, for a collector on the broker host
        ok = connack_of(plain_port, tls=None, username=COLLECTOR_USER, password=COLLECTOR_PW)
        assert ok is not None and not isinstance(ok, Exception) and not ok.is_failure, ok
    finally:
        broker.stop()
