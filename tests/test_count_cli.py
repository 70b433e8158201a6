"""``lobbywatch count`` and ``lobbywatch zones preview`` through the real CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lobbywatch.cli import app, main
from lobbywatch.errors import ConfigError, SourceError

runner = CliRunner()

ZONES = """\
    zones:
      - {id: left, kind: waiting, polygon: [[0, 0.3], [0.5, 0.3], [0.5, 1], [0, 1]]}
      - {id: right, kind: cash_counter, polygon: [[0.5, 0.3], [1, 0.3], [1, 1], [0.5, 1]]}
"""


def write_config(tmp_path: Path, model: Path | None = None, cameras: int = 1) -> Path:
    text = "device_id: dev1\nbranch_id: br1\n"
    if model is not None:
        text += f"model:\n  name: yolox_nano\n  path: {model}\n"
    text += "cameras:\n"
    for i in range(cameras):
        text += f"  - id: cam{i + 1}\n    source: {i}\n    fps: 2\n" + ZONES
    path = tmp_path / "device.yaml"
    path.write_text(text)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


class TestHelp:
    def test_count_help(self) -> None:
        result = runner.invoke(app, ["count", "--help"])
        assert result.exit_code == 0
        for option in ("--config", "--camera", "--out", "--csv", "--fps-sample", "--max-frames"):
            assert option in result.output
        assert "VIDEO_OR_STREAM" in result.output

    def test_zones_preview_help(self) -> None:
        result = runner.invoke(app, ["zones", "preview", "--help"])
        assert result.exit_code == 0
        for option in ("--config", "--source", "--out", "--camera", "--no-detect"):
            assert option in result.output


class TestErrors:
    def test_missing_video_is_one_line_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write_config(tmp_path)
        with pytest.raises(SystemExit) as info:
            main(["count", str(tmp_path / "missing.mp4"), "--config", str(config)])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: video file") and "missing.mp4 does not exist" in err
        assert len(err.splitlines()) == 1

    def test_several_cameras_need_camera_option(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, cameras=2)
        result = runner.invoke(app, ["count", "x.mp4", "--config", str(config)])
        assert isinstance(result.exception, ConfigError)
        assert "cam1, cam2; choose one with --camera" in str(result.exception)

    def test_unknown_camera(self, tmp_path: Path) -> None:
        config = write_config(tmp_path)
        result = runner.invoke(app, ["count", "x.mp4", "-c", str(config), "--camera", "lobby"])
        assert isinstance(result.exception, ConfigError)
        assert "no camera 'lobby'" in str(result.exception)

    def test_invalid_config(self, tmp_path: Path) -> None:
        config = tmp_path / "bad.yaml"
        config.write_text("device_id: dev1\n")
        result = runner.invoke(app, ["count", "x.mp4", "-c", str(config)])
        assert isinstance(result.exception, ConfigError)
        msg = str(result.exception)
        assert "bad.yaml" in msg
        assert "branch_id (line 1): required field is missing" in msg
        assert "cameras (line 1): required field is missing" in msg

    def test_config_errors_one_per_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "bad.yaml"
        config.write_text("device_id: dev1\n")
        with pytest.raises(SystemExit) as info:
            main(["count", "x.mp4", "-c", str(config)])
        assert info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("error: ") and lines[0].endswith(
            "branch_id (line 1): required field is missing"
        )
        assert lines[1].endswith("cameras (line 1): required field is missing")

    def test_corrupt_image_source(self, tmp_path: Path) -> None:
        config = write_config(tmp_path)
        (tmp_path / "bad.jpg").write_bytes(b"garbage")
        result = runner.invoke(
            app, ["zones", "preview", "-c", str(config), "--source", str(tmp_path / "bad.jpg"),
                  "--out", str(tmp_path / "p.png"), "--no-detect"],
        )  # fmt: skip
        assert isinstance(result.exception, SourceError)
        assert "cannot decode image" in str(result.exception)


def test_zones_preview_without_detector(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    image = tmp_path / "view.png"
    cv2.imwrite(str(image), np.zeros((100, 200, 3), np.uint8))
    out = tmp_path / "preview.png"
    result = runner.invoke(
        app,
        ["zones", "preview", "-c", str(config), "--source", str(image), "--out", str(out),
         "--no-detect"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    drawn = cv2.imread(str(out))
    assert drawn.shape == (100, 200, 3)
    # Zones start at y = 0.3 * 100: tinted below, untouched black above (away from labels).
    assert drawn[10, 100].sum() == 0
    assert drawn[90, 20].sum() > 0 and drawn[90, 180].sum() > 0
    assert not np.array_equal(drawn[90, 20], drawn[90, 180])  # one colour per zone


def test_zones_preview_of_the_production_example_needs_no_camera_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CAM_LOBBY_EAST_PASSWORD", "CAM_COUNTERS_PASSWORD", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[1] / "firmware_config" / "examples"
    image = tmp_path / "view.png"
    cv2.imwrite(str(image), np.zeros((90, 160, 3), np.uint8))
    out = tmp_path / "preview.png"
    result = runner.invoke(
        app,
        ["zones", "preview", "-c", str(example / "branch-rtsp-production.yaml"), "--camera",
         "lobby-east", "--source", str(image), "--out", str(out), "--no-detect"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)).shape == (90, 160, 3)


@pytest.mark.model
class TestWithModel:
    def test_count_writes_sensible_csv_and_video(
        self, tmp_path: Path, vtest_video: Path, model_path: Path
    ) -> None:
        config = write_config(tmp_path, model=model_path)
        out_csv, out_video = tmp_path / "counts.csv", tmp_path / "annotated.avi"
        result = runner.invoke(
            app,
            ["count", str(vtest_video), "-c", str(config), "--csv", str(out_csv),
             "--out", str(out_video), "--fps-sample", "0", "--max-frames", "12"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "12 frame(s)" in result.output
        rows = read_csv(out_csv)
        assert list(rows[0]) == [
            "frame", "ts", "detections", "tracks_confirmed",
            "left_people", "left_raw", "left_arrivals", "left_departures",
            "right_people", "right_raw", "right_arrivals", "right_departures",
        ]  # fmt: skip
        assert [int(r["frame"]) for r in rows] == list(range(12))
        assert [float(r["ts"]) for r in rows] == pytest.approx([i / 10 for i in range(12)])
        for r in rows:
            values = {k: int(v) for k, v in r.items() if k != "ts"}
            assert min(values.values()) >= 0
            assert values["left_raw"] + values["right_raw"] <= values["detections"]
            assert values["left_people"] + values["right_people"] <= values["tracks_confirmed"]
            assert values["left_arrivals"] - values["left_departures"] == values["left_people"]
        assert sum(int(r["detections"]) for r in rows) > 12  # vtest always shows people
        assert int(rows[0]["tracks_confirmed"]) == 0  # confirmation takes 3 hits
        assert int(rows[-1]["tracks_confirmed"]) > 0
        cap = cv2.VideoCapture(str(out_video))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (768, 576)
        cap.release()

    def test_count_samples_at_config_fps(
        self, tmp_path: Path, vtest_video: Path, model_path: Path
    ) -> None:
        config = write_config(tmp_path, model=model_path)  # camera fps: 2
        out_csv = tmp_path / "counts.csv"
        result = runner.invoke(
            app, ["count", str(vtest_video), "-c", str(config), "--csv", str(out_csv),
                  "--max-frames", "4"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        rows = read_csv(out_csv)
        assert [int(r["frame"]) for r in rows] == [0, 5, 10, 15]
        assert [float(r["ts"]) for r in rows] == pytest.approx([0.0, 0.5, 1.0, 1.5])

    def test_zones_preview_with_detections(
        self, tmp_path: Path, vtest_video: Path, model_path: Path
    ) -> None:
        config = write_config(tmp_path, model=model_path)
        out = tmp_path / "preview.png"
        result = runner.invoke(
            app, ["zones", "preview", "-c", str(config), "--source", str(vtest_video),
                  "--out", str(out), "--frame", "3"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "frame 3 of" in result.output
        assert "left: " in result.output and " detected" in result.output
        assert cv2.imread(str(out)).shape == (576, 768, 3)

    def test_count_creates_output_folders_and_writes_browser_playable_webm(
        self, tmp_path: Path, vtest_video: Path, model_path: Path
    ) -> None:
        config = write_config(tmp_path, model=model_path)
        out_csv = tmp_path / "new" / "csv" / "counts.csv"
        out_video = tmp_path / "new" / "video" / "annotated.webm"
        result = runner.invoke(
            app,
            ["count", str(vtest_video), "-c", str(config), "--csv", str(out_csv),
             "--out", str(out_video), "--fps-sample", "0", "--max-frames", "5"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(read_csv(out_csv)) == 5
        assert out_video.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska/WebM
        cap = cv2.VideoCapture(str(out_video))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().upper()
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        assert fourcc == "VP80" and frames == 5

    def test_count_with_the_production_example_needs_no_camera_secrets(
        self, tmp_path: Path, vtest_video: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Stream passwords, TLS and credential files are for the box's streams and
        # broker; counting a local video needs none of them.
        for name in ("CAM_LOBBY_EAST_PASSWORD", "CAM_COUNTERS_PASSWORD", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(name, raising=False)
        example = Path(__file__).resolve().parents[1] / "firmware_config" / "examples"
        result = runner.invoke(
            app,
            ["count", str(vtest_video), "-c", str(example / "branch-rtsp-production.yaml"),
             "--camera", "lobby-east", "--max-frames", "2"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "2 frame(s)" in result.output and "camera lobby-east" in result.output
