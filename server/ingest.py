"""MQTT ingest: validate, de-duplicate and apply edge messages to the collector state.

Two halves:

* :class:`Ingestor` is the pure core. ``handle(topic, payload, received_at)``
  classifies one raw message (ok, duplicate, malformed, oversized, wrong_version,
  stale, rejected) and applies a valid one to :class:`CollectorState`. It does no
  I/O, so it is fuzzed directly (tests/test_server_ingest_fuzz.py) and must never
  raise, whatever the bytes.
  Topics are split by ``lobbywatch.protocol.parse_topic`` (zone, camera status and
  device status topics); payloads must belong on their topic (``protocol.topic_for``).
  Device-level statuses drive device liveness; a last will takes the device (and so
  its cameras) offline at once, outside the seq window.
* :class:`MqttIngest` is the network edge: a paho-mqtt 2.x MQTT 5 client whose
  network thread only splits PUBLISH packets and enqueues ``(topic, payload)`` per
  socket read; parsing and state updates happen in the collector's processing
  thread, in batches, so the broker connection never stalls on our work.

Subscriptions: ``$share/<group>/<root>/v1/#`` (several collectors split the load)
plus, for ``bootstrap_s`` after every connect, a plain ``<root>/v1/#``: shared
subscriptions receive no retained messages, and the retained per-zone/per-camera
messages are the current state we need after a (re)start. A live message seen
through both subscriptions is de-duplicated by ``(device, seq)``; non-retained
messages arriving through the bootstrap subscription only are dropped at once
(another replica owns them).
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Message,
    StatusMessage,
    TopicParts,
    ZoneMessage,
    parse_topic,
)
from lobbywatch.server.config import IngestSettings, MqttSettings
from lobbywatch.server.flows import FlowDelta, observe
from lobbywatch.server.state import (
    CollectorState,
    DeviceKey,
    DeviceRecord,
    NodeKey,
    NodeRecord,
    ZoneKey,
    ZoneRecord,
)

log = logging.getLogger(__name__)

#: subscription identifiers (MQTT 5) telling which subscription delivered a message
_SUB_SHARED = 1
_SUB_BOOTSTRAP = 2


# ----------------------------------------------------------------- small helpers


class RateLimitedLog:
    """Logs at most one line per reason per ``interval_s``; counts what it suppressed.

    A flood of garbage must not become a flood of log lines (disk, log shipping).
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, message: str, now: float) -> None:
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        extra = self._suppressed.pop(reason, 0)
        self._last[reason] = now
        suffix = f" ({extra} similar suppressed)" if extra else ""
        self._log.warning("%s: %s%s", reason, message[:300], suffix)


class _SeqWindow:
    """Recent sequence numbers of one device: ``seq -> ts`` for the last ``window``.

    Storing ts as well tells a real duplicate (same seq, same ts) from a device
    that restarted and counts from 0 again (same seq, different ts).
    """

    __slots__ = ("max_seq", "seen")

    def __init__(self) -> None:
        self.max_seq = -1
        self.seen: dict[int, float] = {}

    def admit(self, seq: int, ts: float, window: int) -> bool:
        """True if ``(seq, ts)`` is new; records it."""
        prev = self.seen.get(seq)
        if prev is not None:
            if prev == ts:
                return False
            self._reset()  # same seq, other content: the device restarted
        elif seq <= self.max_seq - window:
            # Too old for the window: a very late replay or a restart that went past
            # the window. Only a restart produces a newer timestamp than we hold.
            newest = max(self.seen.values(), default=0.0)
            if ts <= newest:
                return False
            self._reset()
        self.seen[seq] = ts
        if seq > self.max_seq:
            self.max_seq = seq
            if len(self.seen) > 2 * window:
                floor = seq - window
                self.seen = {s: t for s, t in self.seen.items() if s > floor}
        return True

    def _reset(self) -> None:
        self.max_seq = -1
        self.seen = {}


@dataclass(slots=True)
class Outcome:
    """What :meth:`Ingestor.handle` did with one message."""

    result: str
    msg: ZoneMessage | StatusMessage | None = None
    #: zone key of a valid zone message (also for stale ones: the estimator wants
    #: their completed dwells)
    zone_key: ZoneKey | None = None
    #: the camera record (zone and camera status messages)
    device_key: DeviceKey | None = None
    #: the device (any valid message)
    node_key: NodeKey | None = None
    #: why a message was not applied (one of ``state.REASONS``), None when applied
    reason: str | None = None
    #: an applied zone message: the increases of its cumulative flows since the
    #: zone's previous message (``server.flows``)
    flows: FlowDelta | None = None


