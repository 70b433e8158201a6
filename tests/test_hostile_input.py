"""Hostile and broken input (issue 12): strict protocol types and physical bounds in
the pydantic models and the JSON Schema alike, identities bound to topics, per-device
zone limits, sequence gaps, and validated API parameters.

The ingest core is driven directly where the question is classification; the
identity poisoning, the zone flood and the API parameters go through the real
Mosquitto and the collector's real HTTP server.
"""

# ruff: noqa: F811 - fixtures imported from test_server_support are parameters below
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from test_server_support import (  # noqa: F401 - fixtures
    Publisher,
    raw,
    sample,
    scrape,
    server_config,
    status_msg,
    wait_until,
    webhook,
    zone_msg,
)

from lobbywatch.protocol import json_schema, parse_message
from lobbywatch.protocol_bounds import BOUNDS
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import IngestSettings, parse_server_config
from lobbywatch.server.ingest import Ingestor
from lobbywatch.server.state import CollectorState, NodeKey

NOW = 1_750_000_000.0
SCHEMA = jsonschema.Draft202012Validator(json_schema())


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (RFC 8259)")


def schema_refuses(payload: bytes) -> bool:
    """A conforming JSON parser plus the JSON Schema: NaN/Infinity are not JSON at all."""
    try:
        doc = json.loads(payload, parse_constant=_not_json)
    except ValueError:
        return True
    return bool(list(SCHEMA.iter_errors(doc)))


def valid_zone() -> dict[str, Any]:
    return json.loads(raw(zone_msg(7, NOW - 1, people=3, arrivals=5, dwell_max=60.0))[1])


def valid_status() -> dict[str, Any]:
    msg = status_msg(8, NOW - 1)
    d = json.loads(raw(msg)[1])
    d["camera_health"] = {"up": True, "fps": 2.0}
    d["heartbeat_s"] = 30.0
    return d


# (what, field, payload text with the field replaced); the field must be named
HOSTILE_ZONE: list[tuple[str, str, str]] = [
    ("people as a string", "people", '"99"'),
    ("people as a boolean", "people", "true"),
    ("people as a float", "people", "3.0"),
    ("people beyond the physical bound", "people", "1000000000000000000000000000000"),
    ("people negative", "people", "-1"),
    ("dwell Infinity", "dwell_max_s", "Infinity"),
    ("dwell NaN", "dwell_max_s", "NaN"),
    ("dwell 1e308", "dwell_max_s", "1e308"),
    ("dwell longer than a day", "dwell_max_s", "86401"),
    ("dwell as a string", "dwell_max_s", '"60"'),
    ("counter beyond the bound", "arrivals_total", "1000000000000"),
    ("walk-outs beyond the bound", "walk_outs_total", "1000000000000"),
    ("walk-outs as a string", "walk_outs_total", '"3"'),
    ("service starts negative", "service_starts_total", "-1"),
    ("unseen departures as a float", "departures_unseen_total", "2.5"),
    ("seq beyond JSON-safe integers", "seq", "9223372036854775808"),
    ("seq as a string", "seq", '"7"'),
    ("numeric ts", "ts", "1750000000"),
    ("naive ts", "ts", '"2026-11-29T09:30:00"'),
    ("date-only ts", "ts", '"2026-11-29"'),
    ("ts with a space", "ts", '"2026-11-29 09:30:00Z"'),
    ("ts in year 1970", "ts", '"1970-01-01T00:00:01Z"'),
    ("v as true", "v", "true"),
    ("a completed dwell longer than a day", "completed_dwells_s", "[60.0, 1e9]"),
    ("threshold Infinity", "wait_threshold_s", "Infinity"),
]


def _with(base: dict[str, Any], field: str, raw_value: str) -> bytes:
    marker = "__HOSTILE__"
    doc = json.dumps({**base, field: marker})
    return doc.replace(f'"{marker}"', raw_value).encode()


