"""The typed detections value passed between detector, zones and tracker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Detections:
    """Person boxes in frame pixels.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in frame pixels.
        scores: ``(N,)`` float32 person scores (objectness x person probability).

    Example:
        >>> d = Detections(np.array([[0, 0, 10, 20]], np.float32), np.array([0.9], np.float32))
        >>> len(d), d.foot_points().tolist()
        (1, [[5.0, 20.0]])
    """

    xyxy: FloatArray
    scores: FloatArray

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.scores.shape != (self.xyxy.shape[0],):
            raise ValueError(
                f"scores must have shape ({self.xyxy.shape[0]},), got {self.scores.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | slice
    ) -> Detections:
        return Detections(self.xyxy[index], self.scores[index])

    def foot_points(self) -> FloatArray:
        """Bottom-centre of each box, ``(N, 2)``: where a person stands on the floor."""
        return np.stack(
            ((self.xyxy[:, 0] + self.xyxy[:, 2]) * 0.5, self.xyxy[:, 3]), axis=1
        ).astype(np.float32, copy=False)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise IoU of two box sets ``x1, y1, x2, y2`` (pixels, continuous convention).

    The one IoU of the edge: the detector's evaluation, its tests and the tracker's
    association all use it. Returns a float64 ``(len(a), len(b))`` matrix; boxes with
    no area (and pairs with an empty union) give 0.

    Example:
        >>> iou_matrix([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(3).tolist()
        [[0.333, 0.0]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0.0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
