"""MQTT ingest: validate, de-duplicate and apply edge messages to the collector state.

:class:`Ingestor` is the pure core of the collector's receive path.
``handle(topic, payload, received_at)`` classifies one raw message (ok, duplicate,
malformed, oversized, wrong_version, stale, rejected) and applies a valid one to
:class:`CollectorState`. It does no I/O, so it is fuzzed directly
(tests/test_server_ingest_fuzz.py) and must never raise, whatever the bytes.

Topics are split by ``lobbywatch.protocol.parse_topic`` (zone, camera status,
device status and ticket-system topics); payloads must belong on their topic
(``protocol.topic_for``). Ticket-system events (``_apply_ticket``) go to the
collector's :class:`~lobbywatch.server.tickets.TicketBook`.
Device-level statuses drive device liveness; a last will takes the device (and so
its cameras) offline at once, outside the seq window. Each message kind has its own
function (``_apply_zone``, ``_apply_camera_status``, ``_apply_device_status``,
``_apply_will``); zone records are built by :func:`zone_record` only.

The MQTT connection, the hand-off queue and the subscriptions are the transport, in
``server/transport.py``.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lobbywatch.protocol import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    TICKETS_LEVEL,
    Message,
    StatusMessage,
    TicketMessage,
    TopicParts,
    ZoneMessage,
    parse_topic,
)
from lobbywatch.protocol_bounds import BOUNDS, CUMULATIVE_COUNTERS, MAX_COUNTER_RATE_PER_S
from lobbywatch.server.config import IngestSettings
from lobbywatch.server.flows import FlowDelta, observe
from lobbywatch.server.identity import IdentityBook
from lobbywatch.server.state import (
    CollectorState,
    DeviceKey,
    DeviceRecord,
    NodeKey,
    NodeRecord,
    ZoneKey,
    ZoneRecord,
)
from lobbywatch.server.tickets import TicketBook, TicketSettings, TicketWait
from lobbywatch.zone_state import ZONE_STATE_FIELDS, ZoneKind

log = logging.getLogger(__name__)
_DIGITS = re.compile(r"\d+")
# a refused payload's sender and number, read without validating it, to name it in the log
_SEQ = re.compile(rb'"seq"\s*:\s*(-?\d{1,18})')
_SENDER = re.compile(rb'"(device|source)"\s*:\s*"([^"\\]{1,64})"')
#: what a device-offline alert may say of a refused message's cause: a payload's own
#: text (a schema error echoes the offending input) must not reach a notification
_SAFE_CAUSES = {
    "schema": "payloads do not match the protocol's schema (the collector's log names the field)",
    "json": "payloads are not JSON",
    "internal": "payloads could not be processed (the collector's log says why)",
}

# ----------------------------------------------------------------- small helpers


class RateLimitedLog:
    """Logs at most one line per reason per ``interval_s``; counts what it suppressed.

    A flood of garbage must not become a flood of log lines (disk, log shipping).
    """

    MAX_KEYS = 256
    #: lines of one reason per interval, whatever their keys (keys come from message
    #: content: a sender that varies its garbage must not vary its way into the log)
    MAX_LINES_PER_REASON = 5

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        #: reason -> (start of its current interval, lines logged in it)
        self._budget: dict[str, tuple[float, int]] = {}

    def warning(self, reason: str, message: str, now: float, key: str | None = None) -> None:
        """Log ``reason: message`` unless a line of the same ``key`` (default ``reason``)
        was logged within the interval, or :attr:`MAX_LINES_PER_REASON` lines of this
        ``reason`` were; then count it, for the next line of that key."""
        key = reason if key is None else key
        if key not in self._last and len(self._last) >= self.MAX_KEYS:
            self._last.clear()  # bounded memory, whatever a sender makes up
            self._suppressed.clear()
        last = self._last.get(key)
        start, lines = self._budget.get(reason, (now, 0))
        if now - start >= self._interval:
            start, lines = now, 0
        if (last is not None and now - last < self._interval) or lines >= self.MAX_LINES_PER_REASON:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._budget[reason] = (start, lines + 1)
        extra = self._suppressed.pop(key, 0)
        self._last[key] = now
        suffix = f" ({extra} similar suppressed)" if extra else ""
        self._log.warning("%s: %s%s", reason, message[:300], suffix)


class _SeqWindow:
    """Recent sequence numbers of one device: ``seq -> ts`` for the last ``window``.

    Storing ts as well tells a real duplicate (same seq, same ts) from a device
    that restarted and counts from 0 again (same seq, different ts).
    """

    __slots__ = ("gaps", "max_seq", "restarts", "seen")

    def __init__(self) -> None:
        self.max_seq = -1
        self.seen: dict[int, float] = {}
        #: restarts of the device's numbering seen so far
        self.restarts = 0
        #: sequence numbers skipped and never seen (lost messages); a late arrival of a
        #: skipped one takes it back; a restart of the device's numbering adds none
        self.gaps = 0

    def admit(self, seq: int, ts: float, window: int) -> bool:
        """True if ``(seq, ts)`` is new; records it."""
        prev = self.seen.get(seq)
        if prev is not None:
            if prev == ts:
                return False
            self._reset()  # same seq, other content: the device restarted
        elif seq <= self.max_seq - window:
            # Too old for the window: a very late replay or a restart that went past
            # the window. A replay carries its own old timestamp; a restart carries
            # a timestamp at least as new as we hold (the same, with timestamps of
            # one second and the first message right after the reboot).
            newest = max(self.seen.values(), default=0.0)
            if ts < newest:
                return False
            self._reset()
        elif 0 <= seq < self.max_seq and self.gaps:
            self.gaps -= 1  # a skipped one arrived late after all
        if self.max_seq >= 0 and seq > self.max_seq + 1:
            self.gaps += seq - self.max_seq - 1
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
        self.restarts += 1


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
    #: an applied ticket-system event (``msg`` stays None: it is no zone/status state),
    #: with the realised wait it completed, if any; ``zone_key`` is its waiting zone
    ticket: TicketMessage | None = None
    ticket_wait: TicketWait | None = None
    #: a malformed message or one of another protocol version: ``(branch, device, why)``
    #: of the publisher its topic proves, with the collector's own cause (the alert that
    #: the device sends nothing valid names it)
    refused: tuple[str, str, str] | None = None


_VERSION_LEVEL = re.compile(r"^v[0-9]+$")
#: flows (server.flows) are counted for waiting zones only
_WAITING = ZoneKind.WAITING
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


def _iso(epoch_s: float) -> str:
    """``2026-11-29T09:30:00Z``: a Unix time as a log line names it."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(msg: ZoneMessage | StatusMessage | TicketMessage) -> float:
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
    count = f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}"
    return "malformed", "schema", f"{count} ({where}: {errors[0]['msg']})"


