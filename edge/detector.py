"""YOLOX person detector on onnxruntime.

Pre-processing follows each export exactly (see ``models/catalogue.yaml``):
resized keeping aspect ratio and pasted at the top-left of a canvas padded
with 114. ``yolox_nano`` takes raw BGR 0..255 NCHW float32; ``bytetrack_nano``
takes RGB scaled to 0..1 and ImageNet-normalised. At load time the graph is
given a uint8 NHWC input (transpose, cast and, for bytetrack_nano, the
per-channel shift become its first nodes) and the channel swap and per-channel
scale are folded into the first convolution's weights, so per frame Python
only resizes the frame into a uint8 buffer. Only the
person column of the output is decoded (score = objectness x class 0): at
load time the graph's output is cut to box, objectness and person, so the
other 79 classes of a COCO model are never copied out of onnxruntime, let
alone scored; a 1-class model's output already is exactly that.

The exported network is fully convolutional, so at load time the graph's input
is rewritten to symbolic ``(batch, height, width)``. That lets one session run

* a network input fitted to the frame's aspect ratio above the 416 training
  size (a 16:9 frame at ``input_size=960`` runs at 960x544 instead of wasting
  43 % of a 960x960 canvas on padding), and
* several overlapping tiles of one frame as one batch.

Everything per frame is vectorised: letterbox into preallocated buffers,
decode with precomputed grids, exact greedy NMS in one native OpenCV call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lobbywatch.edge.detections import Detections, FloatArray, iou_matrix
from lobbywatch.errors import ModelError, SourceError
from lobbywatch.models.registry import ModelSpec, ResolvedModel, resolve_model

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


class DetectorSettings(BaseModel):
    """How the edge box runs its person detector (the ``model`` section of a device config)."""

    model_config = ConfigDict(extra="forbid")

    # Chosen by measurement on the development set (docs/accuracy.md, "Model and
    # input size"): bytetrack_nano at a 512-px long side, threshold 0.4.
    name: str = Field("bytetrack_nano", description="model name in models/catalogue.yaml")
    path: Path | None = Field(None, description="explicit weights file; overrides the resolver")
    variant: Literal["fp32", "int8"] = Field(
        "fp32", description="published fp32 weights or the INT8 file derived at set-up"
    )
    input_size: int = Field(
        512, ge=160, le=2048, multiple_of=32, description="network input side (long side if fit)"
    )
    fit_aspect: bool = Field(
        True,
        description="shrink the short input side to the frame's aspect ratio (multiple of 32) "
        "instead of letterboxing into a square; only above min_input_size (at or below it "
        "the input stays square, as the network was trained)",
    )
    max_upscale: float = Field(
        4.0,
        gt=0,
        le=4,
        description="largest magnification of the frame (0.5 = at most half the camera's "
        "resolution): the input side shrinks (to a multiple of 32) rather than exceed it, "
        "down to min_input_size; the default 4 never binds, so the input is input_size",
    )
    min_input_size: int = Field(
        416,
        ge=32,
        le=2048,
        multiple_of=32,
        description="floor of the input side when max_upscale shrinks it (416 = the side "
        "YOLOX-Nano was trained and exported at); never above input_size",
    )
    score_threshold: float = Field(0.4, gt=0, lt=1, description="person score to keep a box")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="IoU above which NMS suppresses a box")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads")
    inter_threads: int = Field(1, ge=1, le=64, description="onnxruntime inter-op threads")
    tiles: tuple[int, int] = Field(
        (1, 1), description="tile grid (columns, rows); (1, 1) = whole frame in one pass"
    )
    tile_overlap: float = Field(
        0.25, ge=0, lt=0.5, description="overlap of neighbouring tiles, fraction of a tile"
    )
    tile_full_frame: bool = Field(
        True, description="with tiles, also run the whole frame (catches people larger than a tile)"
    )
    partial_ios: float = Field(
        0.6,
        gt=0,
        le=1,
        description="a box cut by an inner tile border is dropped when this fraction of it "
        "lies inside another box",
    )
    tile_merge_ios: float = Field(
        0.6,
        gt=0,
        le=1,
        description="boxes from different regions (whole frame / tiles) are one person when "
        "this fraction of the smaller lies inside the larger (matched one-to-one)",
    )
    tile_max_upscale: float = Field(
        1.0,
        gt=0,
        le=4,
        description="largest magnification of a tile (1 = native resolution); replaces "
        "max_upscale when tiling, since tiles exist to give people more pixels",
    )
    max_candidates: int = Field(
        2000, ge=1, description="top-scoring boxes kept before NMS (bounds the IoU matrix)"
    )
    tta: Literal["off", "flip"] = Field(
        "off",
        description="test-time augmentation: flip = also run the horizontally mirrored frame "
        "(in the same call sequence, twice the inference) and fuse the two box sets by "
        "weighted box fusion (fuse_flip); score_threshold then applies to the fused score. "
        "Needs tiles (1, 1) (docs/accuracy.md, round 8)",
    )
    box_width: Literal["catalogue", "native"] = Field(
        "catalogue",
        description="catalogue = narrow output boxes about their centre by the model's "
        "output.box_width_scale (one box convention for every model); native = boxes as "
        "the network decodes them (foot points and counts are the same either way)",
    )
    grey_contrast: Literal["off", "clahe"] = Field(
        "off",
        description="when the camera's picture is greyscale (a monochrome or IR/night "
        "camera: three equal channels), equalise its contrast locally (CLAHE) before the "
        "network; colour pictures are never changed (docs/accuracy.md, greyscale cameras)",
    )

    @field_validator("tta", "grey_contrast", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return yaml_off(value)

    @model_validator(mode="after")
    def _tiles_positive(self) -> DetectorSettings:
        if self.tiles[0] < 1 or self.tiles[1] < 1:
            raise ValueError(f"tiles must be >= (1, 1), got {self.tiles}")
        if self.tta != "off" and self.tiles != (1, 1):
            raise ValueError(f"tta: {self.tta} needs tiles (1, 1), got tiles {self.tiles}")
        return self


def yaml_off(value: object) -> object:
    """``off`` for the ``False`` a YAML 1.1 loader makes of an unquoted ``off``.

    ``tta: off`` and ``grey_contrast: off`` are what a person (and the
    calibration's YAML writer) puts in a config; PyYAML reads them as booleans.
    """
    return "off" if value is False else value


# --------------------------------------------------------------------------- geometry


def fit_input_shape(
    frame_hw: tuple[int, int],
    input_size: int,
    fit_aspect: bool,
    multiple: int = 32,
    max_upscale: float | None = None,
    min_size: int | None = None,
) -> tuple[int, int]:
    """Network ``(height, width)`` for a frame (or tile) of ``frame_hw``.

    Args:
        frame_hw: ``(height, width)`` of the image region fed to the network.
        input_size: network side; with ``fit_aspect`` the long side.
        fit_aspect: shrink the short side to the region's aspect ratio, rounded up
            to ``multiple`` so no image pixel is lost; only above ``min_size``
            (at or below it the input stays square, as in training).
        multiple: the network's largest stride.
        max_upscale: cap the long side at ``max_upscale`` x the region's long
            side (rounded up to ``multiple``); ``None`` = no cap.
        min_size: the cap never takes the side below this (nor above
            ``input_size``); ``None`` = no floor.

    Returns:
        ``(height, width)``, both multiples of ``multiple``.
    """
    h, w = frame_hw
    if max_upscale is not None:
        # Enlarging a small frame adds no detail, costs compute quadratically and
        # pushes people above the sizes the model was trained on.
        cap = math.ceil(max(h, w) * max_upscale / multiple) * multiple
        # The floor keeps small frames at the network's own training size: below
        # it people shrink under what the stride-8 head resolves, for no gain.
        floor = min(min_size or multiple, input_size)
        input_size = max(multiple, floor, min(input_size, cap))
    # At or below the training size the network gets the square canvas it was
    # trained on; the aspect-fitted canvas is a compute saving that only pays
    # above it (960x544 vs 960x960). Measured on the 4:3 development frames at
    # 416: the fitted 416x320 canvas changed the raw count against the square
    # one (TUD-Campus 1.24 vs 1.15 MAE, docs/accuracy.md).
    if not fit_aspect or (min_size is not None and input_size <= min_size):
        return input_size, input_size
    if w >= h:
        short = math.ceil(h * input_size / w / multiple) * multiple
        return max(short, multiple), input_size
    short = math.ceil(w * input_size / h / multiple) * multiple
    return input_size, max(short, multiple)


def letterbox_ratio(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, int, int]:
    """Scale and resized size for YOLOX's top-left letterbox.

    Matches ``yolox.data.data_augment.preproc``: ``r = min(H/h, W/w)`` and the
    resized size is truncated to whole pixels.

    Returns:
        ``(r, resized_height, resized_width)``.
    """
    h, w = frame_hw
    r = min(input_hw[0] / h, input_hw[1] / w)
    return r, int(h * r), int(w * r)


def tile_origins(length: int, count: int, overlap: float) -> tuple[IntArray, int]:
    """Start offsets and size of ``count`` tiles covering ``length`` pixels.

    Tiles have equal size ``s`` with ``s * (count - (count - 1) * overlap) ~= length``;
    the last tile ends exactly at ``length``.
    """
    if count == 1:
        return np.zeros(1, np.intp), length
    size = math.ceil(length / (count - (count - 1) * overlap))
    starts = np.round(np.linspace(0, length - size, count)).astype(np.intp)
    return starts, size


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Where each network input comes from in the frame.

    Attributes:
        boxes: ``(T, 4)`` int frame regions ``x1, y1, x2, y2`` fed to the network.
        ratios: ``(T,)`` letterbox scale of each region.
        resized: ``(T, 2)`` resized ``(height, width)`` of each region.
        inner_edges: ``(T, 4)`` bool, whether the region's left/top/right/bottom
            edge lies inside the frame (a box touching it may be cut).
        input_hw: network ``(height, width)`` shared by all regions.
    """

    boxes: IntArray
    ratios: FloatArray
    resized: IntArray
    inner_edges: BoolArray
    input_hw: tuple[int, int]


def plan_tiles(frame_hw: tuple[int, int], settings: DetectorSettings) -> TilePlan:
    """Regions of a frame to run through the network (whole frame and/or tiles)."""
    h, w = frame_hw
    cols, rows = settings.tiles
    regions: list[tuple[int, int, int, int]] = []
    if cols * rows > 1:
        xs, tw = tile_origins(w, cols, settings.tile_overlap)
        ys, th = tile_origins(h, rows, settings.tile_overlap)
        regions = [(int(x), int(y), int(x) + tw, int(y) + th) for y in ys for x in xs]
    if cols * rows == 1 or settings.tile_full_frame:
        regions.insert(0, (0, 0, w, h))
    boxes = np.array(regions, np.intp)
    # One input shape for all regions so they run as one batch; sized for the
    # tile when tiling (the whole frame then shrinks more, which suits big people).
    rh = int(boxes[-1, 3] - boxes[-1, 1])
    rw = int(boxes[-1, 2] - boxes[-1, 0])
    input_hw = fit_input_shape(
        (rh, rw),
        settings.input_size,
        settings.fit_aspect,
        max_upscale=settings.tile_max_upscale if cols * rows > 1 else settings.max_upscale,
        min_size=settings.min_input_size,
    )
    geo = [letterbox_ratio((int(b[3] - b[1]), int(b[2] - b[0])), input_hw) for b in boxes]
    ratios = np.array([g[0] for g in geo], np.float32)
    resized = np.array([(g[1], g[2]) for g in geo], np.intp)
    inner = np.stack((boxes[:, 0] > 0, boxes[:, 1] > 0, boxes[:, 2] < w, boxes[:, 3] < h), axis=1)
    return TilePlan(boxes, ratios, resized, inner, input_hw)


# --------------------------------------------------------------------------- decode / NMS


def make_grids(
    input_hw: tuple[int, int], strides: tuple[int, ...]
) -> tuple[FloatArray, FloatArray]:
    """Cell offsets ``(N, 2)`` and strides ``(N, 1)`` in the network's output order.

    YOLOX concatenates the stride-8, -16 and -32 maps, each flattened row-major.
    """
    grids, strs = [], []
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        yv, xv = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack((xv, yv), axis=-1).reshape(-1, 2))
        strs.append(np.full((gh * gw, 1), s))
    return (
        np.concatenate(grids).astype(np.float32),
        np.concatenate(strs).astype(np.float32),
    )