_VERSION_LEVEL = re.compile(r"^v[0-9]+$")
_OK = "ok"


def classify_topic(topic: str, root: str) -> TopicParts | tuple[str, str, str]:
    """The topic's parts (``protocol.parse_topic``, the single source of truth), or
    ``(result, reason, why)`` for a topic the collector must not accept."""
    parts = parse_topic(topic)
    if parts is not None:
        if parts.root != root:
            return "malformed", "topic", f"topic root is not {root!r}"
        return parts
    levels = topic.split("/")
    if len(levels) > 1 and levels[0] == root and levels[1] != f"v{PROTOCOL_VERSION}":
        if _VERSION_LEVEL.match(levels[1]):
            return "wrong_version", "wrong_version", f"topic version {levels[1][:8]}"
    return "malformed", "topic", "not a v1 protocol topic"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(msg: ZoneMessage | StatusMessage) -> float:
    ts = msg.ts
    if ts.tzinfo is None:  # protocol says UTC; a naive stamp is read as UTC
        ts = ts.replace(tzinfo=UTC)
    # same value as ts.timestamp() (CPython computes it this way), half the cost
    return (ts - _EPOCH).total_seconds()


def _validation_failure(exc: ValidationError) -> tuple[str, str, str]:
    """``(result, reason, why)`` of a payload that failed validation."""
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors:
        loc = err.get("loc", ())
        etype = err.get("type")
        if etype == "json_invalid" or etype == "json_type":
            return "malformed", "json", f"not JSON: {err.get('msg', '')}"
        if loc and loc[-1] == "v" and etype == "literal_error":
            return "wrong_version", "wrong_version", "payload version is not 1"
    if not errors:
        return "malformed", "schema", "validation failed"
    where = ".".join(str(x) for x in errors[0]["loc"])
    return "malformed", "schema", f"{len(errors)} validation errors ({where}: {errors[0]['msg']})"


# The protocol's own discriminated union (``protocol.Message``), validated straight
# from the payload bytes: the same rules as ``protocol.parse_message`` without its
# envelope copy. The topic then tells which type must have arrived.
_VALIDATE = TypeAdapter(Message).validate_json


# -------------------------------------------------------------------- pure core


