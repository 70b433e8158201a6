"""Per-camera pipeline: detector -> tracker -> zones -> occupancy -> queue state.

One :class:`CameraPipeline` per camera. :meth:`CameraPipeline.process` takes a
BGR frame and its capture time; :meth:`CameraPipeline.step` takes detections
directly (tests, simulation, replay). Each call returns a :class:`FrameResult`
whose ``zones`` hold one :class:`ZoneState` per configured zone, in config order.

Waiting zones with ``flows`` also carry their departures by destination
(service starts, walk-outs, unseen: :mod:`lobbywatch.edge.flows`).

``ZoneState.completed_dwells_s`` holds the dwells completed **at this step only**
(usually empty). A consumer that reports less often than it steps (the MQTT
agent publishes every few seconds) must accumulate them until its next report;
cumulative ``arrivals_total``/``departures_total`` need no such care.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lobbywatch.edge.detections import Detections
from lobbywatch.edge.flows import SERVICE_START, UNSEEN, WALK_OUT, DepartureClassifier
from lobbywatch.edge.occupancy import OccupancySettings, ZoneEvent, ZoneOccupancy
from lobbywatch.edge.state import ZoneState
from lobbywatch.edge.tracker import TrackedObjects, Tracker, TrackerSettings
from lobbywatch.edge.zones import ZoneMap, ZoneSpec, validate_zone_geometry
from lobbywatch.errors import ConfigError

if TYPE_CHECKING:  # the detector pulls in onnxruntime; the pipeline runs without it
    from lobbywatch.edge.detector import Detector

__all__ = ["CameraPipeline", "FrameResult", "PipelineSettings"]

IntArray = npt.NDArray[np.int64]


class PipelineSettings(BaseModel):
    """Tracking and zone-hysteresis knobs (the ``pipeline`` section of a device config).

    Times are seconds, so the same values hold at any sampling rate.
    """

    model_config = ConfigDict(extra="forbid")

    confirm_hits: int = Field(
        default=3, ge=1, le=100, description="detections of a track before it counts as a person"
    )
    max_missed_s: float = Field(
        default=2.0, gt=0, le=3600, description="seconds unseen before a moving track is deleted"
    )
    stationary_max_missed_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="seconds unseen before a still (seated, queuing) person's track is deleted",
    )
    count_grace_s: float = Field(
        default=0.5,
        ge=0,
        le=3600,
        description="seconds (and at most one frame) a moving person may go unseen and still "
        "be counted when nothing in the image explains the miss; about one sampling interval "
        "at 2 fps (never when their box is taken by another detection or has left the frame)",
    )
    count_stationary_grace_s: float = Field(
        default=0.5,
        ge=0,
        le=3600,
        description="seconds (and at most one frame) a still (seated, queuing) person may go "
        "unseen with nobody in front of them and still be counted; while someone stands in "
        "front of them they stay counted as long as their track lives",
    )
    count_warmup: bool = Field(
        default=True,
        description="for the tracker's first confirm_hits - 1 frames after a (re)start or a gap "
        "longer than max_missed_s, when no track can be confirmed yet, count the tentative "
        "tracks seen now too (no empty lobby at start-up)",
    )
    zone_entry_s: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="seconds seen in a zone before the person counts there",
    )
    zone_exit_s: float = Field(
        default=3.0,
        ge=0,
        le=3600,
        description="seconds seen out of a zone before the person leaves it",
    )
    track_high_score: float = Field(
        # Equal to the detector's score threshold: every detection the raw count
        # includes can start a track, so the tracker does not drop people the
        # detector reports (the [0.1, 0.3) band only exists if the detector
        # is run below 0.3).
        default=0.3,
        gt=0,
        le=1,
        description="detection score that starts tracks and is matched first",
    )
    track_low_score: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="lowest detection score that may extend a confirmed track (ByteTrack stage 2)",
    )
    match_iou: float = Field(
        default=0.2, gt=0, le=1, description="minimum IoU between a track and a detection to match"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSettings:
        if self.track_low_score > self.track_high_score:
            raise ValueError(
                f"track_low_score ({self.track_low_score}) must not exceed "
                f"track_high_score ({self.track_high_score})"
            )
        if self.count_stationary_grace_s < self.count_grace_s:
            raise ValueError(
                f"count_stationary_grace_s ({self.count_stationary_grace_s}) must be at least "
                f"count_grace_s ({self.count_grace_s})"
            )
        if self.stationary_max_missed_s < self.max_missed_s:
            raise ValueError(
                f"stationary_max_missed_s ({self.stationary_max_missed_s}) must be at least "
                f"max_missed_s ({self.max_missed_s})"
            )
        return self

    def tracker_settings(self) -> TrackerSettings:
        """The tracker configuration these knobs describe (other tracker defaults kept)."""
        return TrackerSettings(
            high_score=self.track_high_score,
            low_score=self.track_low_score,
            match_iou=self.match_iou,
            confirm_hits=self.confirm_hits,
            max_missed_s=self.max_missed_s,
            stationary_max_missed_s=self.stationary_max_missed_s,
            count_grace_s=self.count_grace_s,
            count_stationary_grace_s=self.count_stationary_grace_s,
            count_warmup=self.count_warmup,
        )

    def occupancy_settings(self) -> OccupancySettings:
        return OccupancySettings(entry_s=self.zone_entry_s, exit_s=self.zone_exit_s)


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything one pipeline step produced.

    Attributes:
        ts: capture time of the frame on the measuring (monotonic) clock, seconds.
        frame_size: ``(width, height)`` in pixels.
        detections: the frame's detections.
        tracks: live tracks after this frame.
        zone_of_track: ``(M,)`` zone index each track is **counted** in (after
            hysteresis; -1 none), aligned with ``tracks``.
        zone_of_detection: ``(N,)`` zone index under each detection's foot point
            this frame (-1 none), aligned with ``detections``.
        zones: one state per configured zone, in config order.
        events: confirmed zone entries and exits of this step.
    """

    ts: float
    frame_size: tuple[int, int]
    detections: Detections
    tracks: TrackedObjects
    zone_of_track: IntArray
    zone_of_detection: IntArray
    zones: tuple[ZoneState, ...]
    events: tuple[ZoneEvent, ...] = ()

    def zone(self, zone_id: str) -> ZoneState:
        """The state of zone ``zone_id``.

        Raises:
            KeyError: no such zone.
        """
        for state in self.zones:
            if state.zone == zone_id:
                return state
        raise KeyError(f"no zone {zone_id!r}; zones are {', '.join(z.zone for z in self.zones)}")


