"""The debug view's snapshot is drawn by ``annotate.Annotator`` (the same drawing as
``lobbywatch count --out``), for a real pipeline step and for a stand-in result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lobbywatch.edge.agent import annotate_debug_frame
from lobbywatch.edge.annotate import Annotator
from lobbywatch.edge.detections import Detections
from lobbywatch.edge.pipeline import CameraPipeline, PipelineSettings
from lobbywatch.edge.state import ZoneState
from lobbywatch.edge.zones import ZoneMap, ZoneSpec

W, H = 320, 160
QUEUE = ZoneSpec(id="queue", kind="waiting", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
COUNTER = ZoneSpec(id="counter", kind="cash_counter", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])


def _frame() -> np.ndarray:
    return np.full((H, W, 3), 40, np.uint8)


def test_pipeline_step_is_drawn_like_count_out_with_boxes() -> None:
    pipe = CameraPipeline([QUEUE, COUNTER], PipelineSettings())
    box = np.array([[40, 40, 80, 120]], np.float32)
    result = pipe.step(Detections(box, np.array([0.9], np.float32)), 10.0, (W, H))
    image = _frame()
    out = annotate_debug_frame(image, [QUEUE, COUNTER], result)

    ann = Annotator(ZoneMap.from_specs([QUEUE, COUNTER], W, H))
    expected = ann.draw_detections(ann.draw_result(_frame(), result), result.detections)
    assert np.array_equal(out, expected)
    assert np.array_equal(image, _frame())  # the worker's frame is not drawn on
    # the detection box outline (annotate's detection colour) is on the frame
    assert tuple(out[80, 40]) == (0, 200, 255)


@dataclass
class _StandIn:
    zones: tuple[ZoneState, ...]


def test_stand_in_result_gets_zones_and_counts() -> None:
    states = tuple(
        ZoneState(s.id, s.kind, None, 1.0, people, 0, None, None, None, people, 0)
        for s, people in ((QUEUE, 3), (COUNTER, 1))
    )
    out = annotate_debug_frame(_frame(), [QUEUE, COUNTER], _StandIn(states))
    ann = Annotator(ZoneMap.from_specs([QUEUE, COUNTER], W, H))
    assert np.array_equal(out, ann.draw_zones(_frame(), states))
    assert not np.array_equal(out, _frame())
