"""Zone occupancy: hysteresis on entry and exit, dwell timers, flows, bounded memory.

Time lines are hand-computed; frames every 0.5 s unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lobbywatch.edge.occupancy import (
    OccupancySettings,
    OccupancyUpdate,
    ZoneOccupancy,
    grouped_quantiles,
)

YES = np.array([True])
NO = np.array([False])


def step(
    occ: ZoneOccupancy, ts: float, zone: int, *, seen: bool = True, confirmed: bool = True
) -> OccupancyUpdate:
    """One frame with a single track (id 1)."""
    return occ.update(np.array([1]), np.array([zone]), np.array([seen]), np.array([confirmed]), ts)


class TestHysteresis:
    def test_people_only_counts_present_tracks(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=2.0))
        ids, zone, yes = np.array([1, 2]), np.array([0, 0]), np.array([True, True])
        assert occ.update(ids, zone, yes, yes, 0.0).people.tolist() == [2]
        # Track 2 unseen beyond its count grace: still in the zone's state, not counted.
        gone = np.array([True, False])
        u = occ.update(ids, zone, gone, yes, 1.0, counted=gone)
        assert u.people.tolist() == [1] and u.zone_of_track.tolist() == [0, 0]
        assert u.dwell_max_s.tolist() == [1.0]
        # Seen again: counted again with its original entry time, no new arrival.
        u = occ.update(ids, zone, yes, yes, 2.0, counted=yes)
        assert u.people.tolist() == [2] and u.arrivals_total.tolist() == [2]
        assert u.dwell_max_s.tolist() == [2.0]
        with pytest.raises(ValueError, match="counted"):
            occ.update(ids, zone, yes, yes, 3.0, counted=np.array([True]))

    def test_entry_needs_entry_s_of_observation(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=1.0, exit_s=3.0))
        # Outside at 0.0; first seen inside at 0.5; 1.0 s of evidence at 1.5.
        people = [int(step(occ, t, z).people[0]) for t, z in [(0.0, -1), (0.5, 0), (1.0, 0)]]
        assert people == [0, 0, 0]
        up = step(occ, 1.5, 0)
        assert up.people.tolist() == [1]
        assert up.arrivals_total.tolist() == [1]
        assert up.zone_of_track.tolist() == [0]
        # The dwell counts from the first observation inside (0.5), not from confirmation.
        assert up.dwell_max_s.tolist() == [1.0]
        [event] = up.events
        assert (event.kind, event.track_id, event.zone, event.ts) == ("enter", 1, 0, 0.5)

    def test_full_timeline_with_flicker_occlusion_and_exit(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=1.0, exit_s=3.0))
        for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5):
            step(occ, t, 0)  # enters at 1.0 (evidence from 0.0), entry time 0.0
        assert step(occ, 4.0, -1).people.tolist() == [1]  # one frame outside: jitter
        assert step(occ, 4.5, 0).people.tolist() == [1]
        for t in (5.0, 5.5, 6.0):  # occluded: not matched, whatever the box says
            assert step(occ, t, -1, seen=False).people.tolist() == [1]
        up = step(occ, 6.5, 0)
        assert up.people.tolist() == [1] and up.dwell_max_s.tolist() == [6.5]
        # Leaves: first seen outside at 7.0; exit confirmed at 10.0 (3.0 s of evidence).
        for t in (7.0, 7.5, 8.0, 8.5, 9.0, 9.5):
            up = step(occ, t, -1)
            assert up.people.tolist() == [1] and up.completed_dwells_s == ((),)
        up = step(occ, 10.0, -1)
        assert up.people.tolist() == [0]
        assert up.departures_total.tolist() == [1] and up.arrivals_total.tolist() == [1]
        assert up.completed_dwells_s == ((7.0,),)  # 7.0 (first seen out) - 0.0 (entry)
        assert math.isnan(up.dwell_max_s[0])
        [event] = up.events
        assert (event.kind, event.ts, event.dwell_s, event.lost) == ("exit", 7.0, 7.0, False)
        # Reported once only.
        assert step(occ, 10.5, -1).completed_dwells_s == ((),)

    def test_occlusion_is_not_exit_evidence(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=1.0))
        step(occ, 0.0, 0)
        step(occ, 1.0, -1)  # seen out once, then not seen for a long time
        for t in (2.0, 5.0, 30.0):
            assert step(occ, t, -1, seen=False).people.tolist() == [1]
        # Evidence is from first to latest observation outside: 1.0 .. 31.0.
        up = step(occ, 31.0, -1)
        assert up.people.tolist() == [0] and up.completed_dwells_s == ((1.0,),)

    def test_only_confirmed_tracks_enter(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=1.0, exit_s=3.0))
        for t in (0.0, 0.5, 1.0, 1.5):
            assert step(occ, t, 0, confirmed=False).people.tolist() == [0]
        up = step(occ, 2.0, 0, confirmed=True)
        assert up.people.tolist() == [1]
        assert up.dwell_max_s.tolist() == [2.0]  # entry at the first sighting, 0.0

    def test_passer_by_is_not_counted(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=1.0, exit_s=3.0))
        for t, z in [(0.0, -1), (0.5, 0), (1.0, -1), (1.5, 0), (2.0, -1)]:
            assert step(occ, t, z).people.tolist() == [0]
        assert occ.arrivals_total.tolist() == [0]

    def test_move_between_adjacent_zones_takes_the_longer_time(self) -> None:
        occ = ZoneOccupancy(2, OccupancySettings(entry_s=1.0, exit_s=3.0))
        for t in (0.0, 0.5, 1.0):
            step(occ, t, 0)  # in zone 0 from 0.0
        for t in (5.0, 6.0, 7.0, 7.5):  # in zone 1 from 5.0; needs max(1, 3) = 3 s
            up = step(occ, t, 1)
            assert up.people.tolist() == [1, 0]
        up = step(occ, 8.0, 1)
        assert up.people.tolist() == [0, 1]
        assert up.arrivals_total.tolist() == [1, 1] and up.departures_total.tolist() == [1, 0]
        assert up.completed_dwells_s == ((5.0,), ())
        assert [(e.kind, e.zone, e.ts) for e in up.events] == [("exit", 0, 5.0), ("enter", 1, 5.0)]
        assert up.dwell_max_s[1] == 3.0  # 8.0 - 5.0

    def test_zero_hysteresis_is_immediate(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=0.0))
        assert step(occ, 0.0, 0).people.tolist() == [1]
        up = step(occ, 0.5, -1)
        assert up.people.tolist() == [0] and up.completed_dwells_s == ((0.5,),)


class TestLostTracks:
    def test_track_deleted_inside_exits_at_last_sighting(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.5, exit_s=3.0))
        for t in (0.0, 0.5, 1.0, 1.5):
            step(occ, t, 0)
        step(occ, 2.0, 0, seen=False)
        empty = np.array([], np.int64)
        up = occ.update(empty, empty, empty.astype(bool), empty.astype(bool), 4.0)
        assert up.people.tolist() == [0] and up.departures_total.tolist() == [1]
        assert up.completed_dwells_s == ((1.5,),)  # last seen 1.5 - entry 0.0
        [event] = up.events
        assert event.lost and event.ts == 1.5
        assert len(occ) == 0

    def test_track_deleted_on_its_way_out_exits_when_first_seen_out(self) -> None:
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=3.0))
        step(occ, 0.0, 0)
        step(occ, 2.0, -1)  # seen out at 2.0 and 2.5, not long enough for an exit
        step(occ, 2.5, -1)
        empty = np.array([], np.int64)
        up = occ.update(empty, empty, empty.astype(bool), empty.astype(bool), 5.0)
        assert up.completed_dwells_s == ((2.0,),)
        assert up.events[0].ts == 2.0

    def test_unconfirmed_track_death_is_silent(self) -> None:
        occ = ZoneOccupancy(1)
        step(occ, 0.0, 0, confirmed=False)
        empty = np.array([], np.int64)
        up = occ.update(empty, empty, empty.astype(bool), empty.astype(bool), 1.0)
        assert up.events == () and up.departures_total.tolist() == [0] and len(occ) == 0


class TestStatistics:
    def test_dwell_percentiles_of_current_occupants(self) -> None:
        occ = ZoneOccupancy(2, OccupancySettings(entry_s=0.0, exit_s=3.0))
        ids = np.array([10, 11, 12])
        yes3 = np.ones(3, bool)
        occ.update(ids[:1], np.array([0]), YES, YES, 0.0)
        occ.update(ids[:2], np.array([0, 0]), yes3[:2], yes3[:2], 2.0)
        up = occ.update(ids, np.array([0, 0, 0]), yes3, yes3, 4.0)
        up = occ.update(ids, np.array([0, 0, 0]), yes3, yes3, 10.0)
        # Dwells 10, 8, 6: median 8; p90 at rank 0.9 * 2 = 1.8 -> 8 + 0.8 * 2 = 9.6; max 10.
        assert up.people.tolist() == [3, 0]
        assert up.dwell_p50_s[0] == pytest.approx(8.0)
        assert up.dwell_p90_s[0] == pytest.approx(9.6)
        assert up.dwell_max_s[0] == pytest.approx(10.0)
        assert np.isnan([up.dwell_p50_s[1], up.dwell_p90_s[1], up.dwell_max_s[1]]).all()

    def test_zone_of_track_follows_input_order(self) -> None:
        occ = ZoneOccupancy(2, OccupancySettings(entry_s=0.0, exit_s=0.0))
        yes = np.ones(3, bool)
        up = occ.update(np.array([30, 10, 20]), np.array([1, -1, 0]), yes, yes, 0.0)
        assert up.zone_of_track.tolist() == [1, -1, 0]
        up = occ.update(np.array([20, 30, 10]), np.array([0, 1, -1]), yes, yes, 1.0)
        assert up.zone_of_track.tolist() == [0, 1, -1]

    def test_grouped_quantiles_match_numpy(self) -> None:
        rng = np.random.default_rng(3)
        groups = rng.integers(0, 5, 300)
        values = rng.random(300) * 100
        got = grouped_quantiles(groups, values, 6, (0.5, 0.9, 1.0))
        for g in range(5):
            expect = np.quantile(values[groups == g], [0.5, 0.9, 1.0])
            assert got[:, g] == pytest.approx(expect)
        assert np.isnan(got[:, 5]).all()


def test_memory_stays_bounded_over_a_day_of_tracks() -> None:
    """20 000 tracks, 5 new per step, each alive 20 steps (1 s apart) in zone 0.

    Each enters at its second step (0.5 s of evidence) with entry time = its first
    step, and dies after its 20th: a lost exit with dwell 19 s.
    """
    occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.5, exit_s=3.0))
    n_tracks, per_step, life = 20_000, 5, 20
    n_steps = n_tracks // per_step + life
    peak = 0
    dwells: list[float] = []
    for s in range(n_steps):
        lo = max(0, (s - life + 1) * per_step)
        hi = min(n_tracks, (s + 1) * per_step)
        ids = np.arange(lo, hi, dtype=np.int64)
        yes = np.ones(len(ids), bool)
        up = occ.update(ids, np.zeros(len(ids), np.int64), yes, yes, float(s))
        dwells.extend(up.completed_dwells_s[0])
        peak = max(peak, len(occ))
        assert len(occ) == len(ids)  # never more state than live tracks
    assert peak == per_step * life
    empty = np.array([], np.int64)
    up = occ.update(empty, empty, empty.astype(bool), empty.astype(bool), float(n_steps))
    dwells.extend(up.completed_dwells_s[0])
    assert len(occ) == 0
    assert up.arrivals_total.tolist() == [n_tracks]
    assert up.departures_total.tolist() == [n_tracks]
    assert len(dwells) == n_tracks and set(dwells) == {19.0}


class TestInputs:
    def test_misaligned(self) -> None:
        with pytest.raises(ValueError, match="must align"):
            ZoneOccupancy(1).update(np.array([1, 2]), np.array([0]), YES, YES, 0.0)

    def test_duplicate_ids(self) -> None:
        yes = np.ones(2, bool)
        with pytest.raises(ValueError, match="unique"):
            ZoneOccupancy(1).update(np.array([1, 1]), np.array([0, 0]), yes, yes, 0.0)

    def test_zone_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"zone indices must be in \[-1, 2\)"):
            ZoneOccupancy(2).update(np.array([1]), np.array([2]), YES, YES, 0.0)

    def test_time_backwards(self) -> None:
        occ = ZoneOccupancy(1)
        step(occ, 5.0, 0)
        with pytest.raises(ValueError, match="backwards"):
            step(occ, 4.0, 0)

    def test_settings(self) -> None:
        with pytest.raises(ValueError, match="exit_s"):
            OccupancySettings(exit_s=-1)


class TestDwellThroughOcclusion:
    """Dwell statistics cover every member of a zone, counted or briefly unseen (issue 10, §6)."""

    def test_hidden_longest_waiter_keeps_dwell_max_rising(self) -> None:
        # Track 1 enters at 0, tracks 2 and 3 at 10 and 20. From 30 to 34 track 1 is
        # hidden (alive, not seen, not counted); it is seen again at 34.5.
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=3.0))
        maxes, p50s, people = [], [], []
        for i in range(81):
            ts = 0.5 * i
            ids = np.array([k for k, t0 in ((1, 0.0), (2, 10.0), (3, 20.0)) if ts >= t0])
            hidden = (ids == 1) & (30.0 <= ts < 34.5)
            u = occ.update(ids, np.zeros(len(ids), np.int64), ~hidden, np.ones(len(ids), bool),
                           ts, counted=~hidden)  # fmt: skip
            maxes.append(float(u.dwell_max_s[0]))
            p50s.append(float(u.dwell_p50_s[0]))
            people.append(int(u.people[0]))
        hide = slice(60, 69)  # ts 30.0 .. 34.0
        assert people[hide] == [2] * 9  # not counted while hidden ...
        # ... but still the oldest wait: dwell_max_s is its dwell, rising 30 -> 34
        assert maxes[hide] == [30.0 + 0.5 * k for k in range(9)]
        assert maxes == [0.5 * i for i in range(81)]  # never drops, never jumps
        assert p50s[hide] == [20.0 + 0.5 * k for k in range(9)]  # median of 30, 20, 10
        assert u.departures_total.tolist() == [0] and u.arrivals_total.tolist() == [3]

    def test_counted_only_statistics_would_drop(self) -> None:
        # Guard: with the hidden track dead (absent), the oldest wait is the next one.
        occ = ZoneOccupancy(1, OccupancySettings(entry_s=0.0, exit_s=3.0))
        for ts in (0.0, 5.0):
            occ.update(np.array([1, 2]) if ts else np.array([1]),
                       np.zeros(2 if ts else 1, np.int64), np.ones(2 if ts else 1, bool),
                       np.ones(2 if ts else 1, bool), ts)  # fmt: skip
        u = occ.update(np.array([2]), np.array([0]), YES, YES, 6.0)
        assert u.dwell_max_s.tolist() == [1.0]
        assert [e.kind for e in u.events] == ["exit"]
