"""One zone field set across every boundary: edge state -> MQTT payload -> collector -> API.

``zone_state.ZONE_STATE_FIELDS`` names the per-zone values each boundary copies by
name. These tests fail when a model gains a field the list does not name (or lacks one
it names), and when a conversion drops or alters a listed value.
"""

from __future__ import annotations

import dataclasses

from lobbywatch.edge.agent import zone_message
from lobbywatch.edge.state import ZoneState
from lobbywatch.protocol import ZoneMessage, encode_message, topic_for
from lobbywatch.server.api import ZoneOut, zone_out
from lobbywatch.server.config import IngestSettings
from lobbywatch.server.ingest import Ingestor, zone_record
from lobbywatch.server.state import CollectorState, ZoneKey, ZoneRecord
from lobbywatch.zone_state import ZONE_DURATION_FIELDS, ZONE_STATE_FIELDS, ZoneKind

SHARED = set(ZONE_STATE_FIELDS)
T0 = 1_750_000_000.25

#: What each model carries besides the shared set, and why it is not shared: identity
#: and time are re-expressed per boundary, the rest belongs to one side only.
EDGE_ONLY = {"zone", "ts", "completed_dwells_s"}
MESSAGE_ONLY = {
    "v",
    "type",
    "device",
    "seq",
    "ts",
    "branch",
    "camera",
    "zone",
    "completed_dwells_s",
    "wait_threshold_s",
}
RECORD_ONLY = {
    "branch",
    "camera",
    "zone",
    "device",
    "device_wait_threshold_s",
    "ts",
    "seq",
    "seq_epoch",
    "received_at",
    "estimate",
    "threshold_s",
    "flows",
}
API_ONLY = {"zone", "camera", "device", "observed_at", "wait_threshold_s", "estimate"}


def test_every_boundary_model_carries_exactly_the_shared_fields() -> None:
    state_fields = {f.name for f in dataclasses.fields(ZoneState)}
    record_fields = {f.name for f in dataclasses.fields(ZoneRecord)}
    assert state_fields - EDGE_ONLY == SHARED
    assert set(ZoneMessage.model_fields) - MESSAGE_ONLY == SHARED
    assert record_fields - RECORD_ONLY == SHARED
    assert set(ZoneOut.model_fields) - API_ONLY == SHARED
    assert ZONE_DURATION_FIELDS == {"dwell_p50_s", "dwell_p90_s", "dwell_max_s"}


def _full_state() -> ZoneState:
    """Every field set, each to a value no other field has (a swapped copy shows)."""
    return ZoneState(
        zone="W1",
        kind=ZoneKind.WAITING,
        blueprint="W1",
        ts=T0,
        people=4,
        raw_count=5,
        dwell_p50_s=61.2344,
        dwell_p90_s=95.5,
        dwell_max_s=130.0,
        arrivals_total=17,
        departures_total=13,
        completed_dwells_s=(40.0,),
        service_starts_total=9,
        walk_outs_total=2,
        departures_unseen_total=1,
    )


def test_a_fully_populated_state_round_trips_to_the_api() -> None:
    state = _full_state()
    expected = {name: getattr(state, name) for name in ZONE_STATE_FIELDS}
    expected["dwell_p50_s"] = 61.234  # the agent publishes milliseconds
    assert len(set(map(repr, expected.values()))) == len(expected)

    msg = zone_message(
        state,
        device="edge-1",
        branch="b1",
        seq=9,
        camera="cam1",
        completed_dwells_s=[40.0, 52.1234],
        wait_threshold_s=600.0,
    )
    assert {n: getattr(msg, n) for n in ZONE_STATE_FIELDS} == expected
    assert msg.ts.timestamp() == T0
    assert (msg.zone, msg.completed_dwells_s) == ("W1", [40.0, 52.123])

    ingest_state = CollectorState()
    ing = Ingestor(ingest_state, IngestSettings(), "lobbywatch", {"b1": "north"})
    outcome = ing.handle(topic_for(msg), encode_message(msg), T0 + 1)
    assert outcome.result == "ok", outcome.reason
    rec = ingest_state.zones[ZoneKey("b1", "W1")]
    assert {n: getattr(rec, n) for n in ZONE_STATE_FIELDS} == expected
    assert (rec.camera, rec.device, rec.seq, rec.ts, rec.received_at) == (
        "cam1",
        "edge-1",
        9,
        T0,
        T0 + 1,
    )
    assert rec.device_wait_threshold_s == 600.0

    out = zone_out(rec).model_dump(mode="json")
    assert {n: out[n] for n in ZONE_STATE_FIELDS} == {**expected, "kind": "waiting"}
    assert (out["zone"], out["camera"], out["device"]) == ("W1", "cam1", "edge-1")


def test_zone_record_updates_every_shared_field_in_place() -> None:
    first = zone_message(
        _full_state(),
        device="edge-1",
        branch="b1",
        seq=1,
        camera="cam1",
        completed_dwells_s=[],
        wait_threshold_s=None,
    )
    rec = zone_record(first, T0, T0)
    later = dataclasses.replace(
        _full_state(),
        kind=ZoneKind.CASH_COUNTER,
        blueprint="F1",
        ts=T0 + 5,
        people=0,
        raw_count=1,
        dwell_p50_s=None,
        dwell_p90_s=None,
        dwell_max_s=None,
        arrivals_total=18,
        departures_total=18,
    )
    second = zone_message(
        later,
        device="edge-2",
        branch="b1",
        seq=2,
        camera="cam2",
        completed_dwells_s=[],
        wait_threshold_s=300.0,
    )
    same = zone_record(second, T0 + 5, T0 + 6, rec)
    assert same is rec
    assert {n: getattr(rec, n) for n in ZONE_STATE_FIELDS} == {
        n: getattr(later, n) for n in ZONE_STATE_FIELDS
    }
    assert (rec.camera, rec.device, rec.seq, rec.ts, rec.received_at) == (
        "cam2",
        "edge-2",
        2,
        T0 + 5,
        T0 + 6,
    )
    assert rec.device_wait_threshold_s == 300.0
