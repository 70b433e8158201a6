"""MQTT ingest: validate, de-duplicate and apply edge messages to the collector state.

Two halves:

* :class:`Ingestor` is the pure core. ``handle(topic, payload, received_at)``
  classifies one raw message (ok, duplicate, malformed, oversized, wrong_version,
  stale, rejected) and applies a valid one to :class:`CollectorState`. It does no
  I/O, so it is fuzzed directly (tests/test_server_ingest_fuzz.py) and must never
  raise, whatever the bytes.
* :class:`MqttIngest` is the network edge: a paho-mqtt 2.x MQTT 5 client whose
  network thread only timestamps and enqueues ``(topic, payload)``; parsing and
  state updates happen in the collector's processing thread, in batches, so the
  broker connection never stalls on our work.

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
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    StatusMessage,
    ZoneMessage,
    parse_message,
)
from lobbywatch.server.config import IngestSettings, MqttSettings
from lobbywatch.server.state import (
    CollectorState,
    DeviceKey,
    DeviceRecord,
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`Ingestor.handle` did with one message."""

    result: str
    msg: ZoneMessage | StatusMessage | None = None
    #: zone key of a valid zone message (also for stale ones: the estimator wants
    #: their completed dwells)
    zone_key: ZoneKey | None = None
    device_key: DeviceKey | None = None