class Ingestor:
    """Classifies raw messages and applies valid ones to the state. Never raises."""

    #: topics cached (topic -> parts); a flood of distinct topics only clears the cache
    TOPIC_CACHE_MAX = 200_000

    def __init__(
        self,
        state: CollectorState,
        settings: IngestSettings,
        root: str,
        known_branches: dict[str, str] | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.root = root
        #: branch -> region from the config; unknown branches follow settings.unknown_branches
        self.known = dict(known_branches or {})
        self._windows: dict[str, _SeqWindow] = {}
        self._topics: dict[str, TopicParts | tuple[str, str, str]] = {}
        #: topic -> (device, node key, camera key, zone key) of its last valid message
        self._keys: dict[str, tuple[str, NodeKey, DeviceKey | None, ZoneKey | None]] = {}
        self.log = RateLimitedLog(log)

    def handle(self, topic: str, payload: bytes, received_at: float) -> Outcome:
        try:
            out = self._handle(topic, payload, received_at)
        except Exception as exc:
            self.log.warning("internal", f"{type(exc).__name__} on {topic!r}: {exc}", received_at)
            out = Outcome("malformed", reason="internal")
        results = self.state.results
        results[out.result] += 1
        if out.reason is not None:
            key = (out.result, out.reason)
            invalid = self.state.invalid
            invalid[key] = invalid.get(key, 0) + 1
        return out

    def _reject(self, result: str, reason: str, why: str, topic: str, now: float) -> Outcome:
        self.log.warning(result, f"{why} (topic {topic[:120]!r})", now)
        return Outcome(result, reason=reason)

    def _topic(self, topic: str) -> TopicParts | tuple[str, str, str]:
        parts = self._topics.get(topic)
        if parts is None:
            if len(self._topics) >= self.TOPIC_CACHE_MAX:
                self._topics.clear()
                self._keys.clear()
            parts = self._topics[topic] = classify_topic(topic, self.root)
        return parts

    def _handle(self, topic: str, payload: bytes, now: float) -> Outcome:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._reject("oversized", "oversized", f"{len(payload)} bytes", topic, now)
        parts = self._topic(topic)
        if type(parts) is tuple:
            return self._reject(*parts, topic=topic, now=now)
        assert isinstance(parts, TopicParts)
        kind = parts.kind
        msg: ZoneMessage | StatusMessage
        try:
            msg = _VALIDATE(payload)
        except ValidationError as exc:
            return self._reject(*_validation_failure(exc), topic=topic, now=now)
        except (ValueError, RecursionError, UnicodeError) as exc:
            return self._reject("malformed", "json", str(exc), topic, now)

        # The topic is what the broker ACL authorises a device to publish to; the
        # payload must agree with it or a device could write another branch's state.
        why = self._mismatch(parts, msg)
        if why is not None:
            return self._reject("malformed", "topic_mismatch", why, topic, now)

        ts = _epoch(msg)
        if ts > now + self.settings.max_clock_skew_s:
            # A stamp from the future would pin the zone's "newest" state until that time.
            return self._reject(
                "malformed", "future_timestamp", "timestamp in the future", topic, now
            )

        branch = msg.branch
        if branch not in self.known and self.settings.unknown_branches == "reject":
            return self._reject(
                "rejected", "unknown_branch", f"unknown branch {branch!r}", topic, now
            )

        if kind == "device_status" and msg.will:  # type: ignore[union-attr]
            # The broker publishes the will later, with the seq of the last message
            # before that connect: it is applied as it arrives, never de-duplicated
            # by seq (only the very same will twice is a duplicate).
            return self._apply_will(msg, ts, topic, now)  # type: ignore[arg-type]

        window = self._windows.get(msg.device)
        if window is None:
            if len(self._windows) >= self.settings.max_zones:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
            window = self._windows[msg.device] = _SeqWindow()
        if not window.admit(msg.seq, ts, self.settings.dedup_window):
            return Outcome("duplicate")

        state = self.state
        keys = self._keys.get(topic)
        if keys is None or keys[0] != msg.device:
            # the keys follow from the topic and the device (checked equal above)
            keys = self._keys[topic] = (
                msg.device,
                NodeKey(branch, msg.device),
                DeviceKey(branch, msg.camera, msg.device) if msg.camera is not None else None,
                ZoneKey(branch, msg.zone) if kind == "zone" else None,  # type: ignore[union-attr]
            )
        nkey = keys[1]
        node = state.nodes.get(nkey)
        if node is None:
            node = self._new_node(nkey)
            if node is None:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
        if ts >= node.last_ts:
            node.last_ts = ts
            node.received_at = now

        if kind == "device_status":
            assert isinstance(msg, StatusMessage)
            if ts < node.status_ts:
                return Outcome("stale", msg, None, None, nkey)
            if msg.state == "offline":
                if node.status != "offline" or node.offline_since is None:
                    node.offline_since = min(ts, now)  # published by the agent at shutdown
            else:
                node.offline_since = None
            node.status = msg.state
            node.status_ts = ts
            node.will = False
            if msg.cameras is not None:
                node.cameras = tuple(msg.cameras)
            node.heartbeat_s = msg.heartbeat_s
            node.model = msg.model
            node.software = msg.software
            return Outcome(_OK, msg, None, None, nkey)

        camera = msg.camera
        assert camera is not None
        dkey = keys[2]
        assert dkey is not None
        dev = state.devices.get(dkey)
        if dev is None:
            if len(state.devices) >= self.settings.max_zones:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
            dev = DeviceRecord(branch, camera, msg.device, node=node)
            state.add_device(dkey, dev)
        if ts >= dev.last_ts:
            dev.last_ts = ts
            dev.last_seq = msg.seq
            dev.received_at = now

        if kind == "status":
            assert isinstance(msg, StatusMessage)
            if ts < dev.status_ts:
                return Outcome("stale", msg, None, dkey, nkey)
            dev.status = msg.state
            dev.status_ts = ts
            health = msg.camera_health
            dev.camera_up = health.up if health else None
            dev.fps = health.fps if health else None
            dev.error = health.error if health else None
            dev.model = msg.model
            dev.software = msg.software
            return Outcome(_OK, msg, None, dkey, nkey)

        assert isinstance(msg, ZoneMessage)
        zkey = keys[3]
        assert zkey is not None
        rec = state.zones.get(zkey)
        if rec is not None:
            if ts < rec.ts or (ts == rec.ts and msg.seq <= rec.seq and rec.device == msg.device):
                # older than what we hold (same device: by (ts, seq); another
                # device/camera with an older observation: keep the newest)
                return Outcome("stale", msg, zkey, dkey, nkey)
            rec.camera = camera
            rec.kind = msg.kind
            rec.blueprint = msg.blueprint
            rec.device = msg.device
            rec.people = msg.people
            rec.raw_count = msg.raw_count
            rec.dwell_p50_s = msg.dwell_p50_s
            rec.dwell_p90_s = msg.dwell_p90_s
            rec.dwell_max_s = msg.dwell_max_s
            rec.arrivals_total = msg.arrivals_total
            rec.departures_total = msg.departures_total
            rec.device_wait_threshold_s = msg.wait_threshold_s
            rec.ts = ts
            rec.seq = msg.seq
            rec.received_at = now
            return Outcome(_OK, msg, zkey, dkey, nkey, flows=observe(rec.flows, msg, ts))
        if len(state.zones) >= self.settings.max_zones:
            return self._reject("rejected", "limit", "zone limit reached", topic, now)
        state.ensure_branch(branch, self.known.get(branch, "unknown"))
        state.add_zone(
            zkey,
            ZoneRecord(
                branch=branch,
                camera=camera,
                zone=msg.zone,
                kind=msg.kind,
                blueprint=msg.blueprint,
                device=msg.device,
                people=msg.people,
                raw_count=msg.raw_count,
                dwell_p50_s=msg.dwell_p50_s,
                dwell_p90_s=msg.dwell_p90_s,
                dwell_max_s=msg.dwell_max_s,
                arrivals_total=msg.arrivals_total,
                departures_total=msg.departures_total,
                device_wait_threshold_s=msg.wait_threshold_s,
                ts=ts,
                seq=msg.seq,
                received_at=now,
            ),
        )
        # the zone's first message: its totals are the baseline of the next increase
        return Outcome(_OK, msg, zkey, dkey, nkey, flows=observe(state.zones[zkey].flows, msg, ts))

    @staticmethod
    def _mismatch(parts: TopicParts, msg: ZoneMessage | StatusMessage) -> str | None:
        """Why the payload does not belong on its topic (``protocol.topic_for``), or None."""
        if (msg.type == "zone") != (parts.kind == "zone"):
            return f"payload type {msg.type!r} does not belong on a {parts.kind} topic"
        if msg.branch != parts.branch:
            return f"payload branch {msg.branch!r} differs from the topic's"
        if parts.kind == "zone":
            assert isinstance(msg, ZoneMessage)
            if msg.camera != parts.camera:
                return f"payload camera {msg.camera!r} differs from the topic's"
            if msg.zone != parts.zone:
                return f"payload zone {msg.zone!r} differs from the topic's"
            return None
        assert isinstance(msg, StatusMessage)
        if parts.kind == "status":
            if msg.camera is None:
                return "device status (camera null) on a camera status topic"
            if msg.camera != parts.camera:
                return f"payload camera {msg.camera!r} differs from the topic's"
            if msg.will:
                return "a last will belongs on the device status topic"
            return None
        if msg.camera is not None:
            return "camera status on a device status topic"
        if msg.device != parts.device:
            return f"payload device {msg.device!r} differs from the topic's"
        return None

    def _new_node(self, nkey: NodeKey) -> NodeRecord | None:
        state = self.state
        if len(state.nodes) >= self.settings.max_zones:
            return None
        node = state.nodes[nkey] = NodeRecord(nkey.branch, nkey.device)
        state.ensure_branch(nkey.branch, self.known.get(nkey.branch, "unknown"))
        return node

    def _apply_will(self, msg: StatusMessage, ts: float, topic: str, now: float) -> Outcome:
        nkey = NodeKey(msg.branch, msg.device)
        node = self.state.nodes.get(nkey)
        if node is None:
            node = self._new_node(nkey)
            if node is None:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
        key = (msg.seq, ts)
        if node.will_key == key:
            return Outcome("duplicate")
        node.will_key = key
        if node.status != "offline" or node.offline_since is None:
            node.offline_since = now  # the will's ts is its connect time; it arrives now
        node.status = "offline"
        node.will = True
        node.status_ts = max(node.status_ts, ts)
        node.last_ts = max(node.last_ts, ts)  # its connect time: alive then
        if msg.cameras is not None:
            node.cameras = tuple(msg.cameras)
        return Outcome(_OK, msg, None, None, nkey)


def is_waiting(msg: ZoneMessage) -> bool:
    return msg.kind == ZoneKind.WAITING


# ----------------------------------------------------------------- network edge


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
