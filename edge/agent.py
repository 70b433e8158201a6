"""The edge agent: cameras -> pipelines -> per-zone queue state -> MQTT.

Threads and who owns what:

* one :class:`~lobbywatch.edge.capture.LatestFrameCapture` per camera keeps
  only the newest frame and reconnects a lost camera with backoff;
* one :class:`CameraWorker` per camera runs the pipeline at the configured
  sampling rate on the newest frame (skipped slots are counted, never queued);
* the main thread (:meth:`EdgeAgent.run`) decides what to publish — a zone on
  change (at most every ``publish.min_interval_s``) and every zone and status on
  the heartbeat — appends messages to the outbox, pings the systemd watchdog
  and handles SIGTERM/SIGINT;
* the :class:`~lobbywatch.edge.publisher.MqttPublisher` thread drains the
  outbox to the broker and, after every connect, asks for the full state.

No frame leaves this process except through the opt-in debug view.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lobbywatch import __version__
from lobbywatch.edge.buffer import Draft, Outbox
from lobbywatch.edge.capture import Frame, LatestFrameCapture
from lobbywatch.edge.config import CameraConfig, DeviceConfig
from lobbywatch.edge.metrics import DROP_BUFFER_FULL, EdgeMetrics
from lobbywatch.edge.publisher import MqttPublisher, Will
from lobbywatch.edge.state import ZoneState
from lobbywatch.edge.zones import ZoneSpec
from lobbywatch.protocol import (
    MAX_COMPLETED_DWELLS,
    CameraHealth,
    StatusMessage,
    ZoneMessage,
    device_status_topic,
    encode_message,
    status_topic,
    zone_topic,
)
from lobbywatch.protocol_bounds import BOUNDS
from lobbywatch.zone_state import ZONE_DURATION_FIELDS, ZONE_STATE_FIELDS

log = logging.getLogger(__name__)

_TICK_S = 0.2
#: a pipeline step longer than this means a hung worker: stop feeding the watchdog
_HUNG_S = 60.0
_FPS_WINDOW_S = 5.0


# --------------------------------------------------------------------------- pipeline contract


class FrameResultLike(Protocol):
    @property
    def zones(self) -> Sequence[ZoneState]: ...


class PipelineLike(Protocol):
    """What the agent needs of ``lobbywatch.edge.pipeline.CameraPipeline``."""

    def process(
        self, frame_bgr: npt.NDArray[np.uint8], ts: float, wall_ts: float | None = None
    ) -> FrameResultLike:
        """``ts``: monotonic capture time (all measurements); ``wall_ts``: epoch time
        of the capture, only for the published ``ZoneState.ts``."""
        ...


PipelineFactory = Callable[[CameraConfig, DeviceConfig], PipelineLike]


def default_pipeline_factory(camera: CameraConfig, config: DeviceConfig) -> PipelineLike:
    """The real pipeline: one detector session per camera (threads stay independent)."""
    from lobbywatch.edge.detector import Detector
    from lobbywatch.edge.pipeline import CameraPipeline

    detector = Detector.from_settings(camera.detector_settings(config.model))
    return CameraPipeline(list(camera.zones), camera.pipeline_settings(config.pipeline), detector)


# --------------------------------------------------------------------------- systemd


def sd_notify(state: str) -> bool:
    """Tell systemd ``state`` (READY=1, WATCHDOG=1, STOPPING=1) via $NOTIFY_SOCKET.

    The protocol is one datagram on a unix socket; no library needed. Returns
    False when not run under systemd (no socket) or the send fails.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.debug("sd_notify(%s) failed: %s", state, exc)
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec when it applies to this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


# --------------------------------------------------------------------------- per-zone state


@dataclass
class ZoneTrack:
    """The newest state of one zone and what has not been published yet."""

    camera: str
    zone: str
    wait_threshold_s: float | None
    state: ZoneState | None = None
    pending_dwells: list[float] = field(default_factory=list)
    published_key: tuple[int | None, ...] | None = None
    last_pub: float = -math.inf  # monotonic
    dirty: bool = False

    def update(self, state: ZoneState) -> None:
        # completed_dwells_s holds only the dwells that ended at this step: keep
        # them until this zone's next message, whenever that is
        self.pending_dwells.extend(state.completed_dwells_s)
        self.state = state
        if self._key(state) != self.published_key or self.pending_dwells:
            self.dirty = True

    @staticmethod
    def _key(state: ZoneState) -> tuple[int | None, ...]:
        # what counts as a change: confirmed occupancy and flows. raw_count and
        # dwell stats move every frame and ride along on changes and heartbeats.
        return (
            state.people,
            state.arrivals_total,
            state.departures_total,
            state.service_starts_total,
            state.walk_outs_total,
            state.departures_unseen_total,
        )


