"""MQTT transport of the collector: the broker connection and the hand-off queue.

* :class:`MqttIngest` is a paho-mqtt 2.x MQTT 5 client whose network thread only
  splits PUBLISH packets and enqueues ``(topic, payload, received_at)`` per socket
  read; parsing and state updates happen in the collector's processing thread
  (``server/ingest.py``, :class:`~lobbywatch.server.ingest.Ingestor`), in batches, so
  the broker connection never stalls on our work.
* :class:`MessageQueue` is the bounded hand-off between the two threads.

Subscriptions: ``$share/<group>/<root>/v1/#`` (several collectors split the load)
plus, for ``bootstrap_s`` after every connect, a plain ``<root>/v1/#``: shared
subscriptions receive no retained messages, and the retained per-zone/per-camera
messages are the current state we need after a (re)start. A live message seen
through both subscriptions is de-duplicated by ``(device, seq)`` in the ingest;
non-retained messages arriving through the bootstrap subscription only are dropped
at once (another replica owns them).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from lobbywatch.protocol import PROTOCOL_VERSION
from lobbywatch.server.config import MqttSettings

log = logging.getLogger(__name__)

#: subscription identifiers (MQTT 5) telling which subscription delivered a message
_SUB_SHARED = 1
_SUB_BOOTSTRAP = 2


Item = tuple[str, bytes, float]


class MessageQueue:
    """Bounded hand-off from paho's network thread to the processing thread.

    ``deque.extend``/``popleft`` are atomic under the GIL, so the network thread
    pays one ``extend`` and one ``Event`` check per socket read (not per message)
    and never blocks.
    """

    def __init__(self, maxlen: int) -> None:
        self._dq: deque[Item] = deque()
        self._max = maxlen
        self._event = threading.Event()
        self.dropped = 0

    def put(self, item: Item) -> None:
        self.put_many([item])

    def put_many(self, items: list[Item]) -> None:
        room = self._max - len(self._dq)
        if room < len(items):
            # overload: shed the newest rather than grow without bound
            self.dropped += len(items) - max(room, 0)
            items = items[: max(room, 0)]
            if not items:
                return
        self._dq.extend(items)
        if not self._event.is_set():
            self._event.set()

    def get_batch(self, max_items: int, timeout: float) -> list[Item]:
        if not self._dq:
            self._event.wait(timeout)
        self._event.clear()
        dq = self._dq
        n = min(len(dq), max_items)
        return [dq.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._dq)


#: bytes asked of the socket per ``recv``; up to ``_READS_PER_WAKEUP`` reads per wake-up
_READ_SIZE = 256 * 1024
_READS_PER_WAKEUP = 16
#: queued messages above which the network thread pauses before each read, and how long
_BUSY_QUEUE = 2_000
_BUSY_PAUSE_S = 0.002
_PUBLISH = 0x30


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """MQTT variable byte integer at ``pos``: ``(value, next position)``; IndexError if cut."""
    value = 0
    mult = 1
    for _ in range(4):
        b = buf[pos]
        pos += 1
        value += (b & 127) * mult
        if b < 128:
            return value, pos
        mult *= 128
    raise ValueError("variable byte integer longer than 4 bytes")


def subscription_ids(props: bytes) -> list[int]:
    """Subscription identifiers (property 0x0B) in the properties of an MQTT 5 PUBLISH."""
    ids: list[int] = []
    pos, end = 0, len(props)
    while pos < end:
        ident = props[pos]
        pos += 1
        if ident == 0x0B:  # subscription identifier: variable byte integer
            value, pos = _varint(props, pos)
            ids.append(value)
        elif ident == 0x01:  # payload format indicator: byte
            pos += 1
        elif ident == 0x02:  # message expiry interval: four-byte integer
            pos += 4
        elif ident == 0x23:  # topic alias: two-byte integer
            pos += 2
        elif ident in (0x03, 0x08, 0x09):  # content type, response topic, correlation data
            pos += 2 + (props[pos] << 8 | props[pos + 1])
        elif ident == 0x26:  # user property: string pair
            pos += 2 + (props[pos] << 8 | props[pos + 1])
            pos += 2 + (props[pos] << 8 | props[pos + 1])
        else:
            raise ValueError(f"unexpected PUBLISH property 0x{ident:02x}")
    return ids


def _shared_only(props: bytes) -> bool:
    """Keep a non-retained message during the bootstrap only if the shared subscription
    delivered it (live traffic through the plain one may belong to another replica)."""
    try:
        return _SUB_SHARED in subscription_ids(props)
    except (IndexError, ValueError):
        return True  # unreadable properties: let validation and de-duplication decide


def _fast_client_class() -> type:
    """A paho ``Client`` whose receive path parses PUBLISH packets itself, in bulk.

    paho 2.x reads each packet with several tiny ``recv`` calls and then builds an
    ``MQTTMessage`` with fully decoded MQTT 5 ``Properties``, checks callbacks under
    locks and logs it: at 20k msgs/s that alone saturates a core. Here ``loop_read``
    reads up to 4 MiB per wake-up, splits the bytes into packets, and for every QoS 0/1
    PUBLISH only slices topic and payload (the subscription identifiers are decoded
    only while the retained-state bootstrap needs them), sends the PUBACK for QoS 1,
    and hands the whole read to ``lw_sink`` at once, stamped with one receive time.
    Every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2 flows...) goes to
    paho's own ``_packet_handle``. This overrides private paho methods
    (``_create_socket``, ``loop_read``, ``_in_packet``), so paho is pinned to <3 in
    pyproject.toml; tests exercise it against the real broker.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.client import MQTTErrorCode

    def _fresh_in_packet() -> Any:  # paho's private _InPacket TypedDict
        return {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }

    class FastClient(mqtt.Client):
        #: ``(items, received_at)`` receiver; set by :class:`MqttIngest`
        lw_sink: Callable[[list[Item]], None] | None = None
        lw_clock: Callable[[], float] = time.time
        #: returns the subscription filter for non-retained messages while the
        #: bootstrap subscription is active (``None``: deliver everything)
        lw_keep: Callable[[bytes], bool] | None = None
        #: true while the processing thread has plenty of work queued: the network
        #: thread then lets bytes accumulate for a moment before reading, so it takes the
        #: GIL a few hundred times a second instead of once per small read
        lw_busy: Callable[[], bool] | None = None
        _lw_buf: bytes = b""

        def _create_socket(self) -> Any:
            self._lw_buf = b""  # a new connection is a new byte stream
            return super()._create_socket()

        def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            busy = self.lw_busy
            if busy is not None and busy():
                time.sleep(_BUSY_PAUSE_S)
            chunks: list[bytes] = []
            for _ in range(_READS_PER_WAKEUP):
                try:
                    data = self._sock_recv(_READ_SIZE)
                except BlockingIOError:
                    break
                except ConnectionError:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                except OSError as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                if not data:
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                chunks.append(data)
            if not chunks:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
            if self._lw_buf:
                chunks.insert(0, self._lw_buf)
            buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            out: list[Item] = []
            try:
                rc = self._split(buf, out)
            finally:
                if out and self.lw_sink is not None:
                    self.lw_sink(out)
            if rc:
                return self._loop_rc_handle(rc)
            return MQTTErrorCode.MQTT_ERR_SUCCESS

        def _split(self, buf: bytes, out: list[Item]) -> MQTTErrorCode:
            """Handle every complete packet in ``buf``; keep the incomplete tail."""
            n = len(buf)
            pos = 0
            received = self.lw_clock()
            keep = self.lw_keep
            fast = self._protocol == mqtt.MQTTv5
            append = out.append
            try:
                while pos + 2 <= n:
                    cmd = buf[pos]
                    try:
                        length, start = _varint(buf, pos + 1)
                    except IndexError:
                        break  # remaining length not complete yet
                    end = start + length
                    if end > n:
                        break
                    qos = (cmd >> 1) & 3
                    if (cmd & 0xF0) == _PUBLISH and qos < 2 and fast:
                        p = start + 2 + (buf[start] << 8 | buf[start + 1])
                        topic = buf[start + 2 : p]
                        if qos:
                            mid = buf[p] << 8 | buf[p + 1]
                            p += 2
                        plen, p = _varint(buf, p)
                        if keep is None or cmd & 1 or keep(buf[p : p + plen]):
                            try:
                                name = topic.decode()
                            except UnicodeDecodeError:
                                name = topic.decode(errors="replace")  # counted as malformed
                            append((name, buf[p + plen : end], received))
                        if qos:
                            rc = self._send_puback(mid)
                            if rc:
                                return rc
                    else:
                        self._in_packet = _fresh_in_packet()
                        self._in_packet["command"] = cmd
                        self._in_packet["packet"] = bytearray(buf[start:end])
                        self._in_packet["remaining_length"] = length
                        try:
                            rc = self._packet_handle()
                        except mqtt.MalformedPacket as exc:
                            self._easy_log(mqtt.MQTT_LOG_DEBUG, "malformed packet: %s", exc)
                            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                        finally:
                            self._in_packet = _fresh_in_packet()
                        if rc:
                            return rc
                    pos = end
            except (IndexError, ValueError) as exc:
                self._easy_log(mqtt.MQTT_LOG_ERR, "malformed packet from the broker: %s", exc)
                self._lw_buf = b""
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            self._lw_buf = buf[pos:]
            return MQTTErrorCode.MQTT_ERR_SUCCESS

    return FastClient


