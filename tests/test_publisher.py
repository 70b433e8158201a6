"""The MQTT publisher against a real Mosquitto: PUBACK-driven outbox, expiry, reconnects."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from conftest import free_port
from test_agent_support import Collector

from lobbywatch.edge.buffer import Draft, Outbox
from lobbywatch.edge.config import MqttConfig
from lobbywatch.edge.metrics import EdgeMetrics
from lobbywatch.edge.publisher import MqttPublisher, Will


class Relay:
    """A TCP relay between client and broker that the test can cut (a network fault,
    not a broker stand-in: the broker on the other side is real Mosquitto)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def close(self) -> None:
        self._stop = True
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept(); close alone
        except OSError:  # would leave the listener accepting
            pass
        self.server.close()
        time.sleep(0.1)
        self.cut()


def _cfg(port: int, **kw: object) -> MqttConfig:
    return MqttConfig.model_validate(
        {"port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5, "keepalive_s": 5, **kw}
    )


def test_outbox_drained_only_on_puback_with_expiry(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    box = Outbox(tmp_path / "o.sqlite", 100)
    metrics = EdgeMetrics()
    for i in range(5):
        box.put(lambda seq, i=i: Draft(f"lobbywatch/v1/b/c/zones/z{i}", b'{"n":%d}' % i, True, 120))
    collector = Collector(broker.port, "lobbywatch/#")
    pub = MqttPublisher(_cfg(broker.port), box, client_id="pub-test", metrics=metrics)
    pub.start()
    try:
        msgs = collector.wait_for(lambda ms: len(ms) >= 5, timeout=5)
        deadline = time.monotonic() + 3
        while box.depth and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.depth == 0 and pub.published_total == 5
        assert metrics.value("lobbywatch_edge_messages_published_total") == 5
        assert [m.payload for m in msgs] == [b'{"n":%d}' % i for i in range(5)]
    finally:
        pub.stop(1)
        collector.close()
    # retained with an expiry: a late subscriber still gets them now
    late = Collector(broker.port, "lobbywatch/#")
    try:
        got = late.wait_for(lambda ms: len(ms) >= 5, timeout=5)
        assert all(m.retain for m in got)
    finally:
        late.close()


def test_short_reconnect_does_not_fire_the_will(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    relay = Relay(broker.port)
    box = Outbox(tmp_path / "o.sqlite", 100)
    connects: list[float] = []
    pub = MqttPublisher(
        _cfg(relay.port, will_delay_s=3),
        box,
        client_id="flap-test",
        will=lambda: Will("lobbywatch/v1/b/_device/d/status", b'{"will":true}'),
        on_connected=lambda: connects.append(time.monotonic()),
    )
    collector = Collector(broker.port, "lobbywatch/#")
    pub.start()
    try:
        assert pub.wait_connected(5)
        relay.cut()  # network blip
        deadline = time.monotonic() + 5
        while len(connects) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(connects) >= 2, "did not reconnect"
        time.sleep(4.0)  # longer than the will delay
        assert not any(b"will" in m.payload for m in collector.snapshot()), "will flapped"
        relay.close()  # now the device is really gone: the will must come
        collector.wait_for(lambda ms: any(b"will" in m.payload for m in ms), timeout=8)
    finally:
        pub.stop(0.5)
        collector.close()


def test_unreachable_broker_keeps_everything_and_backs_off(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", 100)
    box.put(lambda seq: Draft("lobbywatch/v1/b/c/status", b"{}", True, None))
    pub = MqttPublisher(_cfg(free_port()), box, client_id="nobody")
    pub.start()
    time.sleep(1.0)
    assert not pub.connected and pub.last_error and "cannot reach broker" in pub.last_error
    pub.stop(0.5)
    assert box.depth == 1
