"""Frame sources: video files, image folders/globs, RTSP/HTTP streams, devices.

:func:`open_source` turns what a user typed (or a camera's ``source`` in the
device config) into a :class:`FrameSource`, an iterable of :class:`Frame`
(index, time stamp, BGR image). Anything unreadable raises
:class:`~lobbywatch.errors.SourceError` with a message naming the source, at
open time where it can be known then (missing, empty or undecodable file, no
first frame), otherwise while iterating (a corrupt image in a folder, a video
that ends long before its header says it should).

Time stamps:

* files and image sequences: ``start_ts + index / fps`` (media time), so results
  are reproducible and independent of processing speed;
* streams and devices: wall-clock seconds since the Unix epoch at capture,
  advanced by a monotonic clock so they never go backwards when NTP steps the
  system clock.

Sampling (``sample_fps``) keeps the first frame and then one frame per
``1/sample_fps`` seconds of source time; skipped video frames are only grabbed,
not converted, which roughly halves their cost.
"""

from __future__ import annotations

import glob as globmod
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from lobbywatch.errors import SourceError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Frame",
    "FrameSource",
    "ImageSequenceSource",
    "StreamSource",
    "VideoFileSource",
    "open_source",
    "redact",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
#: How long a stream may take to open or to deliver a frame before it counts as down.
STREAM_TIMEOUT_MS = 10_000
#: A video that stops this many frames (or 1 %) before its header's frame count is truncated.
_TRUNCATION_SLACK = 2

BgrImage = npt.NDArray[np.uint8]


