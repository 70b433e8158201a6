"""The MQTT contract: models, committed JSON Schema, topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_agent_support import validator

from lobbywatch.protocol import (
    MAX_PAYLOAD_BYTES,
    CameraHealth,
    StatusMessage,
    ZoneMessage,
    device_status_topic,
    encode_message,
    json_schema_text,
    parse_message,
    parse_topic,
    status_topic,
    topic_for,
    zone_topic,
)

REPO = Path(__file__).resolve().parents[1]
TS = datetime(2026, 11, 29, 9, 30, 0, 250000, tzinfo=UTC)


def _zone(**kw: object) -> ZoneMessage:
    base: dict[str, object] = dict(
        device="edge-01",
        seq=7,
        ts=TS,
        branch="b042",
        camera="lobby",
        zone="W1",
        kind="waiting",
        blueprint="W1",
        people=3,
        raw_count=4,
        dwell_p50_s=62.5,
        dwell_p90_s=140.0,
        dwell_max_s=201.2,
        arrivals_total=40,
        departures_total=37,
        completed_dwells_s=[95.0, 130.5],
        wait_threshold_s=600,
    )
    return ZoneMessage.model_validate({**base, **kw})


def test_committed_schema_is_current() -> None:
    assert (REPO / "lobbywatch" / "protocol.schema.json").read_text() == json_schema_text(), (
        "regenerate: python -m lobbywatch.protocol > lobbywatch/protocol.schema.json"
    )


def test_messages_round_trip_and_validate_against_schema() -> None:
    check = validator()
    zone = _zone()
    camera = StatusMessage(
        device="edge-01",
        seq=8,
        ts=TS,
        branch="b042",
        camera="lobby",
        state="online",
        camera_health=CameraHealth(up=True, fps=2.0, target_fps=2.0),
        heartbeat_s=30,
        model="yolox_nano/fp32",
        software="lobbywatch 0.1.0",
    )
    device = StatusMessage(
        device="edge-01", seq=3, ts=TS, branch="b042", state="offline", cameras=["lobby"], will=True
    )
    for msg in (zone, camera, device):
        payload = encode_message(msg)
        data = json.loads(payload)
        check.validate(data)
        assert parse_message(payload) == msg
        assert data["v"] == 1 and data["ts"] == "2026-11-29T09:30:00.250000Z"
    assert topic_for(zone) == "lobbywatch/v1/b042/lobby/zones/W1"
    assert topic_for(camera) == "lobbywatch/v1/b042/lobby/status"
    assert topic_for(device, "lw") == "lw/v1/b042/_device/edge-01/status"


@pytest.mark.parametrize(
    "bad",
    [
        {"people": -1},
        {"zone": "a/b"},
        {"kind": "lounge"},
        {"v": 2},
        {"surprise": 1},
        {"completed_dwells_s": [1.0] * 501},
    ],
)
def test_invalid_messages_rejected_by_model_and_schema(bad: dict[str, object]) -> None:
    import jsonschema

    data = json.loads(encode_message(_zone()))
    data.update(bad)
    (field,) = bad
    with pytest.raises(ValidationError, match=rf"(?m)(^|\.){field}$"):  # names the field
        parse_message(json.dumps(data).encode())
    with pytest.raises(jsonschema.ValidationError) as info:
        validator().validate(data)
    assert field in (*info.value.absolute_path, info.value.message) or f"'{field}'" in (
        info.value.message
    ), info.value.message


def test_oversized_payload_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        parse_message(b" " * (MAX_PAYLOAD_BYTES + 1))


def test_topics_parse_back() -> None:
    z = parse_topic(zone_topic("lobbywatch", "b042", "lobby", "W1"))
    assert z is not None and (z.kind, z.branch, z.camera, z.zone) == ("zone", "b042", "lobby", "W1")
    s = parse_topic(status_topic("lobbywatch", "b042", "lobby"))
    assert s is not None and (s.kind, s.camera) == ("status", "lobby")
    d = parse_topic(device_status_topic("lobbywatch", "b042", "edge-01"))
    assert d is not None and (d.kind, d.device, d.camera) == ("device_status", "edge-01", None)
    for bad in [
        "lobbywatch/v2/b/c/status",
        "lobbywatch/v1/b/c/zones",
        "lobbywatch/v1/b/c/x/y",
        "lobbywatch/v1/b/_device/d/other",
        "lobbywatch/v1/b/_c/status",
    ]:
        assert parse_topic(bad) is None, bad