def parse_topic(topic: str, root: str) -> tuple[str, str, str, str | None] | None:
    """``(version, branch, camera, zone-or-None)`` of a protocol topic, else None."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != root:
        return None
    version, branch, camera = parts[1], parts[2], parts[3]
    if len(parts) == 5 and parts[4] == "status":
        return version, branch, camera, None
    if len(parts) == 6 and parts[4] == "zones":
        return version, branch, camera, parts[5]
    return None


def _epoch(msg: ZoneMessage | StatusMessage) -> float:
    ts = msg.ts
    if ts.tzinfo is None:  # protocol says UTC; a naive stamp is read as UTC
        from datetime import UTC

        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def _is_version_error(exc: ValidationError) -> bool:
    for err in exc.errors():
        loc = err.get("loc", ())
        if loc and loc[-1] == "v" and err.get("type") == "literal_error":
            return True
    return False


# -------------------------------------------------------------------- pure core


class Ingestor:
    """Classifies raw messages and applies valid ones to the state. Never raises."""

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
        self._version = f"v{PROTOCOL_VERSION}"
        #: branch -> region from the config; unknown branches follow settings.unknown_branches
        self.known = dict(known_branches or {})
        self._windows: dict[str, _SeqWindow] = {}
        self.log = RateLimitedLog(log)

    def handle(self, topic: str, payload: bytes, received_at: float) -> Outcome:
        try:
            out = self._handle(topic, payload, received_at)
        except Exception as exc:
            self.log.warning("internal", f"{type(exc).__name__} on {topic!r}: {exc}", received_at)
            out = Outcome("malformed")
        self.state.results[out.result] = self.state.results.get(out.result, 0) + 1
        return out

    def _reject(self, result: str, why: str, topic: str, now: float) -> Outcome:
        self.log.warning(result, f"{why} (topic {topic[:120]!r})", now)
        return Outcome(result)

    def _handle(self, topic: str, payload: bytes, now: float) -> Outcome:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._reject("oversized", f"{len(payload)} bytes", topic, now)
        parts = parse_topic(topic, self.root)
        if parts is None:
            return self._reject("malformed", "not a protocol topic", topic, now)
        version, t_branch, t_camera, t_zone = parts
        if version != self._version:
            return self._reject("wrong_version", f"topic version {version}", topic, now)
        try:
            msg = parse_message(payload)
        except ValidationError as exc:
            if _is_version_error(exc):
                return self._reject("wrong_version", "payload version", topic, now)
            return self._reject("malformed", f"{exc.error_count()} validation errors", topic, now)
        except (ValueError, RecursionError, UnicodeError) as exc:
            return self._reject("malformed", str(exc), topic, now)

        # The topic is what the broker ACL authorises a device to publish to; the
        # payload must agree with it or a device could write another branch's state.
        if msg.branch != t_branch or msg.camera != t_camera:
            return self._reject("malformed", "payload branch/camera differ from topic", topic, now)
        if isinstance(msg, ZoneMessage):
            if msg.zone != t_zone:
                return self._reject("malformed", "payload zone differs from topic", topic, now)
        elif t_zone is not None:
            return self._reject("malformed", "status payload on a zone topic", topic, now)

        ts = _epoch(msg)
        if ts > now + self.settings.max_clock_skew_s:
            # A stamp from the future would pin the zone's "newest" state until that time.
            return self._reject("malformed", "timestamp in the future", topic, now)

        if msg.branch not in self.known and self.settings.unknown_branches == "reject":
            return self._reject("rejected", f"unknown branch {msg.branch!r}", topic, now)

        window = self._windows.get(msg.device)
        if window is None:
            if len(self._windows) >= self.settings.max_zones:
                return self._reject("rejected", "device limit reached", topic, now)
            window = self._windows[msg.device] = _SeqWindow()
        if not window.admit(msg.seq, ts, self.settings.dedup_window):
            return Outcome("duplicate")

        state = self.state
        dkey = DeviceKey(msg.branch, msg.camera, msg.device)
        dev = state.devices.get(dkey)
        if dev is None:
            if len(state.devices) >= self.settings.max_zones:
                return self._reject("rejected", "device limit reached", topic, now)
            dev = state.devices[dkey] = DeviceRecord(msg.branch, msg.camera, msg.device)
            state.ensure_branch(msg.branch, self.known.get(msg.branch, "unknown"))
        if ts >= dev.last_ts:
            dev.last_ts = ts
            dev.last_seq = msg.seq
            dev.received_at = now

        if isinstance(msg, StatusMessage):
            if ts < dev.status_ts:
                return Outcome("stale", msg, None, dkey)
            dev.status = msg.state
            dev.status_ts = ts
            health = msg.camera_health
            dev.camera_up = health.up if health else None
            dev.fps = health.fps if health else None
            dev.error = health.error if health else None
            dev.model = msg.model
            dev.software = msg.software
            return Outcome("ok", msg, None, dkey)

        zkey = ZoneKey(msg.branch, msg.zone)
        rec = state.zones.get(zkey)
        if rec is not None and (ts, msg.seq) <= (rec.ts, rec.seq) and rec.device == msg.device:
            return Outcome("stale", msg, zkey, dkey)
        if rec is not None and ts < rec.ts:
            # Another device/camera with an older observation: keep the newest.
            return Outcome("stale", msg, zkey, dkey)
        if rec is None:
            if len(state.zones) >= self.settings.max_zones:
                return self._reject("rejected", "zone limit reached", topic, now)
            state.ensure_branch(msg.branch, self.known.get(msg.branch, "unknown"))
            rec = state.zones[zkey] = ZoneRecord(
                branch=msg.branch,
                camera=msg.camera,
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
            )
            return Outcome("ok", msg, zkey, dkey)
        rec.camera = msg.camera
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
        return Outcome("ok", msg, zkey, dkey)


def is_waiting(msg: ZoneMessage) -> bool:
    return msg.kind == ZoneKind.WAITING


# ----------------------------------------------------------------- network edge


class MessageQueue:
    """Bounded hand-off from paho's network thread to the processing thread.

    ``deque.append``/``popleft`` are atomic under the GIL, so the network thread
    pays one append and one ``Event`` check per message and never blocks.
    """

    def __init__(self, maxlen: int) -> None:
        self._dq: deque[tuple[str, bytes, float]] = deque()
        self._max = maxlen
        self._event = threading.Event()
        self.dropped = 0

    def put(self, item: tuple[str, bytes, float]) -> None:
        if len(self._dq) >= self._max:
            self.dropped += 1  # overload: shed the newest rather than grow without bound
            return
        self._dq.append(item)
        if not self._event.is_set():
            self._event.set()

    def get_batch(self, max_items: int, timeout: float) -> list[tuple[str, bytes, float]]:
        if not self._dq:
            self._event.wait(timeout)
        self._event.clear()
        dq = self._dq
        n = min(len(dq), max_items)
        return [dq.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._dq)


class _BufferedSocket:
    """Socket wrapper: one large ``recv`` serves paho's many tiny reads.

    paho reads every packet as 1-byte header reads plus a body read, i.e. several
    syscalls per message; at 20k msgs/s that alone saturates a core. ``pending()``
    (which paho already consults for TLS sockets) tells its loop that buffered
    bytes are ready without another ``select``.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(256 * 1024)  # BlockingIOError/SSLWantRead propagate
            if not data:
                return b""
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _fast_client_class() -> type:
    """A paho ``Client`` that reads many packets per wake-up (subscriber throughput).

    paho 2.x's ``loop_read`` handles one packet per ``select`` for a client that
    only receives. This overrides two private methods (``_create_socket``,
    ``loop_read``'s loop over ``_packet_read``), so paho is pinned to <3 in
    pyproject.toml; tests exercise it against the real broker.
    """
    import paho.mqtt.client as mqtt

    class FastClient(mqtt.Client):
        def _create_socket(self) -> Any:
            return _BufferedSocket(super()._create_socket())

        def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
            for _ in range(10_000):
                if self._sock is None:
                    return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

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
        client.on_message = self._on_message
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
