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
    TicketMessage,
    ZoneMessage,
    device_status_topic,
    encode_message,
    json_schema_text,
    parse_message,
    parse_topic,
    status_topic,
    ticket_topic,
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


def test_the_schema_requires_the_type_the_collector_tells_messages_apart_by() -> None:
    check = validator()
    data = json.loads(encode_message(_zone()))
    del data["type"]
    errors = [e.message for e in check.iter_errors(data)]
    assert errors == [f"{data!r} is not valid under any of the given schemas"]
    with pytest.raises(ValidationError, match="type"):
        parse_message(json.dumps(data).encode())


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


# ------------------------------------------------------------------ ticket-system events


def _ticket_data(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "v": 1,
        "type": "ticket",
        "source": "qms-1",
        "seq": 12,
        "ts": "2026-11-29T09:30:00.250000Z",
        "branch": "b042",
        "zone": "W1",
        "event": "called",
        "ticket": "A042",
        "class": "priority",
        "counter": "C3",
    }
    return {**base, **kw}


def test_ticket_message_round_trips_on_its_topic_and_validates_against_schema() -> None:
    data = _ticket_data()
    msg = parse_message(json.dumps(data).encode())
    assert isinstance(msg, TicketMessage)
    assert (msg.event, msg.ticket, msg.service_class, msg.counter) == (
        "called",
        "A042",
        "priority",
        "C3",
    )
    payload = encode_message(msg)
    assert json.loads(payload) == data  # "class" on the wire, not the Python name
    validator().validate(json.loads(payload))
    assert parse_message(payload) == msg
    assert topic_for(msg) == "lobbywatch/v1/b042/_tickets/qms-1/events"
    assert topic_for(msg) == ticket_topic("lobbywatch", "b042", "qms-1")
    t = parse_topic(topic_for(msg, "lw"))
    assert t is not None and (t.kind, t.root, t.branch, t.source, t.camera) == (
        "ticket",
        "lw",
        "b042",
        "qms-1",
        None,
    )
    # issued and cancelled events carry no counter
    for event in ("issued", "cancelled"):
        validator().validate(_ticket_data(event=event, counter=None, **{"class": "ordinary"}))


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ({"event": "served"}, "event", "Input should be 'issued', 'called' or 'cancelled'"),
        ({"class": "vip"}, "class", "Input should be 'ordinary' or 'priority'"),
        ({"ticket": "A/042"}, "ticket", "should match pattern"),
        ({"ticket": "A" * 33}, "ticket", "should match pattern"),
        ({"zone": "W+"}, "zone", "should match pattern"),
        ({"source": "_tickets"}, "source", "should match pattern"),
        ({"seq": -1}, "seq", "greater than or equal to 0"),
        ({"seq": "12"}, "seq", "valid integer"),
        ({"ts": "2026-11-29 09:30:00"}, "ts", "ts must be RFC 3339"),
        ({"ts": "2026-11-29T09:30:00"}, "ts", "ts must be RFC 3339"),
        ({"v": True}, "v", "v must be the integer 1"),
        ({"counter": "C/3"}, "counter", "should match pattern"),
        ({"priority": True}, "priority", "Extra inputs are not permitted"),
    ],
)
def test_invalid_ticket_messages_name_the_field(
    bad: dict[str, object], field: str, message: str
) -> None:
    import jsonschema

    data = _ticket_data(**bad)
    with pytest.raises(ValidationError) as info:
        parse_message(json.dumps(data).encode())
    errors = info.value.errors()
    assert errors[0]["loc"][-1] == field, errors
    assert message in errors[0]["msg"], errors[0]["msg"]
    if field not in ("v",):  # JSON Schema has no "not a boolean" integer rule for v
        with pytest.raises(jsonschema.ValidationError):
            validator().validate(data)


def test_counter_only_on_called_events_and_class_required() -> None:
    import jsonschema

    data = _ticket_data(event="issued")
    with pytest.raises(
        ValidationError, match="counter is only allowed on called events, not issued"
    ):
        parse_message(json.dumps(data).encode())
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(data)
    data = _ticket_data()
    del data["class"]
    with pytest.raises(ValidationError) as info:
        parse_message(json.dumps(data).encode())
    assert info.value.errors()[0]["loc"][-1] == "class"
    assert info.value.errors()[0]["msg"] == "Field required"


def test_ticket_level_never_clashes_with_camera_or_device_topics() -> None:
    from lobbywatch.protocol import TICKETS_LEVEL, is_valid_id

    assert not is_valid_id(TICKETS_LEVEL)  # no camera can be called _tickets
    # a camera status / zone topic cannot be read as a ticket topic and back
    assert parse_topic("lobbywatch/v1/b/_tickets/status") is None
    assert parse_topic("lobbywatch/v1/b/_tickets/zones/W1") is None
    for bad in [
        "lobbywatch/v1/b/_tickets/qms-1",
        "lobbywatch/v1/b/_tickets/qms-1/event",
        "lobbywatch/v1/b/_tickets/_x/events",
        "lobbywatch/v1/b/_tickets/q/events/more",
    ]:
        assert parse_topic(bad) is None, bad
    z = parse_topic("lobbywatch/v1/b/tickets/zones/events")  # a camera named tickets
    assert z is not None and z.kind == "zone"


def test_the_fields_protocol_md_calls_required_are_the_ones_a_payload_cannot_omit() -> None:
    """Each field named required is refused when left out; each other one is not."""
    text = (REPO / "docs" / "protocol.md").read_text()
    named = text.split("**Required** in a zone message:", 1)[1].split(". The others", 1)[0]
    required = {part.strip(" `\n") for part in named.replace("\n", " ").split(",")}
    # every field present, the optional ones set: each is left out in turn below
    zone = json.loads(
        encode_message(_zone(service_starts_total=3, walk_outs_total=1, departures_unseen_total=2))
    )
    assert required <= set(zone)
    for field in zone:
        body = {k: v for k, v in zone.items() if k != field}
        try:
            parse_message(json.dumps(body).encode())
            omittable = True
        except ValidationError:
            omittable = False
        assert omittable == (field not in required), field