@dataclass
class CameraRuntime:
    cfg: CameraConfig
    capture: LatestFrameCapture
    pipeline: PipelineLike
    zones: dict[str, ZoneTrack]
    worker: CameraWorker | None = None
    last_up: bool | None = None
    last_status: float = -math.inf


class CameraWorker:
    """Runs one camera's pipeline on the newest frame at ``fps``; never queues frames."""

    def __init__(self, agent: EdgeAgent, rt: CameraRuntime) -> None:
        self.agent = agent
        self.rt = rt
        self.period = 1.0 / rt.cfg.fps
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.busy_since: float | None = None
        self.max_late_s = 0.0
        self._times: deque[float] = deque()
        self.debug_frame: tuple[Frame, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{rt.cfg.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def fps(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] > _FPS_WINDOW_S:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self.period)
        return len(self._times) / span

    def _run(self) -> None:
        cam = self.rt.cfg.id
        metrics = self.agent.metrics
        last_index = -1
        next_t = time.monotonic()
        while not self._stop.is_set():
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            frame = self.rt.capture.latest()
            if frame is not None and frame.index != last_index and self.rt.capture.up:
                last_index = frame.index
                self.max_late_s = max(self.max_late_s, time.monotonic() - next_t)
                self._step(frame)
            next_t += self.period
            late = time.monotonic() - next_t
            if late >= self.period:
                # fell behind: skip to the present instead of catching up on stale slots
                missed = int(late // self.period)
                self.dropped += missed
                metrics.frames_dropped.labels(camera=cam).inc(missed)
                next_t += missed * self.period

    def _step(self, frame: Frame) -> None:
        cam = self.rt.cfg.id
        metrics = self.agent.metrics
        start = time.perf_counter()
        self.busy_since = time.monotonic()
        try:
            # measure on the monotonic clock; the wall clock only stamps what is published
            result = self.rt.pipeline.process(frame.image, frame.mono, frame.ts)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"pipeline error: {type(exc).__name__}: {exc}"[:200]
            if self.errors <= 3 or self.errors % 100 == 0:
                log.exception("camera %s: pipeline failed (%d so far)", cam, self.errors)
            return
        finally:
            self.busy_since = None
        elapsed = time.perf_counter() - start
        self.last_error = None
        self.processed += 1
        self._times.append(time.monotonic())
        metrics.frames_processed.labels(camera=cam).inc()
        metrics.inference_seconds.labels(camera=cam).observe(elapsed)
        if self.agent.config.debug_view.enabled:
            self.debug_frame = (frame, result)
        self.agent.on_result(self.rt, result)


# --------------------------------------------------------------------------- the agent


class EdgeAgent:
    def __init__(
        self,
        config: DeviceConfig,
        *,
        pipeline_factory: PipelineFactory | None = None,
        metrics: EdgeMetrics | None = None,
        software: str = __version__,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``wall_clock`` stamps frames for publishing only (injectable for tests);
        everything measured runs on the monotonic clock."""
        self.config = config
        self._wall_clock = wall_clock
        self.software = f"lobbywatch {software}"
        self.model_name = _model_name(config)
        self.metrics = metrics or EdgeMetrics()
        self._factory = pipeline_factory or default_pipeline_factory
        self._lock = threading.RLock()
        self.stop_event = threading.Event()
        self.started = threading.Event()  # set once every thread is running
        self.outbox: Outbox | None = None
        self.publisher: MqttPublisher | None = None
        self.cameras: list[CameraRuntime] = []
        self._debug: Any = None
        self._last_device_status = -math.inf

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def start(self) -> None:
        """Build everything (fails fast on a missing model or bad source), then start threads."""
        cfg = self.config
        for cam in cfg.cameras:
            pipeline = self._factory(cam, cfg)  # may raise ModelError: before any thread
            capture = LatestFrameCapture(
                cam.id,
                cam.capture_source,
                loop=cam.loop,
                stale_after_s=max(3.0, 3.0 / cam.fps),
                wall_clock=self._wall_clock,
            )
            zones = {z.id: ZoneTrack(cam.id, z.id, z.wait_threshold_s) for z in cam.zones}
            self.cameras.append(CameraRuntime(cam, capture, pipeline, zones))
            self.metrics.add_camera(cam.id, list(zones))
        self.outbox = Outbox(
            cfg.buffer.path,
            cfg.buffer.max_messages,
            on_drop=lambda n: self.metrics.messages_dropped.labels(reason=DROP_BUFFER_FULL).inc(n),
        )
        self.metrics.buffer_depth.set(self.outbox.depth)
        if self.outbox.depth:
            log.info("outbox holds %d messages from a previous run", self.outbox.depth)
        if cfg.metrics.enabled:
            creds = None
            if cfg.metrics.credentials_file is not None:
                from lobbywatch.credentials import load_credentials

                creds = load_credentials(cfg.metrics.credentials_file, "metrics.credentials_file")
            self.metrics.serve(cfg.metrics.bind, cfg.metrics.port, creds)
        if cfg.debug_view.enabled:
            from lobbywatch.edge.debug_view import DebugView

            self._debug = DebugView(
                cfg.debug_view.bind,
                cfg.debug_view.port,
                [c.cfg.id for c in self.cameras],
                self.snapshot_jpeg,
            )
            self._debug.start()
        self.publisher = MqttPublisher(
            cfg.mqtt,
            self.outbox,
            client_id=cfg.client_id,
            will=self._will,
            on_connected=self.republish_all,
            metrics=self.metrics,
        )
        for rt in self.cameras:
            rt.capture.start()
            rt.worker = CameraWorker(self, rt)
            rt.worker.start()
        self.publisher.start()
        self.started.set()

    def run(self, *, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT or :meth:`request_stop`; returns the exit status."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.start()
        sd_notify("READY=1")
        wd = watchdog_interval_s()
        last_wd = -math.inf
        try:
            while not self.stop_event.wait(_TICK_S):
                self.tick()
                if wd is not None and time.monotonic() - last_wd >= wd and self.healthy():
                    sd_notify("WATCHDOG=1")
                    last_wd = time.monotonic()
        finally:
            self.shutdown()
        return 0

    def healthy(self) -> bool:
        """False when a pipeline step hangs: systemd's watchdog then restarts us."""
        now = time.monotonic()
        for rt in self.cameras:
            busy = rt.worker.busy_since if rt.worker else None
            if busy is not None and now - busy > _HUNG_S:
                return False
        return True

    def shutdown(self, flush_timeout: float = 3.0) -> None:
        sd_notify("STOPPING=1")
        self.stop_event.set()
        for rt in self.cameras:
            if rt.worker is not None:
                rt.worker.stop(timeout=2.0)
        for rt in self.cameras:
            rt.capture.stop(timeout=1.0)
        if self.outbox is not None:
            with self._lock:
                now = time.monotonic()
                for rt in self.cameras:
                    for zt in rt.zones.values():
                        if zt.dirty and zt.state is not None:
                            self._enqueue_zone(zt, now)  # nothing observed is left behind
                    self._enqueue_camera_status(rt, now, state="offline")
                self._enqueue_device_status(state="offline")
        if self.publisher is not None:
            drained = self.publisher.stop(flush_timeout=flush_timeout)
            if not drained and self.outbox is not None:
                log.warning("%d messages stay in the outbox for the next start", self.outbox.depth)
        if self._debug is not None:
            self._debug.close()
        self.metrics.close()
        if self.outbox is not None:
            self.outbox.close()
        log.info("stopped")

    # ------------------------------------------------------------------ state in

    def on_result(self, rt: CameraRuntime, result: FrameResultLike) -> None:
        with self._lock:
            for state in result.zones:
                zt = rt.zones.get(state.zone)
                if zt is None:
                    continue
                zt.update(state)
                self.metrics.zone_people.labels(camera=rt.cfg.id, zone=state.zone).set(state.people)

    # ------------------------------------------------------------------ state out

    def tick(self) -> None:
        """Publish what is due: changed zones, heartbeats, camera up/down transitions."""
        pub = self.config.publish
        now = time.monotonic()
        with self._lock:
            for rt in self.cameras:
                up = rt.capture.up
                worker = rt.worker
                self.metrics.camera_up.labels(camera=rt.cfg.id).set(1 if up else 0)
                if worker is not None:
                    self.metrics.camera_fps.labels(camera=rt.cfg.id).set(worker.fps())
                if up != rt.last_up or now - rt.last_status >= pub.heartbeat_s:
                    if up != rt.last_up and rt.last_up is not None:
                        log.info("camera %s %s", rt.cfg.id, "up" if up else "down")
                    self._enqueue_camera_status(rt, now)
                for zt in rt.zones.values():
                    if zt.state is None:
                        continue
                    changed = zt.dirty and now - zt.last_pub >= pub.min_interval_s
                    # a down camera's zones are not refreshed: their retained values
                    # age out through message expiry while its status says down
                    heartbeat = up and now - zt.last_pub >= pub.heartbeat_s
                    if changed or heartbeat:
                        self._enqueue_zone(zt, now)
            if now - self._last_device_status >= pub.heartbeat_s:
                self._enqueue_device_status()

    def republish_all(self) -> None:
        """After every (re)connect: the full current state, behind any backlog."""
        now = time.monotonic()
        with self._lock:
            self._enqueue_device_status()
            for rt in self.cameras:
                self._enqueue_camera_status(rt, now)
                if rt.capture.up:
                    for zt in rt.zones.values():
                        if zt.state is not None:
                            self._enqueue_zone(zt, now)

    # ------------------------------------------------------------------ messages

    def _base(self, seq: int) -> dict[str, Any]:
        return {"device": self.config.device_id, "branch": self.config.branch_id, "seq": seq}

    def _enqueue_zone(self, zt: ZoneTrack, now: float) -> None:
        assert self.outbox is not None and zt.state is not None
        state = zt.state
        dwells = zt.pending_dwells[:MAX_COMPLETED_DWELLS]
        topic = zone_topic(self.config.mqtt.root, self.config.branch_id, zt.camera, zt.zone)

        def build(seq: int) -> Draft:
            msg = zone_message(
                state,
                **self._base(seq),
                camera=zt.camera,
                completed_dwells_s=dwells,
                wait_threshold_s=zt.wait_threshold_s,
            )
            return Draft(topic, encode_message(msg), True, self.config.publish.message_expiry_s)

        self.outbox.put(build)
        del zt.pending_dwells[: len(dwells)]
        zt.published_key = ZoneTrack._key(state)
        zt.dirty = bool(zt.pending_dwells)
        zt.last_pub = now
        self._wake()

    def camera_health(self, rt: CameraRuntime) -> CameraHealth:
        worker = rt.worker
        up = rt.capture.up
        error = rt.capture.error if not up else (worker.last_error if worker else None)
        age = rt.capture.frame_age()
        return CameraHealth(
            up=up,
            fps=round(worker.fps(), 2) if worker else 0.0,
            target_fps=rt.cfg.fps,
            last_frame_age_s=round(age, 2) if age is not None else None,
            error=error[:200] if error else None,
        )

    def _enqueue_camera_status(self, rt: CameraRuntime, now: float, state: str = "online") -> None:
        assert self.outbox is not None
        health = self.camera_health(rt)
        if state == "offline":
            health = CameraHealth(up=False, fps=0.0, target_fps=rt.cfg.fps, error="agent stopped")
        topic = status_topic(self.config.mqtt.root, self.config.branch_id, rt.cfg.id)

        def build(seq: int) -> Draft:
            msg = StatusMessage(
                **self._base(seq),
                ts=datetime.now(UTC),
                camera=rt.cfg.id,
                state=state,  # type: ignore[arg-type]
                camera_health=health,
                heartbeat_s=self.config.publish.heartbeat_s,
                model=self.model_name,
                software=self.software,
            )
            return Draft(topic, encode_message(msg), True, self.config.publish.message_expiry_s)

        self.outbox.put(build)
        rt.last_up = health.up if state == "online" else rt.last_up
        rt.last_status = now
        self._wake()

    def _device_status(self, seq: int, state: str, will: bool = False) -> StatusMessage:
        return StatusMessage(
            **self._base(seq),
            ts=datetime.now(UTC),
            camera=None,
            state=state,  # type: ignore[arg-type]
            cameras=[c.id for c in self.config.cameras],
            will=will,
            heartbeat_s=self.config.publish.heartbeat_s,
            model=self.model_name,
            software=self.software,
        )

    def _device_topic(self) -> str:
        return device_status_topic(
            self.config.mqtt.root, self.config.branch_id, self.config.device_id
        )

    def _enqueue_device_status(self, state: str = "online") -> None:
        assert self.outbox is not None
        topic = self._device_topic()

        def build(seq: int) -> Draft:
            # no expiry: "offline" must outlive the device; "online" is refreshed
            return Draft(topic, encode_message(self._device_status(seq, state)), True, None)

        self.outbox.put(build)
        self._last_device_status = time.monotonic()
        self._wake()

    def _will(self) -> Will:
        assert self.outbox is not None
        msg = self._device_status(self.outbox.last_seq, "offline", will=True)
        return Will(self._device_topic(), encode_message(msg))

    def _wake(self) -> None:
        if self.publisher is not None:
            self.publisher.wakeup()
        if self.outbox is not None:
            self.metrics.buffer_depth.set(self.outbox.depth)

    # ------------------------------------------------------------------ debug view

    def snapshot_jpeg(self, camera: str) -> bytes | None:
        """The newest processed frame with zones and counts drawn on it (debug view only)."""
        import cv2

        rt = next((c for c in self.cameras if c.cfg.id == camera), None)
        if rt is None or rt.worker is None or rt.worker.debug_frame is None:
            return None
        frame, result = rt.worker.debug_frame
        image = annotate_debug_frame(frame.image, rt.cfg.zones, result)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return jpeg.tobytes() if ok else None


def annotate_debug_frame(
    image: npt.NDArray[np.uint8], zones: Sequence[ZoneSpec], result: FrameResultLike
) -> npt.NDArray[np.uint8]:
    """A copy of one processed BGR frame ``(H, W, 3)`` uint8 drawn by ``annotate.Annotator``.

    A real pipeline step (``pipeline.FrameResult``) gets zones, counts, tracks and
    detection boxes, as ``lobbywatch count --out`` draws them; any other result (a
    stand-in pipeline) only its zones and counts. Raises ``ConfigError`` if the zones
    do not fit the frame.
    """
    from lobbywatch.edge.annotate import Annotator
    from lobbywatch.edge.pipeline import FrameResult
    from lobbywatch.edge.zones import ZoneMap  # rasterised per snapshot: debug view only

    h, w = image.shape[:2]
    annotator = Annotator(ZoneMap.from_specs(zones, w, h))
    if isinstance(result, FrameResult):
        return annotator.draw_detections(annotator.draw_result(image, result), result.detections)
    return annotator.draw_zones(image.copy(), tuple(result.zones))


_MAX_DURATION_S = BOUNDS["dwell_s"].hi


def _round(value: float | None) -> float | None:
    """A duration rounded to milliseconds and capped at the protocol's bound (a day):
    a track older than that is a tracker artefact (a static object), and an
    out-of-bound value would make the whole message invalid."""
    return None if value is None else min(round(value, 3), _MAX_DURATION_S)


def zone_message(
    state: ZoneState,
    *,
    device: str,
    branch: str,
    seq: int,
    camera: str,
    completed_dwells_s: Sequence[float],
    wait_threshold_s: float | None,
) -> ZoneMessage:
    """The MQTT payload of one zone's state: the one edge -> protocol conversion.

    Copies every field named in ``zone_state.ZONE_STATE_FIELDS`` from ``state``;
    durations (seconds) are rounded to milliseconds, the capture time ``state.ts``
    (epoch seconds) becomes a UTC datetime. ``completed_dwells_s`` are the dwells
    drained from the zone since its previous message (at most
    ``MAX_COMPLETED_DWELLS``); ``wait_threshold_s`` comes from the device config.
    Raises pydantic ``ValidationError`` for values the protocol forbids (negative counts).
    """
    values: dict[str, Any] = {}
    for name in ZONE_STATE_FIELDS:
        value = getattr(state, name)
        values[name] = _round(value) if name in ZONE_DURATION_FIELDS else value
    return ZoneMessage(
        device=device,
        branch=branch,
        seq=seq,
        ts=datetime.fromtimestamp(state.ts, UTC),
        camera=camera,
        zone=state.zone,
        completed_dwells_s=[min(round(d, 3), _MAX_DURATION_S) for d in completed_dwells_s],
        wait_threshold_s=wait_threshold_s,
        **values,
    )


def _model_name(config: DeviceConfig) -> str:
    variant = getattr(config.model, "variant", None)
    name = config.model.name if config.model.path is None else config.model.path.name
    return f"{name}/{variant}" if variant else name


def run_agent(config: DeviceConfig, *, pipeline_factory: PipelineFactory | None = None) -> int:
    """Entry point of ``lobbywatch edge run``: blocks until SIGTERM/SIGINT."""
    return EdgeAgent(config, pipeline_factory=pipeline_factory).run()
