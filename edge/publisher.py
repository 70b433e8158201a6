"""MQTT side of the agent: drains the outbox to the broker (paho-mqtt 2.x, MQTT 5).

One thread owns the connection and drives paho's network loop itself
(``client.loop``), so publishing, PUBACK handling and reconnecting happen in
one place with no cross-thread races:

* each connection is a fresh paho ``Client``: paho would otherwise re-send its
  own copies of unacknowledged messages after a reconnect, interleaved with our
  replay, and break the seq order. The outbox is the only retransmission queue;
* messages go out strictly in seq order with at most ``max_inflight`` awaiting
  PUBACK, and a row is deleted only when its PUBACK arrives;
* the last will (device offline) is rebuilt for every connection, with a Will
  Delay so a short reconnect does not flap; the session expiry outlives the
  will delay because MQTT 5 publishes a will early when the session ends;
* after every CONNACK the ``on_connected`` callback enqueues the full current
  state (behind any backlog), so a restarted broker never shows unknown zones.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lobbywatch.edge.buffer import Outbox, OutboxMessage
from lobbywatch.edge.config import MqttConfig
from lobbywatch.edge.metrics import DROP_EXPIRED, DROP_REJECTED, EdgeMetrics

log = logging.getLogger(__name__)

#: how long one network-loop call may block: bounds the latency of a new message
_LOOP_S = 0.05


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes


class MqttPublisher:
    """Background thread: connect, drain the outbox in order, reconnect with backoff."""

    def __init__(
        self,
        cfg: MqttConfig,
        outbox: Outbox,
        *,
        client_id: str,
        will: Callable[[], Will] | None = None,
        on_connected: Callable[[], None] | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.client_id = client_id
        self._will = will
        self._on_connected = on_connected
        self._metrics = metrics
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flush_deadline: float | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._first_connect = True
        self.last_error: str | None = None
        self.connects = 0
        self.published_total = 0
        self.rejected_total = 0
        # per connection: mid -> seq of messages awaiting PUBACK
        self._inflight: dict[int, int] = {}
        self._last_sent = 0
        self._conn_lost = False
        self._connack: ReasonCode | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wakeup(self) -> None:
        """New messages are in the outbox."""
        self._wake.set()

    def stop(self, flush_timeout: float = 3.0) -> bool:
        """Send what is in the outbox (up to ``flush_timeout``), disconnect cleanly, stop.

        A clean DISCONNECT discards the last will, so the caller publishes its own
        offline status first. Returns True if the outbox was drained.
        """
        self._flush_deadline = time.monotonic() + flush_timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(flush_timeout + 2.0)
        return self.outbox.depth == 0

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        backoff = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            client = self._new_client()
            ok = self._connect(client)
            if ok:
                backoff = self.cfg.reconnect_min_s
                self._pump(client)
            self._set_connected(False)
            try:
                client.disconnect()  # no-op if already gone
            except Exception:
                pass
            client.loop(0)  # flush the DISCONNECT if any
            if self._stop.is_set():
                break
            # exponential backoff, cut short by stop()
            log.info("MQTT reconnect in %.1f s", backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
        self._set_connected(False)

    def _new_client(self) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.connect_timeout = cfg.connect_timeout_s
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            ctx = ssl.create_default_context(
                cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None
            )
            if cfg.tls.cert_file and cfg.tls.key_file:
                ctx.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file))
            client.tls_set_context(ctx)
        if self._will is not None:
            will = self._will()
            props = Properties(PacketTypes.WILLMESSAGE)
            if cfg.will_delay_s:
                props.WillDelayInterval = cfg.will_delay_s
            props.PayloadFormatIndicator = 1
            props.ContentType = "application/json"
            client.will_set(
                will.topic, will.payload, qos=max(cfg.qos, 1), retain=True, properties=props
            )
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        return client

    def _connect(self, client: mqtt.Client) -> bool:
        cfg = self.cfg
        props = Properties(PacketTypes.CONNECT)
        # The session must outlive the will delay, or the will fires at once when the
        # connection drops (MQTT 5: will at the earlier of delay and session end).
        props.SessionExpiryInterval = cfg.will_delay_s + 60 if cfg.will_delay_s else 0
        # Clean start only on the agent's first connect: a reconnect resumes the
        # session, which cancels the pending will instead of publishing it.
        clean = self._first_connect
        self._connack = None
        self._conn_lost = False
        try:
            client.connect(
                cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=clean, properties=props
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._fail(f"cannot reach broker {cfg.host}:{cfg.port}: {exc}")
            return False
        deadline = time.monotonic() + cfg.connect_timeout_s
        while self._connack is None and not self._conn_lost and time.monotonic() < deadline:
            if client.loop(_LOOP_S) != mqtt.MQTT_ERR_SUCCESS:
                break
            if self._stop.is_set() and self.outbox.depth == 0:
                return False
        if self._connack is None or self._connack.is_failure:
            reason = str(self._connack) if self._connack is not None else "no CONNACK"
            self._fail(f"broker {cfg.host}:{cfg.port} refused the connection: {reason}")
            return False
        self._first_connect = False
        self.connects += 1
        self.last_error = None
        self._inflight.clear()
        self._last_sent = 0
        self._set_connected(True)
        log.info("MQTT connected to %s:%d as %s", cfg.host, cfg.port, self.client_id)
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:
                log.exception("republishing state after connect failed")
        return True

    def _pump(self, client: mqtt.Client) -> None:
        """Publish in seq order, keep the in-flight window full, until the connection drops."""
        while not self._conn_lost:
            room = self.cfg.max_inflight - len(self._inflight)
            for msg in self.outbox.after(self._last_sent, room):
                if not self._send(client, msg):
                    break
            if self._stop.is_set():
                drained = self.outbox.depth == 0 and not self._inflight
                late = self._flush_deadline is not None and time.monotonic() > self._flush_deadline
                if drained or late:
                    self._disconnect_cleanly(client)
                    return
            self._wake.clear()
            if client.loop(_LOOP_S) != mqtt.MQTT_ERR_SUCCESS:
                self._conn_lost = True
            self._update_depth()

    def _send(self, client: mqtt.Client, msg: OutboxMessage) -> bool:
        retain = msg.retain
        props = Properties(PacketTypes.PUBLISH)
        props.PayloadFormatIndicator = 1
        props.ContentType = "application/json"
        remaining = msg.remaining_expiry()
        if remaining is not None:
            if remaining <= 0:
                # Too old to be anyone's current state; still history (completed
                # dwells), so it goes out, but not as the retained value.
                retain = False
                remaining = 1
            props.MessageExpiryInterval = remaining
        info = client.publish(
            msg.topic, msg.payload, qos=self.cfg.qos, retain=retain, properties=props
        )
        self._last_sent = msg.seq
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # not connected any more: it stays in the outbox for the next connection
            self._conn_lost = True
            return False
        if self.cfg.qos == 0:
            self._acked(msg.seq)  # QoS 0 is fire-and-forget by definition
        else:
            self._inflight[info.mid] = msg.seq
        return True

    def _disconnect_cleanly(self, client: mqtt.Client) -> None:
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0  # nothing to resume: drop the session now
        client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"), properties=props
        )
        deadline = time.monotonic() + 1.0
        while client.is_connected() and time.monotonic() < deadline:
            client.loop(_LOOP_S)

    # ------------------------------------------------------------------ callbacks (this thread)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = reason_code

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected and not self._stop.is_set():
            log.warning("MQTT connection lost: %s", reason_code)
        self._conn_lost = True
        self._set_connected(False)

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if reason_code.is_failure:
            # e.g. 135 Not authorized: retrying cannot help; drop it loudly
            self.rejected_total += 1
            log.error("broker rejected message seq %d: %s", seq, reason_code)
            if self._metrics is not None:
                self._metrics.messages_dropped.labels(reason=DROP_REJECTED).inc()
            self.outbox.ack(seq)
            return
        self._acked(seq)

    def _acked(self, seq: int) -> None:
        self.outbox.ack(seq)
        self.published_total += 1
        if self._metrics is not None:
            self._metrics.messages_published.inc()

    # ------------------------------------------------------------------ helpers

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def _set_connected(self, up: bool) -> None:
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        if self._metrics is not None:
            self._metrics.mqtt_connected.set(1 if up else 0)
            self._update_depth()

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.buffer_depth.set(self.outbox.depth)


__all__ = ["DROP_EXPIRED", "MqttPublisher", "Will"]
