"""Identity switches measured against ground truth that has no identities.

The shared sequences' ``gt.csv`` holds boxes only (``frame,x,y,w,h``), so the
MOT definition of an identity switch (a ground-truth trajectory whose matched
track id changes) needs the trajectories rebuilt first. The proxy used here:

1. **Ground-truth continuity links.** The GT boxes of two consecutive frames are
   matched one-to-one, greedy by IoU, at IoU >= ``link_iou`` (0.3): a person's
   box in frame t-1 and in frame t. This is reliable when people move less than
   about half a box width between frames (real-rate video: PETS at 3.5 fps moves
   walkers ~0.2 box heights per frame, TUD at 25 fps far less); on sparse
   time-lapses it only links people who stayed put.
2. **Track matching.** In each frame the GT boxes are matched one-to-one to the
   boxes of the tracks *seen* in that frame (``TrackedObjects.matched``) at
   IoU >= ``match_iou`` (0.5, the usual MOT threshold).
3. A link whose two ends are both matched to tracks, with **different track
   ids**, is one identity switch. ``links`` counts the links with both ends
   matched (the opportunities), so ``switches / links`` is a rate.

Two people crossing can swap GT links (a proxy error in either direction); a
missed detection at either end drops the link rather than counting it (a track
re-found after a miss under a new id is counted only from the next linked pair
of frames). It is a lower bound on fragmentation, comparable between trackers
on the same detections, not a MOTA/IDF1 figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lobbywatch.edge.detections import iou_matrix
from lobbywatch.edge.tracker import TrackedObjects, greedy_match

__all__ = ["IdSwitchCounter", "IdSwitchTally"]


@dataclass(frozen=True, slots=True)
class IdSwitchTally:
    """Totals of :class:`IdSwitchCounter`.

    Attributes:
        switches: GT continuity links whose ends carry different track ids.
        links: GT continuity links with both ends matched to a track.
    """

    switches: int
    links: int


class IdSwitchCounter:
    """Accumulates the identity-switch proxy frame by frame (see the module docstring).

    Example:
        >>> import numpy as np
        >>> from lobbywatch.edge.tracker import TrackedObjects
        >>> def tracks(i):
        ...     return TrackedObjects(np.array([i]), np.array([[0, 0, 10, 20]], np.float32),
        ...         np.ones(1, np.float32), np.ones(1, bool), np.ones(1, bool),
        ...         np.zeros(1, np.int64), np.ones(1, bool))
        >>> c, gt = IdSwitchCounter(), np.array([[0, 0, 10, 20]], np.float32)
        >>> c.add(gt, tracks(1)); c.add(gt, tracks(1)); c.add(gt, tracks(2))
        >>> c.tally()
        IdSwitchTally(switches=1, links=2)
    """

    def __init__(self, link_iou: float = 0.3, match_iou: float = 0.5) -> None:
        self.link_iou = link_iou
        self.match_iou = match_iou
        self._prev_gt = np.zeros((0, 4), np.float64)
        self._prev_ids = np.zeros(0, np.int64)
        self._switches = 0
        self._links = 0

    def add(self, gt_xyxy: npt.ArrayLike, tracks: TrackedObjects) -> None:
        """One frame: ``gt_xyxy`` ``(G, 4)`` pixels, ``tracks`` the tracker's output."""
        gt = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
        seen = np.flatnonzero(tracks.matched)
        ids = np.full(len(gt), -1, np.int64)
        if len(gt) and len(seen):
            r, c = greedy_match(iou_matrix(gt, tracks.xyxy[seen]), self.match_iou)
            ids[r] = tracks.ids[seen[c]]
        if len(gt) and len(self._prev_gt):
            r, c = greedy_match(iou_matrix(self._prev_gt, gt), self.link_iou)
            a, b = self._prev_ids[r], ids[c]
            both = (a >= 0) & (b >= 0)
            self._links += int(np.count_nonzero(both))
            self._switches += int(np.count_nonzero(both & (a != b)))
        self._prev_gt, self._prev_ids = gt, ids

    def tally(self) -> IdSwitchTally:
        return IdSwitchTally(self._switches, self._links)
