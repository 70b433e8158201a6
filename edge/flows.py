"""Departures from a waiting zone by destination: service start, walk-out, unseen.

A waiting zone's ``flows`` (device config) name the zones of the same camera that
are its **service points** (counters, desks: a person who goes there started
service) and its **exits** (the entrance: a person who goes there walked out
without being served). Every departure the occupancy counts from such a waiting
zone (:class:`~lobbywatch.edge.occupancy.ZoneOccupancy`, after its exit
hysteresis) is classified by the **first zone other than the waiting zone in
which the track is observed** (matched by the tracker, foot point in the zone),
from the step the exit is counted until ``transit_s`` after the exit time (the
first observation outside the waiting zone); the occupancy's own latest
observation at the exit (``ZoneEvent.to_zone``) counts as the first, so a track
that reached the entrance and vanished out of the frame before its exit was
confirmed is still a walk-out:

* one of the zone's service points: a **service start**;
* one of its exits: a **walk-out** (abandonment);
* anything else is **unseen**, never guessed: no zone reached within
  ``transit_s`` (counters on another camera, the edge of the frame), the track
  deleted before any other zone was seen (also a track lost inside the queue), or
  a zone that is neither a service point nor an exit of this waiting zone.

Observations in no zone (the unzoned floor between the queue and a counter) or
back in the waiting zone itself leave the departure in transit, so a person who
crosses a few seconds of open floor is still classified by where they arrive.

Why the first observed zone and not the occupancy's next confirmed entry: an
entry needs ``entry_s`` of observation, and a person walking out crosses the
entrance zone at the edge of the frame in about a second; the raw observation of
a confirmed track that has just left the queue is evidence enough.

Totals are cumulative per zone since the pipeline started (like the occupancy's
arrivals and departures). A departure is classified at the latest at the first
step more than ``transit_s`` after its exit time, so ``service starts +
walk-outs + unseen <= departures`` at any step, with equality once nothing is in
transit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lobbywatch.zone_state import ZoneKind

__all__ = [
    "SERVICE_START",
    "UNSEEN",
    "WALK_OUT",
    "DepartureClassifier",
    "ZoneFlows",
    "validate_zone_flows",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Departure classes: columns of :attr:`DepartureClassifier.totals`.
SERVICE_START, WALK_OUT, UNSEEN = 0, 1, 2
_PENDING = 3


class ZoneFlows(BaseModel):
    """Where people leaving a waiting zone go (ids of zones of the same camera)."""

    model_config = ConfigDict(extra="forbid")

    service_points: list[str] = Field(
        default_factory=list,
        description="zones (counters, desks) serving this queue: going there is a service start",
    )
    exits: list[str] = Field(
        default_factory=list,
        description="zones (entrance) leading out: going there unserved is a walk-out",
    )
    transit_s: float = Field(
        6.0,
        ge=0,
        le=60,
        description="seconds after leaving the queue within which the next zone reached "
        "decides the departure's class; later or never: unseen",
    )

    @model_validator(mode="after")
    def _some(self) -> ZoneFlows:
        if not self.service_points and not self.exits:
            raise ValueError("flows needs at least one service point or exit zone")
        both = sorted(set(self.service_points) & set(self.exits))
        if both:
            raise ValueError(f"zone {both[0]!r} cannot be both a service point and an exit")
        return self


def validate_zone_flows(zones: Sequence[Any]) -> None:
    """Check the ``flows`` of a camera's zones against its zone ids and kinds.

    Args:
        zones: the camera's zone specs (``id``, ``kind``, ``flows``), config order.

    Raises:
        ValueError: every problem found, ``"; "``-joined, each naming its zone.
    """
    kinds = {z.id: ZoneKind(z.kind) for z in zones}
    problems: list[str] = []
    for z in zones:
        flows: ZoneFlows | None = getattr(z, "flows", None)
        if flows is None:
            continue
        if ZoneKind(z.kind) != ZoneKind.WAITING:
            problems.append(f"zone {z.id!r}: flows apply to waiting zones only")
            continue
        for role, ids in (("service point", flows.service_points), ("exit", flows.exits)):
            for target in ids:
                kind = kinds.get(target)
                if kind is None:
                    problems.append(
                        f"zone {z.id!r}: {role} {target!r} is not a zone of this camera"
                    )
                elif target == z.id or kind == ZoneKind.WAITING:
                    problems.append(f"zone {z.id!r}: {role} {target!r} is a waiting zone")
                elif role == "exit" and kind != ZoneKind.ENTRANCE:
                    problems.append(
                        f"zone {z.id!r}: exit {target!r} is a {kind.value} zone, not an entrance"
                    )
                elif role == "service point" and kind == ZoneKind.ENTRANCE:
                    problems.append(f"zone {z.id!r}: service point {target!r} is an entrance zone")
    if problems:
        raise ValueError("; ".join(problems))


class DepartureClassifier:
    """Classifies departures from waiting zones with ``flows``, all tracks at once.

    Args:
        zones: the camera's zone specs (``id``, ``flows``) in config order; zones
            without flows are not classified (their totals stay 0, ``enabled`` False).

    Raises:
        ValueError: flows naming unknown zones (see :func:`validate_zone_flows`).

    Example:
        >>> from types import SimpleNamespace as Z
        >>> specs = [Z(id="q", kind="waiting", flows=ZoneFlows(service_points=["c"])),
        ...          Z(id="c", kind="cash_counter", flows=None)]
        >>> dc = DepartureClassifier(specs)
        >>> from lobbywatch.edge.occupancy import ZoneEvent
        >>> exit_q = ZoneEvent("exit", 7, 0, 10.0, 30.0)
        >>> dc.update([exit_q], np.array([7]), np.array([-1]), np.array([True]), 10.0)[0].tolist()
        [0, 0, 0]
        >>> dc.update([], np.array([7]), np.array([1]), np.array([True]), 12.0)[0].tolist()
        [1, 0, 0]
    """

    def __init__(self, zones: Sequence[Any]) -> None:
        validate_zone_flows(zones)
        n = len(zones)
        index = {z.id: k for k, z in enumerate(zones)}
        self.n_zones = n
        self.enabled = np.zeros(n, bool)
        self.transit_s = np.zeros(n, np.float64)
        # _dest[w, z + 1]: class of a departure from w observed in zone z (column 0:
        # no zone); _PENDING keeps it in transit
        self._dest = np.full((n, n + 1), _PENDING, np.int64)
        for w, z in enumerate(zones):
            flows: ZoneFlows | None = getattr(z, "flows", None)
            if flows is None:
                continue
            self.enabled[w] = True
            self.transit_s[w] = flows.transit_s
            row = np.full(n, UNSEEN, np.int64)
            row[w] = _PENDING
            row[[index[i] for i in flows.service_points]] = SERVICE_START
            row[[index[i] for i in flows.exits]] = WALK_OUT
            self._dest[w, 1:] = row
        #: ``(Z, 3)`` cumulative departures per zone: service starts, walk-outs, unseen
        self.totals = np.zeros((n, 3), np.int64)
        self._pid = np.zeros(0, np.int64)  # track id of each departure in transit
        self._pzone = np.zeros(0, np.int64)  # waiting zone it left
        self._pts = np.zeros(0, np.float64)  # exit time

    @property
    def in_transit(self) -> int:
        """Departures counted but not classified yet."""
        return int(self._pid.shape[0])

    def update(
        self,
        events: Sequence[Any],
        ids: npt.ArrayLike,
        zone_idx: npt.ArrayLike,
        matched: npt.ArrayLike,
        ts: float,
    ) -> IntArray:
        """Take this step's occupancy events and track observations.

        Args:
            events: the step's :class:`~lobbywatch.edge.occupancy.ZoneEvent` s
                (only exits are used).
            ids: ``(M,)`` ids of every live track this step.
            zone_idx: ``(M,)`` zone of each track's foot point this step, -1 none.
            matched: ``(M,)`` whether each track was observed this step.
            ts: the step's time, seconds.

        Returns:
            ``(Z, 3)`` cumulative totals (a copy): service starts, walk-outs, unseen.
        """
        n = self.n_zones
        exits = [  # O(events): exits are rare
            (e.track_id, e.zone, e.ts, e.lost, e.to_zone)
            for e in events
            if e.kind == "exit" and self.enabled[e.zone]
        ]
        if exits:
            cols = list(zip(*exits, strict=True))
            eid = np.asarray(cols[0], np.int64)
            ezone = np.asarray(cols[1], np.int64)
            ets = np.asarray(cols[2], np.float64)
            lost = np.asarray(cols[3], bool)
            # where the occupancy last saw it decides at once if that is a zone
            ecls = self._dest[ezone, np.asarray(cols[4], np.int64) + 1]
            # a track deleted with no destination seen (e.g. inside the queue): unseen
            ecls[lost & (ecls == _PENDING)] = UNSEEN
            done = ecls != _PENDING
            if done.any():
                flat = np.bincount(ezone[done] * 3 + ecls[done], minlength=3 * n)
                self.totals += flat.reshape(n, 3)
            wait = ~done
            self._pid = np.concatenate([self._pid, eid[wait]])
            self._pzone = np.concatenate([self._pzone, ezone[wait]])
            self._pts = np.concatenate([self._pts, ets[wait]])
        if not len(self._pid):
            return self.totals.copy()
        ids_a = np.asarray(ids, dtype=np.int64).reshape(-1)
        obs_a = np.asarray(zone_idx, dtype=np.int64).reshape(-1)
        seen_a = np.asarray(matched, dtype=bool).reshape(-1)
        order = np.argsort(ids_a, kind="stable")
        sid = ids_a[order]
        obs = np.full(len(self._pid), -1, np.int64)
        alive = np.zeros(len(self._pid), bool)
        if len(sid):
            pos = np.minimum(np.searchsorted(sid, self._pid), len(sid) - 1)
            alive = sid[pos] == self._pid
            row = order[pos]
            looked = alive & seen_a[row]
            obs[looked] = obs_a[row[looked]]
        cls = self._dest[self._pzone, obs + 1]
        cls[~alive] = UNSEEN  # deleted while in transit
        late = (cls == _PENDING) & (float(ts) - self._pts > self.transit_s[self._pzone])
        cls[late] = UNSEEN
        done = cls != _PENDING
        if done.any():
            flat = np.bincount(self._pzone[done] * 3 + cls[done], minlength=3 * n)
            self.totals += flat.reshape(n, 3)
            keep = ~done
            self._pid, self._pzone, self._pts = self._pid[keep], self._pzone[keep], self._pts[keep]
        return self.totals.copy()
