"""Drawing zones, detections, tracks and per-zone counts onto frames.

For humans checking a deployment (``lobbywatch count --out``, ``lobbywatch zones
preview``); never part of what leaves the edge box. The zone tint is precomputed
once per zone map and blended in one vectorised operation; boxes and labels are
drawn one by one because OpenCV has no batched primitives for them (a few
dozen calls per frame, off the counting hot path).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.pipeline import FrameResult
from lobbywatch.edge.state import ZoneState
from lobbywatch.edge.tracker import TrackedObjects
from lobbywatch.edge.zones import ZoneMap

__all__ = ["LEGEND", "Annotator"]

#: How to read track labels; drawn on every annotated frame and quoted in ``count --help``.
LEGEND = "#N track  #N? predicted, not seen  grey: unconfirmed"

BgrImage = npt.NDArray[np.uint8]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREY = (160, 160, 160)
_WHITE = (255, 255, 255)
_DETECTION = (0, 200, 255)


def _label_height(image: BgrImage) -> int:
    """Height in pixels of one :func:`_label` line on ``image``."""
    scale = max(0.4, image.shape[0] / 1400)
    (_, th), base = cv2.getTextSize("#", _FONT, scale, max(1, round(scale * 2)))
    return th + base + 3


def _label(image: BgrImage, text: str, org: tuple[int, int], color: tuple[int, ...]) -> None:
    """Text on a filled background box, kept inside the image."""
    scale = max(0.4, image.shape[0] / 1400)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    x = int(np.clip(org[0], 0, max(image.shape[1] - tw - 2, 0)))
    y = int(np.clip(org[1], th + base + 2, image.shape[0] - 1))
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), color, cv2.FILLED)
    cv2.putText(image, text, (x + 1, y - base), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


class Annotator:
    """Draws onto frames of one zone map's size.

    Example:
        >>> from lobbywatch.edge.zones import ZoneSpec
        >>> spec = ZoneSpec(id="q", kind="waiting", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
        >>> ann = Annotator(ZoneMap.from_specs([spec], 64, 48))
        >>> out = ann.draw_zones(np.zeros((48, 64, 3), np.uint8))
        >>> bool(out[24, 10].any()), bool(out[24, 50].any())
        (True, False)
    """

    def __init__(self, zone_map: ZoneMap, alpha: float = 0.3) -> None:
        self.zone_map = zone_map
        self.alpha = float(alpha)
        self.colors = zone_map.colors()
        labels = zone_map.labels
        self._inside = (labels >= 0)[..., None]
        # Full-frame tint: each zone pixel takes its zone's colour (one gather).
        self._tint = self.colors[np.maximum(labels, 0)]

    def _color(self, zone: int) -> tuple[int, int, int]:
        if zone < 0:
            return _GREY
        b, g, r = (int(c) for c in self.colors[zone])
        return b, g, r

    def _check(self, image: BgrImage) -> None:
        h, w = image.shape[:2]
        if (w, h) != (self.zone_map.width, self.zone_map.height):
            raise ValueError(
                f"image is {w}x{h} but the zone map is {self.zone_map.width}x{self.zone_map.height}"
            )

    def draw_zones(
        self,
        image: BgrImage,
        states: tuple[ZoneState, ...] | None = None,
        texts: Sequence[str] | None = None,
        labels: bool = True,
    ) -> BgrImage:
        """Tint and outline every zone, labelled with its id. In place.

        Args:
            image: BGR frame of the zone map's size.
            states: per-zone states; adds "people (raw n)" to each label.
            texts: per-zone labels to use instead (wins over ``states``).
            labels: draw the labels now; ``False`` leaves them to
                :meth:`draw_zone_labels`, to draw them above boxes drawn later.
        """
        self._check(image)
        blended = cv2.addWeighted(image, 1.0 - self.alpha, self._tint, self.alpha, 0.0)
        np.copyto(image, blended, where=self._inside)
        for k, poly in enumerate(self.zone_map.polygons_px):
            pts = np.round(poly).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], True, self._color(k), 2, cv2.LINE_AA)
        if labels:
            self.draw_zone_labels(image, states, texts)
        return image

    def draw_zone_labels(
        self,
        image: BgrImage,
        states: tuple[ZoneState, ...] | None = None,
        texts: Sequence[str] | None = None,
    ) -> BgrImage:
        """Each zone's label below its top vertex (see :meth:`draw_zones`). In place."""
        for k, poly in enumerate(self.zone_map.polygons_px):
            text = self.zone_map.specs[k].id
            if texts is not None:
                text = texts[k]
            elif states is not None:
                text += f": {states[k].people} (raw {states[k].raw_count})"
            top = int(np.argmin(poly[:, 1]))
            _label(image, text, (int(poly[top, 0]), int(poly[top, 1]) + 24), self._color(k))
        return image

    def draw_detections(self, image: BgrImage, detections: Detections) -> BgrImage:
        """Thin boxes with scores and foot points. In place."""
        for (x1, y1, x2, y2), score in zip(detections.xyxy, detections.scores, strict=True):
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(image, p1, p2, _DETECTION, 1)
            cv2.circle(image, (int((x1 + x2) / 2), int(y2)), 3, _DETECTION, cv2.FILLED)
            _label(image, f"{score:.2f}", (p1[0], p1[1]), _DETECTION)
        return image

    def draw_tracks(
        self, image: BgrImage, tracks: TrackedObjects, zone_of_track: npt.NDArray[np.int64]
    ) -> BgrImage:
        """Track boxes coloured by counted zone; dashed-grey look for tentative/unseen. In place."""
        for i in range(len(tracks)):
            x1, y1, x2, y2 = (int(v) for v in tracks.xyxy[i])
            confirmed, seen = bool(tracks.confirmed[i]), bool(tracks.matched[i])
            color = self._color(int(zone_of_track[i])) if confirmed else _GREY
            cv2.rectangle(image, (x1, y1), (x2, y2), color, 2 if seen else 1)
            cv2.circle(image, ((x1 + x2) // 2, y2), 4, color, cv2.FILLED)
            tag = f"#{int(tracks.ids[i])}" + ("" if seen else "?")
            _label(image, tag, (x1, y1), color if confirmed else _WHITE)
        return image

    def draw_result(self, image: BgrImage, result: FrameResult) -> BgrImage:
        """A copy of ``image`` with zones, counts and tracks of one pipeline step."""
        out = image.copy()
        self.draw_zones(out, result.zones, labels=False)
        self.draw_tracks(out, result.tracks, result.zone_of_track)
        # Zone labels last: a person's box label must not hide a zone's count.
        self.draw_zone_labels(out, result.zones)
        _label(out, LEGEND, (4, out.shape[0] - _label_height(out)), _WHITE)
        _label(out, f"t={result.ts:.1f}s  tracks={len(result.tracks)}", (4, out.shape[0]), _WHITE)
        return out