def _opt(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _flow_fields(totals: IntArray) -> dict[str, int]:
    """``ZoneState`` departure classes from one row of ``DepartureClassifier.totals``."""
    return {
        "service_starts_total": int(totals[SERVICE_START]),
        "walk_outs_total": int(totals[WALK_OUT]),
        "departures_unseen_total": int(totals[UNSEEN]),
    }


class CameraPipeline:
    """Detector, tracker, zone map and occupancy of one camera.

    The zone map is built on the first frame's size and rebuilt if the size
    changes; tracks do not survive a size change (their boxes are in the old
    pixel grid), so the tracker restarts and the people it had are reported as
    lost exits (cumulative counts keep growing).

    Example:
        >>> zone = ZoneSpec(id="q", kind="waiting", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])
        >>> pipe = CameraPipeline([zone], PipelineSettings(confirm_hits=1, zone_entry_s=0))
        >>> dets = Detections(np.array([[10, 10, 30, 60]], np.float32), np.array([0.9], np.float32))
        >>> pipe.step(dets, 0.0, (100, 100)).zones[0].people
        1
    """

    def __init__(
        self,
        zones: Sequence[ZoneSpec],
        settings: PipelineSettings | None = None,
        detector: Detector | None = None,
    ) -> None:
        """Set up the pipeline; zone geometry is checked now, not on the first frame.

        Raises:
            ConfigError: no zones, or invalid zone geometry.
        """
        if not zones:
            raise ConfigError("a camera needs at least one zone")
        try:
            validate_zone_geometry(zones)
            self.flows = DepartureClassifier(zones)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.specs = tuple(zones)
        self.settings = settings or PipelineSettings()
        self.detector = detector
        self.tracker = Tracker(self.settings.tracker_settings())
        self.occupancy = ZoneOccupancy(len(self.specs), self.settings.occupancy_settings())
        self._zone_map: ZoneMap | None = None

    @property
    def zone_map(self) -> ZoneMap | None:
        """The rasterised zones for the current frame size (None before the first frame)."""
        return self._zone_map

    def zone_map_for(self, frame_size: tuple[int, int]) -> ZoneMap:
        """The zone map for ``(width, height)``, rebuilding it (and the tracker) on a change."""
        w, h = (int(v) for v in frame_size)
        zm = self._zone_map
        if zm is None or (zm.width, zm.height) != (w, h):
            if zm is not None:
                self.tracker.reset()
            zm = ZoneMap.from_specs(self.specs, w, h)
            self._zone_map = zm
        return zm

    def process(
        self, frame_bgr: npt.NDArray[np.uint8], ts: float, wall_ts: float | None = None
    ) -> FrameResult:
        """Detect people in a BGR frame and advance one step (see :meth:`step` for the times).

        Raises:
            ValueError: the pipeline has no detector, or ``frame_bgr`` is not an image.
        """
        if self.detector is None:
            raise ValueError("this CameraPipeline has no detector; pass one, or call step()")
        if not isinstance(frame_bgr, np.ndarray) or frame_bgr.ndim != 3:
            got = getattr(frame_bgr, "shape", type(frame_bgr))
            raise ValueError(f"expected a BGR image (H, W, 3), got {got}")
        detections = self.detector.detect(frame_bgr)
        return self.step(detections, ts, (frame_bgr.shape[1], frame_bgr.shape[0]), wall_ts)

    def step(
        self,
        detections: Detections,
        ts: float,
        frame_size: tuple[int, int],
        wall_ts: float | None = None,
    ) -> FrameResult:
        """Advance one step with given detections.

        Two clocks: everything measured (dwell, hysteresis, track ages, speeds)
        uses ``ts``, which for live cameras must be a **monotonic** clock
        (``time.monotonic()`` at capture), so an NTP step of the wall clock
        changes no dwell and never makes time run backwards. The published
        ``ZoneState.ts`` is ``wall_ts`` (epoch seconds, UTC), used for nothing else.

        Args:
            detections: person boxes in pixels of a ``frame_size`` frame.
            ts: capture time on a monotonic clock, seconds; non-decreasing.
            frame_size: ``(width, height)`` of the frame.
            wall_ts: wall-clock capture time, epoch seconds, for ``ZoneState.ts``
                (None: ``ts``, for replays whose ``ts`` already is epoch time).

        Returns:
            The step's :class:`FrameResult`.

        Raises:
            ValueError: non-positive frame size, or time going backwards.
        """
        if len(frame_size) != 2 or min(int(frame_size[0]), int(frame_size[1])) <= 0:
            raise ValueError(f"frame_size must be (width, height) > 0, got {frame_size}")
        zm = self.zone_map_for(frame_size)
        tracks = self.tracker.update(detections, ts, (zm.width, zm.height))
        det_zone = zm.zone_of(detections.foot_points())
        track_zone = zm.zone_of(tracks.foot_points())
        occ = self.occupancy.update(
            tracks.ids, track_zone, tracks.matched, tracks.confirmed, ts, tracks.counted
        )
        flows = self.flows.update(occ.events, tracks.ids, track_zone, tracks.matched, ts)
        classified = self.flows.enabled
        raw = zm.counts(det_zone)
        ts = float(ts)
        stamp = ts if wall_ts is None else float(wall_ts)
        states = tuple(
            ZoneState(  # one value object per configured zone: the output contract
                zone=spec.id,
                kind=spec.kind,
                blueprint=spec.blueprint,
                ts=stamp,
                people=int(occ.people[k]),
                raw_count=int(raw[k]),
                dwell_p50_s=_opt(occ.dwell_p50_s[k]),
                dwell_p90_s=_opt(occ.dwell_p90_s[k]),
                dwell_max_s=_opt(occ.dwell_max_s[k]),
                arrivals_total=int(occ.arrivals_total[k]),
                departures_total=int(occ.departures_total[k]),
                completed_dwells_s=occ.completed_dwells_s[k],
                **(_flow_fields(flows[k]) if classified[k] else {}),
            )
            for k, spec in enumerate(self.specs)
        )
        return FrameResult(
            ts=ts,
            frame_size=(zm.width, zm.height),
            detections=detections,
            tracks=tracks,
            zone_of_track=occ.zone_of_track,
            zone_of_detection=det_zone,
            zones=states,
            events=occ.events,
        )