class MqttIngest:
    """paho-mqtt MQTT 5 client feeding a :class:`MessageQueue`."""

    def __init__(
        self,
        settings: MqttSettings,
        queue: MessageQueue,
        branches: list[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.queue = queue
        self.branches = branches or []
        #: the collector's clock stamps receive times (a simulation may run it fast)
        self.clock = clock
        self.connected = threading.Event()
        self.connects = 0
        self._bootstrap_active = False
        self._bootstrap_timer: threading.Timer | None = None
        self._lock = threading.Lock()
        client_id = f"{settings.client_id}-{uuid.uuid4().hex[:8]}"
        client = _fast_client_class()(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password())
        if settings.tls is not None:
            tls = settings.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(tls.insecure)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # QoS 2 only: the rest takes the fast path
        client.lw_sink = self.queue.put_many
        client.lw_busy = lambda: len(self.queue) >= _BUSY_QUEUE
        client.lw_clock = clock
        self.client = client

    # -- filters
    def _filters(self) -> list[str]:
        root = self.settings.root
        base = f"{root}/v{PROTOCOL_VERSION}"
        if self.settings.subscribe == "configured_branches" and self.branches:
            return [f"{base}/{b}/#" for b in self.branches]
        return [f"{base}/#"]

    def start(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # clean session: no queue piles up while we are down
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=True,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        if self._bootstrap_timer:
            self._bootstrap_timer.cancel()
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # -- callbacks (paho's network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("MQTT connect refused: %s", rc)
            return
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.connects += 1
        qos = self.settings.qos
        group = self.settings.shared_group
        filters = self._filters()
        if group:
            p = Properties(PacketTypes.SUBSCRIBE)
            p.SubscriptionIdentifier = _SUB_SHARED
            client.subscribe(
                [(f"$share/{group}/{f}", SubscribeOptions(qos=qos)) for f in filters],
                properties=p,
            )
        if not group or self.settings.bootstrap_s > 0:
            p = Properties(PacketTypes.SUBSCRIBE)
            p.SubscriptionIdentifier = _SUB_BOOTSTRAP
            with self._lock:
                self._bootstrap_active = bool(group)
                client.lw_keep = _shared_only if group else None
            client.subscribe([(f, SubscribeOptions(qos=qos)) for f in filters], properties=p)
            if group:
                if self._bootstrap_timer:
                    self._bootstrap_timer.cancel()
                self._bootstrap_timer = threading.Timer(
                    self.settings.bootstrap_s, self._end_bootstrap, args=(filters,)
                )
                self._bootstrap_timer.daemon = True
                self._bootstrap_timer.start()
        log.info("MQTT connected to %s:%s", self.settings.host, self.settings.port)
        self.connected.set()

    def _end_bootstrap(self, filters: list[str]) -> None:
        with self._lock:
            self._bootstrap_active = False
            self.client.lw_keep = None
        self.client.unsubscribe(filters)
        log.info("retained-state bootstrap subscription ended")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected.clear()
        if rc == 0:  # our own disconnect() at shutdown
            log.info("MQTT disconnected")
        else:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", rc)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            self._enqueue(message)
        except Exception:
            log.exception("dropping undecodable MQTT message")

    def _enqueue(self, message: Any) -> None:
        if self._bootstrap_active and not message.retain:
            # Only the retained snapshot is wanted from the plain subscription; live
            # traffic arrives through the shared one (possibly at another replica).
            ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
            if _SUB_SHARED not in ids:
                return
        self.queue.put((message.topic, message.payload, self.clock()))