def decode_person(
    raw: FloatArray, grid: FloatArray, stride: FloatArray, score_threshold: float
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Person boxes from raw YOLOX output, in network-input pixels.

    Args:
        raw: ``(B, N, 5 + C)`` network output (B images, N cells).
        grid: ``(N, 2)`` cell offsets from :func:`make_grids`.
        stride: ``(N, 1)`` cell strides.
        score_threshold: keep cells whose objectness x person probability is above it.

    Returns:
        ``(xyxy (K, 4), scores (K,), image index (K,))``.
    """
    offset = (grid * stride)[None]
    return decode_person_mapped(raw, offset, stride[None], score_threshold)


def decode_person_mapped(
    raw: FloatArray, offset: FloatArray, scale: FloatArray, score_threshold: float
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Person boxes from raw YOLOX output through a precomputed per-cell affine map.

    Box centre ``= raw_xy * scale + offset`` and size ``= exp(raw_wh) * scale``.
    With ``scale = stride / r`` and ``offset = grid * stride / r + region origin``
    (see :class:`_Buffers`) this lands directly in frame pixels, so the per-frame
    work is a handful of operations on the few surviving cells.

    Args:
        raw: ``(B, N, 5 + C)`` network output.
        offset: ``(B or 1, N, 2)`` per-cell centre offset.
        scale: ``(B or 1, N, 1)`` per-cell scale.
        score_threshold: keep cells whose objectness x person probability is above it.

    Returns:
        ``(xyxy (K, 4), scores (K,), image index (K,))``.
    """
    # score = obj * p(person) <= obj, so cells with obj <= threshold cannot pass:
    # one strided column read over all cells, the product only on the survivors.
    # Right after inference numpy calls are slow (the first one 50-110 us,
    # docs/accuracy.md), so the steps are kept few rather than split further.
    img, cell = np.nonzero(raw[:, :, 4] > score_threshold)
    sel = raw[img, cell, :6]
    scores = sel[:, 4] * sel[:, 5]
    ok = scores > score_threshold
    if not ok.all():
        img, cell, sel, scores = img[ok], cell[ok], sel[ok], scores[ok]
    # Only surviving cells are decoded: exp() on thousands of empty cells per
    # frame would dominate post-processing.
    mi = img if offset.shape[0] > 1 else 0
    sc = scale[mi, cell]
    centre = sel[:, :2] * sc
    centre += offset[mi, cell]
    half = np.exp(sel[:, 2:4])
    half *= sc * 0.5
    xyxy = np.concatenate((centre - half, centre + half), axis=1)
    return (
        xyxy.astype(np.float32, copy=False),
        scores.astype(np.float32, copy=False),
        img,
    )


def box_area(xyxy: FloatArray) -> FloatArray:
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def intersection(a: FloatArray, b: FloatArray) -> FloatArray:
    """``(len(a), len(b))`` intersection areas."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def nms(xyxy: FloatArray, scores: FloatArray, iou_threshold: float) -> IntArray:
    """Exact greedy NMS: keep a box unless a kept higher-scoring box overlaps it by IoU.

    OpenCV's ``cv2.dnn.NMSBoxes`` does the work in one native call (stable
    score order, IoU on continuous coordinates, the same rule as textbook
    greedy NMS; ``tests/test_detector.py`` checks it against a Python
    reference on random clusters). A numpy formulation needs a dozen array
    calls per suppression round: measured right after inference, where the
    per-call cost of numpy triples with cold caches, 0.32 ms per vtest frame
    against 0.10 ms for this. The one-shot "Fast NMS" shortcut (suppress when
    *any* higher box overlaps) would be loop-free in numpy but over-suppresses
    exactly the packed seated rows this product must count.

    Returns:
        Indices of kept boxes, highest score first.
    """
    if int(scores.shape[0]) == 0:
        return np.zeros(0, np.intp)
    xywh = np.array(xyxy, np.float32)  # float arrays bind to cv::Rect2d (no rounding)
    xywh[:, 2:] -= xywh[:, :2]
    # Scores are already thresholded by the caller (they are products of
    # sigmoids, so > 0); OpenCV's own threshold (score > 0) then passes them all.
    # The stubs declare Python sequences; the binding takes numpy arrays as is.
    keep = cv2.dnn.NMSBoxes(
        xywh,  # type: ignore[arg-type]
        np.asarray(scores, np.float32),  # type: ignore[arg-type]
        0.0,
        float(iou_threshold),
    )
    return np.asarray(keep, np.intp).reshape(-1)


def suppress_partials(
    xyxy: FloatArray, cut: BoolArray, source: IntArray, ios_threshold: float
) -> BoolArray:
    """Mask of boxes to keep after dropping tile-border fragments.

    A box touching an inner tile border is likely a person cut in half by the
    tile; when most of it (``ios_threshold`` of its area) lies inside a box from
    another region, that other box is the whole person and the fragment goes.
    """
    keep = np.ones(len(xyxy), bool)
    idx = np.nonzero(cut)[0]
    if idx.size == 0:
        return keep
    inter = intersection(xyxy[idx], xyxy)
    ios = inter / np.maximum(box_area(xyxy[idx]), 1e-9)[:, None]
    other = source[idx][:, None] != source[None, :]
    keep[idx] = ~((ios > ios_threshold) & other).any(axis=1)
    return keep


def _mutual_best(score: FloatArray) -> tuple[IntArray, IntArray]:
    """Greedy one-to-one matching maximising ``score`` (``-inf`` = not allowed).

    Rounds of mutually-best pairs, vectorised inside (equals the sorted greedy).
    """
    s = score.copy()
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    while s.size and np.isfinite(s).any():
        best_col = s.argmax(axis=1)
        best_row = s.argmax(axis=0)
        r = np.arange(s.shape[0])
        mutual = (best_row[best_col] == r) & np.isfinite(s[r, best_col])
        rows.append(r[mutual])
        cols.append(best_col[mutual])
        s[r[mutual], :] = -np.inf
        s[:, best_col[mutual]] = -np.inf
    if not rows:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.concatenate(rows), np.concatenate(cols)


def merge_regions(
    xyxy: FloatArray,
    scores: FloatArray,
    source: IntArray,
    cut: BoolArray,
    nms_iou: float,
    merge_ios: float,
    partial_ios: float,
) -> IntArray:
    """Merge the detections of several regions (whole frame and/or tiles) of one frame.

    1. Greedy NMS at ``nms_iou`` *within* each region: the network's own duplicates.
    2. Across regions, one person seen by two regions gives two boxes that can
       differ a lot in IoU (a tile sees the person at another scale, or only the
       part inside the tile) but one lies mostly inside the other. Regions are
       folded in one at a time; the new region's boxes are matched one-to-one
       to the boxes kept so far, pairs allowed when the intersection over the
       *smaller* box (IoS) exceeds ``merge_ios``, best IoU first. A matched
       pair is one person: the box not cut by an inner tile border wins, else
       the higher score. One-to-one is what keeps two real people who overlap
       (a seated customer behind another: IoS near 1 on the shared ground
       truth) — each region reports both, and each pairs with its own twin.
    3. An unmatched box cut by an inner tile border (``cut``) that lies mostly
       (``partial_ios`` of it) inside a kept box is a fragment and is dropped.

    Args:
        xyxy: ``(K, 4)`` boxes in frame pixels.
        scores: ``(K,)``.
        source: ``(K,)`` region index of each box (0 = first region).
        cut: ``(K,)`` box touches an inner border of its region.

    Returns:
        Indices of kept boxes, highest score first.
    """
    per_region = []
    for r in np.unique(source):
        idx = np.flatnonzero(source == r)
        per_region.append(idx[nms(xyxy[idx], scores[idx], nms_iou)])
    if not per_region:
        return np.zeros(0, np.intp)
    kept = per_region[0]
    for new in per_region[1:]:
        if len(kept) == 0 or len(new) == 0:
            kept = np.concatenate((kept, new))
            continue
        a, b = xyxy[kept], xyxy[new]
        inter = intersection(a, b)
        area_a, area_b = box_area(a), box_area(b)
        smaller = np.minimum(area_a[:, None], area_b[None, :])
        ios = inter / np.maximum(smaller, 1e-9)
        iou = inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
        r, c = _mutual_best(np.where(ios > merge_ios, iou, -np.inf))
        # The new box replaces its twin when it is whole and the twin cut, or
        # when both are equally whole and it scores higher.
        ka, kb = kept[r], new[c]
        better = (cut[ka] & ~cut[kb]) | ((cut[ka] == cut[kb]) & (scores[kb] > scores[ka]))
        kept = kept.copy()
        kept[r[better]] = kb[better]
        rest = np.setdiff1d(np.arange(len(new)), c)
        fresh = new[rest]
        if len(fresh):
            cover = inter[:, rest] / np.maximum(area_b[rest], 1e-9)[None, :]
            fragment = cut[fresh] & (cover > partial_ios).any(axis=0)
            fresh = fresh[~fragment]
        kept = np.concatenate((kept, fresh))
    # Fragments among the first region's boxes (a tile-only plan) against the rest.
    frag = cut[kept]
    if frag.any():
        inter = intersection(xyxy[kept[frag]], xyxy[kept])
        cover = inter / np.maximum(box_area(xyxy[kept[frag]]), 1e-9)[:, None]
        # Covered by a whole (uncut) box of another region.
        other = (source[kept[frag]][:, None] != source[kept][None, :]) & ~cut[kept][None, :]
        drop = ((cover > partial_ios) & other).any(axis=1)
        kept = np.concatenate((kept[~frag], kept[frag][~drop]))
    return kept[np.argsort(-scores[kept], kind="stable")]


#: Candidate floor of each view under flip TTA: every box above it takes part
#: in the fusion, then ``score_threshold`` applies to the fused score (a cache
#: of candidates above this floor replays the fusion exactly, bench/tta_sweep.py).
TTA_CANDIDATE_SCORE = 0.1
#: IoU at which a box of the frame and one of its mirror image are the same
#: person (weighted box fusion's customary 0.55; not tuned).
FLIP_MATCH_IOU = 0.55


def unmirror(xyxy: FloatArray, axis: float) -> FloatArray:
    """Boxes found on a horizontally mirrored image, in the original image's pixels.

    ``axis`` is the mirrored span's ``x_left + x_right`` (in frame pixels): a
    point at ``x`` in the mirror image is at ``axis - x`` in the original, so
    ``x1, x2`` become ``axis - x2, axis - x1``.

    Example:
        >>> unmirror(np.array([[10, 5, 30, 50]], np.float32), 100.0).tolist()
        [[70.0, 5.0, 90.0, 50.0]]
    """
    out = np.empty_like(xyxy)
    out[:, 0] = axis - xyxy[:, 2]
    out[:, 2] = axis - xyxy[:, 0]
    out[:, 1] = xyxy[:, 1]
    out[:, 3] = xyxy[:, 3]
    return out


def fuse_flip(
    xyxy: FloatArray,
    scores: FloatArray,
    view: IntArray,
    nms_iou: float,
    match_iou: float = FLIP_MATCH_IOU,
    score: Literal["avg", "max"] = "avg",
) -> tuple[FloatArray, FloatArray]:
    """Fuse the boxes of a frame (``view == 0``) and of its mirror (``view == 1``).

    Weighted box fusion for two views, vectorised:

    1. greedy NMS at ``nms_iou`` within each view (each view's own duplicates);
    2. the two views' boxes are matched one-to-one, best IoU first, pairs
       allowed at IoU >= ``match_iou`` (:func:`_mutual_best`);
    3. a matched pair becomes one box, the score-weighted mean of the two
       boxes' coordinates, scored by the mean of the two scores (``avg``) or
       their maximum (``max``); an unmatched box keeps its coordinates and is
       scored ``score / 2`` (``avg``: the other view gave it 0, as WBF scores
       a box missing from one of two models) or ``score`` (``max``);
    4. greedy NMS at ``nms_iou`` over the fused boxes (an unmatched box may
       still overlap a fused one).

    ``xyxy`` must already be in the original frame's pixels (:func:`unmirror`).

    Returns:
        ``(xyxy (M, 4), scores (M,))``, highest score first.
    """
    ia = np.flatnonzero(view == 0)
    ib = np.flatnonzero(view != 0)
    ia = ia[nms(xyxy[ia], scores[ia], nms_iou)]
    ib = ib[nms(xyxy[ib], scores[ib], nms_iou)]
    a, b = xyxy[ia].astype(np.float64), xyxy[ib].astype(np.float64)
    sa, sb = scores[ia].astype(np.float64), scores[ib].astype(np.float64)
    if len(ia) and len(ib):
        iou = iou_matrix(xyxy[ia], xyxy[ib])
        r, c = _mutual_best(np.where(iou >= match_iou, iou, -np.inf))
    else:
        r = c = np.zeros(0, np.intp)
    wa, wb = sa[r][:, None], sb[c][:, None]
    pair_box = (a[r] * wa + b[c] * wb) / (wa + wb)
    pair_score = (sa[r] + sb[c]) * 0.5 if score == "avg" else np.maximum(sa[r], sb[c])
    lone = 0.5 if score == "avg" else 1.0
    ra = np.setdiff1d(np.arange(len(ia)), r)
    rb = np.setdiff1d(np.arange(len(ib)), c)
    boxes = np.concatenate((pair_box, a[ra], b[rb])).astype(np.float32)
    fused = np.concatenate((pair_score, sa[ra] * lone, sb[rb] * lone)).astype(np.float32)
    keep = nms(boxes, fused, nms_iou)
    return boxes[keep], fused[keep]


# --------------------------------------------------------------------------- graph / session


def rewrite_input_shape(
    model_bytes: bytes,
    spec: ModelSpec,
    person_only: bool = False,
    fold: bool = False,
    uint8_hwc: bool = False,
) -> bytes:
    """Make the graph's batch, height and width symbolic so any multiple of 32 runs.

    With ``person_only`` the output also keeps only the columns the person
    decode reads (4 box, objectness, class 0 = person; the catalogue enforces
    class 0), see :func:`_keep_person_columns`; a 1-class model already has
    exactly those. Files written to disk (the derived INT8 model) keep the
    published output. With ``fold`` the input normalisation goes into the first
    convolution (:func:`fold_input_normalisation`); the graph then expects
    frame-ordered channels minus :func:`input_shift`. With ``uint8_hwc`` the
    graph takes the letterboxed frame itself, ``(B, H, W, 3)`` uint8, and does
    the layout change, the cast and the shift as its first nodes
    (:func:`_uint8_hwc_input`).
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inputs = [i for i in graph.input if i.name == spec.input.name]
    if not inputs:
        raise ModelError(f"model has no input {spec.input.name!r}; run `lobbywatch model pull`")
    dims = inputs[0].type.tensor_type.shape.dim
    for d, sym in zip(dims, ("batch", None, "height", "width"), strict=True):
        if sym is not None:
            d.ClearField("dim_value")
            d.dim_param = sym
    for out in graph.output:
        for d, sym in zip(out.type.tensor_type.shape.dim, ("batch", "cells", None), strict=False):
            if sym is not None:
                d.ClearField("dim_value")
                d.dim_param = sym
    if person_only and 5 + len(spec.classes) > PERSON_COLUMNS:
        _keep_person_columns(graph, spec)
    if fold:
        fold_input_normalisation(graph, spec)
    if uint8_hwc:
        _uint8_hwc_input(graph, spec)
    # Intermediate shapes were recorded for 416x416; stale ones would make
    # onnxruntime's shape inference reject other sizes.
    del graph.value_info[:]
    return bytes(model.SerializeToString())


PERSON_COLUMNS = 6  # dx, dy, log w, log h, objectness, p(person)


def _keep_person_columns(graph: Any, spec: ModelSpec) -> None:
    """Cut the graph output to the 6 person columns, inside the graph.

    The exported head ends in ``Concat`` (B, 85, N) -> ``Transpose`` (B, N, 85).
    Slicing the channel axis *before* that transpose means onnxruntime never
    transposes or copies out the 79 other class rows (1.2 MB per 416x416
    frame; inference measured 0.4-0.6 ms faster on vtest). Any other graph
    tail gets the slice appended on the last axis.
    """
    from onnx import helper, numpy_helper

    out_name = spec.output.name
    producer = next((n for n in graph.node if out_name in n.output), None)
    if producer is None:
        raise ModelError(f"model has no node producing {out_name!r}; run `lobbywatch model pull`")
    perm = next((list(a.ints) for a in producer.attribute if a.name == "perm"), None)
    if producer.op_type == "Transpose" and perm == [0, 2, 1]:
        source, target, axis = producer.input[0], f"{out_name}__person", 1
        producer.input[0] = target
        at = list(graph.node).index(producer)
    else:
        source, target, axis = f"{out_name}__all", out_name, 2
        producer.output[list(producer.output).index(out_name)] = source
        at = list(graph.node).index(producer) + 1
    consts = {
        f"{out_name}__{k}": np.array([v], np.int64)
        for k, v in (("starts", 0), ("ends", PERSON_COLUMNS), ("axes", axis))
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.node.insert(at, helper.make_node("Slice", [source, *consts], [target]))
    out = next(o for o in graph.output if o.name == out_name)
    out.type.tensor_type.shape.dim[2].dim_value = PERSON_COLUMNS


def input_shift(spec: ModelSpec) -> npt.NDArray[np.float32]:
    """Per frame-channel (B, G, R) value subtracted from the frame (0..255 units).

    The network wants ``(x * scale - mean) / std`` per channel (in its own
    channel order). Written as ``(scale / std) * (x - mean / scale)``, the
    multiplier goes into the first convolution's weights
    (:func:`fold_input_normalisation`) and the shift ``mean / scale`` (0..255
    units) is subtracted right after the graph's uint8 -> float32 cast
    (:func:`_uint8_hwc_input`). It is not folded into the convolution's bias:
    zero padding means "mean colour" in the published graph, so that would be
    exact only away from the image border. Zeros for a raw-input model such
    as ``yolox_nano``.

    Returns:
        ``(3,)`` float32, in the frame's BGR order.
    """
    shift = np.asarray(spec.input.mean, np.float64) / spec.input.scale
    if spec.input.colour == "RGB":
        shift = shift[::-1]  # network channel m reads frame channel 2 - m
    return shift.astype(np.float32)


def _first_conv_groups(graph: Any, input_name: str) -> tuple[Any, int]:
    """The convolution that reads the image and how many 3-channel copies it sees.

    Either a ``Conv`` on the input itself (1 copy) or YOLOX's Focus stem: a
    ``Concat`` along channels of ``Slice`` s of the input that cut only the
    spatial axes (``k`` copies, channel ``3 j + c`` = image channel ``c``).
    """
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers = [n for n in graph.node if input_name in n.input]

    def fail(why: str) -> ModelError:
        return ModelError(f"cannot fold the input normalisation into the first convolution: {why}")

    convs = [n for n in consumers if n.op_type == "Conv"]
    if convs and len(consumers) == 1:
        return convs[0], 1
    if not consumers or any(n.op_type != "Slice" for n in consumers):
        raise fail("the image feeds neither one Conv nor a Focus stem of Slices")
    for n in consumers:
        axes = consts.get(n.input[3]) if len(n.input) > 3 else None
        if axes is None or not set(int(a) for a in np.ravel(axes)) <= {2, 3, -1, -2}:
            raise fail(f"stem slice {n.name or n.output[0]} does not cut only height/width")
    slice_outs = {n.output[0] for n in consumers}
    concat: list[Any] = [
        n for n in graph.node if n.op_type == "Concat" and set(n.input) == slice_outs
    ]
    if len(concat) != 1 or len(concat[0].input) != len(slice_outs):
        raise fail("the stem slices are not concatenated once")
    axis = next((a.i for a in concat[0].attribute if a.name == "axis"), None)
    if axis != 1:
        raise fail("the stem concatenates along an axis other than channels")
    nxt: list[Any] = [n for n in graph.node if concat[0].output[0] in n.input]
    if len(nxt) != 1 or nxt[0].op_type != "Conv" or nxt[0].input[0] != concat[0].output[0]:
        raise fail("the stem concatenation does not feed exactly one Conv")
    return nxt[0], len(concat[0].input)


def fold_input_normalisation(graph: Any, spec: ModelSpec) -> None:
    """Fold channel order and per-channel scale into the first convolution, in place.

    After this, the graph reads frame-ordered (BGR) channels from which only
    :func:`input_shift` has been subtracted, and computes exactly what the
    published graph computes on ``(x * scale - mean) / std`` in its own channel
    order: weights of image channel ``c`` are multiplied by ``scale / std`` of
    the network channel it feeds and moved to frame channel order. Bias and
    padding are untouched; zero padding means "the mean colour" in both
    graphs, which is why the shift is not folded into the bias (that would be
    exact only away from the image border). No-op for raw BGR models.

    Raises:
        ModelError: the graph's stem is not a Conv (or Focus + Conv) on the input.
    """
    from onnx import numpy_helper

    inp = spec.input
    gain = inp.scale / np.asarray(inp.std, np.float64)  # per network channel
    if inp.colour == "BGR" and np.allclose(gain, 1.0):
        return
    conv, copies = _first_conv_groups(graph, inp.name)
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    init = next((i for i in graph.initializer if i.name == conv.input[1]), None)
    if init is None or group != 1:
        raise ModelError(
            "cannot fold the input normalisation: the first Conv has no constant weights "
            "or is grouped"
        )
    w = numpy_helper.to_array(init).astype(np.float64)
    if w.shape[1] != 3 * copies:
        raise ModelError(
            f"cannot fold the input normalisation: first Conv has {w.shape[1]} input "
            f"channels, expected {3 * copies}"
        )
    # Frame channel c feeds network channel m(c); for RGB networks m = 2 - c.
    src = np.array([2, 1, 0] if inp.colour == "RGB" else [0, 1, 2])
    cols = (3 * np.arange(copies)[:, None] + src[None, :]).reshape(-1)
    folded = w[:, cols] * np.tile(gain[src], copies)[None, :, None, None]
    init.CopyFrom(numpy_helper.from_array(folded.astype(np.float32), init.name))


def _uint8_hwc_input(graph: Any, spec: ModelSpec) -> None:
    """Make the graph read the letterboxed uint8 frame, ``(B, H, W, 3)``, in place.

    Prepended nodes: Transpose to NCHW (on bytes, 4x less to move than on
    floats), Cast to float32, and Sub of :func:`input_shift` when the model
    normalises its input. Measured on vtest.avi at 384x512 (bytetrack_nano,
    1 thread, alternating): preprocessing 0.75 ms instead of 1.80 ms (resize,
    split and three casting copies in numpy) and inference 28.0 instead of
    28.9 ms, i.e. the whole frame 2 ms cheaper, outputs bit-identical.
    """
    from onnx import TensorProto, helper, numpy_helper

    name = spec.input.name
    inner = f"{name}__nchw"
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x == name:
                node.input[i] = inner
    old = next(i for i in graph.input if i.name == name)
    graph.input.remove(old)
    graph.input.insert(
        0, helper.make_tensor_value_info(name, TensorProto.UINT8, ["batch", "height", "width", 3])
    )
    shift = input_shift(spec)
    cast_out = f"{name}__float" if np.any(shift != 0) else inner
    nodes = [
        helper.make_node("Transpose", [name], [f"{name}__chw_u8"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", [f"{name}__chw_u8"], [cast_out], to=TensorProto.FLOAT),
    ]
    if cast_out != inner:
        const = f"{name}__shift"
        graph.initializer.append(numpy_helper.from_array(shift.reshape(1, 3, 1, 1), const))
        nodes.append(helper.make_node("Sub", [cast_out, const], [inner]))
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)


def make_session(model_bytes: bytes, threads: int, inter_threads: int) -> Any:
    """An onnxruntime CPU session with explicit threads and full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = inter_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(
            f"onnxruntime cannot load the model ({exc}); run `lobbywatch model pull`"
        ) from exc


@dataclass(slots=True)
class _Buffers:
    """Per frame-shape state reused across frames (no allocation per frame)."""

    plan: TilePlan
    grid: FloatArray
    stride: FloatArray
    batch: npt.NDArray[np.uint8]  # (T, H, W, 3) network input, pad already filled
    resized: list[npt.NDArray[np.uint8]]  # (h, w, 3) per region, cv2.resize target
    direct: list[bool]  # resized[t] is a view into batch (no copy after the resize)
    offset: FloatArray  # (T, N, 2) cell centre offset in frame pixels
    scale: FloatArray  # (T, N, 1) cell stride in frame pixels
    lo: FloatArray  # (T, 4) lower clip bound per region (x1, y1, x1, y1)
    hi: FloatArray  # (T, 4) upper clip bound per region (x2, y2, x2, y2)
    # Flip TTA: batch entry 1 is entry 0 mirrored; a point at x found on it is
    # at mirror_axis - x in the frame (0.0 without TTA).
    mirror_axis: float = 0.0


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame ready for inference (views into the detector's buffers)."""

    batch: npt.NDArray[np.uint8]  # (T, H, W, 3) letterboxed BGR regions
    buffers: _Buffers
    frame_hw: tuple[int, int]


#: A picture is greyscale when its channels differ by less than this many grey
#: levels on average (JPEG/H.264 of a monochrome picture decodes to equal
#: channels; colour scenes of the development set differ by 9-34 levels).
GREY_MAX_CHROMA = 2.0
#: Frames between two greyscale checks of a camera (cameras switch to
#: monochrome IR at night and back): the check reads every 8th row once.
GREY_CHECK_EVERY = 50


def is_grey(image: npt.NDArray[np.uint8], max_chroma: float = GREY_MAX_CHROMA) -> bool:
    """Whether a BGR picture is greyscale (every 8th row sampled).

    Example:
        >>> g = np.full((16, 16, 3), 90, np.uint8); is_grey(g)
        True
        >>> g[..., 2] = 120; is_grey(g)
        False
    """
    rows = image[::8].astype(np.int16)
    return bool(
        np.abs(rows[..., 0] - rows[..., 1]).mean() < max_chroma
        and np.abs(rows[..., 1] - rows[..., 2]).mean() < max_chroma
    )


class Detector:
    """Person detector: ``Detector.from_settings(settings).detect(frame_bgr)``.

    Not thread-safe (buffers are reused); use one instance per camera thread.
    """

    def __init__(self, model: ResolvedModel, settings: DetectorSettings) -> None:
        self.model = model
        self.settings = settings
        spec = model.spec
        if spec.output.decoding != "yolox":
            raise ModelError(f"{spec.name}: unsupported output decoding {spec.output.decoding!r}")
        try:
            raw = model.path.read_bytes()
        except OSError as exc:
            raise ModelError(
                f"cannot read {model.path}: {exc}; run `lobbywatch model pull`"
            ) from exc
        self._session = make_session(
            rewrite_input_shape(raw, spec, person_only=True, fold=True, uint8_hwc=True),
            settings.threads,
            settings.inter_threads,
        )
        self._input_name = spec.input.name
        # The graph takes the letterboxed uint8 frame: layout, cast and the
        # normalisation's shift are its first nodes, scale and channel order
        # live in its first convolution (fold_input_normalisation).
        self._pad = spec.input.pad_value
        self._stride_multiple = spec.input.stride_multiple
        self._buffers: dict[tuple[int, int], _Buffers] = {}
        # CLAHE's 8x8 tiles and clip limit 2 are OpenCV's usual values, not tuned.
        self._clahe = (
            cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
            if settings.grey_contrast == "clahe"
            else None
        )
        self._grey = False
        self._until_check = 0
        self._width_scale = (
            float(spec.output.box_width_scale) if settings.box_width == "catalogue" else 1.0
        )

    @classmethod
    def from_settings(cls, settings: DetectorSettings | None = None) -> Detector:
        """Resolve the weights named by ``settings`` and build the detector."""
        settings = settings or DetectorSettings()  # type: ignore[call-arg]
        model = resolve_model(settings.name, settings.path, settings.variant)
        return cls(model, settings)

    def _buffers_for(self, frame_hw: tuple[int, int]) -> _Buffers:
        buf = self._buffers.get(frame_hw)
        if buf is None:
            plan = plan_tiles(frame_hw, self.settings)
            grid, stride = make_grids(plan.input_hw, self.model.spec.output.strides)
            views = 2 if self.settings.tta == "flip" else 1  # tta needs one region
            batch = np.full((len(plan.boxes) * views, *plan.input_hw, 3), self._pad, np.uint8)
            # A region as wide as the input is a contiguous block of the batch,
            # so cv2.resize writes straight into it; otherwise into its own
            # buffer, copied into place.
            direct = [int(w) == plan.input_hw[1] for _, w in plan.resized]
            resized = [
                batch[t, : int(h)] if d else np.empty((int(h), int(w), 3), np.uint8)
                for t, ((h, w), d) in enumerate(zip(plan.resized, direct, strict=True))
            ]
            # Grid, stride, letterbox ratio and region origin folded into one
            # affine map per cell and region, computed once per frame size.
            inv_r = (1.0 / plan.ratios.astype(np.float64))[:, None, None]
            origin = plan.boxes[:, None, :2].astype(np.float64)
            offset = (grid[None] * stride[None] * inv_r + origin).astype(np.float32)
            scale = (stride[None] * inv_r).astype(np.float32)
            b = plan.boxes.astype(np.float32)
            lo, hi = np.tile(b[:, :2], 2), np.tile(b[:, 2:], 2)
            axis = 0.0
            if views == 2:
                # The mirror image is the resized region flipped within its own
                # width, so decoding it with the region's map and reflecting
                # about that width (in frame pixels) gives frame coordinates.
                axis = float(2 * b[0, 0] + plan.resized[0, 1] / float(plan.ratios[0]))
                offset = np.repeat(offset, 2, axis=0)
                scale = np.repeat(scale, 2, axis=0)
            buf = _Buffers(plan, grid, stride, batch, resized, direct, offset, scale, lo, hi, axis)
            self._buffers[frame_hw] = buf
        return buf

    def preprocess(self, frame: npt.NDArray[np.uint8]) -> Prepared:
        """Letterbox every region of ``frame`` (BGR uint8 HxWx3) into the input batch."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            shape = getattr(frame, "shape", None)
            raise SourceError(f"expected a BGR image of shape (H, W, 3), got {shape}")
        if frame.dtype != np.uint8:
            raise SourceError(f"expected a uint8 BGR image, got dtype {frame.dtype}")
        if frame.shape[0] < 8 or frame.shape[1] < 8:
            raise SourceError(f"image of {frame.shape[1]}x{frame.shape[0]} px is too small")
        hw = (int(frame.shape[0]), int(frame.shape[1]))
        buf = self._buffers_for(hw)
        boxes, batch = buf.plan.boxes, buf.batch
        # Per region (1, or a handful of tiles): one resize into the uint8
        # batch (or into a buffer copied into it when the region is narrower
        # than the input). Layout change, cast and normalisation happen inside
        # the graph (_uint8_hwc_input), so no float copy is made here.
        for t, dst in enumerate(buf.resized):
            x1, y1, x2, y2 = boxes[t]
            src = frame[y1:y2, x1:x2]
            if src.shape != dst.shape:
                cv2.resize(
                    src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR
                )
            else:
                np.copyto(dst, src)
            if self._clahe is not None and self._grey_now(dst):
                # One equalised plane broadcast into the three equal channels.
                dst[...] = self._clahe.apply(np.ascontiguousarray(dst[..., 0]))[..., None]
            if not buf.direct[t]:
                nh, nw = dst.shape[:2]
                np.copyto(batch[t, :nh, :nw], dst)
        if len(batch) > len(boxes):
            # Flip TTA (one region): the mirror image of the resized region,
            # one uint8 copy; its padding stays on the right as in view 0.
            nh, nw = buf.resized[0].shape[:2]
            np.copyto(batch[1, :nh, :nw], batch[0, :nh, :nw][:, ::-1])
        return Prepared(batch, buf, hw)

    def _grey_now(self, resized: npt.NDArray[np.uint8]) -> bool:
        """Whether the camera is greyscale, re-checked every :data:`GREY_CHECK_EVERY` calls."""
        if self._until_check <= 0:
            self._grey = is_grey(resized)
            self._until_check = GREY_CHECK_EVERY
        self._until_check -= 1
        return self._grey

    def infer(self, prepared: Prepared) -> FloatArray:
        """Run the network on the uint8 batch; returns raw ``(T, N, 6)`` (box, obj, person)."""
        batch = prepared.batch
        if batch.shape[0] == 1:
            out = self._session.run(None, {self._input_name: batch})[0]
            return np.asarray(out, dtype=np.float32)
        # The exported YOLOX graph reshapes its head output with a hard-coded
        # batch of 1, so a batch of T regions comes back as one scrambled
        # (1, T*N, 85) tensor. Regions therefore run one session call each
        # (T is a handful of tiles; the per-call overhead is negligible next to
        # the convolutions).
        outs = [
            self._session.run(None, {self._input_name: batch[t : t + 1]})[0]
            for t in range(len(batch))
        ]
        return np.concatenate(outs, axis=0).astype(np.float32, copy=False)

    def postprocess(self, raw: FloatArray, prepared: Prepared) -> Detections:
        """Decode person boxes, map them to frame pixels, merge regions, NMS."""
        s = self.settings
        if s.tta == "flip":
            xyxy, scores, view = self.view_candidates(raw, prepared)
            boxes, fused = fuse_flip(xyxy, scores, view, s.nms_iou)
            keep = fused > s.score_threshold
            return Detections(self._box_convention(boxes[keep]), fused[keep])
        buf = prepared.buffers
        plan = buf.plan
        xyxy, scores, src = decode_person_mapped(raw, buf.offset, buf.scale, s.score_threshold)
        if len(scores) > s.max_candidates:
            top = np.argpartition(-scores, s.max_candidates - 1)[: s.max_candidates]
            xyxy, scores, src = xyxy[top], scores[top], src[top]
        # Clip to the region the box came from: padding is not image.
        if len(plan.boxes) == 1:
            np.maximum(xyxy, buf.lo[0], out=xyxy)
            np.minimum(xyxy, buf.hi[0], out=xyxy)
        else:
            xyxy = np.clip(xyxy, buf.lo[src], buf.hi[src])
        valid = ((xyxy[:, 2:] - xyxy[:, :2]) > 1).all(axis=1)
        if not valid.all():
            xyxy, scores, src = xyxy[valid], scores[valid], src[valid]
        if len(plan.boxes) > 1 and len(scores):
            region = plan.boxes[src].astype(np.float32)
            margin = 2.0
            touches = np.stack(
                (
                    xyxy[:, 0] <= region[:, 0] + margin,
                    xyxy[:, 1] <= region[:, 1] + margin,
                    xyxy[:, 2] >= region[:, 2] - margin,
                    xyxy[:, 3] >= region[:, 3] - margin,
                ),
                axis=1,
            )
            cut: BoolArray = np.asarray((touches & plan.inner_edges[src]).any(axis=1))
            kept = merge_regions(xyxy, scores, src, cut, s.nms_iou, s.tile_merge_ios, s.partial_ios)
        else:
            kept = nms(xyxy, scores, s.nms_iou)
        # Fancy indexing returns fresh contiguous float32 arrays.
        return Detections(self._box_convention(xyxy[kept]), scores[kept])

    def _box_convention(self, xyxy: FloatArray) -> FloatArray:
        """Narrow kept boxes about their centre by the model's ``box_width_scale``, in place.

        After NMS and fusion, so which boxes are kept (and so every count) is
        the network's own; only the drawn width changes. Centre and bottom
        edge, hence foot points and zone membership, are unchanged.
        """
        f = self._width_scale
        if f != 1.0 and len(xyxy):
            shrink = (xyxy[:, 2] - xyxy[:, 0]) * (0.5 * (1.0 - f))
            xyxy[:, 0] += shrink
            xyxy[:, 2] -= shrink
        return xyxy

    def view_candidates(
        self, raw: FloatArray, prepared: Prepared, floor: float = TTA_CANDIDATE_SCORE
    ) -> tuple[FloatArray, FloatArray, IntArray]:
        """Flip TTA's candidates before any NMS: boxes above ``floor`` of both views.

        Boxes of the mirror view are mapped back into frame pixels
        (:func:`unmirror`); all are clipped to the frame.

        Returns:
            ``(xyxy (K, 4), scores (K,), view (K,))``, view 0 = frame, 1 = mirror.
        """
        s = self.settings
        buf = prepared.buffers
        low = min(floor, s.score_threshold)
        xyxy, scores, view = decode_person_mapped(raw, buf.offset, buf.scale, low)
        if len(scores) > s.max_candidates:
            top = np.argpartition(-scores, s.max_candidates - 1)[: s.max_candidates]
            xyxy, scores, view = xyxy[top], scores[top], view[top]
        m = view == 1
        if m.any():
            xyxy[m] = unmirror(xyxy[m], buf.mirror_axis)
        np.maximum(xyxy, buf.lo[0], out=xyxy)
        np.minimum(xyxy, buf.hi[0], out=xyxy)
        valid = ((xyxy[:, 2:] - xyxy[:, :2]) > 1).all(axis=1)
        if not valid.all():
            xyxy, scores, view = xyxy[valid], scores[valid], view[valid]
        return xyxy, scores, view

    def detect(self, frame: npt.NDArray[np.uint8]) -> Detections:
        """Person boxes in ``frame`` (BGR uint8), in frame pixels, highest score first."""
        prepared = self.preprocess(frame)
        return self.postprocess(self.infer(prepared), prepared)