@pytest.mark.parametrize(("what", "field", "value"), HOSTILE_ZONE, ids=[h[0] for h in HOSTILE_ZONE])
def test_hostile_zone_values_are_refused_by_model_and_schema(
    what: str, field: str, value: str
) -> None:
    payload = _with(valid_zone(), field, value)
    with pytest.raises(ValueError, match=field):
        parse_message(payload)
    # the JSON Schema refuses it too (NaN/Infinity already fail as JSON), except
    # 3.0 for an integer: JSON Schema defines integers by value, so 3.0 is one there
    assert schema_refuses(payload) or value == "3.0", f"schema accepted {what}"


HOSTILE_STATUS = [
    ("will as a string", "will", '"true"'),
    ("heartbeat Infinity", "heartbeat_s", "Infinity"),
    ("heartbeat longer than a day", "heartbeat_s", "1e9"),
]


@pytest.mark.parametrize(
    ("what", "field", "value"), HOSTILE_STATUS, ids=[h[0] for h in HOSTILE_STATUS]
)
def test_hostile_status_values_are_refused_by_model_and_schema(
    what: str, field: str, value: str
) -> None:
    payload = _with(valid_status(), field, value)
    with pytest.raises(ValueError, match=field):
        parse_message(payload)
    assert schema_refuses(payload), f"schema accepted {what}"


@pytest.mark.parametrize("value", ["1", '"yes"', "NaN"])
def test_camera_health_up_and_fps_are_strict(value: str) -> None:
    base = valid_status()
    for key in ("up", "fps"):
        doc = json.dumps({**base, "camera_health": {"up": True, "fps": 2.0, key: "__X__"}})
        payload = doc.replace('"__X__"', value).encode()
        if key == "fps" and value == "1":
            assert parse_message(payload)  # an integer is a fine number of frames/s
            continue
        with pytest.raises(ValueError, match=key):
            parse_message(payload)
        assert schema_refuses(payload)


def test_the_real_messages_pass_both() -> None:
    for doc in (valid_zone(), valid_status()):
        payload = json.dumps(doc).encode()
        parse_message(payload)
        assert not list(SCHEMA.iter_errors(doc))


def test_schema_bounds_are_the_table() -> None:
    props = json_schema()["$defs"]["ZoneMessage"]["properties"]
    assert props["people"]["maximum"] == BOUNDS["people"].hi
    assert props["arrivals_total"]["maximum"] == BOUNDS["counter"].hi
    dwell = next(a for a in props["dwell_max_s"]["anyOf"] if a.get("type") == "number")
    assert dwell["maximum"] == BOUNDS["dwell_s"].hi


# ----------------------------------------------------------------- ingest core


def make(**settings: Any) -> tuple[Ingestor, CollectorState]:
    state = CollectorState()
    branches = {"b1": "north", "b2": "south"}
    devices = settings.pop("devices", None)
    return Ingestor(state, IngestSettings(**settings), "lobbywatch", branches, devices), state


def handle(ing: Ingestor, msg: Any, now: float = NOW) -> str:
    topic, payload = raw(msg)
    return ing.handle(topic, payload, now).result


def test_a_device_naming_another_branchs_device_cannot_poison_its_seq_window() -> None:
    ing, state = make()
    assert handle(ing, zone_msg(1, NOW - 10, branch="b2", device="edge-b2", zone="W1")) == "ok"
    assert handle(ing, zone_msg(1, NOW - 10, branch="b1", camera="camA", device="edge-a")) == "ok"
    # edge-a, on its own topic, claims to be edge-b2 with a huge seq
    attack = zone_msg(10**12, NOW - 5, branch="b1", camera="camA", device="edge-b2")
    assert handle(ing, attack) == "rejected"
    assert state.invalid[("rejected", "identity")] == 1
    # the real edge-b2 goes on as before: nothing of it is a duplicate
    results = [
        handle(ing, zone_msg(s, NOW - 5 + s / 100, branch="b2", device="edge-b2", people=s % 3))
        for s in range(2, 22)
    ]
    assert results == ["ok"] * 20
    assert state.results["duplicate"] == 0


