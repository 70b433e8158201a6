"""Property-based fuzzing of the ingest parse+apply path: whatever arrives, the
ingestor never raises, counts every message exactly once, and the state only
ever holds the newest valid observation of each zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lobbywatch.protocol import ZoneMessage, parse_message, topic_for
from lobbywatch.server.config import IngestSettings
from lobbywatch.server.ingest import Ingestor
from lobbywatch.server.state import RESULTS, CollectorState, ZoneKey
from lobbywatch.zone_state import ZoneKind

NOW = 1_750_000_000.0
IDS = st.sampled_from(["b1", "b2", "W1", "W2", "cam1", "edge-1", "edge-2", "x y", "../", "#", ""])

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def valid_zone(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "zone",
        "device": draw(st.sampled_from(["edge-1", "edge-2"])),
        "seq": draw(st.integers(0, 40)),
        "ts": datetime.fromtimestamp(NOW - draw(st.integers(0, 600)), UTC).isoformat(),
        "branch": "b1",
        "camera": "cam1",
        "zone": draw(st.sampled_from(["W1", "W2"])),
        "kind": draw(st.sampled_from([k.value for k in ZoneKind])),
        "people": draw(st.integers(0, 50)),
        "raw_count": draw(st.integers(0, 50)),
        "arrivals_total": draw(st.integers(0, 10_000)),
        "departures_total": draw(st.integers(0, 10_000)),
        "completed_dwells_s": draw(st.lists(st.floats(0, 5000), max_size=5)),
    }


@st.composite
def device_status(draw: st.DrawFn) -> tuple[str, bytes]:
    """Device-level statuses and last wills, on their own or on a wrong topic."""
    device = draw(st.sampled_from(["edge-1", "edge-2"]))
    body: dict[str, Any] = {
        "v": 1,
        "type": "status",
        "device": device,
        "seq": draw(st.integers(0, 40)),
        "ts": datetime.fromtimestamp(NOW - draw(st.integers(0, 600)), UTC).isoformat(),
        "branch": "b1",
        "camera": draw(st.sampled_from([None, None, "cam1"])),
        "state": draw(st.sampled_from(["online", "offline"])),
        "will": draw(st.booleans()),
        "cameras": ["cam1"],
    }
    topic = draw(
        st.sampled_from(
            [
                f"lobbywatch/v1/b1/_device/{device}/status",
                "lobbywatch/v1/b1/_device/edge-2/status",
                "lobbywatch/v1/b1/cam1/status",
                "lobbywatch/v1/b1/_device/status",
            ]
        )
    )
    return topic, json.dumps(body).encode()


@st.composite
def message(draw: st.DrawFn) -> tuple[str, bytes]:
    choice = draw(st.integers(0, 5))
    if choice == 5:
        return draw(device_status())
    if choice == 0:  # arbitrary bytes on an arbitrary topic
        topic = "/".join(draw(st.lists(IDS, min_size=1, max_size=7)))
        return topic, draw(st.binary(max_size=300))
    body = draw(valid_zone())
    if choice == 1:  # one field replaced by any JSON value
        key = draw(st.sampled_from(sorted(body)))
        body[key] = draw(json_value)
    elif choice == 2:  # one field dropped or one extra field
        if draw(st.booleans()):
            body.pop(draw(st.sampled_from(sorted(body))))
        else:
            body[draw(st.text(min_size=1, max_size=6))] = draw(json_value)
    topic = f"lobbywatch/v1/{body.get('branch', 'b1')}/cam1/zones/{body.get('zone', 'W1')}"
    if choice == 4 and draw(st.booleans()):
        topic = draw(
            st.sampled_from(["lobbywatch/v1/b1/cam1/zones/W2", "lobbywatch/v1/b1/cam1/status"])
        )
    try:
        payload = json.dumps(body, allow_nan=True).encode()
    except (TypeError, ValueError):
        payload = b"{"
    if choice == 3 and payload:  # truncated
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    return str(topic), payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message(), min_size=1, max_size=40))
def test_fuzzed_stream_never_raises_and_state_stays_consistent(
    stream: list[tuple[str, bytes]],
) -> None:
    state = CollectorState()
    ing = Ingestor(state, IngestSettings(dedup_window=16), "lobbywatch", {"b1": "north"})
    accepted: dict[ZoneKey, list[ZoneMessage]] = {}
    for topic, payload in stream:
        out = ing.handle(topic, payload, NOW)
        assert out.result in RESULTS
        # handle() turns any exception into malformed/internal: a bug would pass unnoticed
        assert out.reason != "internal", (topic, payload)
        if out.result in ("ok", "stale"):
            # only payloads that really are valid protocol messages, on the topic the
            # protocol puts them on, get this far
            assert out.msg is not None and parse_message(payload) == out.msg
            assert topic == topic_for(out.msg)
        if out.result in ("ok", "stale") and isinstance(out.msg, ZoneMessage):
            accepted.setdefault(ZoneKey(out.msg.branch, out.msg.zone), []).append(out.msg)
        elif out.result not in ("ok", "stale", "duplicate"):
            assert out.msg is None
    assert sum(state.results.values()) == len(stream)
    assert not any(reason == "internal" for _, reason in state.invalid), state.invalid
    for key, node in state.nodes.items():
        assert node.status in ("online", "offline", "unknown") and key.branch == "b1"
        # a camera of an offline device is never up
        if node.status == "offline":
            assert not any(
                d.is_up(NOW, 1e9) for k, d in state.devices.items() if k.device == key.device
            )
    assert set(state.zones) == set(accepted)
    for key, rec in state.zones.items():
        msgs = accepted[key]
        newest = max(m.ts.timestamp() for m in msgs)
        # the record is one of the accepted messages, and the newest observation
        assert rec.ts == newest
        assert any(
            m.seq == rec.seq and m.people == rec.people and m.device == rec.device for m in msgs
        )
        assert rec.people >= 0 and rec.branch == "b1"
