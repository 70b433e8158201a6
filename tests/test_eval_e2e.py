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
    # Achieved on this every-3rd-frame subset (docs/accuracy.md): raw MAE 2.06 vs
    # baseline 3.22, P 0.77, R 0.77; counted (tracker) MAE 2.70 — the tracker sees
    # frames 3x further apart here, so its full-set figure (1.87) is not reachable.
    assert o.raw_mae <= 0.7 * o.baseline["mae"]
    assert o.precision >= 0.74 and o.recall >= 0.74
    assert o.mae <= 3.0 and o.mae < o.baseline["mae"]
    room = next(s for s in report.sequences if s.name.endswith("20231014"))
    assert room.recall >= 0.66 and room.baseline["recall"] <= 0.52
    assert room.raw_mae <= 0.55 * room.baseline["mae"]
    # Small frames run at 416 (half-resolution rule, floor 416): no regression vs baseline.
    for name, limit in (("pets09_s2l1", 1.8), ("tud_campus", 1.4)):
        seq = next(s for s in report.sequences if s.name == name)
        assert seq.raw_mae <= limit, (name, seq.raw_mae)
    assert o.fps > 0


def test_json_shape(report) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(report.to_json()))
    assert set(doc) == {"sequences", "overall"}
    keys = {"name", "frames", "mae", "precision", "recall", "fps", "baseline"}
    for s in doc["sequences"]:
        assert keys <= set(s) and {"mae", "precision", "recall"} <= set(s["baseline"])
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
