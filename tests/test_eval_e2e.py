"""End to end on the shared people set (every 3rd frame to keep it quick)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lobbywatch.edge.evaluation import evaluate

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(model_path: Path, people_dir: Path):  # type: ignore[no-untyped-def]
    return evaluate(people_dir, step=3)


def test_beats_the_plain_baseline(report) -> None:  # type: ignore[no-untyped-def]
    o = report.overall
    assert o.frames == 21 + 10 + 50 + 24
    # the 416 baseline reproduces the shared README within subsampling noise
    assert 2.8 <= o.baseline["mae"] <= 3.8
    # Achieved on this every-3rd-frame subset with the shipped default
    # (bytetrack_nano, 512, 0.4; docs/accuracy.md round 6) at the real time
    # stamps: raw MAE 1.88 vs baseline 3.22, P 0.77, R 0.70, product MAE 1.50
    # (waiting room 20231014: recall 0.62, raw 4.05 vs baseline 8.43).
    assert o.raw_mae <= 0.7 * o.baseline["mae"]
    assert o.precision >= 0.74 and o.recall >= 0.68
    assert o.mae <= 2.2 and o.mae <= 0.65 * o.baseline["mae"]
    room = next(s for s in report.sequences if s.name.endswith("20231014"))
    assert room.recall >= 0.58 and room.baseline["recall"] <= 0.52
    assert room.raw_mae <= 0.55 * room.baseline["mae"]
    # The small 4:3 frames: no regression of the raw count vs the baseline.
    for name, limit in (("pets09_s2l1", 1.8), ("tud_campus", 1.4)):
        seq = next(s for s in report.sequences if s.name == name)
        assert seq.raw_mae <= limit, (name, seq.raw_mae)
    assert o.fps > 0


def test_count_is_not_zero_at_start_up(model_path: Path, people_dir: Path) -> None:
    """The first frames after a (re)start, before any track can be confirmed,
    report the tentative tracks instead of an empty lobby."""
    from lobbywatch.edge.detector import Detector
    from lobbywatch.edge.evaluation import load_sequence, read_frame, tracker_counter

    seq = load_sequence(people_dir / "cctv_cam11_waitingroom_20231014")
    detector, count = Detector.from_settings(), tracker_counter()
    for i in range(2):  # confirm_hits = 3: updates 1 and 2 cannot confirm anyone
        det = detector.detect(read_frame(seq.frames[i]))
        n = count(det, i / seq.fps)
        # frame 1: every detection is a fresh tentative track; frame 2: plus the
        # tentative tracks unmatched now but seen within the count grace
        assert n == len(det) if i == 0 else n >= len(det), (i, n, len(det))
        assert n >= 0.6 * len(seq.gt[i]), (i, n, len(seq.gt[i]))


def test_json_shape(report) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(report.to_json()))
    assert set(doc) == {"sequences", "overall"}
    keys = {"name", "frames", "mae", "precision", "recall", "fps", "baseline"}
    added = {"product_mae", "single_frame_mae", "id_switches", "id_links", "frame_spacing_s"}
    for s in doc["sequences"]:
        assert keys <= set(s) and {"mae", "precision", "recall"} <= set(s["baseline"])
        assert added <= set(s) and s["product_mae"] == s["mae"]
        assert 0 <= s["id_switches"] <= s["id_links"]
    spacing = {s["name"]: (s["frame_spacing_s"], s["timing"]) for s in doc["sequences"]}
    # every 3rd frame of each sequence, at the spacing its SOURCE.md states
    assert spacing["cctv_cam11_waitingroom_20231014"] == (20.1, "time-lapse")
    assert spacing["cctv_cam11_waitingroom_20231221"] == (150.0, "time-lapse")
    assert spacing["pets09_s2l1"] == (0.8571, "video")
    assert spacing["tud_campus"] == (0.12, "video")
    assert {"single_frame_mae", "id_switches", "product_mae"} <= set(doc["overall"])
    assert {"mae", "precision", "recall", "fps", "baseline"} <= set(doc["overall"])


def test_cli_json_is_one_object(model_path: Path, people_dir: Path, tmp_path: Path, capsys) -> None:
    from lobbywatch.cli import main

    one = tmp_path / "ds"
    one.mkdir()
    (one / "tud_campus").symlink_to(people_dir / "tud_campus")
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(one), "--json", "--step", "10", "--no-baseline"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert out.count("\n") == 1 and [s["name"] for s in doc["sequences"]] == ["tud_campus"]
    assert doc["sequences"][0]["frames"] == 8
