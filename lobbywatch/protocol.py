"""The MQTT contract between edge devices and the central collector (version 1).

Topics (``root`` defaults to ``lobbywatch``)::

    {root}/v1/{branch}/{camera}/zones/{zone}      retained, one per zone     ZoneMessage
    {root}/v1/{branch}/{camera}/status            retained, one per camera   StatusMessage
    {root}/v1/{branch}/_device/{device}/status    retained, one per device   StatusMessage
                                                  (camera = null; the last will)
    {root}/v1/{branch}/_tickets/{source}/events   not retained, a stream     TicketMessage
                                                  (a ticket system: issued / called /
                                                  cancelled tickets with a service class)

An MQTT last will belongs to one connection, and one device serves several
cameras over one connection, so liveness has two levels: the *device* status
(published online after every connect, offline on shutdown and, by the broker,
as the last will) and one *camera* status per camera (camera health, fps). A
camera is live only while its device is online and its own status says ``up``.
``_device`` and ``_tickets`` cannot clash with a camera id: ids must start with a
letter or digit.

A ticket system (queue-management system: the machine that prints numbered tickets
and the display that calls them) is optional. It publishes one :class:`TicketMessage`
per event on its branch's ticket topic; its ``seq`` increases by one per message of
that ``source``. The collector pairs ``issued`` with ``called`` per ticket id (the
realised wait, by service class) and learns the share of priority tickets from
``issued`` (docs/wait-estimation.md "Class-aware waits").

Every message the agent publishes carries that device's sequence number ``seq``,
which increases by one per message across all of its topics (and across agent
restarts: it is stored with the outbox), so the collector can de-duplicate by
``(device, seq)`` and notice gaps. The one exception is the last will: the
broker publishes it, later, on the device's behalf, so it is composed at connect
time; it has ``will: true`` and the seq of the last message assigned before that
connect. Collectors apply a will (device offline) without de-duplicating it.

``ts`` is the UTC time the state was observed (not the time it was sent:
buffered messages keep it).

Both sides import these models; ``docs/protocol.md`` documents them and
``lobbywatch/protocol.schema.json`` is generated from them
(``python -m lobbywatch.protocol > lobbywatch/protocol.schema.json``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from lobbywatch.protocol_bounds import (
    TS_PATTERN,
    TS_YEARS,
    AgeS,
    Counter,
    DwellS,
    Fps,
    IntervalS,
    People,
    RawCount,
    Seq,
    ThresholdS,
)
from lobbywatch.zone_state import ZoneKind

PROTOCOL_VERSION: Literal[1] = 1
DEFAULT_ROOT = "lobbywatch"
#: Largest payload the collector accepts; real messages are well under 2 KiB.
MAX_PAYLOAD_BYTES = 16 * 1024
#: Most completed dwells one zone message carries (the agent publishes before this).
MAX_COMPLETED_DWELLS = 500
#: ids used as topic levels: no MQTT wildcards, separators or spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
#: Topic level that introduces device-level topics; never a valid camera id.
DEVICE_LEVEL = "_device"
#: Topic level that introduces ticket-system topics; never a valid camera id.
TICKETS_LEVEL = "_tickets"
#: ticket ids (as printed: "A042", "P-017"): letters, digits, ``_.-``, at most 32 chars
TICKET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"

Id = Annotated[str, Field(pattern=ID_PATTERN)]
_TS_RE = re.compile(TS_PATTERN)


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def _check_v(v: object) -> object:
    if type(v) is not int:  # JSON true would otherwise equal 1
        raise ValueError("v must be the integer 1")
    return v


def _check_ts_text(v: object) -> object:
    if isinstance(v, str):
        if not _TS_RE.match(v):
            raise ValueError("ts must be RFC 3339 like 2026-11-29T09:30:00.25Z")
    elif not isinstance(v, datetime):
        raise ValueError("ts must be an RFC 3339 string")
    return v


def _check_ts_year(v: datetime) -> datetime:
    if not TS_YEARS[0] <= v.year <= TS_YEARS[1]:
        raise ValueError(f"ts year must be within {TS_YEARS[0]}..{TS_YEARS[1]}")
    return v


class _Stamped(BaseModel):
    """The checks every v1 payload shares: an integer ``v`` and a strict RFC 3339 ``ts``
    within the plausible years (the fields themselves are declared by each message)."""

    @field_validator("v", mode="before", check_fields=False)
    @classmethod
    def _v_is_an_integer(cls, v: object) -> object:
        return _check_v(v)

    @field_validator("ts", mode="before", check_fields=False)
    @classmethod
    def _ts_strict(cls, v: object) -> object:
        return _check_ts_text(v)

    @field_validator("ts", check_fields=False)
    @classmethod
    def _ts_range(cls, v: datetime) -> datetime:
        return _check_ts_year(v)


class _Message(_Stamped):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(PROTOCOL_VERSION, description="protocol (schema) version")
    device: Id = Field(description="id of the publishing edge device")
    seq: Seq = Field(
        description="per-device sequence number, +1 per message (a will repeats the last one)"
    )
    ts: AwareDatetime = Field(
        description="UTC time the state was observed (RFC 3339 with T, seconds and Z or an offset)",
        json_schema_extra={"pattern": TS_PATTERN},
    )
    branch: Id


class ZoneMessage(_Message):
    """Retained per-zone queue state."""

    type: Literal["zone"] = "zone"
    camera: Id
    zone: Id
    kind: ZoneKind
    blueprint: str | None = Field(None, max_length=16, description="service blueprint tag, e.g. W1")
    people: People = Field(description="confirmed people in the zone")
    raw_count: RawCount = Field(description="raw detections in the zone this frame")
    dwell_p50_s: DwellS | None = None
    dwell_p90_s: DwellS | None = None
    dwell_max_s: DwellS | None = None
    arrivals_total: Counter
    departures_total: Counter
    completed_dwells_s: list[DwellS] = Field(
        default_factory=list,
        max_length=MAX_COMPLETED_DWELLS,
        description="dwells completed since the previous message of this zone",
    )
    wait_threshold_s: ThresholdS | None = Field(
        None, description="per-zone W1 threshold from the device config, if set"
    )
    # Departures from a waiting zone by destination (optional, added in v1.1: an edge
    # configured with the zone's service points and exits sends them; older edges and
    # other zone kinds omit them). Cumulative since the pipeline started, like
    # departures_total, and reset with it.
    service_starts_total: Counter | None = Field(
        None,
        description="cumulative departures from this waiting zone into one of its "
        "service-point zones (service starts)",
    )
    walk_outs_total: Counter | None = Field(
        None,
        description="cumulative departures from this waiting zone through one of its exit "
        "zones without being served (abandonment)",
    )
    departures_unseen_total: Counter | None = Field(
        None,
        description="cumulative departures from this waiting zone whose destination the "
        "camera did not see (track lost, frame edge, counters on another camera)",
    )


class CameraHealth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    up: StrictBool
    fps: Fps = Field(0.0, description="frames processed per second, measured")
    target_fps: Fps | None = Field(None, description="configured sampling rate")
    last_frame_age_s: AgeS | None = None
    error: str | None = Field(None, max_length=200)


class StatusMessage(_Message):
    """Retained status of one camera (``camera`` set) or of the whole device (``camera`` null).

    The MQTT last will is a device status with ``state`` offline and ``will`` true.
    """

    type: Literal["status"] = "status"
    camera: Id | None = Field(None, description="camera id; null for the device-level status")
    state: Literal["online", "offline"]
    camera_health: CameraHealth | None = None
    cameras: list[Id] | None = Field(
        None, max_length=64, description="device status: the cameras this device serves"
    )
    will: StrictBool = Field(False, description="true for the last will (published by the broker)")
    heartbeat_s: IntervalS | None = Field(
        None, description="the device republishes every state at least this often"
    )
    model: str | None = Field(None, max_length=128)
    software: str | None = Field(None, max_length=64)


TicketEvent = Literal["issued", "called", "cancelled"]
ServiceClass = Literal["ordinary", "priority"]


class TicketMessage(_Stamped):
    """One event of a ticket system (queue-management system), optional ground truth.

    ``issued``: a customer drew ticket ``ticket`` of service class ``class`` for the
    waiting zone ``zone``; ``called``: the ticket was called to a counter (its wait
    ended; ``counter`` says which, if known); ``cancelled``: the ticket left the queue
    unserved (cancelled, or a no-show dropped by the system). ``ts`` is when the event
    happened at the ticket system (UTC). Not retained: a stream of events, not a state.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        serialize_by_alias=True,
        # the model validator below, for JSON Schema users: counter only on called events
        json_schema_extra={
            "if": {"properties": {"event": {"not": {"const": "called"}}}},
            "then": {"properties": {"counter": {"type": "null"}}},
        },
    )

    v: Literal[1] = Field(PROTOCOL_VERSION, description="protocol (schema) version")
    type: Literal["ticket"] = "ticket"
    source: Id = Field(description="id of the publishing ticket system (its topic level)")
    seq: Seq = Field(description="per-source sequence number, +1 per message")
    ts: AwareDatetime = Field(
        description="UTC time of the event at the ticket system (RFC 3339 with T, seconds "
        "and Z or an offset)",
        json_schema_extra={"pattern": TS_PATTERN},
    )
    branch: Id
    zone: Id = Field(description="the waiting zone the ticket queues in")
    event: TicketEvent = Field(description="issued | called | cancelled")
    ticket: Annotated[str, Field(pattern=TICKET_ID_PATTERN)] = Field(
        description="ticket id as the system numbers it (unique among its open tickets)"
    )
    service_class: ServiceClass = Field(
        alias="class", description="ordinary | priority (served first)"
    )
    counter: Id | None = Field(None, description="called events: the counter that called it")

    @model_validator(mode="after")
    def _counter_on_called_only(self) -> TicketMessage:
        if self.counter is not None and self.event != "called":
            raise ValueError(f"counter is only allowed on called events, not {self.event}")
        return self


