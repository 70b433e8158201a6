"""Per-zone queue state: what the pipeline yields and the MQTT agent publishes."""

from __future__ import annotations

from dataclasses import dataclass

from lobbywatch.zone_state import ZoneKind

__all__ = ["ZoneKind", "ZoneState"]


@dataclass(frozen=True, slots=True)
class ZoneState:
    """The queue state of one zone at one pipeline step.

    Field set is stable and documented in ``docs/protocol.md``. The per-zone values
    named in ``lobbywatch.zone_state.ZONE_STATE_FIELDS`` are copied by name into the
    MQTT payload (``edge.agent.zone_message``), the collector's record
    (``server.ingest.zone_record``) and the API (``server.api.zone_out``).

    Attributes:
        zone: zone id from the device config.
        kind: the zone's :class:`ZoneKind`.
        blueprint: optional service-blueprint tag (``"W1"``, ``"F1"``...).
        ts: capture time of the frame on the wall clock, seconds since the Unix epoch
            (UTC); published only (dwell and hysteresis run on the monotonic clock).
        people: confirmed people in the zone (tracker-confirmed, with hysteresis).
        raw_count: raw detections whose foot point lies in the zone this frame.
        dwell_p50_s: median dwell of the zone's current members, counted or briefly
            unseen, seconds (None when there are none).
        dwell_p90_s: 90th percentile dwell of the current members, seconds.
        dwell_max_s: longest current dwell, seconds (the oldest member, also while
            hidden for a few seconds).
        arrivals_total: cumulative confirmed entries since the pipeline started.
        departures_total: cumulative confirmed exits since the pipeline started.
        completed_dwells_s: dwells of occupants who left since the previous report
            (for a waiting zone: realised waits), seconds.
        service_starts_total: waiting zone with configured flows: cumulative
            departures into one of its service points; None when not classified.
        walk_outs_total: same, departures through one of its exits (abandonment).
        departures_unseen_total: same, departures whose destination was not seen.
    """

    zone: str
    kind: ZoneKind
    blueprint: str | None
    ts: float
    people: int
    raw_count: int
    dwell_p50_s: float | None
    dwell_p90_s: float | None
    dwell_max_s: float | None
    arrivals_total: int
    departures_total: int
    completed_dwells_s: tuple[float, ...] = ()
    service_starts_total: int | None = None
    walk_outs_total: int | None = None
    departures_unseen_total: int | None = None