def test_a_camera_belongs_to_its_first_device_until_it_was_silent_long() -> None:
    ing, state = make(rebind_after_s=600)
    assert handle(ing, zone_msg(1, NOW - 10, device="edge-1")) == "ok"
    assert handle(ing, zone_msg(1, NOW - 9, device="intruder")) == "rejected"
    assert state.invalid[("rejected", "identity")] == 1
    # a replacement box after the old one was silent for rebind_after_s takes over
    assert handle(ing, zone_msg(1, NOW + 600, device="edge-new"), now=NOW + 601) == "ok"


def test_configured_devices_bind_from_the_start() -> None:
    ing, state = make(devices={"b1": frozenset({"edge-1"})})
    assert handle(ing, zone_msg(1, NOW - 1, device="edge-2")) == "rejected"
    assert handle(ing, zone_msg(1, NOW - 1, branch="b2", device="edge-1")) == "rejected"
    assert handle(ing, zone_msg(1, NOW - 1, device="edge-1")) == "ok"
    assert state.invalid[("rejected", "identity")] == 2


def test_zones_per_device_and_new_zones_per_minute_are_capped() -> None:
    ing, state = make(max_zones_per_device=5, max_new_zones_per_minute=3)
    got = [handle(ing, zone_msg(i, NOW - 10 + i, zone=f"z{i}")) for i in range(1, 6)]
    assert got == ["ok", "ok", "ok", "rejected", "rejected"]
    assert state.invalid[("rejected", "zone_limit")] == 2
    # existing zones keep updating
    assert handle(ing, zone_msg(10, NOW - 1, zone="z1", people=2)) == "ok"
    # a minute later two more are allowed, then the per-device total is reached
    later = [handle(ing, zone_msg(20 + i, NOW + 61 + i, zone=f"n{i}"), NOW + 70) for i in range(4)]
    assert later == ["ok", "ok", "rejected", "rejected"]
    assert len(state.zones) == 5


def test_counters_jumping_beyond_physics_are_refused() -> None:
    ing, state = make()
    assert handle(ing, zone_msg(1, NOW - 10, arrivals=100, departures=90)) == "ok"
    assert handle(ing, zone_msg(2, NOW - 9, arrivals=10**8, departures=90)) == "rejected"
    assert state.invalid[("rejected", "implausible")] == 1
    # a restart of the pipeline (counters lower) is fine, and so is normal growth
    assert handle(ing, zone_msg(3, NOW - 8, arrivals=2, departures=1)) == "ok"
    assert handle(ing, zone_msg(4, NOW - 2, arrivals=40, departures=30)) == "ok"


def test_departure_classes_jumping_beyond_physics_are_refused() -> None:
    ing, state = make()

    def flows(seq: int, at: float, walk_outs: int) -> Any:
        return zone_msg(seq, at, arrivals=100, departures=90).model_copy(
            update={"service_starts_total": 80, "walk_outs_total": walk_outs}
        )

    assert handle(ing, flows(1, NOW - 10, 9)) == "ok"
    assert handle(ing, flows(2, NOW - 9, 10**6)) == "rejected"
    assert state.invalid[("rejected", "implausible")] == 1
    assert handle(ing, flows(3, NOW - 8, 10)) == "ok"


def test_sequence_gaps_are_counted_per_device() -> None:
    ing, state = make()
    for s in (1, 2, 5, 6, 10):
        assert handle(ing, zone_msg(s, NOW - 20 + s)) == "ok"
    node = state.nodes[NodeKey("b1", "edge-1")]
    assert node.seq_gaps == 5  # 3, 4, 7, 8, 9
    assert handle(ing, zone_msg(3, NOW - 17)) == "stale"  # late, but it arrived after all
    assert node.seq_gaps == 4
    other = zone_msg(1, NOW - 5, branch="b2", device="edge-b2")
    assert handle(ing, other) == "ok"
    assert state.nodes[NodeKey("b2", "edge-b2")].seq_gaps == 0


# ----------------------------------------------------------- over the real broker


def start(cfg: dict[str, Any]) -> Collector:
    c = Collector(parse_server_config(cfg))
    c.start()
    assert c.mqtt is not None
    wait_until(c.mqtt.connected.is_set, 10)
    return c


