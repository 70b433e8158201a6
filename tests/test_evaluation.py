"""Ground-truth parsing, IoU matching and tallies (hand-computed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lobbywatch.edge.evaluation import (
    DEFAULT_FPS,
    TIMELAPSE_FALLBACK_S,
    SourceTiming,
    Tally,
    find_sequences,
    load_sequence,
    match_count,
    read_frame,
    read_gt,
    source_fps,
    source_timing,
)
from lobbywatch.errors import SourceError


def test_read_gt_groups_by_frame(tmp_path: Path) -> None:
    p = tmp_path / "gt.csv"
    p.write_text("frame,x,y,w,h\n2,10,20,5,6\n1,0,0,1,1\n2,1,1,2,2\n")
    gt = read_gt(p, 3)
    assert [len(g) for g in gt] == [1, 2, 0]
    assert gt[1].tolist() == [[10, 20, 15, 26], [1, 1, 3, 3]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n", "header"),
        ("frame,x,y,w,h\n5,0,0,1,1\n", "1..3"),
        ("frame,x,y,w,h\n1,x,0,1,1\n", "non-numeric"),
    ],
)
def test_read_gt_rejects_bad_files(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "gt.csv"
    p.write_text(text)
    with pytest.raises(SourceError, match=message):
        read_gt(p, 3)


def test_match_count_is_one_to_one() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    pred = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 0, 110, 10]], np.float32)
    # both first two preds overlap gt 0 only -> one match; third matches nothing
    assert match_count(pred, gt) == 1
    pred2 = np.array([[1, 0, 11, 10], [21, 0, 31, 10]], np.float32)  # IoU 9/11 each
    assert match_count(pred2, gt) == 2
    assert match_count(pred2[:0], gt) == 0
    # IoU exactly below 0.5 does not count: [5, 0, 15, 10] vs gt 0 is 1/3
    assert match_count(np.array([[5, 0, 15, 10]], np.float32), gt) == 0


def test_match_count_prefers_best_pairs() -> None:
    # pred 0 overlaps gt 0 (IoU 0.9) and gt 1 (0.6); pred 1 only gt 1 (0.55):
    # greedy by IoU gives two matches.
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float32)
    pred = np.array([[0.5, 0, 10.5, 10], [3.5, 0, 13.5, 10]], np.float32)
    assert match_count(pred, gt) == 2


def test_tally_summary() -> None:
    t = Tally()
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    t.add(3, np.array([[0, 0, 10, 10]], np.float32), gt)  # |3-2| = 1, tp 1
    t.add(2, np.zeros((0, 4), np.float32), gt[:1])  # |2-1| = 1, tp 0
    s = t.summary()
    # raw counts: |1-2| = 1 and |0-1| = 1
    assert s == {"mae": 1.0, "raw_mae": 1.0, "precision": 1.0, "recall": round(1 / 3, 4)}


def test_sequence_loading_and_corrupt_frame(tmp_path: Path) -> None:
    seq = tmp_path / "data" / "cam"
    (seq / "frames").mkdir(parents=True)
    (seq / "frames" / "000001.jpg").write_bytes(b"not a jpeg")
    (seq / "gt.csv").write_text("frame,x,y,w,h\n1,0,0,4,4\n")
    assert find_sequences(tmp_path / "data") == [seq]
    s = load_sequence(seq)
    assert s.fps == 2.0 and len(s.gt[0]) == 1
    with pytest.raises(SourceError, match="cannot decode image"):
        read_frame(s.frames[0])
    with pytest.raises(SourceError, match="no sequence folders"):
        find_sequences(tmp_path)


@pytest.mark.parametrize(
    ("text", "fps"),
    [
        # The shapes the shared dataset's SOURCE.md files use.
        ("- resolution: 640 x 480, frame rate 25 fps (MOT15 seqinfo)\n- subsampling: none\n", 25.0),
        (
            "- resolution: 768 x 576, original frame rate 7 fps (MOT15 seqinfo)\n"
            "- subsampling: every 2nd of those was kept, so the effective rate is 3.5 fps\n",
            3.5,
        ),
        ("- frame rate 30 fps\n- subsampling: every 3rd frame kept\n", 10.0),
        (  # a time-lapse that states no spacing: the documented fallback, not 15 fps
            "- frame rate: sparse time-lapse sample of a longer recording, not a video; "
            "the source runs at about 15 fps\n",
            1.0 / TIMELAPSE_FALLBACK_S,
        ),
        (  # the shared waiting rooms' wording: the stated median spacing
            "- frame rate: sparse time-lapse sample, not a video: source index 1..100 along an "
            "11-minute clip (about 6.7 s per index); consecutive kept frames are 6.7 s apart "
            "(median) up to 4.4 min apart (one gap of 40 indices).\n",
            1.0 / 6.7,
        ),
        (
            "- frame rate: sparse time-lapse sample of a longer recording, not a video: the "
            "source video runs at about 15 fps; consecutive kept frames are 250-1250 source "
            "frames (about 17-83 s, median 50 s) apart.\n",
            1.0 / 50.0,
        ),
        ("- frame rate: time-lapse, one frame every 2 min\n", 1.0 / 120.0),
        ("- frame rate: time-lapse; frames 30 s apart\n", 1.0 / 30.0),
        ("- frame rate: time-lapse at 20-second intervals\n", 1.0 / 20.0),
        ("- frame rate: 30 fps, every 5th frame kept\n", 6.0),
        ("- frame rate: 12.5 frames/s\n", 12.5),
        ("no timing here", None),
    ],
)
def test_source_fps_reads_the_stated_rate(text: str, fps: float | None) -> None:
    assert source_fps(text) == (None if fps is None else pytest.approx(fps))


def test_source_timing_says_whether_the_spacing_was_stated() -> None:
    stated = source_timing("- frame rate: time-lapse, frames 30 s apart")
    assert stated == SourceTiming(30.0, "time-lapse", True)
    assumed = source_timing("- frame rate: time-lapse, not a video")
    assert assumed == SourceTiming(TIMELAPSE_FALLBACK_S, "time-lapse", False)
    assert source_timing("- frame rate 25 fps") == SourceTiming(0.04, "video", True)


def test_sequence_rate_comes_from_source_md(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    (seq / "frames").mkdir(parents=True)
    ok, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    assert ok
    (seq / "frames" / "000001.jpg").write_bytes(jpg.tobytes())
    (seq / "gt.csv").write_text("frame,x,y,w,h\n1,0,0,4,8\n")
    assert load_sequence(seq).fps == DEFAULT_FPS  # no SOURCE.md
    (seq / "SOURCE.md").write_text("- resolution: 16 x 16, frame rate 14 fps\n")
    assert load_sequence(seq).fps == 14.0
    assert load_sequence(seq, fps=5.0).fps == 5.0  # --fps wins


def test_eval_cli_rejects_a_non_positive_fps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lobbywatch.cli import main

    with pytest.raises(SystemExit) as info:
        main(["eval", str(tmp_path), "--fps", "-2", "--json"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "error: --fps must be > 0 (frames per second of real time), got -2.0"
    ]


def test_greedy_matches_takes_best_pairs_one_to_one() -> None:
    from lobbywatch.edge.evaluation import greedy_matches

    score = np.array([[0.9, 0.8], [0.85, 0.1], [0.2, 0.3]])
    rows, cols = greedy_matches(score.copy(), 0.25)
    # 0.9 at (0, 0) first, which leaves row 1 nothing above 0.25; row 2 takes col 1 (0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (2, 1)]
    rows, cols = greedy_matches(score.copy(), 0.95)
    assert len(rows) == len(cols) == 0


def test_border_recall_counts_only_boxes_cut_by_the_frame_edge() -> None:
    from lobbywatch.edge.evaluation import Tally, touches_border

    gt = np.array([[0, 10, 20, 50], [40, 10, 60, 50], [80, 60, 100, 100]], np.float32)
    # frame 100x100: box 0 touches the left edge, box 2 the right and bottom edges
    assert touches_border(gt, (100, 100)).tolist() == [True, False, True]
    pred = np.array([[0, 10, 20, 50], [40, 10, 60, 50]], np.float32)  # finds 0 and 1
    t = Tally()
    t.add(2, pred, gt, None, (100, 100))
    assert (t.tp_border, t.n_gt_border) == (1, 2) and t.border_recall() == 0.5
    assert t.summary()["recall"] == round(2 / 3, 4)
    # no frame size: no border figure (kept out of the JSON)
    t2 = Tally()
    t2.add(2, pred, gt)
    assert t2.border_recall() is None
    t.merge(t2)
    assert t.border_recall() == 0.5
