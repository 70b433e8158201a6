"""Zones: named polygons of a camera's view, and vectorised membership.

A person belongs to the zone under their feet: the bottom-centre of their box
(:meth:`Detections.foot_points`). Polygons are written relative to the frame
(0..1), validated once (:func:`validate_zone_geometry`), and rasterised once per
frame size into a label mask (:class:`ZoneMap`), so assigning every person of a
frame to a zone is a single ``labels[y, x]`` gather.

Pixel rule, used both for the mask and for the overlap check: pixel ``(x, y)``
covers ``[x, x+1) x [y, y+1)`` and belongs to a polygon when its centre
``(x+0.5, y+0.5)`` is inside by the even-odd rule with half-open edge crossings.
That rule gives a point on an edge shared by two adjacent zones to exactly one of
them (the one to its right, or below), so zones drawn edge to edge tile the
floor without double counting and without an overlap error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from lobbywatch.edge.flows import ZoneFlows
from lobbywatch.errors import ConfigError
from lobbywatch.protocol import ID_PATTERN
from lobbywatch.zone_state import ZoneKind

__all__ = [
    "GEOMETRY_CHECK_RESOLUTION",
    "NO_ZONE",
    "ZoneMap",
    "ZoneSpec",
    "rasterize_polygon",
    "validate_zone_geometry",
]

#: Label of pixels (and of people) outside every zone.
NO_ZONE = -1
#: Side of the square grid on which zone overlaps are checked: overlaps thinner
#: than 1/1000 of the frame are not reported (they cannot matter at any real
#: camera resolution, where one pixel is at least that wide).
GEOMETRY_CHECK_RESOLUTION = 1000
#: Polygons with a smaller relative area (shoelace) are degenerate.
_MIN_AREA = 1e-9
#: Tolerance of the orientation tests on relative coordinates.
_EPS = 1e-12

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class ZoneSpec(BaseModel):
    """One zone as written in a device config.

    Polygon vertices are relative to the frame (0..1 on each axis), so the same
    config survives a change of stream resolution. The polygon is implicitly
    closed; repeating the first vertex at the end is accepted and ignored.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="zone id, used as an MQTT topic level")
    kind: ZoneKind
    blueprint: str | None = Field(None, max_length=16, description="service blueprint tag, e.g. W1")
    polygon: list[tuple[float, float]] = Field(min_length=3, description="vertices, relative 0..1")
    wait_threshold_s: float | None = Field(None, gt=0, description="per-zone W1 threshold")
    flows: ZoneFlows | None = Field(
        None,
        description="waiting zones: its service points and exits, to tell service starts "
        "from walk-outs (see docs/protocol.md)",
    )


# --------------------------------------------------------------------------- geometry


def _vertices(polygon: Sequence[tuple[float, float]]) -> FloatArray:
    """Polygon as an ``(n, 2)`` float64 array, without a repeated closing vertex."""
    v = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(v) > 3 and np.array_equal(v[0], v[-1]):
        v = v[:-1]
    return v


