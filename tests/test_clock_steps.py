"""An NTP step of the wall clock on the edge box (issue 10, section 7).

The capture stamps each frame twice: the monotonic clock (everything measured)
and the wall clock (only the published UTC ``ts``). Here the wall clock is
injected and stepped an hour back or forward while the real agent runs a real
``CameraPipeline`` (with a detector stand-in that always sees one person in
the waiting zone): every frame is processed, the dwell keeps rising with the
monotonic clock, and only the published stamp jumps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port
from test_agent_support import device_config, write_video

from lobbywatch.edge.agent import EdgeAgent
from lobbywatch.edge.capture import LatestFrameCapture
from lobbywatch.edge.config import CameraConfig, DeviceConfig
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.pipeline import CameraPipeline, FrameResult, PipelineSettings


class OnePerson:
    """Detector stand-in: one person with the foot point at 1/4 of the width (zone W1)."""

    def detect(self, frame_bgr: Any) -> Detections:
        h, w = frame_bgr.shape[:2]
        box = np.array([[w * 0.2, h * 0.3, w * 0.3, h * 0.9]], np.float32)
        return Detections(box, np.array([0.9], np.float32))


class RecordingPipeline(CameraPipeline):
    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(
            list(camera.zones),
            PipelineSettings(zone_entry_s=0),
            OnePerson(),  # type: ignore[arg-type]
        )
        self.results: list[tuple[float, float | None, FrameResult]] = []
        self.lock = threading.Lock()

    def process(self, frame_bgr: Any, ts: float, wall_ts: float | None = None) -> FrameResult:
        result = super().process(frame_bgr, ts, wall_ts)
        with self.lock:
            self.results.append((ts, wall_ts, result))
        return result


def stepping_clock(step_s: float, after_calls: int) -> Callable[[], float]:
    """``time.time()``, shifted by ``step_s`` from the ``after_calls``-th call on."""
    calls = 0

    def now() -> float:
        nonlocal calls
        calls += 1
        return time.time() + (step_s if calls > after_calls else 0.0)

    return now


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
def test_agent_keeps_measuring_through_a_wall_clock_step(tmp_path: Path, step_s: float) -> None:
    video = write_video(tmp_path / "v.avi", frames=40, fps=10.0)
    cfg: DeviceConfig = device_config(
        video=video, port=free_port(), tmp=tmp_path, fps=5, publish={"min_interval_s": 0}
    )
    pipes: list[RecordingPipeline] = []

    def factory(camera: CameraConfig, _cfg: DeviceConfig) -> RecordingPipeline:
        pipes.append(RecordingPipeline(camera))
        return pipes[-1]

    agent = EdgeAgent(cfg, pipeline_factory=factory, wall_clock=stepping_clock(step_s, 8))
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        assert agent.started.wait(10), "agent did not start"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with pipes[0].lock:
                n = len(pipes[0].results)
                stepped = any(
                    w is not None and abs(w - time.time() - step_s) < 60
                    for _, w, _ in pipes[0].results
                )
            if n >= 20 and stepped:
                break
            time.sleep(0.1)
    finally:
        agent.request_stop()
        thread.join(10)
    worker = agent.cameras[0].worker
    assert worker is not None and worker.errors == 0 and worker.last_error is None
    with pipes[0].lock:
        results = list(pipes[0].results)
    assert len(results) >= 20
    mono = np.array([m for m, _, _ in results])
    wall = np.array([w for _, w, _ in results], dtype=float)
    dwell = np.array([r.zones[0].dwell_max_s for _, _, r in results], dtype=float)
    published = np.array([r.zones[0].ts for _, _, r in results])
    # the wall clock stepped by an hour inside the run ...
    jumps = np.diff(wall)
    assert np.count_nonzero(np.abs(jumps - step_s) < 60) == 1
    np.testing.assert_array_equal(published, wall)  # ... and only the published stamp follows it
    # ... while every measurement follows the monotonic clock: no refusal, no frozen state
    assert np.all(np.diff(mono) > 0)
    # the person enters W1 once confirmed (3rd frame), dwell counted from the first sighting
    np.testing.assert_allclose(dwell[2:], mono[2:] - mono[0], atol=1e-9)
    assert results[-1][2].zones[0].people == 1


def test_capture_stamps_frames_with_both_injected_clocks(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", frames=5, fps=50.0)
    ticks = iter(range(1000))
    cap = LatestFrameCapture(
        "cam", str(video), wall_clock=lambda: 1e9 - 10.0 * next(ticks), monotonic_clock=lambda: 42.0
    )
    cap.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (cap.latest() is None or cap.latest().index < 5):  # type: ignore[union-attr]
            time.sleep(0.02)
    finally:
        cap.stop()
    frame = cap.latest()
    assert frame is not None and frame.index == 5
    # wall clock went backwards by 10 s per frame; the frame keeps both stamps as given
    assert frame.ts == 1e9 - 40.0 and frame.mono == 42.0
    assert cap.frame_age() == 0.0  # ages are measured on the injected monotonic clock