def test_zone_flood_is_capped_and_unconfigured_zones_page_nobody(
    mosquitto: Any, tmp_path: Path, webhook: Any
) -> None:
    broker = mosquitto()
    branches = [
        {"id": "b1", "region": "north", "counters": 1, "mean_service_s": 60, "zones": {"W1": {}}},
    ]
    cfg = server_config(
        mqtt_port=broker.port,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        sinks={"hook": {"type": "webhook", "url": webhook.url}},
        branches=branches,
    )
    cfg["ingest"] = {"max_zones_per_device": 20, "max_new_zones_per_minute": 10}
    c = start(cfg)
    pub = Publisher(broker.port)
    try:
        now = time.time()
        # the configured zone and 300 invented ones, all with a queue long enough to alert
        pub.send(zone_msg(1, now - 1, people=6, zone="W1"), qos=1)
        for i in range(300):
            pub.send(zone_msg(2 + i, now - 1, people=6, zone=f"x{i:04d}"), qos=0)
        pub.send(zone_msg(400, now, people=6, zone="W1"), qos=1)
        wait_until(lambda: c.state.results["ok"] + c.state.results["rejected"] >= 302, 20)
        wait_until(lambda: any(r.json()["zone"] == "W1" for r in list(webhook.requests)), 20)
        m = scrape(c.http_port)
        people = [k for k in m if k[0] == "lobbywatch_zone_people"]
        assert len(people) == 10, len(people)  # W1 + 9 invented zones in the first minute
        refused = sample(
            m, "lobbywatch_collector_invalid_messages_total", result="rejected", reason="zone_limit"
        )
        assert refused == 291
        # the invented zones alert (visible in the API) but page nobody
        active = httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/alerts", timeout=5).json()
        assert len({a["zone"] for a in active}) == 10
        time.sleep(1.5)
        assert {r.json()["zone"] for r in list(webhook.requests)} == {"W1"}
    finally:
        pub.close()
        c.stop()


