"""Lost tracks re-linked by timing (hand-computed timelines)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import ZoneMessage
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator
from lobbywatch.server.track_relink import LostTrackLinker

T0 = 1_764_400_000.0


def test_a_lost_track_reacquired_seconds_later_keeps_its_first_join() -> None:
    link = LostTrackLinker(window_s=5.0, join_tolerance_s=3.0)
    # joined at T0, lost at T0 + 300 (dwell 300 s); the new track appears 2 s before
    # the loss is reported (the edge confirms an exit after it happens)
    link.arrived(T0 + 298)
    link.lost(T0 + 300, 300.0)
    assert len(link) == 1
    # the new track is served at T0 + 500 after 202 s: its wait is 500 s from T0
    assert link.realised(T0 + 500, 202.0) == pytest.approx(500.0)
    # the link is used up: the same dwell again is somebody else's
    assert link.realised(T0 + 500, 202.0) == 202.0
    assert len(link) == 0


def test_arrival_after_the_loss_and_a_chain_of_two_losses() -> None:
    link = LostTrackLinker(window_s=5.0, join_tolerance_s=3.0)
    link.lost(T0 + 100, 100.0)  # joined T0
    link.arrived(T0 + 103)  # re-acquired 3 s later
    # lost again at T0 + 200 (its track's dwell 97 s), re-acquired at T0 + 201
    link.lost(T0 + 200, 97.0)
    link.arrived(T0 + 201)
    assert link.realised(T0 + 400, 199.0) == pytest.approx(400.0)


def test_no_link_outside_the_window_and_the_closest_arrival_wins() -> None:
    link = LostTrackLinker(window_s=5.0, join_tolerance_s=3.0)
    link.arrived(T0 + 90)  # 10 s before the loss: a newcomer
    link.lost(T0 + 100, 60.0)
    link.arrived(T0 + 106)  # 6 s after: too late
    assert len(link) == 0
    assert link.realised(T0 + 300, 194.0) == 194.0
    # two arrivals in the window: the closer one (T0 + 201) is the re-acquired track
    link.arrived(T0 + 196)
    link.arrived(T0 + 201)
    link.lost(T0 + 200, 50.0)  # joined T0 + 150
    assert link.realised(T0 + 400, 204.0) == 204.0  # joined T0 + 196: the newcomer
    assert link.realised(T0 + 400, 199.0) == pytest.approx(250.0)


def _zone(at: float, people: int, **kw: object) -> ZoneMessage:
    return ZoneMessage.model_validate(
        {
            "device": "d",
            "seq": int(at - T0) + 1,
            "ts": datetime.fromtimestamp(at, UTC),
            "branch": "b",
            "camera": "cam",
            "zone": "W1",
            "kind": ZoneKind.WAITING,
            "people": people,
            "raw_count": people,
            "arrivals_total": kw.get("arrivals", 0),
            "departures_total": kw.get("departures", 0),
            "completed_dwells_s": kw.get("dwells", []),
            "dwell_max_s": kw.get("dwell_max", 0.0),
            "service_starts_total": kw.get("starts", 0),
            "walk_outs_total": kw.get("walkouts", 0),
            "departures_unseen_total": kw.get("unseen", 0),
        }
    )


def _feed(est: ZoneEstimator, at: float, people: int, **kw: object) -> None:
    """One zone message at ``at``, received at once."""
    est.observe(_zone(at, people, **kw), at)


@pytest.mark.parametrize("relink", [True, False])
def test_the_calibration_learns_the_wait_from_the_first_join(relink: bool) -> None:
    """A queue of 5 whose prediction is 600 s; one person is lost at T0 + 300 and
    re-acquired; served at T0 + 600: realised 600 s (linked), 300 s (not)."""
    settings = EstimatorSettings(
        relink_lost_tracks=relink,
        calibration_levels_s=(),
        calibration_prior=0.0,
        service_rate_gated=True,  # the configured rate throughout: 6 x 100 s
    )
    est = ZoneEstimator(settings, counters=1, mean_service_s=100.0)
    # 5 people from T0 (arrivals 5); the wait shown for a newcomer is 600 s = 6 x 100 s
    for k in range(0, 300, 5):
        est.observe(_zone(T0 + k, 5, arrivals=5, dwell_max=float(k)), T0 + k)
        assert est.estimate(T0 + k).predicted_wait_s == pytest.approx(600.0)
    # T0 + 300: the track is lost (an unseen departure after 300 s) and a new one appears
    est.observe(
        _zone(T0 + 300, 5, arrivals=6, departures=1, dwells=[300.0], unseen=1, dwell_max=300.0),
        T0 + 300,
    )
    for k in range(305, 600, 5):
        est.observe(_zone(T0 + k, 5, arrivals=6, departures=1, unseen=1, dwell_max=k), T0 + k)
    # T0 + 600: the new track (dwell 300 s) starts service
    _feed(
        est,
        T0 + 600,
        4,
        arrivals=6,
        departures=2,
        dwells=[300.0],
        unseen=1,
        starts=1,
        dwell_max=600.0,
    )
    # realised / shown: 600 / 600 linked (kappa stays 1), 300 / 600 without the link
    # (kappa = 0.5, clipped to 1 / calibration_max)
    expected = 1.0 if relink else 1.0 / settings.calibration_max
    assert est.calibration(T0 + 600) == pytest.approx(expected)


def test_a_head_link_opens_on_the_heads_loss_ends_when_its_track_leaves_or_is_passed() -> None:
    link = LostTrackLinker(window_s=5.0, join_tolerance_s=3.0, head_passes=2, head_min_s=60.0)
    # joined T0, the head (the others have waited 240 s at most): lost at T0 + 300
    # after 300 s, re-acquired at T0 + 302; the edge classifies the exit later
    link.departed(T0 + 300, [300.0], in_order_floor=240.0)
    link.lost(T0 + 300, 300.0)
    link.arrived(T0 + 302)
    assert link.head_join(T0 + 400, 600.0) == T0
    # only while the wait at the loss (300 s) is under the threshold
    assert link.head_join(T0 + 400, 300.0) is None
    # a departure that joined before the first join does not pass it; one in the middle
    # of the queue (dwell 50 s, under the in-order floor of 200 s) does not either
    link.departed(T0 + 410, [420.0, 50.0], in_order_floor=200.0)
    assert link.head_join(T0 + 410, 600.0) == T0
    # the re-acquired track leaves (dwell 198 s: joined T0 + 302 within 3 s): link ends
    link.departed(T0 + 500, [198.0], in_order_floor=None)
    assert link.head_join(T0 + 500, 600.0) is None

    # a loss after 40 s opens no head link (a phantom ending looks like that); one in
    # mid-queue after 150 s does (they are the head once those ahead are served)
    link.departed(T0 + 700, [40.0], in_order_floor=150.0)
    link.lost(T0 + 700, 40.0)
    link.arrived(T0 + 701)
    assert link.head_join(T0 + 710, 600.0) is None
    link.departed(T0 + 800, [150.0], in_order_floor=200.0)
    link.lost(T0 + 800, 150.0)
    link.arrived(T0 + 801)
    assert link.head_join(T0 + 810, 600.0) == T0 + 650
    # all three still re-link for the calibration (realised() was not asked here)
    assert len(link) == 3
    link.departed(T0 + 900, [99.0], in_order_floor=None)  # the re-acquired track leaves
    assert link.head_join(T0 + 900, 600.0) is None

    # a second link, passed twice by people who joined after it (T0 + 1010, T0 + 1030)
    link.departed(T0 + 1100, [100.0], in_order_floor=None)
    link.lost(T0 + 1100, 100.0)  # joined T0 + 1000
    link.arrived(T0 + 1101)
    link.departed(T0 + 1200, [190.0], in_order_floor=150.0)
    assert link.head_join(T0 + 1200, 600.0) == T0 + 1000
    link.departed(T0 + 1260, [230.0], in_order_floor=None)
    assert link.head_join(T0 + 1260, 600.0) is None
    # its re-acquired track (joined T0 + 1101) lost again: the chain carries the first
    # join T0 + 1000 for the calibration, but the passed link does not reopen
    link.departed(T0 + 1300, [199.0], in_order_floor=None)
    link.lost(T0 + 1300, 199.0)
    link.arrived(T0 + 1301)
    assert link.head_join(T0 + 1310, 600.0) is None
    assert link.realised(T0 + 1400, 99.0) == pytest.approx(400.0)


@pytest.mark.parametrize("relink_head", [True, False])
def test_the_head_keeps_its_clock_through_a_lost_track(relink_head: bool) -> None:
    """Three people joined at T0, T0 + 60, T0 + 120; the head's track is lost at
    T0 + 300 and re-acquired at T0 + 301. At T0 + 400 the head has waited 400 s
    (linked); without the link the oldest track is the second person's, 340 s."""
    settings = EstimatorSettings(relink_head=relink_head, service_rate_gated=True)
    est = ZoneEstimator(settings, counters=1, mean_service_s=100.0)
    for k in range(120, 300, 5):
        est.observe(_zone(T0 + k, 3, arrivals=3, dwell_max=float(k)), T0 + k)
    est.observe(
        _zone(T0 + 300, 2, arrivals=3, departures=1, dwells=[300.0], dwell_max=240.0),
        T0 + 300,
    )
    est.observe(_zone(T0 + 301, 3, arrivals=4, departures=1, dwell_max=241.0), T0 + 301)
    # the edge classifies the exit as unseen 5 s later
    est.observe(_zone(T0 + 305, 3, arrivals=4, departures=1, unseen=1, dwell_max=245.0), T0 + 305)
    # a confirmed count that misses everybody for a message: the tracks are still there
    _feed(est, T0 + 350, 0, arrivals=4, departures=1, unseen=1, dwell_max=290.0)
    est.observe(_zone(T0 + 400, 3, arrivals=4, departures=1, unseen=1, dwell_max=340.0), T0 + 400)
    got = est.estimate(T0 + 400).oldest_wait_s
    assert got == pytest.approx(400.0 if relink_head else 340.0)
    # the re-acquired track starts service (dwell 99 s: joined T0 + 301): the head is
    # now the second person again
    _feed(est, T0 + 400.5, 2, arrivals=4, departures=2, dwells=[99.5], unseen=1, dwell_max=340.5)
    assert est.estimate(T0 + 401).oldest_wait_s == pytest.approx(341.0)
