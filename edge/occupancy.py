"""Zone occupancy with entry and exit hysteresis, dwell timers and flows.

Each live track has a *counted* zone (where it is counted as a person, after
hysteresis) and a *candidate* zone (where it was last observed, and since when).
A track moves its counted zone to the candidate once it has been **observed**
there long enough:

* entering a zone from outside every zone takes ``entry_s`` of observation
  (passers-by crossing a corner of a zone are not counted), and only a confirmed
  track may enter;
* leaving a zone for no zone takes ``exit_s`` (one missed detection, a short
  occlusion or foot-point jitter across the border never empties a zone: the
  Frigate weakness of issue #10739);
* moving directly between two zones takes ``max(entry_s, exit_s)``, so a person
  standing on the border of two adjacent zones does not flap between them.

"Observed" means matched by the tracker: a track that is not seen keeps its
state (nobody is moved by a prediction), and the evidence is measured from the
first to the latest observation in the candidate zone. Time stamps of events are
those observations: an entry happens when the track was first seen in the zone,
an exit when it was first seen outside it, so the dwell (exit - entry) does not
include the hysteresis delay and no time is counted twice across zones.

A track that dies while counted in a zone leaves it at its last observation in
that zone: its last-seen time, or the time it was first seen outside the zone
when it was already on its way out. We cannot know when a person we stopped
seeing really left; the last sighting is the one time we know they were still
there, so realised waits are never inflated by the tracker's deletion delay.

Memory: state exists only for tracks alive in the latest update (dead ones are
evicted in the same step), and completed dwells are reported once, for the step
in which the exit happened, then forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from lobbywatch.edge.zones import NO_ZONE

__all__ = [
    "OccupancySettings",
    "OccupancyUpdate",
    "ZoneEvent",
    "ZoneOccupancy",
    "grouped_quantiles",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class OccupancySettings:
    """Hysteresis of zone membership, in seconds of observation.

    Attributes:
        entry_s: observed time in a zone before a track counts there.
        exit_s: observed time out of a zone before a counted track leaves it.
    """

    entry_s: float = 1.0
    exit_s: float = 3.0

    def __post_init__(self) -> None:
        for name in ("entry_s", "exit_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """A confirmed entry into or exit from a zone.

    Attributes:
        kind: ``"enter"`` or ``"exit"``.
        track_id: the tracker's id of the person.
        zone: zone index (config order).
        ts: when it happened (see the module docstring), seconds.
        dwell_s: for an exit, the completed dwell in the zone; None for an entry.
        lost: for an exit, True when the track was deleted rather than seen leaving.
        to_zone: for an exit, the zone of the track's latest observation (-1: none,
            or still this zone for a track lost inside it): where it was heading.
    """

    kind: Literal["enter", "exit"]
    track_id: int
    zone: int
    ts: float
    dwell_s: float | None = None
    lost: bool = False
    to_zone: int = NO_ZONE


@dataclass(frozen=True, slots=True)
class OccupancyUpdate:
    """Zone occupancy after one step; per-zone arrays are ``(Z,)`` in config order.

    Attributes:
        ts: the step's time stamp.
        zone_of_track: ``(M,)`` counted zone of each input track, -1 for none.
        people: people counted in each zone: tracks whose counted zone it is and
            that are present (``counted`` input).
        dwell_p50_s: median dwell of the zone's members (NaN when none): every
            live track whose counted zone it is, counted now or briefly unseen.
        dwell_p90_s: 90th percentile dwell of the members (NaN when none).
        dwell_max_s: longest current dwell of the members (NaN when none).
        arrivals_total: cumulative entries.
        departures_total: cumulative exits (including lost tracks).
        completed_dwells_s: per zone, dwells of the exits that happened in this
            step only.
        events: this step's entries and exits, exits first.
    """

    ts: float
    zone_of_track: IntArray
    people: IntArray
    dwell_p50_s: FloatArray
    dwell_p90_s: FloatArray
    dwell_max_s: FloatArray
    arrivals_total: IntArray
    departures_total: IntArray
    completed_dwells_s: tuple[tuple[float, ...], ...]
    events: tuple[ZoneEvent, ...]


def grouped_quantiles(
    groups: npt.ArrayLike, values: npt.ArrayLike, n_groups: int, qs: tuple[float, ...]
) -> FloatArray:
    """Quantiles of ``values`` within each group, all groups at once.

    Linear interpolation between order statistics (numpy's default method).

    Args:
        groups: ``(N,)`` group index of each value, in ``[0, n_groups)``.
        values: ``(N,)`` values.
        n_groups: number of groups.
        qs: quantiles in [0, 1].

    Returns:
        ``(len(qs), n_groups)``; NaN for empty groups.

    Example:
        >>> grouped_quantiles([0, 0, 0, 2], [3.0, 1.0, 2.0, 7.0], 3, (0.5, 1.0)).tolist()
        [[2.0, nan, 7.0], [3.0, nan, 7.0]]
    """
    g = np.asarray(groups, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    out = np.full((len(qs), n_groups), np.nan)
    if g.size == 0:
        return out
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    has = np.flatnonzero(counts > 0)
    q = np.asarray(qs, dtype=np.float64)[:, None]
    pos = q * (counts[has] - 1)[None, :]
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    v_lo = v[starts[has][None, :] + lo]
    v_hi = v[starts[has][None, :] + hi]
    out[:, has] = v_lo + (v_hi - v_lo) * (pos - lo)
    return out


class ZoneOccupancy:
    """Per-track, per-zone hysteresis, dwell timers and arrival/departure counts.

    Example:
        >>> occ = ZoneOccupancy(1, OccupancySettings(entry_s=1.0, exit_s=2.0))
        >>> ids, yes = np.array([7]), np.array([True])
        >>> [int(occ.update(ids, np.array([0]), yes, yes, t).people[0]) for t in (0.0, 0.5, 1.0)]
        [0, 0, 1]
    """

    def __init__(self, n_zones: int, settings: OccupancySettings | None = None) -> None:
        if n_zones < 1:
            raise ValueError(f"need at least one zone, got {n_zones}")
        self.n_zones = int(n_zones)
        self.settings = settings or OccupancySettings()
        self.arrivals_total = np.zeros(self.n_zones, np.int64)
        self.departures_total = np.zeros(self.n_zones, np.int64)
        # One row per live track, sorted by id.
        self._ids = np.zeros(0, np.int64)
        self._zone = np.zeros(0, np.int64)  # counted zone (after hysteresis)
        self._entered = np.zeros(0, np.float64)  # entry time into the counted zone
        self._cand = np.zeros(0, np.int64)  # zone of the latest observation
        self._cand_since = np.zeros(0, np.float64)  # first observation in the candidate
        self._last_seen = np.zeros(0, np.float64)  # latest observation
        self._last_ts: float | None = None

    def __len__(self) -> int:
        """Number of tracks with state (bounded by the tracks alive at the last step)."""
        return int(self._ids.shape[0])

    def update(
        self,
        ids: npt.ArrayLike,
        zone_idx: npt.ArrayLike,
        matched: npt.ArrayLike,
        confirmed: npt.ArrayLike,
        ts: float,
        counted: npt.ArrayLike | None = None,
    ) -> OccupancyUpdate:
        """Advance to time ``ts`` with the live tracks of one frame.

        Args:
            ids: ``(M,)`` unique ids of **every** live track; a previously seen id
                that is absent is taken as deleted (an exit at its last sighting).
            zone_idx: ``(M,)`` zone of each track's foot point this frame, -1 none.
            matched: ``(M,)`` whether each track was observed this frame; only
                observations move a track between zones.
            confirmed: ``(M,)`` whether each track is confirmed; only confirmed
                tracks enter zones.
            ts: time stamp, seconds, not earlier than the previous call's.
            counted: ``(M,)`` whether each track is a person present now
                (``TrackedObjects.counted``: confirmed and seen within the count
                grace). Only these make up ``people``; a track not counted now
                keeps its zone, its entry time and its place in the dwell
                statistics (membership persists until it is seen leaving or its
                track dies, when it exits at its last sighting). ``None``: every
                track.

        Returns:
            The occupancy after this step.

        Raises:
            ValueError: misaligned or duplicate inputs, zone out of range, time
                going backwards.
        """
        ids_a = np.asarray(ids, dtype=np.int64).reshape(-1)
        obs = np.asarray(zone_idx, dtype=np.int64).reshape(-1)
        seen = np.asarray(matched, dtype=bool).reshape(-1)
        conf = np.asarray(confirmed, dtype=bool).reshape(-1)
        present = (
            np.ones(len(ids_a), bool)
            if counted is None
            else np.asarray(counted, dtype=bool).reshape(-1)
        )
        ts = float(ts)
        self._check(ids_a, obs, seen, conf, ts)
        if len(present) != len(ids_a):
            raise ValueError(f"counted must align with ids; got {len(present)} vs {len(ids_a)}")
        self._last_ts = ts
        st = self.settings
        events: list[ZoneEvent] = []

        # 1. Tracks that disappeared: evict, exiting their zone at the last sighting there.
        order = np.argsort(ids_a, kind="stable")
        sid, sobs, sseen, sconf = ids_a[order], obs[order], seen[order], conf[order]
        spresent = present[order]
        alive = np.isin(self._ids, sid, assume_unique=True)
        lost = np.flatnonzero(~alive & (self._zone >= 0))
        if len(lost):
            t_out = np.where(
                self._cand[lost] != self._zone[lost], self._cand_since[lost], self._last_seen[lost]
            )
            self._exits(lost, t_out, True, events)
        old = {
            "zone": self._zone[alive],
            "entered": self._entered[alive],
            "cand": self._cand[alive],
            "cand_since": self._cand_since[alive],
            "last_seen": self._last_seen[alive],
        }
        old_ids = self._ids[alive]

        # 2. Align state to this frame's tracks (sorted ids); new tracks start observed now.
        pos = np.searchsorted(old_ids, sid)
        known = pos < len(old_ids)
        known[known] = old_ids[pos[known]] == sid[known]
        n = len(sid)
        src = pos[known]
        self._ids = sid
        self._zone = np.full(n, NO_ZONE, np.int64)
        self._zone[known] = old["zone"][src]
        self._entered = np.full(n, np.nan)
        self._entered[known] = old["entered"][src]
        self._cand = sobs.copy()
        self._cand[known] = old["cand"][src]
        self._cand_since = np.full(n, ts)
        self._cand_since[known] = old["cand_since"][src]
        self._last_seen = np.full(n, ts)
        self._last_seen[known] = old["last_seen"][src]

        # 3. Observations: a track seen in another zone (or none) starts a new candidacy.
        moved = sseen & (sobs != self._cand)
        self._cand[moved] = sobs[moved]
        self._cand_since[moved] = ts
        self._last_seen[sseen] = ts

        # 4. Hysteresis: switch the counted zone once the candidacy has lasted long enough.
        pending = self._cand != self._zone
        need = np.where(
            self._zone < 0,
            st.entry_s,
            np.where(self._cand < 0, st.exit_s, max(st.entry_s, st.exit_s)),
        )
        evidence = self._last_seen - self._cand_since
        go = pending & (evidence >= need) & (sconf | (self._zone >= 0))
        leaving = np.flatnonzero(go & (self._zone >= 0))
        if len(leaving):
            self._exits(leaving, self._cand_since[leaving], False, events)
        entering = np.flatnonzero(go & (self._cand >= 0))
        if len(entering):
            zones = self._cand[entering]
            self.arrivals_total += np.bincount(zones, minlength=self.n_zones)
            self._entered[entering] = self._cand_since[entering]
            events.extend(  # one object per event: O(events), not per frame
                ZoneEvent("enter", int(i), int(z), float(t))
                for i, z, t in zip(
                    self._ids[entering], zones, self._cand_since[entering], strict=True
                )
            )
        self._zone[go] = self._cand[go]
        self._entered[go & (self._zone < 0)] = np.nan

        # 5. Per-zone statistics of current occupants.
        # The count uses the tracker's definition of "a person here now"; the dwell
        # statistics cover every member of the zone, counted or briefly unseen: the
        # longest-waiting person hidden for a few seconds is still the oldest wait
        # (otherwise dwell_max_s drops to the next person and jumps back, and the
        # collector's head-of-queue clock restarts).
        member = self._zone >= 0
        inside = member & spresent
        people = np.bincount(self._zone[inside], minlength=self.n_zones).astype(np.int64)
        dwell = ts - self._entered[member]
        p50, p90, pmax = grouped_quantiles(self._zone[member], dwell, self.n_zones, (0.5, 0.9, 1.0))
        completed: tuple[tuple[float, ...], ...] = ((),) * self.n_zones
        if events:
            done: dict[int, list[float]] = {}
            for e in events:  # O(events)
                if e.kind == "exit" and e.dwell_s is not None:
                    done.setdefault(e.zone, []).append(e.dwell_s)
            completed = tuple(tuple(done.get(z, ())) for z in range(self.n_zones))
        back = np.empty(n, np.int64)
        back[order] = np.arange(n)
        return OccupancyUpdate(
            ts=ts,
            zone_of_track=self._zone[back].copy(),
            people=people,
            dwell_p50_s=p50,
            dwell_p90_s=p90,
            dwell_max_s=pmax,
            arrivals_total=self.arrivals_total.copy(),
            departures_total=self.departures_total.copy(),
            completed_dwells_s=completed,
            events=tuple(events),
        )

    def _exits(
        self, rows: IntArray, t_out: FloatArray, lost: bool, events: list[ZoneEvent]
    ) -> None:
        """Record exits of the given state rows (before any realignment)."""
        zones = self._zone[rows]
        dwell = np.maximum(t_out - self._entered[rows], 0.0)
        self.departures_total += np.bincount(zones, minlength=self.n_zones)
        events.extend(  # O(events)
            ZoneEvent("exit", int(i), int(z), float(t), float(d), lost, int(c))
            for i, z, t, d, c in zip(
                self._ids[rows], zones, t_out, dwell, self._cand[rows], strict=True
            )
        )

    def _check(
        self, ids: IntArray, obs: IntArray, seen: BoolArray, conf: BoolArray, ts: float
    ) -> None:
        m = len(ids)
        if not (len(obs) == len(seen) == len(conf) == m):
            raise ValueError(
                f"ids, zone_idx, matched and confirmed must align; got lengths "
                f"{m}, {len(obs)}, {len(seen)}, {len(conf)}"
            )
        if m and len(np.unique(ids)) != m:
            raise ValueError("track ids must be unique within a frame")
        if m and (obs.min() < NO_ZONE or obs.max() >= self.n_zones):
            raise ValueError(
                f"zone indices must be in [-1, {self.n_zones}), got {obs.min()}..{obs.max()}"
            )
        if not np.isfinite(ts):
            raise ValueError(f"time stamp must be finite, got {ts}")
        if self._last_ts is not None and ts < self._last_ts:
            raise ValueError(f"time stamps must not go backwards ({ts} after {self._last_ts})")
