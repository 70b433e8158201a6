"""Zone geometry validation and vectorised foot-point membership."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.zones import (
    NO_ZONE,
    ZoneMap,
    ZoneSpec,
    rasterize_polygon,
    validate_zone_geometry,
)
from lobbywatch.errors import ConfigError


def zone(zid: str, polygon: list[tuple[float, float]], kind: str = "waiting") -> ZoneSpec:
    return ZoneSpec(id=zid, kind=kind, polygon=polygon)


def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# Frame 200x100: "left" covers x in [0, 50) px, "right" x in [50, 100) px, the rest is no zone.
LEFT = zone("left", rect(0, 0, 0.25, 1))
RIGHT = zone("right", rect(0.25, 0, 0.5, 1), kind="cash_counter")


@pytest.fixture
def two_zones() -> ZoneMap:
    return ZoneMap.from_specs([LEFT, RIGHT], 200, 100)


class TestMembership:
    @pytest.mark.parametrize(
        ("point", "expected"),
        [
            ((10.0, 50.0), 0),
            ((0.0, 0.0), 0),  # frame corner, inside the left zone
            ((49.99, 99.9), 0),  # just left of the shared edge
            ((50.0, 50.0), 1),  # exactly on the shared edge: the zone to the right, only
            ((99.99, 50.0), 1),
            ((100.0, 50.0), NO_ZONE),  # exactly on the right zone's outer edge: outside
            ((150.0, 20.0), NO_ZONE),  # outside all zones
            ((-5.0, 50.0), 0),  # slightly left of the frame: nearest border pixel
            ((260.0, 130.0), NO_ZONE),  # beyond the bottom-right corner: pixel (199, 99)
            ((np.nan, 50.0), NO_ZONE),
        ],
    )
    def test_hand_cases(
        self, two_zones: ZoneMap, point: tuple[float, float], expected: int
    ) -> None:
        assert two_zones.zone_of(np.array([point])).tolist() == [expected]

    def test_adjacent_zones_partition_the_shared_edge(self, two_zones: ZoneMap) -> None:
        # Every pixel is in at most one zone, and together they tile x < 100 exactly.
        assert two_zones.pixels.tolist() == [50 * 100, 50 * 100]
        assert (two_zones.labels[:, :50] == 0).all()
        assert (two_zones.labels[:, 50:100] == 1).all()
        assert (two_zones.labels[:, 100:] == NO_ZONE).all()

    def test_triangle_pixel_count(self) -> None:
        # Pixel (x, y) is inside iff its centre satisfies (x+.5) + (y+.5) < 10, i.e. x+y <= 8:
        # 9+8+...+1 = 45 pixels; the 10 pixels whose centre lies on the hypotenuse are out.
        zm = ZoneMap.from_specs([zone("t", [(0, 0), (1, 0), (0, 1)])], 10, 10)
        assert zm.pixels.tolist() == [45]
        ys, xs = np.nonzero(zm.labels == 0)
        assert ((xs + ys) <= 8).all()

    def test_foot_points_of_detections(self, two_zones: ZoneMap) -> None:
        dets = Detections(
            np.array(
                [
                    [0, 0, 20, 60],  # foot (10, 60): left
                    [30, 0, 70, 40],  # foot (50, 40): on the shared edge -> right
                    [90, 10, 130, 90],  # foot (110, 90): no zone, though the box overlaps right
                    [40, 0, 60, 100],  # foot (50, 100): bottom border -> right
                ],
                np.float32,
            ),
            np.full(4, 0.9, np.float32),
        )
        z = two_zones.zone_of(dets.foot_points())
        assert z.tolist() == [0, 1, NO_ZONE, 1]
        assert two_zones.counts(z).tolist() == [1, 2]

    def test_rasterize_small_square(self) -> None:
        m = rasterize_polygon([(1, 1), (3, 1), (3, 2), (1, 2)], 5, 4)
        expected = np.zeros((4, 5), bool)
        expected[1, 1:3] = True
        assert (m == expected).all()

    def test_relative_polygon_scales_with_frame(self) -> None:
        small = ZoneMap.from_specs([LEFT], 200, 100)
        big = ZoneMap.from_specs([LEFT], 800, 400)
        assert small.pixels[0] * 16 == big.pixels[0]
        assert big.zone_of(np.array([[199.0, 10.0], [200.0, 10.0]])).tolist() == [0, NO_ZONE]

    def test_labels_are_read_only(self, two_zones: ZoneMap) -> None:
        with pytest.raises(ValueError, match="read-only"):
            two_zones.labels[0, 0] = 5


class TestGeometryValidation:
    def test_adjacent_and_closed_polygons_are_fine(self) -> None:
        closed = zone("c", [*rect(0.5, 0, 1, 1), (0.5, 0)])  # first vertex repeated at the end
        assert validate_zone_geometry([LEFT, RIGHT, closed]) is None
        # the closing vertex is dropped, not counted as a repeat: the zone keeps its area
        zm = ZoneMap.from_specs([LEFT, RIGHT, closed], 200, 100)
        assert zm.pixels.tolist() == [50 * 100, 50 * 100, 100 * 100]

    def test_every_vertex_outside_the_frame_is_named(self) -> None:
        with pytest.raises(ValueError) as info:
            validate_zone_geometry([zone("far", [(0, 0), (1.2, 0), (1, 1), (-0.5, 1)])])
        msg = str(info.value)
        assert "vertex 1 (1.2, 0) is outside" in msg
        assert "vertex 3 (-0.5, 1) is outside" in msg

    def test_duplicate_ids(self) -> None:
        with pytest.raises(ValueError, match="zone id 'left' is used twice"):
            validate_zone_geometry([LEFT, zone("left", rect(0.6, 0, 1, 1))])

    def test_vertex_outside_frame(self) -> None:
        with pytest.raises(ValueError, match=r"zone 'far': vertex 1 \(1.2, 0\) is outside"):
            validate_zone_geometry([zone("far", [(0, 0), (1.2, 0), (1, 1)])])

    def test_negative_vertex(self) -> None:
        with pytest.raises(ValueError, match=r"zone 'neg': vertex 0 \(-0.1, 0.5\)"):
            validate_zone_geometry([zone("neg", [(-0.1, 0.5), (1, 0), (1, 1)])])

    def test_bowtie_is_self_intersecting(self) -> None:
        with pytest.raises(ValueError, match="zone 'bow': polygon is self-intersecting"):
            validate_zone_geometry([zone("bow", [(0, 0), (1, 1), (1, 0), (0, 1)])])

    def test_vertex_touching_a_far_edge_is_self_intersecting(self) -> None:
        # Vertex 3 lies on edge 0-1: the polygon pinches into two lobes.
        pinched = [(0, 0), (1, 0), (0.8, 0.5), (0.5, 0), (0.2, 0.5)]
        with pytest.raises(ValueError, match="zone 'pinch': polygon is self-intersecting"):
            validate_zone_geometry([zone("pinch", pinched)])

    def test_collinear_is_zero_area(self) -> None:
        with pytest.raises(ValueError, match="zone 'line': polygon has zero area"):
            validate_zone_geometry([zone("line", [(0, 0), (0.5, 0.5), (1, 1)])])

    def test_repeated_vertex(self) -> None:
        with pytest.raises(ValueError, match="zone 'rep': vertex 1 repeats vertex 0"):
            validate_zone_geometry([zone("rep", [(0, 0), (0, 0), (1, 0), (1, 1)])])

    def test_overlap_names_both_zones(self) -> None:
        # Overlap x in [0.2, 0.25]: 5 % of the frame.
        wide = zone("wide", rect(0.2, 0, 0.6, 1))
        with pytest.raises(ValueError, match="zones 'left' and 'wide' overlap \\(about 5% "):
            validate_zone_geometry([LEFT, wide])

    def test_contained_zone_overlaps(self) -> None:
        inner = zone("inner", rect(0.05, 0.4, 0.1, 0.6))
        with pytest.raises(ValueError, match="zones 'left' and 'inner' overlap"):
            validate_zone_geometry([LEFT, inner])

    def test_identical_zones_overlap(self) -> None:
        with pytest.raises(ValueError, match="zones 'left' and 'copy' overlap"):
            validate_zone_geometry([LEFT, zone("copy", rect(0, 0, 0.25, 1))])

    def test_all_problems_in_one_message(self) -> None:
        with pytest.raises(ValueError) as info:
            validate_zone_geometry(
                [
                    zone("bow", [(0, 0), (1, 1), (1, 0), (0, 1)]),
                    zone("far", [(0, 0), (2, 0), (1, 1)]),
                ]
            )
        message = str(info.value)
        assert "zone 'bow'" in message and "zone 'far'" in message
        assert message.count("; ") == 1


class TestZoneMapErrors:
    def test_bad_geometry_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="self-intersecting"):
            ZoneMap.from_specs([zone("bow", [(0, 0), (1, 1), (1, 0), (0, 1)])], 100, 100)

    def test_zone_too_small_for_the_frame(self) -> None:
        tiny = zone("tiny", rect(0.5, 0.5, 0.5004, 0.5004))
        with pytest.raises(ConfigError, match="'tiny' cover no pixel of a 100x100 frame"):
            ZoneMap.from_specs([tiny], 100, 100)

    def test_frame_size_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="frame size must be positive"):
            ZoneMap.from_specs([LEFT], 0, 100)


def test_device_config_rejects_overlapping_zones(tmp_path: Path) -> None:
    """The config loader runs the same geometry check and names the zones."""
    from lobbywatch.edge.config import load_device_config

    path = tmp_path / "device.yaml"
    path.write_text(
        "device_id: d1\nbranch_id: b1\ncameras:\n"
        "  - id: cam1\n    source: 0\n    zones:\n"
        "      - {id: queue, kind: waiting, polygon: [[0, 0], [0.6, 0], [0.6, 1], [0, 1]]}\n"
        "      - {id: desk, kind: cash_counter, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}\n"
    )
    with pytest.raises(ConfigError, match="zones 'queue' and 'desk' overlap"):
        load_device_config(path)
