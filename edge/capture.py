"""Latest-frame capture: one thread per camera that keeps only the newest frame.

A slow detector must never build a backlog of stale frames, so the reader
thread decodes continuously and overwrites a single slot; the pipeline takes
whatever is newest when it is due. The thread also owns the camera's health:
when the stream ends, drops or the device disappears it marks the camera down
and reopens it with exponential backoff, without the agent restarting.

Video *files* stand in for cameras in demos and tests, so they are read at
their native frame rate (otherwise a file would be consumed in seconds), and
``loop=True`` restarts them at the end.

Every frame carries two time stamps: ``mono``, the monotonic clock at capture,
which the pipeline measures everything with (dwell, hysteresis, rates, ages),
and ``ts``, the wall clock, used only for the published UTC time stamp. An NTP
step of the wall clock, forwards or backwards, therefore changes no dwell and
stops nothing. Both clocks are injectable for tests.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

_CREDENTIALS_RE = re.compile(r"(://)[^/@]*@")


def redact(source: str | int) -> str:
    """A source for logs and status messages: never the stream credentials."""
    return _CREDENTIALS_RE.sub(r"\1***@", str(source))


@dataclass(frozen=True, slots=True)
class Frame:
    index: int  # increases by one per frame read since the capture started
    image: npt.NDArray[np.uint8]
    ts: float  # wall-clock capture time, epoch seconds (UTC): only for what is published
    mono: float  # monotonic clock at capture: everything measured (dwell, rates, ages)


class LatestFrameCapture:
    """Reads ``source`` in a daemon thread; :meth:`latest` returns the newest frame."""

    def __init__(
        self,
        camera_id: str,
        source: str | int,
        *,
        loop: bool = False,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stale_after_s: float = 3.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        monotonic_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera_id = camera_id
        self._wall = wall_clock
        self._mono = monotonic_clock
        self.source = source
        self.loop = loop
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stale_after_s = stale_after_s
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.is_file = isinstance(source, str) and "://" not in source
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._index = 0
        self._open = False
        self.error: str | None = "not started"
        self.reconnects = 0
        self.source_fps: float = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{camera_id}", daemon=True)

    # ------------------------------------------------------------------ API

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame

    @property
    def up(self) -> bool:
        """Open and delivering: a stream that silently stalls counts as down too."""
        frame = self.latest()
        return self._open and frame is not None and self._mono() - frame.mono <= self.stale_after_s

    def frame_age(self) -> float | None:
        frame = self.latest()
        return None if frame is None else self._mono() - frame.mono

    # ------------------------------------------------------------------ thread

    def _open_capture(self) -> cv2.VideoCapture:
        if isinstance(self.source, int):
            return cv2.VideoCapture(self.source)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        if self.is_file:
            return cv2.VideoCapture(self.source)
        return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)

    def _run(self) -> None:
        backoff = self.backoff_min_s
        first = True
        while not self._stop.is_set():
            if not first:
                self.reconnects += 1
            first = False
            cap = self._open_capture()
            if not cap.isOpened():
                cap.release()
                self._down(f"cannot open {redact(self.source)}")
            else:
                got = self._read_loop(cap)
                cap.release()
                if got:
                    backoff = self.backoff_min_s  # it worked for a while: retry quickly
                if self._stop.is_set():
                    break
                if self.is_file and self.loop and got:
                    continue  # end of a looping demo file: straight back to frame 0
                self._down("stream ended" if got else f"no frames from {redact(self.source)}")
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max_s)
        with self._lock:
            self._open = False

    def _read_loop(self, cap: cv2.VideoCapture) -> int:
        """Read until the stream fails or stop; returns the number of frames read."""
        fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self.source_fps = fps if fps and 0 < fps <= 120 else (10.0 if self.is_file else 0.0)
        period = 1.0 / self.source_fps if self.is_file else 0.0
        start = time.monotonic()
        count = 0
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None:
                return count
            with self._lock:
                self._index += 1
                self._frame = Frame(
                    self._index, np.asarray(image, np.uint8), self._wall(), self._mono()
                )
                if not self._open:
                    log.info("camera %s up (%s)", self.camera_id, redact(self.source))
                self._open = True
                self.error = None
            count += 1
            if period:
                # pace files at their native rate, as a live camera would deliver them
                delay = start + count * period - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -1.0:
                    start = time.monotonic() - count * period  # fell behind: do not burst
        return count

    def _down(self, reason: str) -> None:
        with self._lock:
            was_open = self._open
            self._open = False
            self.error = reason
        if was_open:
            log.warning("camera %s down: %s", self.camera_id, reason)