def _shoelace(v: FloatArray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _cross(o: FloatArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """z of ``(a - o) x (b - o)``, broadcast over leading axes."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def _on_segment(p: FloatArray, a: FloatArray, b: FloatArray) -> BoolArray:
    """Whether collinear point ``p`` lies within the bounding box of segment ``ab``."""
    return (
        (np.minimum(a[..., 0], b[..., 0]) - _EPS <= p[..., 0])
        & (p[..., 0] <= np.maximum(a[..., 0], b[..., 0]) + _EPS)
        & (np.minimum(a[..., 1], b[..., 1]) - _EPS <= p[..., 1])
        & (p[..., 1] <= np.maximum(a[..., 1], b[..., 1]) + _EPS)
    )


def _self_intersection(v: FloatArray) -> tuple[int, int] | None:
    """First pair of edges ``(i, j)`` that cross or touch improperly, else None.

    Edge ``i`` runs from vertex ``i`` to vertex ``i+1``. Non-adjacent edges must
    not meet at all; adjacent edges (sharing a vertex) must not fold back onto
    each other. All pairs are tested at once (a config polygon has a handful of
    edges, so the ``(n, n)`` arrays are tiny).
    """
    n = len(v)
    a = v
    b = np.roll(v, -1, axis=0)
    ai, bi = a[:, None, :], b[:, None, :]
    aj, bj = a[None, :, :], b[None, :, :]
    o1 = _cross(ai, bi, aj)
    o2 = _cross(ai, bi, bj)
    o3 = _cross(aj, bj, ai)
    o4 = _cross(aj, bj, bi)
    proper = (o1 * o2 < -_EPS * _EPS) & (o3 * o4 < -_EPS * _EPS)
    z1, z2, z3, z4 = (np.abs(o) <= _EPS for o in (o1, o2, o3, o4))
    touch = (
        (z1 & _on_segment(aj, ai, bi))
        | (z2 & _on_segment(bj, ai, bi))
        | (z3 & _on_segment(ai, aj, bj))
        | (z4 & _on_segment(bi, aj, bj))
    )
    idx = np.arange(n)
    i, j = np.meshgrid(idx, idx, indexing="ij")
    adjacent = ((j - i) % n == 1) | ((i - j) % n == 1)
    upper = j > i
    d = b - a
    dcross = d[:, None, 0] * d[None, :, 1] - d[:, None, 1] * d[None, :, 0]
    ddot = d[:, None, 0] * d[None, :, 0] + d[:, None, 1] * d[None, :, 1]
    fold_back = (np.abs(dcross) <= _EPS) & (ddot < 0)
    bad = upper & np.where(adjacent, fold_back, proper | touch)
    hits = np.argwhere(bad)
    if len(hits) == 0:
        return None
    return int(hits[0, 0]), int(hits[0, 1])


def rasterize_polygon(vertices_px: npt.ArrayLike, width: int, height: int) -> BoolArray:
    """Boolean ``(height, width)`` mask of the pixels whose centre is inside a polygon.

    Even-odd rule with half-open crossings (see the module docstring), evaluated
    only over the polygon's bounding box. This runs once per zone and frame size,
    never per frame; the loop is over the polygon's few edges, each step
    vectorised over the box's pixels.

    Args:
        vertices_px: ``(n, 2)`` polygon vertices in pixel coordinates.
        width: mask width in pixels.
        height: mask height in pixels.

    Returns:
        The mask.

    Example:
        >>> m = rasterize_polygon([(0, 0), (2, 0), (2, 2), (0, 2)], 4, 3)
        >>> m.astype(int).tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    """
    v = np.asarray(vertices_px, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros((height, width), dtype=bool)
    x0 = max(int(np.floor(v[:, 0].min())) - 1, 0)
    x1 = min(int(np.ceil(v[:, 0].max())) + 1, width)
    y0 = max(int(np.floor(v[:, 1].min())) - 1, 0)
    y1 = min(int(np.ceil(v[:, 1].max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return mask
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for (ax, ay), (bx, by) in zip(v, np.roll(v, -1, axis=0), strict=True):
        straddle = (ay > ys) != (by > ys)
        if not straddle.any():
            continue  # horizontal edge, or one entirely above/below the box
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (ys - ay) * (bx - ax) / (by - ay)
        rows = np.flatnonzero(straddle)
        inside[rows] ^= xs[None, :] < x_cross[rows, None]
    mask[y0:y1, x0:x1] = inside
    return mask


def _polygon_problems(spec: ZoneSpec) -> list[str]:
    """Everything wrong with one zone's polygon on its own, as messages."""
    raw = np.asarray(spec.polygon, dtype=np.float64)
    if not np.isfinite(raw).all():
        return [f"zone '{spec.id}': polygon has a non-finite coordinate"]
    problems: list[str] = []
    outside = np.flatnonzero(((raw < 0.0) | (raw > 1.0)).any(axis=1))
    # Every bad vertex is named, so one run of `config check` lists all to fix.
    for k in outside.tolist():
        problems.append(
            f"zone '{spec.id}': vertex {k} ({raw[k, 0]:g}, {raw[k, 1]:g}) is outside the "
            "frame (polygon coordinates are relative and must lie in [0, 1])"
        )
    v = _vertices(spec.polygon)
    if len(v) < 3:
        return [*problems, f"zone '{spec.id}': a polygon needs at least 3 distinct vertices"]
    repeated = np.flatnonzero((v == np.roll(v, -1, axis=0)).all(axis=1))
    if len(repeated):
        k = int(repeated[0])
        return [
            *problems,
            f"zone '{spec.id}': vertex {(k + 1) % len(v)} repeats vertex {k} (remove it)",
        ]
    if np.linalg.svd(v - v.mean(axis=0), compute_uv=False)[-1] < 1e-9:
        return [*problems, f"zone '{spec.id}': polygon has zero area (its vertices are collinear)"]
    crossing = _self_intersection(v)
    if crossing is not None:
        i, j = crossing
        problems.append(
            f"zone '{spec.id}': polygon is self-intersecting: edge {i}-{(i + 1) % len(v)} "
            f"meets edge {j}-{(j + 1) % len(v)} (list the vertices in order around the zone)"
        )
    elif _shoelace(v) < _MIN_AREA:
        problems.append(f"zone '{spec.id}': polygon has zero area (its vertices are collinear)")
    return problems


def validate_zone_geometry(specs: Sequence[ZoneSpec]) -> None:
    """Check a camera's zones: ids unique, polygons inside the frame, simple, with
    area, and not overlapping each other.

    Overlap is tested on a ``GEOMETRY_CHECK_RESOLUTION``-square grid with the same
    pixel-centre rule as the runtime mask, so zones that only share an edge are
    accepted and any overlap the runtime could see is reported.

    Args:
        specs: the zones of one camera, in config order.

    Raises:
        ValueError: naming each offending zone and its problem (all problems in
            one message, separated by ``"; "``), so a config validator can
            surface them at once.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            problems.append(f"zone id '{spec.id}' is used twice; zone ids must be unique")
        seen.add(spec.id)
    simple: list[ZoneSpec] = []
    for spec in specs:
        own = _polygon_problems(spec)
        problems.extend(own)
        if not own:
            simple.append(spec)
    if len(simple) > 1:
        res = GEOMETRY_CHECK_RESOLUTION
        masks = [rasterize_polygon(_vertices(s.polygon) * res, res, res) for s in simple]
        # Config-time check over the few zone pairs of one camera; each test is vectorised.
        for i in range(len(simple)):
            for j in range(i + 1, len(simple)):
                shared = int(np.count_nonzero(masks[i] & masks[j]))
                if shared == 0:
                    continue
                share = 100.0 * shared / float(res * res)
                problems.append(
                    f"zones '{simple[i].id}' and '{simple[j].id}' overlap (about {share:.2g}% "
                    "of the frame): a person must belong to one zone only"
                )
    if problems:
        raise ValueError("; ".join(problems))


# --------------------------------------------------------------------------- runtime map


def _zone_palette(n: int) -> npt.NDArray[np.uint8]:
    """Distinct BGR colours, one per zone (golden-ratio hue steps)."""
    import cv2

    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 255, np.uint8)], axis=1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


@dataclass(frozen=True, eq=False)
class ZoneMap:
    """The zones of one camera rasterised for one frame size.

    Build with :meth:`from_specs`; then :meth:`zone_of` assigns any number of
    foot points in one gather.

    Attributes:
        specs: the zones, in config order (index ``k`` is label ``k``).
        width: frame width in pixels.
        height: frame height in pixels.
        labels: ``(height, width)`` int16 label mask; ``NO_ZONE`` (-1) outside all zones.
        polygons_px: each zone's vertices in pixel coordinates (for drawing).
        pixels: ``(Z,)`` pixel count of each zone.

    Example:
        >>> spec = ZoneSpec(id="q", kind="waiting", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
        >>> zm = ZoneMap.from_specs([spec], 100, 50)
        >>> zm.zone_of(np.array([[10.0, 40.0], [60.0, 40.0]], np.float32)).tolist()
        [0, -1]
    """

    specs: tuple[ZoneSpec, ...]
    width: int
    height: int
    labels: npt.NDArray[np.int16] = field(repr=False)
    polygons_px: tuple[npt.NDArray[np.float64], ...] = field(repr=False)
    pixels: IntArray = field(repr=False)

    @classmethod
    def from_specs(cls, specs: Sequence[ZoneSpec], frame_w: int, frame_h: int) -> ZoneMap:
        """Validate the zones and rasterise them for a ``frame_w`` x ``frame_h`` frame.

        Raises:
            ConfigError: the zone geometry is invalid, or a zone is too small to
                cover a single pixel at this frame size.
            ValueError: the frame size is not positive.
        """
        if int(frame_w) <= 0 or int(frame_h) <= 0:
            raise ValueError(f"frame size must be positive, got {frame_w}x{frame_h}")
        if not specs:
            raise ConfigError("a camera needs at least one zone")
        if len(specs) > np.iinfo(np.int16).max:
            raise ConfigError(f"{len(specs)} zones on one camera is too many")
        try:
            validate_zone_geometry(specs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        w, h = int(frame_w), int(frame_h)
        labels = np.full((h, w), NO_ZONE, dtype=np.int16)
        scale = np.array([w, h], dtype=np.float64)
        polys = tuple(_vertices(s.polygon) * scale for s in specs)
        for k, poly in enumerate(polys):  # once per zone at build time, not per frame
            labels[rasterize_polygon(poly, w, h)] = k
        pixels = np.bincount(labels[labels >= 0].ravel(), minlength=len(specs)).astype(np.int64)
        empty = [specs[int(k)].id for k in np.flatnonzero(pixels == 0)]
        if empty:
            raise ConfigError(
                f"zone(s) {', '.join(repr(z) for z in empty)} cover no pixel of a {w}x{h} "
                "frame; draw them larger"
            )
        labels.setflags(write=False)
        return cls(tuple(specs), w, h, labels, polys, pixels)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def zone_of(self, points: npt.ArrayLike) -> IntArray:
        """Zone index of each point, ``NO_ZONE`` (-1) when outside every zone.

        Args:
            points: ``(N, 2)`` pixel coordinates ``x, y`` (usually foot points).
                A point slightly beyond the frame (detectors regress boxes a few
                pixels past the border when a person is cut off by it) is taken
                at the nearest border pixel; non-finite points are in no zone.

        Returns:
            ``(N,)`` int64 zone indices in config order.
        """
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        finite = np.asarray(np.isfinite(p).all(axis=1), dtype=bool)
        if finite.all():
            # The per-frame case (tracker boxes are finite): clip then truncate,
            # which equals floor on the clipped, non-negative coordinates.
            xy = np.clip(p, 0.0, (self.width - 1, self.height - 1)).astype(np.intp)
            return self.labels[xy[:, 1], xy[:, 0]].astype(np.int64)
        p = np.where(finite[:, None], p, 0.0)
        x = np.clip(np.floor(p[:, 0]), 0, self.width - 1).astype(np.intp)
        y = np.clip(np.floor(p[:, 1]), 0, self.height - 1).astype(np.intp)
        out = self.labels[y, x].astype(np.int64)
        out[np.logical_not(finite)] = NO_ZONE
        return out

    def counts(self, zone_idx: npt.ArrayLike) -> IntArray:
        """``(Z,)`` number of entries of ``zone_idx`` per zone (``NO_ZONE`` ignored)."""
        z = np.asarray(zone_idx, dtype=np.int64)
        return np.bincount(z[z >= 0], minlength=len(self.specs)).astype(np.int64)

    def colors(self) -> npt.NDArray[np.uint8]:
        """``(Z, 3)`` BGR colour of each zone, stable for a given zone order."""
        return _zone_palette(len(self.specs))
