"""Installer calibration: the search and its prior, counts.csv, the config write,
``lobbywatch calibrate`` and ``lobbywatch eval --calibrate`` on real frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lobbywatch.cli import app, main
from lobbywatch.edge.calibrate_cli import read_counts, write_camera_model
from lobbywatch.edge.calibration import (
    CalibrationRule,
    Setting,
    above,
    calibrate,
    pipeline_for_threshold,
)
from lobbywatch.edge.config import load_device_config
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.detector import nms
from lobbywatch.edge.pipeline import PipelineSettings
from lobbywatch.errors import SourceError

runner = CliRunner()

CONFIG = """\
# a comment the calibration must keep
device_id: dev1
branch_id: br1
cameras:
  - id: hall   # the lobby camera
    source: 0
    fps: 2
    zones:
      - {id: left, kind: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
      - {id: right, kind: cash_counter, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
model:
  threads: 1
"""


def dets_with_scores(scores: list[float]) -> Detections:
    n = len(scores)
    xyxy = np.array([[10 * i, 0, 10 * i + 8, 20] for i in range(n)], np.float32).reshape(-1, 4)
    return Detections(xyxy, np.array(sorted(scores, reverse=True), np.float32))


# --------------------------------------------------------------------------- search


def test_rethresholding_after_nms_equals_nms_at_the_threshold() -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        xy = rng.uniform(0, 100, (40, 2))
        wh = rng.uniform(5, 40, (40, 2))
        boxes = np.concatenate((xy, xy + wh), axis=1).astype(np.float32)
        scores = rng.uniform(0.05, 1, 40).astype(np.float32)
        low = nms(boxes, scores, 0.45)
        dets = Detections(boxes[low], scores[low])
        for t in (0.2, 0.4, 0.6):
            keep = scores > t
            direct = np.flatnonzero(keep)[nms(boxes[keep], scores[keep], 0.45)]
            got = above(dets, t)
            assert sorted(map(tuple, got.xyxy.tolist())) == sorted(
                map(tuple, boxes[direct].tolist())
            )


def _detect_from(table: dict[tuple[str, str], list[list[float]]]):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, str, int]] = []

    def detect(model: str, size: str, i: int) -> Detections:
        calls.append((model, size, i))
        return dets_with_scores(table.get((model, size), table[("a", "rule")])[i])

    return detect, calls


DEFAULT = Setting("a", "rule", 0.4)


def test_clear_consistent_gain_is_adopted_and_each_network_runs_once_per_snapshot() -> None:
    # 5 snapshots of 6 people; model a scores three of them below 0.4 every time,
    # model b finds all six at 0.45+.
    a = [[0.9, 0.8, 0.7, 0.35, 0.3, 0.25]] * 5
    b = [[0.9, 0.8, 0.7, 0.6, 0.5, 0.46]] * 5
    detect, calls = _detect_from({("a", "rule"): a, ("b", "512"): b})
    res = calibrate(detect, [[6]] * 5, DEFAULT, ["a", "b"], ["rule", "512"], [0.3, 0.4, 0.5])
    assert res.error_before == 3.0
    # a at 0.3 finds 5 (error 1, penalty 0.2); a at 0.2 is not searched; b at 0.4
    # finds 6 (error 0, penalty 0.2 + 0.1): b wins, J 0.3 vs 1.2.
    assert res.chosen == Setting("b", "512", 0.4) and res.error_after == 0.0
    assert "is significant" in res.reason
    assert len(calls) == len(set(calls)) == 2 * 2 * 5


def test_gain_within_noise_keeps_the_default() -> None:
    # One snapshot of five is far better with b, the others equal: mean gain 0.4,
    # standard error 0.4, t(0.95, 4) = 2.13 -> not evidence.
    a = [[0.9, 0.8]] * 4 + [[0.9, 0.35, 0.3]]
    b = [[0.9, 0.8]] * 4 + [[0.9, 0.8, 0.7]]
    truth = [[2]] * 4 + [[3]]
    detect, _ = _detect_from({("a", "rule"): a, ("b", "rule"): b})
    res = calibrate(detect, truth, DEFAULT, ["a", "b"], ["rule"], [0.4])
    assert res.chosen == DEFAULT
    assert "not significant" in res.reason
    assert res.error_before == res.error_after == pytest.approx(0.4)


def test_one_snapshot_never_moves_the_default() -> None:
    detect, _ = _detect_from({("a", "rule"): [[0.9, 0.3]], ("b", "rule"): [[0.9, 0.8]]})
    res = calibrate(detect, [[2]], DEFAULT, ["a", "b"], ["rule"], [0.4])
    assert res.chosen == DEFAULT


def test_prior_breaks_ties_towards_the_default() -> None:
    same = [[0.9, 0.8]] * 5
    detect, _ = _detect_from({("a", "rule"): same, ("b", "rule"): same})
    res = calibrate(detect, [[2]] * 5, DEFAULT, ["b"], ["rule"], [0.3, 0.4, 0.5])
    assert res.chosen == DEFAULT and res.reason == "the default is best under the prior"
    assert CalibrationRule().penalty(Setting("b", "512", 0.5), DEFAULT) == pytest.approx(0.5)


def test_calibrated_threshold_also_starts_tracks() -> None:
    p = pipeline_for_threshold(PipelineSettings(), 0.2)
    assert (p.track_high_score, p.track_low_score) == (0.2, 0.1)
    p = pipeline_for_threshold(PipelineSettings(), 0.05)
    assert (p.track_high_score, p.track_low_score) == (0.05, 0.05)


# --------------------------------------------------------------------------- files


def test_counts_csv_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    cases = {
        "file,people\na.jpg,3\n": "header must start with 'file,count'",
        "file,count,zone:nowhere\na.jpg,3,1\n": "zone 'nowhere' is not a zone of this camera",
        "file,count\nb.jpg,3\n": "snapshot",
        "file,count\na.jpg,-1\n": "whole number >= 0",
        "file,count\na.jpg,two\n": "counts must be whole numbers",
        "file,count,zone:left\na.jpg,1,2\n": "add up to more than count 1",
        "file,count\n": "no snapshot rows",
        "file,count,left\na.jpg,1,1\n": "extra columns must be 'zone:<zone id>'",
    }
    for text, message in cases.items():
        (tmp_path / "counts.csv").write_text(text)
        with pytest.raises(SourceError, match=message):
            read_counts(tmp_path / "counts.csv", tmp_path, ["left", "right"])
    (tmp_path / "counts.csv").write_text("file,count,zone:left,zone:right\na.jpg,,2,1\n")
    (snap,) = read_counts(tmp_path / "counts.csv", tmp_path, ["left", "right"])
    assert snap.count == 3 and snap.zones == {"left": 2, "right": 1}


def test_config_write_keeps_comments_and_is_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "device.yaml"
    cfg.write_text(CONFIG)
    write_camera_model(cfg, "hall", {"name": "yolox_nano", "input_size": 736, "max_upscale": 4.0})
    text = cfg.read_text()
    assert "# a comment the calibration must keep" in text and "# the lobby camera" in text
    cam = load_device_config(cfg, check_files=False).cameras[0]
    settings = cam.detector_settings(load_device_config(cfg, check_files=False).model)
    assert (settings.name, settings.input_size, settings.max_upscale) == ("yolox_nano", 736, 4.0)
    # an invalid choice is refused and the file is left as it was
    with pytest.raises(Exception, match="input_size"):
        write_camera_model(cfg, "hall", {"input_size": 500})
    assert cfg.read_text() == text


# --------------------------------------------------------------------------- CLI, real frames


@pytest.fixture
def snapshots(tmp_path: Path, people_dir: Path) -> Path:
    """Five waiting-room frames with their true counts, as an installer would supply."""
    from lobbywatch.edge.evaluation import load_sequence

    seq = load_sequence(people_dir / "cctv_cam11_waitingroom_20231221")
    folder = tmp_path / "snaps"
    folder.mkdir()
    rows = ["file,count"]
    for i in range(0, 25, 5):
        shutil.copy(seq.frames[i], folder / seq.frames[i].name)
        rows.append(f"{seq.frames[i].name},{len(seq.gt[i])}")
    (folder / "counts.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.model
def test_calibrate_cli_prints_and_writes_the_choice(tmp_path: Path, snapshots: Path) -> None:
    cfg = tmp_path / "device.yaml"
    cfg.write_text(CONFIG)
    args = ["calibrate", "--config", str(cfg), "--camera", "hall", "--snapshots", str(snapshots),
            "--model", "yolox_nano", "--model", "bytetrack_nano", "--size", "416"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "camera hall: 5 snapshots" in out and "default :" in out and "chosen  :" in out
    before = float(out.split("default :")[1].split("error ")[1].split()[0])
    after = float(out.split("chosen  :")[1].split("error ")[1].split()[0])
    assert after <= before
    cam = load_device_config(cfg, check_files=False).cameras[0]
    assert cam.model is not None and cam.model.calibration is not None
    assert cam.model.calibration.snapshots == 5
    assert cam.model.calibration.error_before == pytest.approx(before, abs=0.01)
    assert cam.model.calibration.error_after == pytest.approx(after, abs=0.01)


def test_calibrate_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, snapshots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "device.yaml"
    cfg.write_text(CONFIG)
    base = ["calibrate", "--config", str(cfg), "--snapshots", str(snapshots)]
    for extra, message in (
        (["--camera", "nope"], "no camera 'nope' (cameras: hall)"),
        (["--camera", "hall", "--model", "resnet"], "--model 'resnet' is not a catalogue model"),
        (["--camera", "hall", "--size", "500"], "--size: input size 500 must be a multiple"),
        (["--camera", "hall", "--tta", "rotate"], "--tta 'rotate' is not one of off, flip"),
        (["--camera", "hall", "--counts", str(tmp_path / "x.csv")], "cannot read counts"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([*base, *extra])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.model
@pytest.mark.slow
def test_eval_calibrate_scores_only_the_frames_after_k(tmp_path: Path, people_dir: Path) -> None:
    data = tmp_path / "people"
    for name, n in (("tud_campus", 9), ("cctv_cam11_waitingroom_20231221", 8)):
        src, dst = people_dir / name, data / name
        (dst / "frames").mkdir(parents=True)
        frames = sorted((src / "frames").glob("*.jpg"))[:n]
        for f in frames:
            shutil.copy(f, dst / "frames" / f.name)
        lines = (src / "gt.csv").read_text().splitlines()
        keep = [ln for ln in lines[1:] if int(ln.split(",")[0]) <= n]
        (dst / "gt.csv").write_text("\n".join([lines[0], *keep]) + "\n")
        shutil.copy(src / "SOURCE.md", dst / "SOURCE.md")
    args = ["eval", str(data), "--calibrate", "5", "--json", "--no-baseline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    seqs = {s["name"]: s for s in doc["sequences"]}
    assert seqs["tud_campus"]["frames"] == 9 and seqs["tud_campus"]["frames_scored"] == 4
    assert seqs["cctv_cam11_waitingroom_20231221"]["frames_scored"] == 3
    for s in seqs.values():
        cal = s["calibration"]
        assert cal["frames_used"] == 5 and cal["model"] in {"yolox_nano", "bytetrack_nano"}
        assert 0.15 <= cal["threshold"] <= 0.6 and cal["input_size"]
        # the GT boxes of the K frames stand for the installer's clicks by default
        assert cal["objective"] == "points"
        assert {"mae", "raw_mae", "precision", "recall", "fps"} <= set(s)
    assert doc["overall"]["frames_scored"] == 7 and doc["overall"]["frames"] == 17
    # too few frames for K is a clear error
    result = runner.invoke(app, ["eval", str(data), "--calibrate", "9", "--json"])
    assert result.exit_code != 0
    assert "need more than --calibrate 9" in str(result.exception)
    result = runner.invoke(app, ["eval", str(data), "--calibrate", "5", "--calibrate-by", "x"])
    assert result.exit_code != 0
    assert "--calibrate-by must be points, boxes or count" in str(result.exception)


@pytest.mark.model
def test_agent_builds_each_camera_with_its_calibrated_setting(tmp_path: Path) -> None:
    """A camera's model section reaches its detector and its tracker; others keep the device's."""
    from lobbywatch.edge.agent import default_pipeline_factory

    text = CONFIG.replace(
        "    source: 0\n",
        "    source: 0\n    model: {name: yolox_nano, input_size: 736, max_upscale: 4.0,"
        " score_threshold: 0.25}\n",
        1,
    )
    text += "  score_threshold: 0.45\n"
    second = """\
  - id: door
    source: 1
    zones:
      - {id: all, kind: entrance, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
"""
    text = text.replace("model:\n  threads: 1", second + "model:\n  threads: 1")
    cfg_path = tmp_path / "device.yaml"
    cfg_path.write_text(text)
    cfg = load_device_config(cfg_path, check_files=False)
    hall = default_pipeline_factory(cfg.cameras[0], cfg)
    door = default_pipeline_factory(cfg.cameras[1], cfg)
    assert hall.detector.settings.name == "yolox_nano"  # type: ignore[attr-defined]
    assert hall.detector.settings.input_size == 736  # type: ignore[attr-defined]
    assert hall.detector.settings.score_threshold == 0.25  # type: ignore[attr-defined]
    assert hall.settings.track_high_score == 0.25  # type: ignore[attr-defined]
    assert door.detector.settings.name == "bytetrack_nano"  # type: ignore[attr-defined]
    assert door.detector.settings.score_threshold == 0.45  # type: ignore[attr-defined]
    assert door.settings.track_high_score == 0.3  # type: ignore[attr-defined]
    # a bad override is a config error naming the field
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("input_size: 736", "input_size: 700"))
    with pytest.raises(Exception, match=r"cameras\[0\]\.model\.input_size"):
        load_device_config(bad, check_files=False)


# --------------------------------------------------------------------------- located objective


def test_click_matches_by_foot_point_one_to_one() -> None:
    from lobbywatch.edge.calibration import click_matches

    # box 0: x 0..20, y 0..40 (foot point (10, 40), half sizes 10 x 20)
    # box 1: x 100..120, y 0..40
    d = Detections(
        np.array([[0, 0, 20, 40], [100, 0, 120, 40]], np.float32), np.array([0.9, 0.8], np.float32)
    )
    # (10, 45): d = max(0/10, 5/20) = 0.25 -> box 0;  (12, 30): d = 0.5, also box 0 but taken;
    # (60, 40): 5 half-widths from both boxes -> none;  (115, 59): d = max(0.5, 0.95) -> box 1
    assert click_matches(d, [[10, 45], [12, 30], [60, 40], [115, 59]]) == 2
    # (115, 61): 21 px below the foot point = 1.05 half-heights -> no match
    assert click_matches(d, [[115, 61]]) == 0
    assert click_matches(d, np.zeros((0, 2))) == 0
    assert click_matches(d[:0], [[10, 40]]) == 0


def test_located_error_counts_a_box_off_the_person_once() -> None:
    from lobbywatch.edge.calibration import located_error

    # two people clicked at (4, 20) and (14, 20); boxes at x 0..8 and x 100..108:
    # the count (2) is right, but one box stands on nobody and one person is missed.
    d = Detections(
        np.array([[0, 0, 8, 20], [100, 0, 108, 20]], np.float32), np.array([0.9, 0.8], np.float32)
    )
    err = located_error([[[4, 20], [14, 20]]], by="points")
    assert err(d, 0) == 1.0  # max(fp=1, fn=1), not fp + fn = 2
    # boxes as truth: IoU with the first box 1, the second person's box unmatched
    err_b = located_error([[[0, 0, 8, 20], [10, 0, 18, 20]]], by="boxes")
    assert err_b(d, 0) == 1.0
    # more detections than people: the count error (3 - 2 = 1) when both people are found
    d3 = Detections(
        np.array([[0, 0, 8, 20], [10, 0, 18, 20], [100, 0, 108, 20]], np.float32),
        np.array([0.9, 0.8, 0.7], np.float32),
    )
    assert err(d3, 0) == 1.0 and err_b(d3, 0) == 1.0


def test_located_objective_prefers_the_setting_whose_boxes_are_on_the_people() -> None:
    # 5 snapshots, people at foot points (4, 20) and (14, 20). Model a (the
    # default) counts 2 with one box on nobody; model b boxes both people.
    a_boxes = np.array([[0, 0, 8, 20], [100, 0, 108, 20]], np.float32)
    b_boxes = np.array([[0, 0, 8, 20], [10, 0, 18, 20]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)

    def detect(model: str, size: str, i: int) -> Detections:
        return Detections(a_boxes if model == "a" else b_boxes, scores)

    truth = [[2]] * 5
    by_count = calibrate(detect, truth, DEFAULT, ["a", "b"], ["rule"], [0.4])
    assert by_count.chosen == DEFAULT  # both count 2: nothing to gain
    from lobbywatch.edge.calibration import located_error

    clicks = [[[4, 20], [14, 20]]] * 5
    by_points = calibrate(
        detect, truth, DEFAULT, ["a", "b"], ["rule"], [0.4], error=located_error(clicks)
    )
    # a: error 1 per snapshot; b: 0 + model penalty 0.2; gain 1 with zero spread
    assert by_points.chosen == Setting("b", "rule", 0.4)
    assert (by_points.error_before, by_points.error_after) == (1.0, 0.0)


def test_clicks_csv_round_trips_and_must_agree_with_the_counts(tmp_path: Path) -> None:
    from lobbywatch.edge.calibrate_cli import CountedSnapshot, read_clicks, write_clicks

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    snaps = [
        CountedSnapshot(a, 2, None, ((10.0, 20.0), (30.5, 40.0))),
        CountedSnapshot(b, 0, None, ()),
    ]
    write_clicks(tmp_path / "clicks.csv", snaps)
    assert (tmp_path / "clicks.csv").read_text().splitlines() == [
        "file,x,y", "a.jpg,10.0,20.0", "a.jpg,30.5,40.0",
    ]  # fmt: skip
    counted = [CountedSnapshot(a, 2, None), CountedSnapshot(b, 0, None)]
    back = read_clicks(tmp_path / "clicks.csv", counted)
    assert back[0].points == ((10.0, 20.0), (30.5, 40.0)) and back[1].points == ()
    # counts.csv says 3 people on a.jpg, clicks.csv has 2: refused
    with pytest.raises(SourceError, match=r"a\.jpg has 2 clicks but a count of 3"):
        read_clicks(tmp_path / "clicks.csv", [CountedSnapshot(a, 3, None), counted[1]])
    (tmp_path / "bad.csv").write_text("file,x,y\na.jpg,ten,20\n")
    with pytest.raises(SourceError, match=r"bad\.csv:2: expected file,x,y"):
        read_clicks(tmp_path / "bad.csv", counted)


@pytest.mark.model
def test_calibrate_cli_scores_by_position_when_clicks_are_saved(
    tmp_path: Path, snapshots: Path, people_dir: Path
) -> None:
    from lobbywatch.edge.calibration import foot_points
    from lobbywatch.edge.evaluation import load_sequence

    seq = load_sequence(people_dir / "cctv_cam11_waitingroom_20231221")
    rows = ["file,x,y"]
    for i in range(0, 25, 5):
        rows += [f"{seq.frames[i].name},{x:.1f},{y:.1f}" for x, y in foot_points(seq.gt[i])]
    (snapshots / "clicks.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "device.yaml"
    cfg.write_text(CONFIG)
    args = ["calibrate", "--config", str(cfg), "--camera", "hall", "--snapshots", str(snapshots),
            "--model", "bytetrack_nano", "--size", "416", "--dry-run"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "clicks  : positions from" in result.output
    assert "missed or boxed off a clicked person" in result.output
    # an explicit --counts means counts only
    result = runner.invoke(app, [*args, "--counts", str(snapshots / "counts.csv")])
    assert result.exit_code == 0, result.output
    assert "clicks  :" not in result.output and "missed or boxed" not in result.output


# --------------------------------------------------------------------------- flip TTA (round 8)


def test_flip_tta_is_chosen_when_it_pays_and_costs_one_step() -> None:
    # Model a finds 3 of 6 people above 0.4 on every snapshot; with flip TTA it
    # finds all 6 (error 0, penalty 0.1 for the one step): flip wins.
    off = [[0.9, 0.8, 0.7, 0.35, 0.3, 0.25]] * 5
    flip = [[0.9, 0.8, 0.7, 0.6, 0.5, 0.45]] * 5
    calls: list[tuple[str, str, int, str]] = []

    def detect(model: str, size: str, i: int, tta: str = "off") -> Detections:
        calls.append((model, size, i, tta))
        return dets_with_scores((flip if tta == "flip" else off)[i])

    res = calibrate(detect, [[6]] * 5, DEFAULT, ["a"], ["rule"], [0.4], ttas=("off", "flip"))
    assert res.chosen == Setting("a", "rule", 0.4, "flip")
    assert (res.error_before, res.error_after) == (3.0, 0.0)
    assert CalibrationRule().penalty(res.chosen, DEFAULT) == pytest.approx(0.1)
    # each (model, size, tta) runs once per snapshot
    assert sorted(calls) == sorted({*calls}) and len(calls) == 2 * 5
    # Without flip in the search only the default's mode is tried.
    calls.clear()
    assert calibrate(detect, [[6]] * 5, DEFAULT, ["a"], ["rule"], [0.4]).chosen == DEFAULT
    assert {c[3] for c in calls} == {"off"}


def test_flip_tta_gain_within_the_prior_keeps_the_default() -> None:
    # Flip finds the one person the default misses on one snapshot of five.
    off = [[0.9, 0.8]] * 4 + [[0.9, 0.35]]
    flip = [[0.9, 0.8]] * 4 + [[0.9, 0.8]]

    def detect(model: str, size: str, i: int, tta: str = "off") -> Detections:
        return dets_with_scores((flip if tta == "flip" else off)[i])

    res = calibrate(detect, [[2]] * 5, DEFAULT, ["a"], ["rule"], [0.4], ttas=("off", "flip"))
    # J(default) = 0.2, J(flip) = 0.0 + 0.1 = 0.1 wins the ranking, but the
    # gain (0.2, one snapshot) is not significant: t-test keeps the default.
    assert res.table[0][0] == Setting("a", "rule", 0.4, "flip")
    assert res.chosen == DEFAULT and "not significant" in res.reason


def test_setting_round_trips_tta_into_detector_settings() -> None:
    s = Setting("bytetrack_nano", "896", 0.3, "flip")
    det = s.detector_settings()
    assert (det.tta, det.input_size, det.score_threshold) == ("flip", 896, 0.3)
    assert Setting.of(det) == s


def test_camera_tta_override_errors_name_the_field(tmp_path: Path) -> None:
    text = CONFIG.replace("    source: 0\n", "    source: 0\n    model: {tta: flip}\n", 1)
    ok = tmp_path / "ok.yaml"
    ok.write_text(text)
    cfg = load_device_config(ok, check_files=False)
    assert cfg.cameras[0].detector_settings(cfg.model).tta == "flip"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("tta: flip", "tta: mirror"))
    with pytest.raises(Exception, match=r"cameras\[0\]\.model\.tta") as info:
        load_device_config(bad, check_files=False)
    assert "'off' or 'flip'" in str(info.value)
    # flip on a device that tiles its frames: the camera's model section is named.
    tiled = tmp_path / "tiled.yaml"
    tiled.write_text(text.replace("model:\n  threads: 1", "model:\n  threads: 1\n  tiles: [2, 1]"))
    with pytest.raises(Exception, match=r"cameras\[0\]\.model.*tta: flip needs tiles \(1, 1\)"):
        load_device_config(tiled, check_files=False)


def test_unquoted_yaml_off_is_the_off_mode(tmp_path: Path) -> None:
    """PyYAML reads a bare ``off`` as False; tta / grey_contrast take it as "off"."""
    text = CONFIG.replace("    source: 0\n", "    source: 0\n    model: {tta: off}\n", 1)
    text = text.replace("model:\n  threads: 1", "model:\n  threads: 1\n  grey_contrast: off")
    path = tmp_path / "device.yaml"
    path.write_text(text)
    cfg = load_device_config(path, check_files=False)
    assert cfg.model.grey_contrast == "off"
    assert cfg.cameras[0].detector_settings(cfg.model).tta == "off"
    # true is still an error naming the field
    path.write_text(text.replace("{tta: off}", "{tta: on}"))
    with pytest.raises(Exception, match=r"cameras\[0\]\.model\.tta"):
        load_device_config(path, check_files=False)