def test_identity_poisoning_over_the_broker_is_refused_and_counted(
    mosquitto: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    branches = [
        {"id": "b1", "region": "north", "counters": 1, "mean_service_s": 60},
        {"id": "b2", "region": "south", "counters": 1, "mean_service_s": 60},
    ]
    cfg = server_config(
        mqtt_port=broker.port, db_url=f"sqlite:///{tmp_path / 'c.db'}", branches=branches
    )
    c = start(cfg)
    pub = Publisher(broker.port)
    try:
        now = time.time()
        pub.send(zone_msg(1, now - 30, branch="b2", device="edge-b2"))
        pub.send(zone_msg(1, now - 30, branch="b1", camera="camA", device="edge-a"))
        wait_until(lambda: c.state.results["ok"] == 2, 10)
        pub.send(zone_msg(10**12, now - 29, branch="b1", camera="camA", device="edge-b2"))
        for s in range(2, 22):
            if s == 12:
                continue  # one lost message: a gap
            pub.send(zone_msg(s, now - 28 + s, branch="b2", device="edge-b2", people=s % 4))
        wait_until(lambda: c.state.results["ok"] == 21, 10)
        m = scrape(c.http_port)
        assert sample(m, "lobbywatch_collector_messages_total", result="duplicate") == 0
        assert (
            sample(
                m,
                "lobbywatch_collector_invalid_messages_total",
                result="rejected",
                reason="identity",
            )
            == 1
        )
        assert sample(m, "lobbywatch_device_seq_gaps_total", branch="b2", device="edge-b2") == 1
        detail = httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/branches/b2", timeout=5).json()
        assert detail["devices"][0]["seq_gaps"] == 1
        assert detail["zone_states"][0]["people"] == 21 % 4
    finally:
        pub.close()
        c.stop()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/branches/b1/minutes?since=nan", "since"),
        ("/api/v1/branches/b1/minutes?since=inf", "since"),
        ("/api/v1/branches/b1/minutes?since=-1e300", "since"),
        ("/api/v1/alerts/history?since=nan", "since"),
        ("/api/v1/alerts/history?until=inf", "until"),
        ("/api/v1/alerts/history?offset=9223372036854775808", "offset"),
        ("/api/v1/alerts/history?limit=0", "limit"),
    ],
)
def test_api_parameters_are_validated_with_the_field_named(
    tmp_path: Path, path: str, field: str
) -> None:
    cfg = server_config(mqtt_port=1, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    c = Collector(parse_server_config(cfg), with_mqtt=False)
    c.start()
    try:
        resp = httpx.get(f"http://127.0.0.1:{c.http_port}{path}", timeout=5)
        assert resp.status_code == 422, resp.text
        assert [d["loc"] for d in resp.json()["detail"]] == [["query", field]]
        ok = httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/alerts/history?since=0", timeout=5)
        assert ok.status_code == 200
    finally:
        c.stop()


def test_the_edge_caps_durations_at_the_protocol_bound() -> None:
    """A track older than a day (a static object) must not make the edge's message
    invalid: durations are capped at the bound, everything else passes unchanged."""
    from lobbywatch.edge.agent import zone_message
    from lobbywatch.edge.state import ZoneState
    from lobbywatch.zone_state import ZoneKind

    two_days = 2 * 86_400.0
    state = ZoneState("W1", ZoneKind.WAITING, "W1", NOW, 2, 2, 60.0, two_days, two_days, 9, 7)
    msg = zone_message(state, device="edge-1", branch="b1", seq=1, camera="cam1",
                       completed_dwells_s=[30.0, two_days], wait_threshold_s=600.0)  # fmt: skip
    assert (msg.dwell_p90_s, msg.dwell_max_s) == (86_400.0, 86_400.0)
    assert list(msg.completed_dwells_s) == [30.0, 86_400.0]
    assert (msg.people, msg.dwell_p50_s, msg.arrivals_total) == (2, 60.0, 9)
    assert parse_message(raw(msg)[1]) == msg


def test_identity_bindings_survive_a_collector_restart(
    mosquitto: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound on first sight, a camera and a device stay bound across a restart: a hostile
    device that publishes first after the restart cannot claim either. Nothing is
    retained, so the real devices' messages cannot re-bind them before the stranger."""
    broker = mosquitto()
    branches = [
        {"id": "b1", "region": "north", "counters": 1, "mean_service_s": 60},
        {"id": "b2", "region": "south", "counters": 1, "mean_service_s": 60},
    ]
    cfg = server_config(
        mqtt_port=broker.port, db_url=f"sqlite:///{tmp_path / 'c.db'}", branches=branches
    )
    c = start(cfg)
    pub = Publisher(broker.port)
    try:
        now = time.time()
        pub.send(zone_msg(1, now - 30, branch="b1", camera="camA", device="edge-a"), retain=False)
        pub.send(zone_msg(1, now - 30, branch="b2", camera="camB", device="edge-b2"), retain=False)
        wait_until(lambda: c.state.results["ok"] == 2, 10)
        c.wait_for_store_writes()  # the bindings are written off the processing thread
    finally:
        c.stop()

    c = start(cfg)  # a new process would see exactly this: the same database, no memory
    try:
        assert c.state.results["ok"] == 0
        caplog.clear()
        with caplog.at_level("WARNING", logger="lobbywatch.server.ingest"):
            # first after the restart: a stranger claims camA, edge-b2 claims branch b1
            pub.send(
                zone_msg(5, now - 20, branch="b1", camera="camA", device="edge-evil"), retain=False
            )
            pub.send(
                zone_msg(2, now - 20, branch="b1", camera="camX", device="edge-b2"), retain=False
            )
            wait_until(lambda: c.state.invalid.get(("rejected", "identity"), 0) == 2, 10)
            pub.send(
                zone_msg(2, now - 19, branch="b1", camera="camA", device="edge-a", people=4),
                retain=False,
            )
            wait_until(lambda: c.state.results["ok"] == 1, 10)
        text = caplog.text
        assert "camera b1/camA belongs to device 'edge-a', not 'edge-evil'" in text, text
        # (the second refusal is counted above; the log is rate-limited to one line)
        detail = httpx.get(f"http://127.0.0.1:{c.http_port}/api/v1/branches/b1", timeout=5).json()
        assert {d["device"] for d in detail["devices"]} == {"edge-a"}, detail["devices"]
        assert detail["zone_states"][0]["people"] == 4
    finally:
        pub.close()
        c.stop()
