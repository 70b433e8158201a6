"""The agent as a process: SIGTERM, last will on a crash, systemd notify, real model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_agent_support import Collector, Received, device_dict, validator, write_video

from lobbywatch.protocol import StatusMessage, ZoneMessage, parse_message, subscription

TESTS = Path(__file__).resolve().parent

STUB_MAIN = f"""
import logging, sys
sys.path.insert(0, {str(TESTS)!r})
from test_agent_support import stub_factory
from lobbywatch.edge.agent import run_agent
from lobbywatch.edge.config import load_device_config
logging.basicConfig(level=logging.INFO)
sys.exit(run_agent(load_device_config(sys.argv[1]), pipeline_factory=stub_factory()))
"""


def _start(
    tmp_path: Path, cfg: dict, env: dict[str, str] | None = None, cli: bool = False
) -> subprocess.Popen[bytes]:
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    if cli:
        cmd = [sys.executable, "-m", "lobbywatch.cli", "edge", "run", "--config", str(path)]
    else:
        script = tmp_path / "stub_main.py"
        script.write_text(STUB_MAIN)
        cmd = [sys.executable, str(script), str(path)]
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _device_status(msgs: list[Received]) -> list[StatusMessage]:
    out = []
    for m in msgs:
        if m.payload:
            msg = parse_message(m.payload)
            if isinstance(msg, StatusMessage) and msg.camera is None:
                out.append(msg)
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_flushes_publishes_offline_and_exits_0(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.1)
    collector = Collector(broker.port, subscription())
    cfg = device_dict(video=write_video(tmp_path / "v.avi"), port=broker.port, tmp=tmp_path)
    proc = _start(
        tmp_path,
        cfg,
        env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"},
    )
    try:
        collector.wait_for(lambda ms: sum(1 for m in ms if b'"zone"' in m.payload) >= 4, 20)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=8)
        took = time.monotonic() - t0
    finally:
        _stop(proc)
        collector.close()
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert rc == 0, out
    assert took < 5, f"shutdown took {took:.1f}s"
    assert "received SIGTERM" in out
    # a collector arriving later sees the device offline (retained), not via the will
    late = Collector(broker.port, subscription())
    try:
        msgs = late.wait_for(lambda ms: len(_device_status(ms)) >= 1, timeout=5)
        cams = late.wait_for(
            lambda ms: any(
                b'"camera":"cam1"' in m.payload and b"status" in m.topic.encode() for m in ms
            ),
            timeout=5,
        )
    finally:
        late.close()
    (device,) = _device_status(msgs)
    assert device.state == "offline" and not device.will
    assert all(m.retain for m in msgs)
    cam = [parse_message(m.payload) for m in cams if m.topic.endswith("cam1/status")][-1]
    assert isinstance(cam, StatusMessage) and cam.state == "offline"
    # systemd protocol: ready, watchdog pings while healthy, stopping
    states: list[str] = []
    while True:
        try:
            states.append(notify.recv(256).decode())
        except (TimeoutError, BlockingIOError):
            break
    notify.close()
    assert states[0] == "READY=1" and "STOPPING=1" in states
    assert states.count("WATCHDOG=1") >= 3


def test_crash_triggers_delayed_last_will(tmp_path: Path, mosquitto) -> None:
    broker = mosquitto()
    collector = Collector(broker.port, subscription())
    cfg = device_dict(
        video=write_video(tmp_path / "v.avi"),
        port=broker.port,
        tmp=tmp_path,
        mqtt={"will_delay_s": 2},
    )
    proc = _start(tmp_path, cfg)
    try:
        collector.wait_for(lambda ms: any(s.state == "online" for s in _device_status(ms)), 20)
        proc.kill()  # no chance to say goodbye
        proc.wait()
        killed = time.monotonic()
        time.sleep(1.0)
        assert not any(s.will for s in _device_status(collector.snapshot())), "will not delayed"
        msgs = collector.wait_for(lambda ms: any(s.will for s in _device_status(ms)), timeout=8)
        assert time.monotonic() - killed >= 1.5
    finally:
        _stop(proc)
        collector.close()
    will = [s for s in _device_status(msgs) if s.will][-1]
    assert will.state == "offline" and will.cameras == ["cam1"] and will.device == "edge-test"
    online = [s for s in _device_status(msgs) if s.state == "online"][-1]
    assert will.seq < online.seq  # composed at connect: outside the seq sequence
    validator().validate(will.model_dump(mode="json"))


@pytest.mark.model
def test_cli_agent_on_real_frames_publishes_valid_zone_states(
    tmp_path: Path, mosquitto, model_path: Path, vtest_video: Path
) -> None:
    broker = mosquitto()
    collector = Collector(broker.port, subscription())
    cfg = device_dict(video=vtest_video, port=broker.port, tmp=tmp_path, fps=2)
    cfg["cameras"][0]["zones"] = [
        {
            "id": "W1",
            "kind": "waiting",
            "blueprint": "W1",
            "polygon": [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]],
        },
        {
            "id": "self-service",
            "kind": "self_service",
            "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]],
        },
    ]
    cfg["model"] = {"name": "yolox_nano", "path": str(model_path)}
    proc = _start(tmp_path, cfg, cli=True)
    try:
        msgs = collector.wait_for(
            lambda ms: any(
                b'"zone":"W1"' in m.payload and b'"people":0,' not in m.payload for m in ms
            ),
            timeout=40,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=8) == 0
        msgs = collector.wait_for(
            lambda ms: any(s.state == "offline" for s in _device_status(ms)), timeout=5
        )
    finally:
        _stop(proc)
        collector.close()
    check = validator()
    zones = []
    for m in msgs:
        check.validate(m.data)
        msg = parse_message(m.payload)
        if isinstance(msg, ZoneMessage):
            zones.append(msg)
    assert max(z.people for z in zones if z.zone == "W1") >= 1  # vtest has people walking
    assert any(z.raw_count > 0 for z in zones)
    assert {z.zone for z in zones} == {"W1", "self-service"}
