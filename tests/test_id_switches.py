"""The identity-switch proxy on ground truth without ids (hand-computed timelines)."""

from __future__ import annotations

import numpy as np

from lobbywatch.edge.id_switches import IdSwitchCounter, IdSwitchTally
from lobbywatch.edge.tracker import TrackedObjects


def tracks(
    ids: list[int], boxes: list[list[float]], seen: list[bool] | None = None
) -> TrackedObjects:
    n = len(ids)
    return TrackedObjects(
        np.array(ids, np.int64),
        np.array(boxes, np.float32).reshape(-1, 4),
        np.ones(n, np.float32),
        np.ones(n, bool),
        np.array([True] * n if seen is None else seen),
        np.arange(n, dtype=np.int64),
        np.ones(n, bool),
    )


def gt(*boxes: list[float]) -> np.ndarray:
    return np.array(boxes, np.float64).reshape(-1, 4)


A = [0.0, 0.0, 40.0, 100.0]
B = [200.0, 0.0, 240.0, 100.0]


def shift(b: list[float], dx: float) -> list[float]:
    return [b[0] + dx, b[1], b[2] + dx, b[3]]


def test_steady_ids_give_no_switch() -> None:
    c = IdSwitchCounter()
    for k in range(5):
        c.add(
            gt(shift(A, 5 * k), shift(B, -5 * k)),
            tracks([1, 2], [shift(A, 5 * k), shift(B, -5 * k)]),
        )
    assert c.tally() == IdSwitchTally(switches=0, links=8)  # 4 frame pairs x 2 people


def test_new_id_on_the_same_person_is_one_switch() -> None:
    c = IdSwitchCounter()
    c.add(gt(A, B), tracks([1, 2], [A, B]))
    c.add(gt(A, B), tracks([3, 2], [A, B]))  # person A re-found under id 3
    c.add(gt(A, B), tracks([3, 2], [A, B]))
    assert c.tally() == IdSwitchTally(switches=1, links=4)


def test_missed_or_unseen_ends_are_not_links() -> None:
    c = IdSwitchCounter()
    c.add(gt(A, B), tracks([1, 2], [A, B]))
    c.add(gt(A, B), tracks([1, 2], [A, B], seen=[False, True]))  # A coasting: no match
    c.add(gt(A, B), tracks([4, 2], [A, B]))
    # A: frames 1-2 and 2-3 both have an unmatched end; B: two links, no switch
    assert c.tally() == IdSwitchTally(switches=0, links=2)


def test_swapped_ids_between_two_people_are_two_switches() -> None:
    c = IdSwitchCounter()
    c.add(gt(A, B), tracks([1, 2], [A, B]))
    c.add(gt(A, B), tracks([2, 1], [A, B]))
    assert c.tally() == IdSwitchTally(switches=2, links=2)


def test_boxes_that_do_not_overlap_between_frames_are_not_linked() -> None:
    # the person jumped a full box width: the GT link needs IoU >= 0.3
    c = IdSwitchCounter()
    c.add(gt(A), tracks([1], [A]))
    c.add(gt(shift(A, 40)), tracks([2], [shift(A, 40)]))
    assert c.tally() == IdSwitchTally(switches=0, links=0)