AnyMessage = ZoneMessage | StatusMessage | TicketMessage
Message = Annotated[AnyMessage, Field(discriminator="type")]


class _Envelope(BaseModel):
    message: Message


def parse_message(payload: bytes) -> AnyMessage:
    """Validate one payload; raises ``ValueError`` (pydantic ``ValidationError``) if bad."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return _Envelope.model_validate_json(b'{"message":' + payload + b"}").message


def encode_message(message: AnyMessage) -> bytes:
    """Compact JSON payload (UTC ``ts`` with a ``Z`` suffix, nulls kept for clarity)."""
    return message.model_dump_json().encode()


def zone_topic(root: str, branch: str, camera: str, zone: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{camera}/zones/{zone}"


def status_topic(root: str, branch: str, camera: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{camera}/status"


def device_status_topic(root: str, branch: str, device: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{DEVICE_LEVEL}/{device}/status"


def ticket_topic(root: str, branch: str, source: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{TICKETS_LEVEL}/{source}/events"


def topic_for(message: AnyMessage, root: str = DEFAULT_ROOT) -> str:
    """The topic a message belongs on; the collector checks it against the received topic
    so a device cannot put another branch's or camera's payload on its own topics."""
    if isinstance(message, TicketMessage):
        return ticket_topic(root, message.branch, message.source)
    if isinstance(message, ZoneMessage):
        return zone_topic(root, message.branch, message.camera, message.zone)
    if message.camera is None:
        return device_status_topic(root, message.branch, message.device)
    return status_topic(root, message.branch, message.camera)


@dataclass(frozen=True, slots=True)
class TopicParts:
    """A v1 topic split into its levels (``camera``/``zone``/``device``/``source`` None
    where absent)."""

    root: str
    branch: str
    kind: Literal["zone", "status", "device_status", "ticket"]
    camera: str | None = None
    zone: str | None = None
    device: str | None = None
    source: str | None = None


def parse_topic(topic: str) -> TopicParts | None:
    """Split a v1 topic; None if it is not one of the four v1 shapes."""
    parts = topic.split("/")
    version = f"v{PROTOCOL_VERSION}"
    if len(parts) < 5 or parts[1] != version:
        return None
    root, _, branch, *rest = parts
    if not is_valid_id(branch):
        return None
    if len(rest) == 3 and rest[0] == DEVICE_LEVEL and rest[2] == "status" and is_valid_id(rest[1]):
        return TopicParts(root, branch, "device_status", device=rest[1])
    if len(rest) == 3 and rest[0] == TICKETS_LEVEL and rest[2] == "events" and is_valid_id(rest[1]):
        return TopicParts(root, branch, "ticket", source=rest[1])
    if len(rest) == 2 and rest[1] == "status" and is_valid_id(rest[0]):
        return TopicParts(root, branch, "status", camera=rest[0])
    if len(rest) == 3 and rest[1] == "zones" and is_valid_id(rest[0]) and is_valid_id(rest[2]):
        return TopicParts(root, branch, "zone", camera=rest[0], zone=rest[2])
    return None


def subscription(root: str = DEFAULT_ROOT) -> str:
    """Topic filter that matches every message of this protocol version."""
    return f"{root}/v{PROTOCOL_VERSION}/#"


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12) for any v1 message."""
    schema = _Envelope.model_json_schema()
    defs = schema.pop("$defs")
    for name in ("ZoneMessage", "StatusMessage", "TicketMessage"):
        # the models default ``type`` (one class per type), but a payload is told
        # apart by it: without it the collector cannot know which message it is
        required = defs[name].setdefault("required", [])
        if "type" not in required:
            required.insert(0, "type")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lobbywatch.example/protocol/v1.schema.json",
        "title": "lobbywatch MQTT message, protocol v1",
        "oneOf": [
            {"$ref": "#/$defs/ZoneMessage"},
            {"$ref": "#/$defs/StatusMessage"},
            {"$ref": "#/$defs/TicketMessage"},
        ],
        "$defs": defs,
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(json_schema_text(), end="")