#: the shared zone values of a message as a tuple, in ZONE_STATE_FIELDS order (one C call)
_ZONE_VALUES = attrgetter(*ZONE_STATE_FIELDS)


def _field_copier(names: tuple[str, ...]) -> Callable[[Any, Any], None]:
    """``copy(dst, src)`` assigning ``dst.<name> = src.<name>`` for every name.

    Generated once from the field list (as ``dataclasses`` generates ``__init__``):
    a loop of ``setattr`` costs about 0.7 us more per zone message, some 5% of the
    ingest core's time per message; the names are identifiers from our own constant.
    """
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise ValueError(f"not attribute names: {bad}")
    body = "".join(f"    dst.{name} = src.{name}\n" for name in names) or "    pass\n"
    scope: dict[str, Any] = {}
    exec(f"def copy(dst, src):\n{body}", scope)
    copy: Callable[[Any, Any], None] = scope["copy"]
    return copy


_COPY_ZONE_FIELDS = _field_copier(ZONE_STATE_FIELDS)


def zone_record(
    msg: ZoneMessage, ts: float, received_at: float, rec: ZoneRecord | None = None
) -> ZoneRecord:
    """The collector's record of a valid zone message: ``rec`` updated in place, or new.

    The one conversion from the protocol to the collector: the per-zone state is copied
    by the names in ``zone_state.ZONE_STATE_FIELDS``; ``ts`` is the message's
    observation time (epoch seconds, UTC), ``received_at`` the collector's clock.
    """
    if rec is None:
        return ZoneRecord(
            branch=msg.branch,
            camera=msg.camera,
            zone=msg.zone,
            device=msg.device,
            device_wait_threshold_s=msg.wait_threshold_s,
            ts=ts,
            seq=msg.seq,
            received_at=received_at,
            **dict(zip(ZONE_STATE_FIELDS, _ZONE_VALUES(msg), strict=True)),
        )
    _COPY_ZONE_FIELDS(rec, msg)
    rec.camera = msg.camera
    rec.device = msg.device
    rec.device_wait_threshold_s = msg.wait_threshold_s
    rec.ts = ts
    rec.seq = msg.seq
    rec.received_at = received_at
    return rec


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
        devices: dict[str, frozenset[str]] | None = None,
        *,
        tickets: TicketSettings | None = None,
        ticket_zones: dict[str, frozenset[str]] | None = None,
        ticket_sources: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.state = state
        if state.tickets is None:
            state.tickets = TicketBook(tickets)
        #: branch -> configured zones a ticket event may name (besides waiting zones seen)
        self.ticket_zones = dict(ticket_zones or {})
        #: branch -> ticket systems allowed for it (branches that list them)
        self.ticket_sources = dict(ticket_sources or {})
        self.settings = settings
        self.root = root
        #: branch -> region from the config; unknown branches follow settings.unknown_branches
        self.known = dict(known_branches or {})
        self.identities = IdentityBook(
            devices, settings.rebind_after_s, settings.max_zones_and_devices
        )
        #: sequence windows per (branch, device): a device can never poison the window of
        #: a device of another branch by naming it in its own payloads
        self._windows: dict[tuple[str, str], _SeqWindow] = {}
        #: (branch, device) -> zones it created, and when it created its recent ones
        self._zones_of: dict[tuple[str, str], int] = {}
        self._new_zones: dict[tuple[str, str], deque[float]] = {}
        self._topics: dict[str, TopicParts | tuple[str, str, str]] = {}
        #: topic -> (device, node key, camera key, zone key) of its last valid message
        self._keys: dict[str, tuple[str, NodeKey, DeviceKey | None, ZoneKey | None]] = {}
        self.log = RateLimitedLog(log)
        #: the message being handled, for a refusal's log line (see _reject): its
        #: payload, and the message once validated (read only on the refusal path)
        self._payload = b""
        self._msg: ZoneMessage | StatusMessage | TicketMessage | None = None

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

    def _admit(
        self, wkey: tuple[str, str], seq: int, ts: float, topic: str, now: float
    ) -> _SeqWindow | Outcome:
        """The sender's sequence window (a device, or a branch's ticket source) when the
        message is new, else the outcome (a duplicate, or the window limit)."""
        window = self._windows.get(wkey)
        if window is None:
            if len(self._windows) >= self.settings.max_zones_and_devices:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
            window = self._windows[wkey] = _SeqWindow()
        if not window.admit(seq, ts, self.settings.dedup_window):
            return Outcome("duplicate")
        return window

    def _reject(self, result: str, reason: str, why: str, topic: str, now: float) -> Outcome:
        # one line per cause (a schema fault per field: the text without its numbers): a
        # flood of one fault must not hide another
        cause = f"{result}/{reason}/{_DIGITS.sub('#', why)[:80]}"
        # the sender's device and seq find the message in its own log or a recording
        ref = self._reference()
        self.log.warning(result, f"{why} (topic {topic[:120]!r}{ref})", now, key=cause)
        refused = None
        if result in ("malformed", "wrong_version"):
            sender = self._publisher(topic)
            if sender is not None:
                refused = (*sender, _SAFE_CAUSES.get(reason, why)[:200])
        return Outcome(result, reason=reason, refused=refused)

    def _reference(self) -> str:
        """``, device 'd1' seq 57`` of the message being refused: from the message once
        validated, else as far as its unvalidated payload says, else ``""``."""
        msg = self._msg
        if msg is not None:
            if isinstance(msg, TicketMessage):
                return f", source {msg.source!r} seq {msg.seq}"
            return f", device {msg.device!r} seq {msg.seq}"
        head = self._payload[:4096]
        sender, seq = _SENDER.search(head), _SEQ.search(head)
        ref = ""
        if sender is not None:
            ref = f", {sender.group(1).decode()} {sender.group(2).decode('utf-8', 'replace')!r}"
        return ref + (f" seq {int(seq.group(1))}" if seq else "")

    def _publisher(self, topic: str) -> tuple[str, str] | None:
        """(branch, device) that the broker let publish to ``topic``: the device of a
        device-status topic, the device bound to the camera of a camera topic (the ACL
        gives each device its own cameras' topics only); never what a payload claims."""
        parts = self._topics.get(topic)
        if not isinstance(parts, TopicParts):
            return None
        if parts.device is not None:
            return parts.branch, parts.device
        if parts.camera is not None:
            owner = self.identities.owner(parts.branch, parts.camera)
            if owner is not None:
                return parts.branch, owner
        return None

    def _topic(self, topic: str) -> TopicParts | tuple[str, str, str]:
        parts = self._topics.get(topic)
        if parts is None:
            if len(self._topics) >= self.TOPIC_CACHE_MAX:
                self._topics.clear()
                self._keys.clear()
            parts = self._topics[topic] = classify_topic(topic, self.root)
        return parts

    def _handle(self, topic: str, payload: bytes, now: float) -> Outcome:
        """Validate one message and dispatch it to the function for its kind."""
        self._payload = payload
        self._msg = None
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._reject("oversized", "oversized", f"{len(payload)} bytes", topic, now)
        parts = self._topic(topic)
        if type(parts) is tuple:
            return self._reject(*parts, topic=topic, now=now)
        assert isinstance(parts, TopicParts)
        kind = parts.kind
        msg: ZoneMessage | StatusMessage | TicketMessage
        try:
            msg = _VALIDATE(payload)
        except ValidationError as exc:
            return self._reject(*_validation_failure(exc), topic=topic, now=now)
        except (ValueError, RecursionError, UnicodeError) as exc:
            return self._reject("malformed", "json", str(exc), topic, now)
        self._msg = msg

        # The topic is what the broker ACL authorises a device to publish to; the
        # payload must agree with it or a device could write another branch's state.
        why = self._mismatch(parts, msg)
        if why is not None:
            return self._reject("malformed", "topic_mismatch", why, topic, now)

        ts = _epoch(msg)
        if ts > now + self.settings.max_clock_skew_s:
            # A stamp from the future would pin the zone's "newest" state until that time.
            # both times named: the usual cause is a clock or a unit, not the message
            why = (
                f"timestamp in the future: ts {_iso(ts)} is {ts - now:.0f} s after the "
                f"receive time {_iso(now)} (ingest.max_clock_skew_s "
                f"{self.settings.max_clock_skew_s:g})"
            )
            return self._reject("malformed", "future_timestamp", why, topic, now)

        branch = msg.branch
        if branch not in self.known and self.settings.unknown_branches == "reject":
            return self._reject(
                "rejected", "unknown_branch", f"unknown branch {branch!r}", topic, now
            )
        if kind == "ticket":
            assert isinstance(msg, TicketMessage)
            return self._apply_ticket(msg, ts, topic, now)
        assert not isinstance(msg, TicketMessage)

        why = self.identities.check(branch, msg.camera, msg.device, now)
        if why is not None:
            return self._reject("rejected", "identity", why, topic, now)

        if kind == "device_status" and msg.will:  # type: ignore[union-attr]
            # The broker publishes the will later, with the seq of the last message
            # before that connect: it is applied as it arrives, never de-duplicated
            # by seq (only the very same will twice is a duplicate).
            return self._apply_will(msg, ts, topic, now)  # type: ignore[arg-type]

        window = self._admit((branch, msg.device), msg.seq, ts, topic, now)
        if isinstance(window, Outcome):
            return window

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
        node = self.state.nodes.get(nkey)
        if node is None:
            node = self._new_node(nkey)
            if node is None:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
        if ts >= node.last_ts:
            node.last_ts = ts
            node.received_at = now
        node.seq_gaps = window.gaps

        if kind == "device_status":
            assert isinstance(msg, StatusMessage)
            return self._apply_device_status(msg, ts, now, node, nkey)

        # zone and camera status messages both update their camera's record
        dkey = keys[2]
        assert dkey is not None
        dev = self.state.devices.get(dkey)
        if dev is None:
            if len(self.state.devices) >= self.settings.max_zones_and_devices:
                return self._reject("rejected", "limit", "device limit reached", topic, now)
            dev = DeviceRecord(branch, dkey.camera, msg.device, node=node)
            self.state.add_device(dkey, dev)
        if ts >= dev.last_ts:
            dev.last_ts = ts
            dev.last_seq = msg.seq
            dev.received_at = now
        if kind == "status":
            assert isinstance(msg, StatusMessage)
            return self._apply_camera_status(msg, ts, dev, dkey, nkey)
        assert isinstance(msg, ZoneMessage)
        zkey = keys[3]
        assert zkey is not None
        return self._apply_zone(msg, (ts, window.restarts), now, topic, zkey, dkey, nkey)

    @staticmethod
    def _apply_device_status(
        msg: StatusMessage, ts: float, now: float, node: NodeRecord, nkey: NodeKey
    ) -> Outcome:
        """A device-level status (not a will): device liveness and what it serves."""
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

    @staticmethod
    def _apply_camera_status(
        msg: StatusMessage, ts: float, dev: DeviceRecord, dkey: DeviceKey, nkey: NodeKey
    ) -> Outcome:
        """A camera status: camera health, model and software of that camera."""
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

    def _apply_zone(
        self,
        msg: ZoneMessage,
        stamp: tuple[float, int],
        now: float,
        topic: str,
        zkey: ZoneKey,
        dkey: DeviceKey,
        nkey: NodeKey,
    ) -> Outcome:
        """A zone message: the newest observation of the zone (by ``(ts, seq)``) wins.

        ``stamp``: the message's ``ts`` (epoch s) and how many times its device's
        numbering had restarted (a restart within the second of the last message
        before it is newer, though its seq is lower)."""
        ts, epoch = stamp
        state = self.state
        rec = state.zones.get(zkey)
        if rec is not None:
            same = rec.device == msg.device
            if ts < rec.ts or (
                ts == rec.ts and same and (epoch, msg.seq) <= (rec.seq_epoch, rec.seq)
            ):
                # older than what we hold (same device: by (numbering, ts, seq); another
                # device/camera with an older observation: keep the newest)
                return Outcome("stale", msg, zkey, dkey, nkey)
            if rec.device == msg.device:
                why = _implausible_counters(rec, msg, ts)
                if why is not None:
                    return self._reject("rejected", "implausible", why, topic, now)
            zone_record(msg, ts, now, rec)
            rec.seq_epoch = epoch
            if msg.kind is not _WAITING:
                return Outcome(_OK, msg, zkey, dkey, nkey)
            return Outcome(_OK, msg, zkey, dkey, nkey, flows=observe(rec.flows, msg, ts))
        if len(state.zones) >= self.settings.max_zones_and_devices:
            return self._reject("rejected", "limit", "zone limit reached", topic, now)
        wkey = (msg.branch, msg.device)
        why = self._zone_quota(wkey, msg.zone, now)
        if why is not None:
            return self._reject("rejected", "zone_limit", why, topic, now)
        self._count_new_zone(wkey, now)
        state.ensure_branch(msg.branch, self.known.get(msg.branch, "unknown"))
        rec = zone_record(msg, ts, now)
        rec.seq_epoch = epoch
        state.add_zone(zkey, rec)
        if msg.kind is not _WAITING:
            return Outcome(_OK, msg, zkey, dkey, nkey)
        # the zone's first message: its totals are the baseline of the next increase
        return Outcome(_OK, msg, zkey, dkey, nkey, flows=observe(rec.flows, msg, ts))

    def _zone_quota(self, wkey: tuple[str, str], zone: str, now: float) -> str | None:
        """Why ``wkey``'s device may not create zone ``zone`` now, or None.

        Caps per device: ``max_zones_per_device`` zones in all, and
        ``max_new_zones_per_minute`` new ones per minute (a device inventing zone ids
        would otherwise create metric series, alerts and notifications without end).
        """
        s = self.settings
        if self._zones_of.get(wkey, 0) >= s.max_zones_per_device:
            return f"device {wkey[1]!r} already has {s.max_zones_per_device} zones ({zone!r})"
        recent = self._new_zones.get(wkey)
        if recent is not None:
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= s.max_new_zones_per_minute:
                return f"device {wkey[1]!r} created {len(recent)} zones in the last minute"
        return None

    def _count_new_zone(self, wkey: tuple[str, str], now: float) -> None:
        self._zones_of[wkey] = self._zones_of.get(wkey, 0) + 1
        recent = self._new_zones.get(wkey)
        if recent is None:
            recent = self._new_zones[wkey] = deque()
        recent.append(now)

    def _apply_ticket(self, msg: TicketMessage, ts: float, topic: str, now: float) -> Outcome:
        """A ticket-system event: de-duplicated by ``(branch, source, seq)``, then paired
        and counted by the :class:`TicketBook` (``server/tickets.py``).

        The zone must be one the collector knows for the branch (listed in its config, or
        a waiting zone a camera reports), or the event is refused ``unknown_zone``: a
        ticket system cannot create zones. A branch listing ``ticket_sources`` accepts only
        those (``identity``)."""
        branch = msg.branch
        allowed = self.ticket_sources.get(branch)
        if allowed is not None and msg.source not in allowed:
            why = f"ticket source {msg.source!r} is not listed for branch {branch!r}"
            return self._reject("rejected", "identity", why, topic, now)
        zkey = ZoneKey(branch, msg.zone)
        rec = self.state.zones.get(zkey)
        if msg.zone not in self.ticket_zones.get(branch, ()) and (
            rec is None or rec.kind is not _WAITING
        ):
            why = f"ticket for unknown zone {msg.zone!r} of branch {branch!r}"
            return self._reject("rejected", "unknown_zone", why, topic, now)
        # device ids start with a letter or digit: this key never clashes with a device's
        window = self._admit((branch, f"{TICKETS_LEVEL}/{msg.source}"), msg.seq, ts, topic, now)
        if isinstance(window, Outcome):
            return window
        book = self.state.tickets
        assert book is not None
        applied = book.apply(msg, ts, now)
        if applied.result == "rejected":
            return self._reject("rejected", "implausible", applied.why or "", topic, now)
        if applied.result != _OK:
            return Outcome(applied.result, zone_key=zkey)
        return Outcome(_OK, zone_key=zkey, ticket=msg, ticket_wait=applied.wait)

    @staticmethod
    def _mismatch(
        parts: TopicParts, msg: ZoneMessage | StatusMessage | TicketMessage
    ) -> str | None:
        """Why the payload does not belong on its topic (``protocol.topic_for``), or None."""
        if (msg.type == "ticket") != (parts.kind == "ticket"):
            return f"payload type {msg.type!r} does not belong on a {parts.kind} topic"
        if isinstance(msg, TicketMessage):
            if msg.branch != parts.branch:
                return f"payload branch {msg.branch!r} differs from the topic's"
            if msg.source != parts.source:
                return f"payload source {msg.source!r} differs from the topic's"
            return None
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
        if len(state.nodes) >= self.settings.max_zones_and_devices:
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


def _implausible_counters(rec: ZoneRecord, msg: ZoneMessage, ts: float) -> str | None:
    """Why the cumulative counters of ``msg`` cannot follow ``rec``'s, or None.

    A counter may start again lower (the pipeline restarted); it may not grow
    faster than ``MAX_COUNTER_RATE_PER_S`` plus one zone full of people.
    """
    allowance = MAX_COUNTER_RATE_PER_S * max(ts - rec.ts, 1.0) + BOUNDS["people"].hi
    for name in CUMULATIVE_COUNTERS:
        new = getattr(msg, name, None)
        old = getattr(rec, name, None)
        if new is not None and old is not None and new - old > allowance:
            return f"{name} jumped from {old} to {new} in {max(ts - rec.ts, 0.0):.0f} s"
    return None
