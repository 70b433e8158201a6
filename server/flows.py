"""Flows through a waiting zone on the collector: arrivals, service starts, walk-outs.

The edge publishes cumulative totals per waiting zone (``arrivals_total`` and,
from an edge with ``flows`` configured, ``service_starts_total``,
``walk_outs_total``, ``departures_unseen_total``; see docs/protocol.md). They
restart from 0 when the edge restarts. :func:`observe` turns the newest totals
of a zone into per-message increases, read the way Prometheus' ``increase()``
reads counters: a value lower than the previous one is a reset and the new value
is the increase since it. The first message of a zone (and the first after the
zone moved to another device or camera, or after the edge stopped sending a
field) only sets the baseline: nothing before it is known.

:class:`FlowCounts` keeps, per zone, collector-lifetime counters (exported as
``lobbywatch_zone_*_total``) and a window of recent increases by observation
time, from which :meth:`FlowCounts.walk_out_ratio` gives the walk-out
(abandonment) share: walk-outs / classified departures (service starts +
walk-outs + unseen) over the window. Unseen departures stay in the denominator:
with the counters on another camera every service start is unseen, and a share
over known destinations only would read 100 %. Phantom and lost tracks (a few
per cent of departures) make it a slight under-estimate, never an absurd one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from lobbywatch.protocol import ZoneMessage

__all__ = ["FlowCounts", "FlowDelta", "increase", "observe"]

#: default window of the walk-out ratio, seconds of observation time
WALK_OUT_WINDOW_S = 1800.0


class FlowDelta(NamedTuple):
    """Increases carried by one zone message (0 where unknown)."""

    arrivals: int = 0
    service_starts: int = 0
    walk_outs: int = 0
    departures_unseen: int = 0

    @property
    def any(self) -> bool:
        return bool(
            self.arrivals or self.service_starts or self.walk_outs or self.departures_unseen
        )


NO_DELTA = FlowDelta()

_Totals = tuple[int, int | None, int | None, int | None]


def increase(new: int | None, old: int | None) -> int:
    """Counter increase with Prometheus reset semantics; 0 without a baseline.

    >>> increase(12, 10), increase(3, 10), increase(5, None), increase(None, 4)
    (2, 3, 0, 0)
    """
    if new is None or old is None:
        return 0
    return new - old if new >= old else new


@dataclass(slots=True)
class FlowCounts:
    """Flows of one waiting zone as the collector has seen them since it started."""

    window_s: float = WALK_OUT_WINDOW_S
    arrivals: int = 0
    service_starts: int = 0
    walk_outs: int = 0
    departures_unseen: int = 0
    #: the zone's edge has sent departure classes (its walk-out counter means something)
    classified: bool = False
    #: last totals and their source ``(device, camera)``: the baseline of the next delta
    last: _Totals | None = None
    source: tuple[str, str] | None = None
    #: ``(ts, classified departures, walk-outs)`` increases within ``window_s`` of the
    #: newest message
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)

    def walk_out_ratio(self) -> float | None:
        """Walk-outs / classified departures in the window; None without any."""
        total = sum(r[1] for r in self.recent)
        walks = sum(r[2] for r in self.recent)
        return walks / total if total else None


def observe(counts: FlowCounts, msg: ZoneMessage, ts: float) -> FlowDelta:
    """Apply the newest message of a zone (newer than any before it); its increases.

    Args:
        counts: the zone's flow state (updated in place).
        msg: a zone message newer (by ``ts``, ``seq``) than the last one observed.
        ts: the message's observation time, Unix seconds.

    Returns:
        The increases since the previous message of the zone.
    """
    totals: _Totals = (
        msg.arrivals_total,
        msg.service_starts_total,
        msg.walk_outs_total,
        msg.departures_unseen_total,
    )
    recent = counts.recent
    if recent and recent[0][0] < ts - counts.window_s:
        while recent and recent[0][0] < ts - counts.window_s:
            recent.popleft()
    source = counts.source
    if source is None or source[0] != msg.device or source[1] != msg.camera:
        # first message, or the zone moved to another device or camera: baseline only
        counts.source = (msg.device, msg.camera)
        counts.last = totals
        counts.classified = counts.classified or totals[1] is not None or totals[2] is not None
        return NO_DELTA
    last = counts.last
    if totals == last:  # the common case: a heartbeat or a change of people only
        return NO_DELTA
    counts.last = totals
    if totals[1] is not None or totals[2] is not None:
        counts.classified = True
    assert last is not None
    delta = FlowDelta(
        increase(totals[0], last[0]),
        increase(totals[1], last[1]),
        increase(totals[2], last[2]),
        increase(totals[3], last[3]),
    )
    counts.arrivals += delta.arrivals
    counts.service_starts += delta.service_starts
    counts.walk_outs += delta.walk_outs
    counts.departures_unseen += delta.departures_unseen
    classified = delta.service_starts + delta.walk_outs + delta.departures_unseen
    if classified:
        recent.append((ts, classified, delta.walk_outs))
    return delta
