"""The annotated video's drawing: zone labels stay readable above track boxes, and
every frame carries the legend of the track labels."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from lobbywatch.cli import app
from lobbywatch.edge.annotate import LEGEND, Annotator
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.pipeline import FrameResult
from lobbywatch.edge.state import ZoneState
from lobbywatch.edge.tracker import TrackedObjects
from lobbywatch.edge.zones import ZoneMap, ZoneSpec
from lobbywatch.zone_state import ZoneKind

W, H = 240, 160


def result_with_track_over_zone_label() -> tuple[Annotator, FrameResult]:
    spec = ZoneSpec(id="queue", kind="waiting", polygon=[(0, 0), (1, 0), (1, 0.5), (0, 0.5)])
    zm = ZoneMap.from_specs([spec], W, H)
    state = ZoneState("queue", ZoneKind.WAITING, None, 0.0, 1, 1, 2.0, 2.0, 2.0, 1, 0)
    # an unseen (predicted) confirmed track whose label lands on the zone label
    tracks = TrackedObjects(
        np.array([7], np.int64),
        np.array([[0, 0, 80, 70]], np.float32),
        np.array([0.9], np.float32),
        np.array([True]),
        np.array([False]),
        np.array([-1], np.int64),
        np.array([True]),
    )
    result = FrameResult(
        ts=0.0, frame_size=(W, H), detections=Detections.empty(), tracks=tracks,
        zone_of_track=np.array([0], np.int64), zone_of_detection=np.zeros(0, np.int64),
        zones=(state,),
    )  # fmt: skip
    return Annotator(zm), result


def test_track_labels_do_not_cover_zone_labels() -> None:
    ann, result = result_with_track_over_zone_label()
    black = np.zeros((H, W, 3), np.uint8)
    drawn = ann.draw_result(black, result)
    with_label = ann.draw_zones(black.copy(), result.zones)
    without = ann.draw_zones(black.copy(), result.zones, labels=False)
    label = (with_label != without).any(axis=2)
    assert label.sum() > 50  # the zone label is really there
    tracks_only = ann.draw_tracks(without.copy(), result.tracks, result.zone_of_track)
    assert ((tracks_only != without).any(axis=2) & label).any()  # the track label overlaps it
    assert (drawn[label] == with_label[label]).all()  # and the zone label wins


def test_every_frame_carries_the_legend() -> None:
    ann, result = result_with_track_over_zone_label()
    drawn = ann.draw_result(np.zeros((H, W, 3), np.uint8), result)
    # the bottom half is outside the zone: only the status line and the legend draw there
    rows = np.flatnonzero(drawn[H // 2 :].any(axis=(1, 2)))
    assert len(rows) > 0
    lines = np.count_nonzero(np.diff(rows) > 1) + 1
    assert lines == 2, rows  # legend line above the status line
    assert "#N?" in LEGEND and "not seen" in LEGEND


def test_count_help_explains_labels_and_formats() -> None:
    out = CliRunner().invoke(app, ["count", "--help"], env={"COLUMNS": "200"}).output
    flat = " ".join(out.split())
    assert "#N? (not seen this frame: predicted box)" in flat
    assert ".webm (VP8, plays in browsers)" in flat
    assert ".mp4 (mp4v: desktop players only, not browsers)" in flat