def _bgr(image: Any) -> BgrImage:
    """OpenCV's decoded frame, typed (it is already a uint8 BGR array: no copy)."""
    return cast(BgrImage, image)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a source.

    Attributes:
        index: frame number in the source (0-based; counts skipped frames too).
        ts: capture time, seconds (see the module docstring).
        image: ``(H, W, 3)`` uint8 BGR image.
    """

    index: int
    ts: float
    image: BgrImage

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def redact(source: str) -> str:
    """Hide the password of a URL (``rtsp://user:secret@host`` -> ``rtsp://user:***@host``)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", source)


def _natural_key(path: Path) -> list[int | str]:
    """Sort ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class _Sampler:
    """Keeps the first frame, then one per ``period`` of source time (no bursts)."""

    def __init__(self, sample_fps: float | None) -> None:
        if sample_fps is not None and not (np.isfinite(sample_fps) and sample_fps >= 0):
            raise ValueError(f"sample_fps must be a finite number >= 0, got {sample_fps}")
        self.period = 1.0 / sample_fps if sample_fps else 0.0
        self._due: float | None = None

    def keep(self, ts: float) -> bool:
        if self.period == 0.0:
            return True
        if self._due is None or ts >= self._due - 1e-6:
            # Catch up from ``ts`` if we fell behind, rather than emitting a burst.
            due = ts if self._due is None else self._due
            self._due = max(due + self.period, ts)
            return True
        return False


class FrameSource:
    """Base of all sources: iterate for :class:`Frame` s, close when done.

    Attributes:
        description: what was opened, safe to print (passwords redacted).
        is_live: a stream or device (wall-clock time stamps, no end).
        fps: the native frame rate, if known.
        frame_count: frames in the source, if known (files, image sequences).
        size: ``(width, height)`` of the first frame.
    """

    description: str
    is_live: bool = False
    fps: float | None = None
    frame_count: int | None = None
    size: tuple[int, int] = (0, 0)

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying capture (idempotent)."""

    def expected_frames(self, sample_fps: float | None = None) -> int | None:
        """How many frames iteration will yield at ``sample_fps``, if known."""
        if self.frame_count is None:
            return None
        if not sample_fps or not self.fps or sample_fps >= self.fps:
            return self.frame_count
        return int(np.ceil(self.frame_count * sample_fps / self.fps))

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class VideoFileSource(FrameSource):
    """A video file decoded by OpenCV (FFmpeg backend); media-time stamps."""

    def __init__(
        self,
        path: Path,
        *,
        sample_fps: float | None = None,
        fps: float | None = None,
        start_ts: float = 0.0,
    ) -> None:
        """Open ``path`` and decode its first frame.

        Args:
            path: the video file.
            sample_fps: frames per second to keep (None or 0: every frame).
            fps: frame rate to assume instead of the container's.
            start_ts: time stamp of frame 0.

        Raises:
            SourceError: missing, empty, undecodable, without frames, or without
                a usable frame rate.
        """
        self.path = Path(path)
        self.description = str(self.path)
        self.sample_fps = sample_fps
        self.start_ts = float(start_ts)
        if not self.path.exists():
            raise SourceError(f"video file {self.path} does not exist")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file")
        if self.path.stat().st_size == 0:
            raise SourceError(f"video file {self.path} is empty (0 bytes)")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self.close()
            raise SourceError(
                f"cannot open {self.path} as a video: the file is corrupt, truncated or not "
                "a video format FFmpeg can read"
            )
        native = float(self._cap.get(cv2.CAP_PROP_FPS))
        chosen = fps if fps is not None else native
        if not (np.isfinite(chosen) and 0 < chosen <= 1000):
            self.close()
            raise SourceError(
                f"video {self.path} has no usable frame rate ({native:g}); give one explicitly"
            )
        self.fps = float(chosen)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise SourceError(f"video {self.path} contains no readable frame (empty or corrupt)")
        self._first: BgrImage | None = _bgr(first)
        self.size = (int(first.shape[1]), int(first.shape[0]))

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise SourceError(f"video {self.path} was already read; open it again")
        sampler = _Sampler(self.sample_fps)
        fps = self.fps or 1.0
        pending: BgrImage | None = self._first  # frame 0, decoded at open
        self._first = None
        index = 0
        while True:
            ts = self.start_ts + index / fps
            if sampler.keep(ts):
                if pending is None:
                    ok, decoded = self._cap.retrieve()
                    pending = _bgr(decoded) if ok and decoded is not None else None
                if pending is not None:  # a single corrupt frame is skipped, not fatal
                    yield Frame(index, ts, pending)
            pending = None
            index += 1
            if not self._cap.grab():  # grab only: skipped frames are never converted
                break
        self._check_complete(index)

    def _check_complete(self, read: int) -> None:
        expected = self.frame_count
        if expected and expected - read > max(_TRUNCATION_SLACK, expected // 100):
            raise SourceError(
                f"video {self.path} ends at frame {read} of {expected}: the file is truncated "
                "or corrupt"
            )

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


class ImageSequenceSource(FrameSource):
    """Still images (a folder, a glob or one file) in natural name order.

    Time stamps are ``start_ts + index / fps`` with ``fps`` images per second
    (default 1): image files carry no reliable capture time.
    """

    def __init__(
        self,
        paths: list[Path],
        description: str,
        *,
        sample_fps: float | None = None,
        fps: float | None = None,
        start_ts: float = 0.0,
    ) -> None:
        """Check the list and decode the first image.

        Raises:
            SourceError: no images, or the first image cannot be decoded.
        """
        if not paths:
            raise SourceError(f"no images found at {description}")
        rate = 1.0 if fps is None else float(fps)
        if not (np.isfinite(rate) and rate > 0):
            raise SourceError(f"image frame rate must be > 0, got {fps}")
        self.paths = paths
        self.description = description
        self.sample_fps = sample_fps
        self.fps = rate
        self.start_ts = float(start_ts)
        self.frame_count = len(paths)
        self._first: BgrImage | None = self._read(paths[0])
        self.size = (int(self._first.shape[1]), int(self._first.shape[0]))

    @staticmethod
    def _read(path: Path) -> BgrImage:
        if not path.is_file():
            raise SourceError(f"image {path} does not exist")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot decode image {path}: the file is corrupt or not an image")
        return _bgr(image)

    def __iter__(self) -> Iterator[Frame]:
        sampler = _Sampler(self.sample_fps)
        first, self._first = self._first, None
        rate = self.fps or 1.0
        for index, path in enumerate(self.paths):
            ts = self.start_ts + index / rate
            if not sampler.keep(ts):
                continue
            image = first if (index == 0 and first is not None) else self._read(path)
            yield Frame(index, ts, image)


class StreamSource(FrameSource):
    """A live RTSP/HTTP stream or a local device; wall-clock time stamps.

    Iteration ends when the stream stops delivering frames (after the capture's
    read timeout); reconnecting is the caller's decision.
    """

    is_live = True

    def __init__(
        self,
        target: str | int,
        *,
        sample_fps: float | None = None,
        timeout_ms: int = STREAM_TIMEOUT_MS,
    ) -> None:
        """Open the stream or device and wait for its first frame.

        Raises:
            SourceError: it cannot be opened or delivers no frame.
        """
        self.target = target
        self.sample_fps = sample_fps
        if isinstance(target, int):
            self.description = f"camera device {target}"
            self._cap = cv2.VideoCapture(target)
        else:
            self.description = redact(target)
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                timeout_ms,
            ]
            self._cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            self.close()
            raise SourceError(
                f"cannot open {self.description}: unreachable, refused or unsupported"
            )
        native = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = native if np.isfinite(native) and 0 < native <= 1000 else None
        # Wall-clock epoch anchored once, advanced by the monotonic clock.
        self._epoch0 = time.time()
        self._mono0 = time.monotonic()
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise SourceError(f"{self.description} opened but delivered no frame")
        self._first: tuple[float, BgrImage] | None = (self.now(), _bgr(first))
        self.size = (int(first.shape[1]), int(first.shape[0]))

    def now(self) -> float:
        """Current time on this source's clock (epoch seconds, monotonic)."""
        return self._epoch0 + (time.monotonic() - self._mono0)

    def __iter__(self) -> Iterator[Frame]:
        sampler = _Sampler(self.sample_fps)
        index = 0
        if self._first is not None:
            ts, image = self._first
            self._first = None
            sampler.keep(ts)
            yield Frame(index, ts, image)
            index += 1
        while self._cap.grab():
            ts = self.now()
            if sampler.keep(ts):
                ok, decoded = self._cap.retrieve()
                if ok and decoded is not None:
                    yield Frame(index, ts, _bgr(decoded))
            index += 1

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


def open_source(
    source: str | int | Path,
    *,
    sample_fps: float | None = None,
    fps: float | None = None,
    start_ts: float = 0.0,
) -> FrameSource:
    """Open whatever ``source`` names.

    Args:
        source: a device index (``0`` or ``"0"``), an ``rtsp://``/``http(s)://``
            URL, a folder of images, a glob (``"frames/*.jpg"``), an image file
            or a video file.
        sample_fps: frames per second to keep (None or 0: every frame).
        fps: frame rate of image sequences (default 1), or override of a video
            file's own rate; ignored for streams.
        start_ts: time stamp of the first frame of a file or image sequence.

    Returns:
        The opened source; use it as a context manager or call ``close()``.

    Raises:
        SourceError: the source is missing, unreadable, empty or of an
            unsupported kind.
    """
    if sample_fps is not None and not (np.isfinite(sample_fps) and sample_fps >= 0):
        raise SourceError(f"sample rate must be >= 0 frames per second, got {sample_fps}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return StreamSource(int(source), sample_fps=sample_fps)
    text = str(source).strip()
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES:
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in {redact(text)} "
                f"(use one of {', '.join(URL_SCHEMES)})"
            )
        return StreamSource(text, sample_fps=sample_fps)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in globmod.glob(str(path))]
        images = sorted(
            (p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key
        )
        return ImageSequenceSource(images, text, sample_fps=sample_fps, fps=fps, start_ts=start_ts)
    if path.is_dir():
        images = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=_natural_key,
        )
        return ImageSequenceSource(
            images, f"{path}/", sample_fps=sample_fps, fps=fps, start_ts=start_ts
        )
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        if not path.exists():
            raise SourceError(f"image {path} does not exist")
        return ImageSequenceSource(
            [path], str(path), sample_fps=sample_fps, fps=fps, start_ts=start_ts
        )
    return VideoFileSource(path, sample_fps=sample_fps, fps=fps, start_ts=start_ts)
