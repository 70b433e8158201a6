"""Helpers for the TLS tests (no tests here): a throw-away PKI made with the ``openssl``
CLI at test time, Mosquitto TLS listener lines, password files and a TLS subscriber.

Nothing here is committed or downloaded: every key and certificate lives in the
test's ``tmp_path`` and is valid for two days.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from lobbywatch.edge.provision import hash_password_line

#: EC P-256 keys: generated in milliseconds, unlike RSA
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def missing_tools() -> str | None:
    """Why the TLS tests cannot run here, or None."""
    for tool in ("openssl", "mosquitto", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed"
    return None


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass(frozen=True)
class Pki:
    """A CA, a broker certificate signed by it and a client certificate signed by it;
    plus an unrelated ("rogue") CA that signed nothing the broker uses."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", *_KEY, "-keyout", key.name, "-out", cert.name, "-days", "2",
        "-subj", f"/CN=lobbywatch test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _leaf(
    folder: Path, name: str, cn: str, ca: tuple[Path, Path], extensions: list[str]
) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}{s}" for s in (".crt", ".key", ".csr", ".ext"))
    ext.write_text(
        "\n".join(
            [
                "basicConstraints=critical,CA:FALSE",
                "subjectKeyIdentifier=hash",
                "authorityKeyIdentifier=keyid,issuer",
                *extensions,
            ]
        )
        + "\n"
    )
    _openssl("req", "-new", *_KEY, "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={cn}",
             cwd=folder)  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", cert.name, "-days", "2", "-extfile", ext.name,
        cwd=folder,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "ca")
    rogue, _ = _ca(folder, "rogue-ca")
    server = _leaf(
        folder,
        "broker",
        "127.0.0.1",
        ca,
        [
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=serverAuth",
        ],
    )
    client = _leaf(
        folder,
        "client",
        "edge-tls",
        ca,
        ["keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
    )
    return Pki(ca[0], server[0], server[1], client[0], client[1], rogue)


def tls_listener_lines(pki: Pki, *, require_certificate: bool = False) -> str:
    """Lines that turn the preceding ``listener`` into a TLS listener."""
    lines = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    if require_certificate:
        lines += "require_certificate true\n"
    return lines


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file (hashed with ``mosquitto_passwd``)."""
    lines = []
    for user, password in users.items():
        line, hashed = hash_password_line(user, password)
        assert hashed, "mosquitto_passwd is needed to hash broker passwords"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def secret_file(path: Path, secret: str) -> Path:
    """A 0600 file holding one password (what the product's ``password_file`` reads)."""
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def paho_client(client_id: str = "") -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )


@dataclass
class Got:
    topic: str
    payload: bytes
    retain: bool

    @property
    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.payload))


class TlsSubscriber:
    """A plain paho MQTT 5 subscriber over TLS (verifying the broker against ``ca``)."""

    def __init__(
        self,
        port: int,
        topic: str,
        *,
        ca: Path,
        username: str,
        password: str,
        host: str = "127.0.0.1",
    ) -> None:
        self.messages: list[Got] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho_client(f"tls-sub-{time.time_ns()}")
        self.client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: (
            None if rc.is_failure else c.subscribe(topic, qos=1)
        )
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(5), "TLS subscriber could not connect and subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Got(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Got]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Got]], bool], timeout: float) -> list[Got]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.snapshot()
            if predicate(msgs):
                return msgs
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout}s; got {len(self.snapshot())}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TlsPublisher:
    """A paho MQTT 5 publisher over TLS that can fire a burst without waiting per message."""

    def __init__(self, port: int, *, ca: Path, username: str, password: str) -> None:
        self.client = paho_client(f"tls-pub-{time.time_ns()}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        self.client.username_pw_set(username, password)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or connected.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert connected.wait(5), "TLS publisher could not connect"

    def burst(self, items: list[tuple[str, bytes]], qos: int = 1, retain: bool = False) -> None:
        infos = [self.client.publish(t, p, qos=qos, retain=retain) for t, p in items]
        for info in infos:
            info.wait_for_publish(timeout=20)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connack_of(
    port: int,
    *,
    tls: ssl.SSLContext | None,
    username: str | None = None,
    password: str | None = None,
    host: str = "127.0.0.1",
    timeout: float = 3.0,
) -> Any:
    """Try one MQTT 5 connection: the CONNACK reason code, or the exception raised, or
    ``None`` when no CONNACK came within ``timeout``."""
    client = paho_client(f"probe-{time.time_ns()}")
    if tls is not None:
        client.tls_set_context(tls)
    if username:
        client.username_pw_set(username, password)
    got: list[Any] = []
    done = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        got.append(rc)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *a: done.set()
    try:
        client.connect(host, port, keepalive=5)
    except (OSError, ssl.SSLError) as exc:
        return exc
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None
