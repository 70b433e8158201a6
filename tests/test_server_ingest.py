"""Ingest core: classification, de-duplication, ordering, liveness (no broker needed)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from test_server_support import device_status_msg, raw, status_msg, zone_msg

from lobbywatch.protocol import MAX_PAYLOAD_BYTES, TopicParts, device_status_topic
from lobbywatch.server.collector import MinuteAggregator
from lobbywatch.server.config import IngestSettings
from lobbywatch.server.ingest import Ingestor, RateLimitedLog, classify_topic
from lobbywatch.server.state import CollectorState, DeviceKey, NodeKey, ZoneKey
from lobbywatch.server.transport import MessageQueue, subscription_ids
from lobbywatch.zone_state import ZoneKind

NOW = 1_750_000_000.0
W1 = ZoneKey("b1", "W1")


def make(**settings: object) -> tuple[Ingestor, CollectorState]:
    state = CollectorState()
    return Ingestor(state, IngestSettings(**settings), "lobbywatch", {"b1": "north"}), state


def handle(ing: Ingestor, msg: object, now: float = NOW) -> str:
    topic, payload = raw(msg)  # type: ignore[arg-type]
    return ing.handle(topic, payload, now).result


def test_valid_zone_message_creates_state() -> None:
    ing, state = make()
    assert handle(ing, zone_msg(1, NOW - 1, people=3, arrivals=3)) == "ok"
    z = state.zones[W1]
    assert (z.people, z.kind, z.camera, z.ts, z.seq) == (3, ZoneKind.WAITING, "cam1", NOW - 1, 1)
    assert state.branches["b1"].region == "north"
    assert state.devices[DeviceKey("b1", "cam1", "edge-1")].last_ts == NOW - 1
    assert state.results["ok"] == 1


def test_duplicate_by_device_and_seq_is_dropped() -> None:
    ing, state = make()
    m = zone_msg(5, NOW - 1, people=2)
    assert handle(ing, m) == "ok"
    assert handle(ing, m) == "duplicate"
    assert state.results == {**state.results, "ok": 1, "duplicate": 1}


def test_out_of_order_keeps_newest_state_but_returns_stale_for_the_estimator() -> None:
    ing, state = make()
    assert handle(ing, zone_msg(2, NOW - 1, people=5)) == "ok"
    late = zone_msg(1, NOW - 2, people=9, dwells=[42.0])
    topic, payload = raw(late)
    out = ing.handle(topic, payload, NOW)
    assert out.result == "stale" and out.zone_key == W1 and out.msg == late
    assert state.zones[W1].people == 5


def test_device_restart_resets_sequence_window() -> None:
    ing, state = make(dedup_window=8)
    for seq in range(1, 30):
        assert handle(ing, zone_msg(seq, NOW - 100 + seq, people=1)) == "ok"
    assert handle(ing, zone_msg(25, NOW - 75, people=1)) == "duplicate"  # in the window
    # a replay far below the window, no newer than what we hold: a duplicate too
    assert handle(ing, zone_msg(3, NOW - 97, people=1)) == "duplicate"
    # the box rebooted: seq starts again, with newer timestamps
    assert handle(ing, zone_msg(0, NOW - 10, people=4)) == "ok"
    assert handle(ing, zone_msg(1, NOW - 9, people=6)) == "ok"  # seq 1 seen before, other ts
    assert state.zones[W1].people == 6
    # after the reset a pre-reboot replay is no longer recognised, but cannot
    # overwrite the newer state either
    assert handle(ing, zone_msg(5, NOW - 95, people=1)) == "stale"
    assert state.zones[W1].people == 6


def test_a_restart_past_the_window_within_the_same_second_is_not_a_duplicate() -> None:
    # seq restarts at 1 after 29 messages, its ts the same as the last one before the
    # reboot (timestamps of one second): it is new, not a replay of the old seq 1
    ing, state = make(dedup_window=8)
    for seq in range(1, 30):
        assert handle(ing, zone_msg(seq, NOW - 100 + seq, people=1)) == "ok"
    assert handle(ing, zone_msg(1, NOW - 71, people=5)) == "ok"
    assert state.zones[W1].people == 5
    assert handle(ing, zone_msg(1, NOW - 71, people=5)) == "duplicate"  # now it is


def test_dedup_window_is_bounded() -> None:
    ing, _ = make(dedup_window=16)
    for seq in range(1000):
        handle(ing, zone_msg(seq, NOW - 2000 + seq, people=1))
    assert len(ing._windows[("b1", "edge-1")].seen) <= 32


@pytest.mark.parametrize(
    ("topic", "payload", "result"),
    [
        ("lobbywatch/v1/b1/cam1/zones/W1", b"not json", "malformed"),
        ("lobbywatch/v1/b1/cam1/zones/W1", b"x" * (MAX_PAYLOAD_BYTES + 1), "oversized"),
        ("lobbywatch/v2/b1/cam1/zones/W1", b"{}", "wrong_version"),
        ("lobbywatch/v1/b1/cam1/nonsense", b"{}", "malformed"),
        ("other/v1/b1/cam1/zones/W1", b"{}", "malformed"),
        ("lobbywatch/v1/b1/cam1/zones/W2", None, "malformed"),  # payload zone is W1
        ("lobbywatch/v1/b9/cam1/zones/W1", None, "malformed"),  # payload branch is b1
        ("lobbywatch/v1/b1/cam1/status", None, "malformed"),  # zone payload on status topic
    ],
)
def test_bad_messages_are_classified(topic: str, payload: bytes | None, result: str) -> None:
    ing, state = make()
    if payload is None:
        payload = zone_msg(1, NOW, people=1).model_dump_json().encode()
    assert ing.handle(topic, payload, NOW).result == result
    assert state.zones == {} and state.results[result] == 1


def test_wrong_payload_version_and_future_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    ing, state = make(max_clock_skew_s=60)
    body = json.loads(zone_msg(1, NOW).model_dump_json())
    body["v"] = 2
    assert ing.handle("lobbywatch/v1/b1/cam1/zones/W1", json.dumps(body).encode(), NOW).result == (
        "wrong_version"
    )
    with caplog.at_level(logging.WARNING):
        assert handle(ing, zone_msg(2, NOW + 3600, people=1)) == "malformed"
    assert state.zones == {}
    # the line names both times and the limit: a clock or a unit is the usual cause
    now = datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ahead = datetime.fromtimestamp(NOW + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        f"timestamp in the future: ts {ahead} is 3600 s after the receive time {now} "
        "(ingest.max_clock_skew_s 60)"
    ) in caplog.text


def test_unknown_branch_policy() -> None:
    ing, state = make(unknown_branches="reject")
    assert handle(ing, zone_msg(1, NOW, branch="zz")) == "rejected"
    ing, state = make()
    assert handle(ing, zone_msg(1, NOW, branch="zz")) == "ok"
    assert state.branches["zz"].region == "unknown" and not state.branches["zz"].configured


def test_zone_limit_bounds_memory() -> None:
    ing, state = make(max_zones_and_devices=3)
    results = [handle(ing, zone_msg(i + 1, NOW, zone=f"Z{i}")) for i in range(5)]
    assert results == ["ok", "ok", "ok", "rejected", "rejected"]
    assert len(state.zones) == 3


def test_liveness_from_status_last_will_and_timeout() -> None:
    ing, state = make()
    key = DeviceKey("b1", "cam1", "edge-1")
    assert handle(ing, status_msg(1, NOW - 5, "online")) == "ok"
    dev = state.devices[key]
    assert dev.is_up(NOW, 60)
    assert not dev.is_up(NOW + 120, 60)  # heartbeat timeout
    assert handle(ing, status_msg(2, NOW - 1, "offline")) == "ok"  # the last will
    assert not dev.is_up(NOW, 60) and dev.status == "offline"
    # an older "online" replayed late does not undo the will
    assert handle(ing, status_msg(0, NOW - 3, "online")) == "stale"
    assert dev.status == "offline"


def test_classify_topic_uses_the_protocol_parser() -> None:
    lw = "lobbywatch"
    assert classify_topic("lobbywatch/v1/b/c/zones/z", lw) == TopicParts(lw, "b", "zone", "c", "z")
    assert classify_topic("lobbywatch/v1/b/c/status", lw) == TopicParts(lw, "b", "status", "c")
    assert classify_topic("lobbywatch/v1/b/_device/d1/status", lw) == TopicParts(
        lw, "b", "device_status", device="d1"
    )
    assert classify_topic("lobbywatch/v1/b/c/zones", lw)[:2] == ("malformed", "topic")
    assert classify_topic("lobbywatch/v1/b/_device/d1", lw)[:2] == ("malformed", "topic")
    assert classify_topic("other/v1/b/c/zones/z", lw)[:2] == ("malformed", "topic")
    assert classify_topic("lobbywatch/v2/b/c/zones/z", lw)[:2] == ("wrong_version", "wrong_version")


# ------------------------------------------------------------ device-level status


def test_device_status_and_last_will_drive_device_liveness() -> None:
    ing, state = make()
    node = NodeKey("b1", "edge-1")
    cam = DeviceKey("b1", "cam1", "edge-1")
    assert handle(ing, device_status_msg(10, NOW - 30, "online")) == "ok"
    assert handle(ing, status_msg(11, NOW - 29, "online")) == "ok"
    assert handle(ing, zone_msg(12, NOW - 28, people=2)) == "ok"
    assert state.nodes[node].status == "online" and state.nodes[node].cameras == ("cam1",)
    assert state.devices[cam].is_up(NOW, 60)
    assert state.results["malformed"] == 0

    # The broker publishes the will later: composed at connect time, so its ts is old
    # and its seq repeats the last one before that connect (9) -- applied anyway.
    will = device_status_msg(9, NOW - 31, "offline", will=True)
    topic, payload = raw(will)
    assert topic == device_status_topic("lobbywatch", "b1", "edge-1")
    out = ing.handle(topic, payload, NOW)
    assert (out.result, out.node_key) == ("ok", node)
    n = state.nodes[node]
    assert (n.status, n.will, n.offline_since) == ("offline", True, NOW)
    assert not state.devices[cam].is_up(NOW, 60)  # its cameras are no longer live
    # the same will again (both subscriptions during the bootstrap): a duplicate
    assert ing.handle(topic, payload, NOW + 1).result == "duplicate"
    assert state.nodes[node].offline_since == NOW
    # the will did not disturb the seq window: replays are still duplicates
    assert handle(ing, zone_msg(12, NOW - 28, people=2)) == "duplicate"
    # a late retained zone state or camera status does not bring the device back...
    assert handle(ing, zone_msg(13, NOW - 27, people=3)) == "ok"
    assert handle(ing, status_msg(14, NOW - 26, "online")) == "ok"
    assert state.nodes[node].status == "offline" and not state.devices[cam].is_up(NOW, 60)
    # ...its device status "online" after the reconnect does
    assert handle(ing, device_status_msg(15, NOW - 1, "online")) == "ok"
    assert state.nodes[node].status == "online" and state.nodes[node].offline_since is None
    assert state.devices[cam].is_up(NOW, 60)
    # a replayed older device status is stale
    assert handle(ing, device_status_msg(3, NOW - 100, "offline")) == "stale"
    assert state.nodes[node].status == "online"


def test_clean_shutdown_offline_status_and_camera_down() -> None:
    ing, state = make()
    cam = DeviceKey("b1", "cam1", "edge-1")
    assert handle(ing, device_status_msg(1, NOW - 10, "online")) == "ok"
    health = {"up": False, "fps": 0.0, "error": "no frames"}
    down = status_msg(2, NOW - 9, "online").model_copy(
        update={"camera_health": __import__("lobbywatch.protocol").protocol.CameraHealth(**health)}
    )
    assert handle(ing, down) == "ok"
    assert not state.devices[cam].is_up(NOW, 60)  # its own status says the camera is down
    assert handle(ing, status_msg(3, NOW - 8, "online")) == "ok"
    assert state.devices[cam].is_up(NOW, 60)
    assert handle(ing, device_status_msg(4, NOW - 5, "offline")) == "ok"  # agent stopped
    node = state.nodes[NodeKey("b1", "edge-1")]
    assert (node.status, node.will, node.offline_since) == ("offline", False, NOW - 5)
    assert not state.devices[cam].is_up(NOW, 60)


@pytest.mark.parametrize(
    ("topic", "msg", "why"),
    [
        # device status (camera null) on a camera status topic
        ("lobbywatch/v1/b1/cam1/status", device_status_msg(1, NOW), "camera null"),
        # camera status on the device status topic
        ("lobbywatch/v1/b1/_device/edge-1/status", status_msg(1, NOW), "camera status"),
        # another device's status on this device's topic
        ("lobbywatch/v1/b1/_device/edge-2/status", device_status_msg(1, NOW), "device"),
        # another branch's will
        ("lobbywatch/v1/b2/_device/edge-1/status", device_status_msg(1, NOW, will=True), "branch"),
        # a will on a camera status topic
        (
            "lobbywatch/v1/b1/cam1/status",
            status_msg(1, NOW, "offline").model_copy(update={"will": True}),
            "will",
        ),
        # a zone state on a status topic, a status on a zone topic (payload type)
        ("lobbywatch/v1/b1/cam1/status", zone_msg(1, NOW), "type"),
        ("lobbywatch/v1/b1/cam1/zones/W1", status_msg(1, NOW), "type"),
        ("lobbywatch/v1/b1/_device/edge-1/status", zone_msg(1, NOW), "type"),
        # camera mismatch on a zone topic
        ("lobbywatch/v1/b1/cam2/zones/W1", zone_msg(1, NOW), "camera"),
    ],
)
def test_topic_payload_mismatch_is_malformed_with_its_reason(
    topic: str, msg: object, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    ing, state = make()
    payload = msg.model_dump_json().encode()  # type: ignore[attr-defined]
    with caplog.at_level("WARNING"):
        out = ing.handle(topic, payload, NOW)
    assert (out.result, out.reason) == ("malformed", "topic_mismatch")
    assert state.invalid == {("malformed", "topic_mismatch"): 1}
    assert state.zones == {} and state.devices == {} and state.nodes == {}
    assert why in caplog.text
    sender = msg.device  # type: ignore[attr-defined]
    assert caplog.records[0].getMessage().endswith(f", device {sender!r} seq 1)")


def test_subscription_ids_of_publish_properties() -> None:
    # message expiry (0x02), user property (0x26), subscription ids 1 and 200 (varint)
    props = b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v" + b"\x0b\x01" + b"\x0b\xc8\x01"
    assert subscription_ids(props) == [1, 200]
    assert subscription_ids(b"") == []
    with pytest.raises(IndexError, match="index out of range"):  # truncated varint
        subscription_ids(b"\x0b")


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    rl = RateLimitedLog(logging.getLogger("t"), interval_s=10)
    with caplog.at_level(logging.WARNING):
        for i in range(100):
            rl.warning("malformed", "bad", NOW + i * 0.01)
        rl.warning("malformed", "bad", NOW + 11)
    assert len(caplog.records) == 2
    assert "99 similar suppressed" in caplog.records[1].getMessage()


def test_each_cause_of_a_refusal_gets_its_own_log_line(caplog: pytest.LogCaptureFixture) -> None:
    # three faults within a second: a flood of one must not hide the others
    import logging

    ing, state = make()
    topic, payload = raw(zone_msg(1, NOW - 5))
    good = json.loads(payload)
    bad = [{**good, "seq": 2, "people": -1}, {**good, "seq": 3, "people": -2}]
    bad += [{**good, "seq": 4, "extra_field": 1}, {**good, "seq": 5, "ts": NOW - 4}]
    with caplog.at_level(logging.WARNING):
        for k, body in enumerate(bad):
            assert ing.handle(topic, json.dumps(body).encode(), NOW + k * 0.1).result == (
                "malformed"
            )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines  # the second negative count is the same cause
    assert "zone.people" in lines[0] and "zone.extra_field" in lines[1] and "zone.ts" in lines[2]
    # each line names the sender and the number of the refused message, read from the
    # payload that failed validation (a recording or the device's log finds it)
    assert lines[0].endswith("(topic 'lobbywatch/v1/b1/cam1/zones/W1', device 'edge-1' seq 2)")
    assert lines[1].endswith(", device 'edge-1' seq 4)") and lines[2].endswith(" seq 5)")
    assert state.invalid == {("malformed", "schema"): 4}
    # garbage varied on purpose (a new unknown field each time) is still a handful of
    # lines per interval (5 with the 3 above), not one a message
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for k in range(100):
            body = {**good, "seq": 10 + k, f"f{chr(97 + k % 26)}{chr(97 + k // 26)}": 1}
            ing.handle(topic, json.dumps(body).encode(), NOW + 1 + k * 0.01)
    assert len(caplog.records) == 2


def test_message_queue_is_bounded_and_batches() -> None:
    q = MessageQueue(maxlen=5)
    for i in range(8):
        q.put(("t", b"%d" % i, 0.0))
    assert q.dropped == 3 and len(q) == 5
    assert [p for _, p, _ in q.get_batch(3, 0.01)] == [b"0", b"1", b"2"]
    assert len(q.get_batch(10, 0.01)) == 2
    assert q.get_batch(10, 0.01) == []


class _Est:
    def __init__(self, p: float | None, f: float | None) -> None:
        self.predicted_wait_s = p
        self.forecast_wait_s = f


def test_minute_aggregator() -> None:
    agg = MinuteAggregator()
    t0 = 1_750_000_020.0  # 20 s into a minute
    assert agg.roll(t0) == []
    agg.sample(W1, 2, _Est(100.0, 200.0), 300.0)
    agg.sample(W1, 4, _Est(300.0, None), 300.0)
    agg.add_dwells(W1, [100.0, 200.0, 400.0, 500.0])
    assert agg.roll(t0 + 10) == []  # same minute
    (row,) = agg.roll(t0 + 60)
    assert row.minute == int(t0 // 60) * 60
    assert (row.samples, row.queue_length_avg, row.queue_length_max) == (2, 3.0, 4)
    assert (row.predicted_wait_s_avg, row.forecast_wait_s_avg) == (200.0, 200.0)
    assert (row.realised_wait_p50_s, row.served, row.served_within_threshold) == (300.0, 4, 2)
    assert row.served_within_threshold_ratio == 0.5
    assert agg.roll(t0 + 120) == []  # nothing happened in the next minute


def test_a_refusal_is_charged_to_the_publisher_the_broker_let_in_not_to_a_payload_claim() -> None:
    ing, _ = make()
    topic, payload = raw(zone_msg(1, NOW - 5))  # edge-1 publishes cam1: cam1 is bound to it
    assert ing.handle(topic, payload, NOW).result == "ok"
    # a schema fault on cam1's topic naming another device: charged to cam1's device, and
    # the cause the alert may quote is ours, not the payload's (a schema error echoes it)
    body = {**json.loads(payload), "seq": 2, "device": "edge-9", "type": "Send staff home"}
    out = ing.handle(topic, json.dumps(body).encode(), NOW + 1)
    assert out.result == "malformed" and out.refused is not None
    assert out.refused[:2] == ("b1", "edge-1")
    assert "staff" not in out.refused[2] and out.refused[2].startswith("payloads do not match")
    # a device status on edge-2's own topic that names edge-1: edge-2's refusal
    status_topic = device_status_topic("lobbywatch", "b1", "edge-2")
    claim = device_status_msg(3, NOW, device="edge-1").model_dump_json().encode()
    out = ing.handle(status_topic, claim, NOW + 2)
    assert (out.reason, out.refused) == (
        "topic_mismatch",
        ("b1", "edge-2", "payload device 'edge-1' differs from the topic's"),
    )
    # a device that speaks another protocol version: said so
    newer = {**json.loads(payload), "seq": 4, "v": 2}
    out = ing.handle(topic, json.dumps(newer).encode(), NOW + 3)
    assert out.refused == ("b1", "edge-1", "payload version is not 1")
    # a camera no device was ever bound to: nobody to charge
    out = ing.handle("lobbywatch/v1/b1/cam7/zones/W1", b"{not json", NOW + 3)
    assert out.result == "malformed" and out.refused is None


@pytest.mark.parametrize(
    ("drop", "line"),
    [
        (("people",), "1 validation error (zone.people: Field required)"),
        (("people", "raw_count"), "2 validation errors (zone.people: Field required)"),
    ],
)
def test_a_schema_refusal_counts_its_errors_and_names_the_first(
    drop: tuple[str, ...], line: str, caplog: pytest.LogCaptureFixture
) -> None:
    ing, _ = make()
    body = {
        k: v for k, v in json.loads(zone_msg(1, NOW).model_dump_json()).items() if k not in drop
    }
    with caplog.at_level(logging.WARNING):
        out = ing.handle("lobbywatch/v1/b1/cam1/zones/W1", json.dumps(body).encode(), NOW)
    assert (out.result, out.reason) == ("malformed", "schema")
    assert line in caplog.text
