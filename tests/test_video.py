"""Frame sources on files generated here: good, truncated, empty, corrupt."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lobbywatch.edge.video import (
    ImageSequenceSource,
    StreamSource,
    VideoFileSource,
    open_source,
    redact,
)
from lobbywatch.errors import SourceError

W, H, N, FPS = 64, 48, 20, 10.0


def write_video(path: Path, n: int = N, fps: float = FPS) -> Path:
    """MJPG AVI whose frame i is uniformly grey level 10 i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 10 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi")


def write_image(path: Path, level: int) -> Path:
    assert cv2.imwrite(str(path), np.full((H, W, 3), level, np.uint8))
    return path


class TestVideoFile:
    def test_every_frame_with_media_time(self, video: Path) -> None:
        with open_source(video) as src:
            assert isinstance(src, VideoFileSource)
            assert (src.fps, src.frame_count, src.size, src.is_live) == (FPS, N, (W, H), False)
            frames = list(src)
        assert [f.index for f in frames] == list(range(N))
        assert [f.ts for f in frames] == pytest.approx([i / FPS for i in range(N)])
        levels = [float(f.image.mean()) for f in frames]
        assert levels == pytest.approx([10.0 * i for i in range(N)], abs=3)  # JPEG is lossy
        assert frames[0].image.shape == (H, W, 3) and frames[0].image.dtype == np.uint8

    def test_sampling_keeps_one_frame_per_period(self, video: Path) -> None:
        with open_source(video, sample_fps=2.0, start_ts=100.0) as src:
            assert src.expected_frames(2.0) == 4
            frames = list(src)
        assert [f.index for f in frames] == [0, 5, 10, 15]
        assert [f.ts for f in frames] == pytest.approx([100.0, 100.5, 101.0, 101.5])
        assert float(frames[2].image.mean()) == pytest.approx(100.0, abs=3)

    def test_sampling_zero_means_every_frame(self, video: Path) -> None:
        with open_source(video, sample_fps=0) as src:
            assert len(list(src)) == N

    def test_fps_override(self, video: Path) -> None:
        with open_source(video, fps=4.0) as src:
            assert [f.ts for f in src][:3] == pytest.approx([0.0, 0.25, 0.5])

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match=r"video file .*nope\.avi does not exist"):
            open_source(tmp_path / "nope.avi")

    def test_zero_byte_file(self, tmp_path: Path) -> None:
        (tmp_path / "zero.avi").write_bytes(b"")
        with pytest.raises(SourceError, match=r"zero\.avi is empty \(0 bytes\)"):
            open_source(tmp_path / "zero.avi")

    def test_garbage_file(self, tmp_path: Path) -> None:
        path = tmp_path / "garbage.mp4"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
        with pytest.raises(SourceError, match=r"cannot open .*garbage\.mp4 as a video"):
            open_source(path)

    def test_video_without_frames(self, tmp_path: Path) -> None:
        path = write_video(tmp_path / "empty.avi", n=0)
        with pytest.raises(SourceError, match=r"empty\.avi contains no readable frame"):
            open_source(path)

    @pytest.mark.parametrize("fraction", [0.5, 0.7])
    def test_truncated_file(self, video: Path, tmp_path: Path, fraction: float) -> None:
        # Cut early the container is unreadable; cut later it opens, then stops short of
        # the frame count in its header. Either way: a SourceError naming the file.
        data = video.read_bytes()
        path = tmp_path / "cut.avi"
        path.write_bytes(data[: int(len(data) * fraction)])
        frames = []
        with pytest.raises(SourceError, match=r"cut\.avi.*(corrupt|truncated)"):
            with open_source(path) as src:
                frames.extend(src)
        assert len(frames) < N

    def test_iterating_twice_is_an_error(self, video: Path) -> None:
        with open_source(video) as src:
            list(src)
            with pytest.raises(SourceError, match="already read"):
                list(src)


class TestImages:
    def test_folder_in_natural_order(self, tmp_path: Path) -> None:
        for name, level in [("f10.png", 30), ("f2.png", 20), ("f1.png", 10)]:
            write_image(tmp_path / name, level)
        (tmp_path / "notes.txt").write_text("not an image")
        with open_source(tmp_path, fps=2.0) as src:
            assert isinstance(src, ImageSequenceSource) and src.frame_count == 3
            frames = list(src)
        assert [int(f.image.mean()) for f in frames] == [10, 20, 30]
        assert [f.ts for f in frames] == [0.0, 0.5, 1.0]

    def test_glob_and_default_rate(self, tmp_path: Path) -> None:
        for i in range(4):
            write_image(tmp_path / f"a{i}.png", 10 * i)
        write_image(tmp_path / "b.png", 200)
        with open_source(str(tmp_path / "a*.png")) as src:
            frames = list(src)
        assert [f.ts for f in frames] == [0.0, 1.0, 2.0, 3.0]
        assert [int(f.image.mean()) for f in frames] == [0, 10, 20, 30]

    def test_single_image(self, tmp_path: Path) -> None:
        path = write_image(tmp_path / "one.jpg", 50)
        with open_source(path) as src:
            [frame] = list(src)
        assert frame.size == (W, H)

    def test_corrupt_image(self, tmp_path: Path) -> None:
        (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
        with pytest.raises(SourceError, match=r"cannot decode image .*bad\.jpg"):
            open_source(tmp_path / "bad.jpg")

    def test_corrupt_image_inside_a_folder(self, tmp_path: Path) -> None:
        write_image(tmp_path / "1.png", 10)
        (tmp_path / "2.png").write_bytes(b"garbage")
        with open_source(tmp_path) as src:
            it = iter(src)
            assert int(next(it).image.mean()) == 10
            with pytest.raises(SourceError, match=r"cannot decode image .*2\.png"):
                next(it)

    def test_empty_folder(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="no images found"):
            open_source(tmp_path)

    def test_glob_without_matches(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="no images found"):
            open_source(str(tmp_path / "*.jpg"))

    def test_missing_image(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="does not exist"):
            open_source(tmp_path / "missing.png")


class TestStreams:
    def test_redact_password(self) -> None:
        assert redact("rtsp://viewer:s3cret@10.0.0.2/ch1") == "rtsp://viewer:***@10.0.0.2/ch1"
        assert redact("rtsp://10.0.0.2/ch1") == "rtsp://10.0.0.2/ch1"

    def test_unreachable_stream_names_it_without_password(self) -> None:
        with pytest.raises(SourceError) as info:
            StreamSource("rtsp://viewer:s3cret@127.0.0.1:1/ch1", timeout_ms=2000)
        assert "rtsp://viewer:***@127.0.0.1:1/ch1" in str(info.value)
        assert "s3cret" not in str(info.value)

    def test_unsupported_scheme(self) -> None:
        with pytest.raises(SourceError, match="unsupported URL scheme 'ftp'"):
            open_source("ftp://example.com/video.mp4")

    def test_missing_device(self) -> None:
        with pytest.raises(SourceError, match="camera device 57"):
            open_source("57")

    def test_bad_sample_rate(self, video: Path) -> None:
        with pytest.raises(SourceError, match="sample rate"):
            open_source(video, sample_fps=-1)
