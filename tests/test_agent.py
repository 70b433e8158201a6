"""The agent in-process with a model-free pipeline stub, against real Mosquitto brokers."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port
from test_agent_support import (
    Collector,
    Received,
    StubPipeline,
    clear_retained,
    device_config,
    seqs,
    stub_factory,
    validator,
    write_video,
)
from test_server_support import parse_metrics, sample

from lobbywatch.edge.agent import EdgeAgent
from lobbywatch.edge.buffer import Outbox
from lobbywatch.edge.config import DeviceConfig
from lobbywatch.protocol import StatusMessage, ZoneMessage, parse_message, subscription, topic_for

SYSTEM_BROKER = 1883


def _system_broker_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", SYSTEM_BROKER), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running(cfg: DeviceConfig, pipes: dict[str, StubPipeline] | None = None) -> Iterator[EdgeAgent]:
    agent = EdgeAgent(cfg, pipeline_factory=stub_factory(pipes))
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        assert agent.started.wait(10), "agent did not start"
        yield agent
    finally:
        agent.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "agent did not stop"


def _zone_msgs(msgs: list[Received]) -> list[dict]:
    return [m.data for m in msgs if m.payload and m.data["type"] == "zone"]


@pytest.mark.skipif(not _system_broker_up(), reason="no Mosquitto on 127.0.0.1:1883")
def test_round_trip_messages_validate_and_account_for_every_dwell(tmp_path: Path) -> None:
    branch = f"t-{uuid.uuid4().hex[:8]}"
    video = write_video(tmp_path / "v.avi")
    cfg = device_config(
        video=video,
        port=SYSTEM_BROKER,
        tmp=tmp_path,
        branch=branch,
        cameras=2,
        publish={"min_interval_s": 0.5},
    )
    collector = Collector(SYSTEM_BROKER, f"lobbywatch/v1/{branch}/#")
    pipes: dict[str, StubPipeline] = {}
    try:
        with running(cfg, pipes) as agent:
            collector.wait_for(lambda ms: len(_zone_msgs(ms)) >= 12, timeout=15)
            assert agent.publisher is not None and agent.publisher.connected
        msgs = collector.wait_for(
            lambda ms: any(
                m.data.get("state") == "offline" and m.data["camera"] is None
                for m in ms
                if m.payload
            ),
            timeout=5,
        )
    finally:
        collector.close()
    check = validator()
    for m in msgs:
        check.validate(m.data)  # the JSON Schema in lobbywatch/protocol.schema.json
        parsed = parse_message(m.payload)
        assert topic_for(parsed) == m.topic
        assert parsed.branch == branch and parsed.device == "edge-test"
    numbers = seqs(msgs)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    zones = {(m.data["camera"], m.data["zone"]) for m in msgs if m.data["type"] == "zone"}
    assert zones == {(c, z) for c in ("cam1", "cam2") for z in ("W1", "cash-1")}
    # every completed dwell the pipeline reported reaches the collector exactly once,
    # although zones are published at most every 0.5 s (dwells accumulate meanwhile)
    for cam, pipe in pipes.items():
        for zone in ("W1", "cash-1"):
            got = [
                d
                for m in _zone_msgs(msgs)
                if (m["camera"], m["zone"]) == (cam, zone)
                for d in m["completed_dwells_s"]
            ]
            assert len(got) == pipe.completed and pipe.completed > 0
    w1 = [m for m in _zone_msgs(msgs) if m["zone"] == "W1"][-1]
    assert w1["wait_threshold_s"] == 600 and w1["blueprint"] == "W1" and w1["kind"] == "waiting"
    statuses = [parse_message(m.payload) for m in msgs if m.data["type"] == "status"]
    device = [s for s in statuses if isinstance(s, StatusMessage) and s.camera is None]
    assert device[0].state == "online" and device[0].cameras == ["cam1", "cam2"]
    assert device[-1].state == "offline" and not device[-1].will
    cams = [s for s in statuses if s.camera == "cam1" and s.camera_health and s.camera_health.up]
    assert cams and cams[0].camera_health is not None and cams[0].camera_health.target_fps == 5.0
    clear_retained(SYSTEM_BROKER, {m.topic for m in msgs})


def test_broker_outage_every_seq_arrives_in_order(tmp_path: Path, mosquitto) -> None:
    store = tmp_path / "mosq"
    store.mkdir()
    broker = mosquitto(
        extra_config=f"allow_anonymous true\npersistence true\n"
        f"persistence_location {store}/\nautosave_interval 1\n"
    )
    video = write_video(tmp_path / "v.avi")
    cfg = device_config(
        video=video, port=broker.port, tmp=tmp_path, fps=5, publish={"min_interval_s": 0}
    )
    # a persistent session: the broker queues for the collector across the restart
    collector = Collector(
        broker.port, subscription(), client_id="collector-outage", persistent=True
    )
    try:
        with running(cfg) as agent:
            collector.wait_for(lambda ms: len(_zone_msgs(ms)) >= 5, timeout=10)
            # Freeze the broker so publishes pile up unacknowledged in its socket, then
            # kill it: those were "sent" but never reached it, and must be replayed.
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)
            outage_start = time.time()
            time.sleep(1.0)
            assert agent.outbox is not None and agent.outbox.depth > 0
            broker.process.kill()
            broker.process.wait()
            time.sleep(2.0)
            assert agent.publisher is not None and not agent.publisher.connected
            assert agent.outbox is not None and agent.outbox.depth > 5  # buffered meanwhile
            assert agent.metrics.value("lobbywatch_edge_mqtt_connected") == 0
            buffered_last = agent.outbox.last_seq
            broker.start()  # same port, same config
            outage_end = time.time()
            collector.wait_for(lambda ms: buffered_last in seqs(ms), timeout=15)
            assert agent.publisher.connects >= 2
        final = collector.wait_for(
            lambda ms: any(m.data.get("state") == "offline" for m in ms if m.payload), timeout=5
        )
    finally:
        collector.close()
    numbers = seqs(final)
    first_seen: list[int] = []
    for n in numbers:
        if n not in first_seen:
            first_seen.append(n)
    assert first_seen == sorted(first_seen), "seq order broken"
    assert first_seen == list(range(first_seen[0], first_seen[-1] + 1)), "a seq is missing"
    # buffered messages keep the time they were observed, not the replay time
    during = [
        m for m in _zone_msgs(final) if outage_start + 0.5 < _epoch(m["ts"]) < outage_end - 0.5
    ]
    assert during, "no zone state observed during the outage was replayed"


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_camera_loss_and_recovery_without_restart(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    video = write_video(tmp_path / "cam.avi", frames=15)  # 1.5 s of "camera"
    cfg = device_config(video=video, port=broker.port, tmp=tmp_path, loop=False, fps=5)
    collector = Collector(broker.port, subscription())
    hidden = tmp_path / "unplugged.avi"
    try:
        with running(cfg) as agent:

            def cam_status(ms: list[Received]) -> list[StatusMessage]:
                out = []
                for m in ms:
                    msg = parse_message(m.payload)
                    if isinstance(msg, StatusMessage) and msg.camera == "cam1":
                        out.append(msg)
                return out

            collector.wait_for(
                lambda ms: any(s.camera_health and s.camera_health.up for s in cam_status(ms)),
                timeout=10,
            )
            video.rename(hidden)  # "unplug": the stream ends and cannot be reopened
            t_gone = time.monotonic()
            msgs = collector.wait_for(
                lambda ms: (
                    cam_status(ms)[-1].camera_health is not None
                    and not cam_status(ms)[-1].camera_health.up
                ),
                timeout=8,
            )
            assert time.monotonic() - t_gone < 6, "camera-down took too long"
            down = cam_status(msgs)[-1]
            assert down.state == "online" and down.camera_health and down.camera_health.error
            assert agent.metrics.value("lobbywatch_edge_camera_up", {"camera": "cam1"}) == 0
            arrivals_before = max(z["arrivals_total"] for z in _zone_msgs(msgs))
            time.sleep(1.5)
            hidden.rename(video)  # plugged back in
            msgs = collector.wait_for(
                lambda ms: (
                    cam_status(ms)[-1].camera_health is not None
                    and cam_status(ms)[-1].camera_health.up
                ),
                timeout=15,
            )
            msgs = collector.wait_for(
                lambda ms: max(z["arrivals_total"] for z in _zone_msgs(ms)) > arrivals_before + 2,
                timeout=10,
            )
            capture = agent.cameras[0].capture
            assert capture.reconnects >= 2
    finally:
        collector.close()
    # counts resumed in the same pipeline: cumulative totals never went backwards
    totals = [z["arrivals_total"] for z in _zone_msgs(msgs) if z["zone"] == "W1"]
    assert totals == sorted(totals)


def test_buffer_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi")
    dead_port = free_port()  # nothing listens: the broker is "down" the whole time
    cfg = device_config(
        video=video,
        port=dead_port,
        tmp=tmp_path,
        fps=10,
        publish={"min_interval_s": 0},
        buffer={"max_messages": 10},
    )
    with running(cfg) as agent:
        # generous: on a loaded CI box the first frames come slowly; the test is about
        # what the bound does, not how fast it gets there
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                agent.metrics.value(
                    "lobbywatch_edge_messages_dropped_total", {"reason": "buffer_full"}
                )
                or 0
            ) >= 5:
                break
            time.sleep(0.1)
    # read after the agent stopped: while it runs, every frame may drop one more
    assert agent.outbox is not None
    dropped = agent.metrics.value(
        "lobbywatch_edge_messages_dropped_total", {"reason": "buffer_full"}
    )
    assert dropped is not None and dropped >= 5
    assert dropped == agent.outbox.dropped_total
    # the outbox as the disk holds it: the newest 10, in order
    reopened = Outbox(agent.outbox.path, 10)
    try:
        assert reopened.depth == 10
        kept = [m.seq for m in reopened.after(0, 100)]
        assert kept == list(range(reopened.last_seq - 9, reopened.last_seq + 1))
    finally:
        reopened.close()


def test_metrics_and_debug_view_endpoints(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    video = write_video(tmp_path / "v.avi")
    mport, dport = free_port(), free_port()
    cfg = device_config(
        video=video,
        port=broker.port,
        tmp=tmp_path,
        metrics={"enabled": True, "bind": "127.0.0.1", "port": mport},
        debug_view={"enabled": True, "port": dport},
    )
    with running(cfg) as agent:
        assert agent.publisher is not None and agent.publisher.wait_connected(5)
        time.sleep(1.5)
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        )
        # Parsed, not substring-matched: a substring also matches the HELP/TYPE lines.
        samples = parse_metrics(text)
        cam = {"camera": "cam1"}
        assert (sample(samples, "lobbywatch_edge_frames_processed_total", **cam) or 0) > 0
        assert sample(samples, "lobbywatch_edge_frames_dropped_total", **cam) is not None
        assert (sample(samples, "lobbywatch_edge_inference_seconds_count", **cam) or 0) > 0
        assert sample(samples, "lobbywatch_edge_zone_people", camera="cam1", zone="W1") is not None
        assert sample(samples, "lobbywatch_edge_camera_up", **cam) == 1.0
        assert (sample(samples, "lobbywatch_edge_camera_fps", **cam) or 0) > 0
        assert sample(samples, "lobbywatch_edge_mqtt_connected") == 1.0
        assert sample(samples, "lobbywatch_edge_buffer_depth") is not None
        published = [
            v for (n, _), v in samples.items() if n == "lobbywatch_edge_messages_published_total"
        ]
        assert published and sum(published) > 0
        assert (
            sample(samples, "lobbywatch_edge_messages_dropped_total", reason="buffer_full") == 0.0
        )
        assert agent.metrics.value("lobbywatch_edge_frames_processed_total", {"camera": "cam1"})
        jpeg = urllib.request.urlopen(
            f"http://127.0.0.1:{dport}/snapshot/cam1.jpg", timeout=5
        ).read()
        assert jpeg[:2] == b"\xff\xd8"
        assert agent._debug.server.server_address[0] == "127.0.0.1"


def test_zone_message_carries_pipeline_state(tmp_path: Path) -> None:
    """Message building alone: a ZoneState becomes a schema-valid ZoneMessage."""
    from lobbywatch.edge.agent import ZoneTrack
    from lobbywatch.edge.state import ZoneState
    from lobbywatch.zone_state import ZoneKind

    video = write_video(tmp_path / "v.avi")
    cfg = device_config(video=video, port=free_port(), tmp=tmp_path)
    agent = EdgeAgent(cfg, pipeline_factory=stub_factory())
    from lobbywatch.edge.buffer import Outbox

    agent.outbox = Outbox(tmp_path / "o.sqlite", 100)
    zt = ZoneTrack("cam1", "W1", 600.0)
    state = ZoneState(
        "W1", ZoneKind.WAITING, "W1", 1_700_000_000.25, 3, 4, 10.0, 20.0, 30.0, 7, 4, (12.5,)
    )
    zt.update(state)
    zt.update(
        ZoneState(
            "W1", ZoneKind.WAITING, "W1", 1_700_000_000.75, 3, 4, 10.5, 20.5, 30.5, 7, 5, (8.0,)
        )
    )
    assert zt.dirty and zt.pending_dwells == [12.5, 8.0]
    agent._enqueue_zone(zt, time.monotonic())
    (row,) = agent.outbox.after(0, 10)
    msg = parse_message(row.payload)
    assert isinstance(msg, ZoneMessage)
    assert msg.completed_dwells_s == [12.5, 8.0] and msg.departures_total == 5
    assert msg.ts.timestamp() == 1_700_000_000.75 and msg.seq == 1
    assert row.topic == "lobbywatch/v1/b-test/cam1/zones/W1" and row.retain
    assert row.expiry_s == 60
    assert not zt.dirty and zt.pending_dwells == []
    validator().validate(msg.model_dump(mode="json"))
    agent.outbox.close()


def test_departure_classes_are_a_change_and_ride_in_the_message(tmp_path: Path) -> None:
    """A new walk-out alone (same people and totals) is published, with its counts."""
    import dataclasses

    from lobbywatch.edge.agent import ZoneTrack
    from lobbywatch.edge.buffer import Outbox
    from lobbywatch.edge.state import ZoneKind, ZoneState

    video = write_video(tmp_path / "v.avi")
    cfg = device_config(video=video, port=free_port(), tmp=tmp_path)
    agent = EdgeAgent(cfg, pipeline_factory=stub_factory())
    agent.outbox = Outbox(tmp_path / "o.sqlite", 100)
    zt = ZoneTrack("cam1", "W1", 600.0)
    base = ZoneState(
        "W1",
        ZoneKind.WAITING,
        "W1",
        1_700_000_000.0,
        2,
        2,
        10.0,
        20.0,
        30.0,
        9,
        7,
        (),
        service_starts_total=5,
        walk_outs_total=1,
        departures_unseen_total=0,
    )
    zt.update(base)
    agent._enqueue_zone(zt, time.monotonic())
    # the last departure in transit is classified a walk-out a few seconds later
    zt.update(dataclasses.replace(base, ts=1_700_000_004.0, walk_outs_total=2))
    assert zt.dirty
    agent._enqueue_zone(zt, time.monotonic())
    rows = agent.outbox.after(0, 10)
    msgs = [parse_message(r.payload) for r in rows]
    assert [
        (m.service_starts_total, m.walk_outs_total, m.departures_unseen_total) for m in msgs
    ] == [  # type: ignore[union-attr]
        (5, 1, 0),
        (5, 2, 0),
    ]
    for m in msgs:
        validator().validate(m.model_dump(mode="json"))
    # a zone without flows keeps omitting them
    zt2 = ZoneTrack("cam1", "W2", None)
    zt2.update(
        dataclasses.replace(
            base,
            zone="W2",
            service_starts_total=None,
            walk_outs_total=None,
            departures_unseen_total=None,
        )
    )
    agent._enqueue_zone(zt2, time.monotonic())
    last = parse_message(agent.outbox.after(0, 10)[-1].payload)
    assert last.walk_outs_total is None and last.service_starts_total is None  # type: ignore[union-attr]
    agent.outbox.close()
