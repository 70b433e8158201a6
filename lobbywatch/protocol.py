"""The MQTT contract between edge devices and the central collector (version 1).

Topics (``root`` defaults to ``lobbywatch``)::

    {root}/v1/{branch}/{camera}/zones/{zone}   retained, one per zone   ZoneMessage
    {root}/v1/{branch}/{camera}/status         retained, one per camera StatusMessage

Every message of a device carries that device's sequence number ``seq``, which
increases by one per message across all of its topics, so the collector can
de-duplicate by ``(device, seq)`` and notice gaps. ``ts`` is the UTC time the
state was observed (not the time it was sent: buffered messages keep it).

Both sides import these models; ``docs/protocol.md`` documents them and
``lobbywatch/protocol.schema.json`` is generated from them
(``python -m lobbywatch.protocol > lobbywatch/protocol.schema.json``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from lobbywatch.edge.state import ZoneKind

PROTOCOL_VERSION = 1
DEFAULT_ROOT = "lobbywatch"
#: Largest payload the collector accepts; real messages are well under 2 KiB.
MAX_PAYLOAD_BYTES = 16 * 1024
#: ids used as topic levels: no MQTT wildcards, separators or spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, Field(pattern=ID_PATTERN)]


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(PROTOCOL_VERSION, description="protocol (schema) version")
    device: Id = Field(description="id of the publishing edge device")
    seq: NonNegativeInt = Field(description="per-device sequence number, +1 per message")
    ts: datetime = Field(description="UTC time the state was observed (ISO 8601)")
    branch: Id
    camera: Id


class ZoneMessage(_Message):
    """Retained per-zone queue state."""

    type: Literal["zone"] = "zone"
    zone: Id
    kind: ZoneKind
    blueprint: str | None = Field(None, max_length=16, description="service blueprint tag, e.g. W1")
    people: NonNegativeInt = Field(description="confirmed people in the zone")
    raw_count: NonNegativeInt = Field(description="raw detections in the zone this frame")
    dwell_p50_s: NonNegativeFloat | None = None
    dwell_p90_s: NonNegativeFloat | None = None
    dwell_max_s: NonNegativeFloat | None = None
    arrivals_total: NonNegativeInt
    departures_total: NonNegativeInt
    completed_dwells_s: list[NonNegativeFloat] = Field(default_factory=list, max_length=500)
    wait_threshold_s: NonNegativeFloat | None = Field(
        None, description="per-zone W1 threshold from the device config, if set"
    )


class CameraHealth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    up: bool
    fps: NonNegativeFloat = 0.0
    last_frame_age_s: NonNegativeFloat | None = None
    error: str | None = Field(None, max_length=200)


class StatusMessage(_Message):
    """Retained device/camera status; the MQTT last will sets ``state`` to offline."""

    type: Literal["status"] = "status"
    state: Literal["online", "offline"]
    camera_health: CameraHealth | None = None
    model: str | None = Field(None, max_length=128)
    software: str | None = Field(None, max_length=64)


Message = Annotated[ZoneMessage | StatusMessage, Field(discriminator="type")]


class _Envelope(BaseModel):
    message: Message


def parse_message(payload: bytes) -> ZoneMessage | StatusMessage:
    """Validate one payload; raises ``ValueError`` (pydantic ``ValidationError``) if bad."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return _Envelope.model_validate_json(b'{"message":' + payload + b"}").message


def zone_topic(root: str, branch: str, camera: str, zone: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{camera}/zones/{zone}"


def status_topic(root: str, branch: str, camera: str) -> str:
    return f"{root}/v{PROTOCOL_VERSION}/{branch}/{camera}/status"


def subscription(root: str = DEFAULT_ROOT) -> str:
    """Topic filter that matches every message of this protocol version."""
    return f"{root}/v{PROTOCOL_VERSION}/#"


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12) for any v1 message."""
    schema = _Envelope.model_json_schema()
    defs = schema.pop("$defs")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lobbywatch.example/protocol/v1.schema.json",
        "title": "lobbywatch MQTT message, protocol v1",
        "oneOf": [{"$ref": "#/$defs/ZoneMessage"}, {"$ref": "#/$defs/StatusMessage"}],
        "$defs": defs,
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
