"""Calibration by level (``calibration_levels_s``): realised / predicted per band of the
prediction, hand-computed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from test_server_support import ts, zone_msg

from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator

T0 = 1_750_000_000.0


def _estimator(**settings: object) -> ZoneEstimator:
    return ZoneEstimator(
        # no prior, a window so long that nothing decays within the test, and the
        # configured rate until departures are in (every prediction is (L + 1) x 60 s)
        EstimatorSettings(
            calibration_prior=0,
            calibration_window_s=1e9,
            service_rate_gated=True,
            **settings,  # type: ignore[arg-type]
        ),
        counters=1,
        mean_service_s=60.0,
    )


def _history(est: ZoneEstimator) -> None:
    """Shown 300 s at T0 (4 waiting) and 600 s at T0 + 10 (9 waiting); the first
    joiner waited 330 s (x1.1), the second 480 s (x0.8): kappa = 810 / 900 = 0.9."""
    est.observe(zone_msg(1, T0, people=4), T0)
    assert est.estimate(T0).predicted_wait_s == pytest.approx(300.0)
    est.observe(zone_msg(2, T0 + 10, people=9), T0 + 10)
    assert est.estimate(T0 + 10).predicted_wait_s == pytest.approx(600.0)
    est.observe(zone_msg(3, T0 + 330, people=9, dwells=[330.0]), T0 + 330)
    est.observe(zone_msg(4, T0 + 490, people=9, dwells=[480.0]), T0 + 490)


def test_each_band_learns_its_own_factor_interpolated_between_band_means() -> None:
    est = _estimator(calibration_levels_s=(400.0,))
    _history(est)
    assert est.calibration(T0 + 490) == pytest.approx(0.9)
    # 9 waiting: 600 x 0.9 = 540 s, between the band means 300 (x1.1) and 600 (x0.8):
    # 1.1 - 0.3 x 240 / 300 = 0.86, shown 464.4 s
    e = est.estimate(T0 + 500)
    assert e.predicted_wait_s == pytest.approx(540.0 * 0.86)
    assert (e.calibration_factor, e.calibration_level_factor) == pytest.approx((0.9, 0.86))
    assert e.predicted_wait_ordinary_s == pytest.approx(540.0 * 0.86)
    # one more counter: (9 + 1) x 30 x 0.9 = 270 s, below the lowest band mean: x1.1
    assert e.predicted_wait_one_more_counter_s == pytest.approx(297.0)
    # 4 waiting: 300 x 0.9 = 270 s, x1.1
    est.observe(zone_msg(5, T0 + 510, people=4), T0 + 510)
    assert est.estimate(T0 + 510).predicted_wait_s == pytest.approx(297.0)


def test_without_bands_one_factor_for_all() -> None:
    assert EstimatorSettings().calibration_levels_s == (300.0, 600.0, 900.0)  # the default
    est = _estimator(calibration_levels_s=())
    _history(est)
    e = est.estimate(T0 + 500)
    assert e.predicted_wait_s == pytest.approx(540.0)
    assert e.calibration_level_factor is None
    assert list(est.level_factor([100.0, 900.0])) == [1.0, 1.0]


def test_band_factors_are_clipped_like_kappa() -> None:
    est = _estimator(calibration_levels_s=(400.0,), calibration_max=1.05)
    _history(est)
    # kappa 0.9 is clipped to 1 / 1.05, and so are the bands: 1.1 -> 1.05, 0.8 -> 1 / 1.05
    assert est.calibration(T0 + 490) == pytest.approx(1 / 1.05)
    assert list(est.level_factor([100.0, 5000.0])) == pytest.approx([1.05, 1 / 1.05])


def test_bands_must_increase_and_start_above_the_smallest_prediction_learned() -> None:
    with pytest.raises(
        ValidationError, match=r"calibration_levels_s must increase: \[600.0, 300.0\]"
    ):
        EstimatorSettings(calibration_levels_s=(600.0, 300.0))
    with pytest.raises(ValidationError, match=r"starts at 100\.0 s, not above calibration_min_s"):
        EstimatorSettings(calibration_levels_s=(100.0, 300.0))


def _classified(
    seq: int,
    at: float,
    people: int,
    departures: int,
    starts: int,
    unseen: int,
    dwells: list[float] | None = None,
):  # type: ignore[no-untyped-def]
    return zone_msg(seq, at, people=people, departures=departures, dwells=dwells).model_copy(
        update={
            "service_starts_total": starts,
            "walk_outs_total": 0,
            "departures_unseen_total": unseen,
        }
    )


@pytest.mark.parametrize("service_starts_only", [True, False])
def test_only_service_starts_calibrate_when_the_edge_classifies_exits(
    service_starts_only: bool,
) -> None:
    est = _estimator(
        calibration_levels_s=(),
        calibration_max=3.0,
        calibrate_service_starts_only=service_starts_only,
    )
    est.observe(_classified(1, T0, 4, 0, 0, 0), T0)
    assert est.estimate(T0).predicted_wait_s == pytest.approx(300.0)
    est.observe(_classified(2, T0 + 10, 9, 0, 0, 0), T0 + 10)
    assert est.estimate(T0 + 10).predicted_wait_s == pytest.approx(600.0)
    # the first joiner leaves after 330 s; the edge classifies the exit 5 s later:
    # a service start (x1.1)
    est.observe(_classified(3, T0 + 330, 9, 1, 0, 0, [330.0]), T0 + 330)
    est.observe(_classified(4, T0 + 335, 9, 1, 1, 0), T0 + 335)
    # the second joiner's track is lost after 200 s: an exit whose destination
    # nobody saw, and a dwell cut short (200 s against 600 shown)
    est.observe(
        _classified(5, T0 + 210, 9, 2, 1, 0, [200.0]).model_copy(update={"ts": ts(T0 + 340)}),
        T0 + 340,
    )
    est.observe(_classified(6, T0 + 345, 9, 2, 1, 1), T0 + 345)
    if service_starts_only:
        assert est.calibration(T0 + 345) == pytest.approx(330 / 300)
    else:  # both dwells count: (330 + 200) / (300 + 600)
        assert est.calibration(T0 + 345) == pytest.approx(530 / 900)


def test_an_edge_that_sends_only_part_of_the_split_calibrates_from_every_dwell() -> None:
    # service starts without walk-outs is no classification: the dwells calibrate as
    # they arrive (they were once held back for a classification that never came)
    est = _estimator(calibration_levels_s=(), calibration_max=3.0)
    partial = {"walk_outs_total": None, "departures_unseen_total": None}
    est.observe(_classified(1, T0, 4, 0, 0, 0).model_copy(update=partial), T0)
    assert est.estimate(T0).predicted_wait_s == pytest.approx(300.0)
    est.observe(_classified(2, T0 + 330, 4, 1, 0, 0, [330.0]).model_copy(update=partial), T0 + 330)
    assert est.calibration(T0 + 330) == pytest.approx(330 / 300)


@pytest.mark.parametrize("in_order_only", [True, False])
def test_without_departures_by_destination_only_the_head_calibrates(
    in_order_only: bool,
) -> None:
    """A basic edge: shown 300 s at T0 (4 waiting) and 600 s at T0 + 10 (9 waiting)."""
    est = _estimator(
        calibration_levels_s=(), calibration_max=3.0, calibrate_in_order_only=in_order_only
    )
    est.observe(zone_msg(1, T0, people=4, dwell_max=0.0), T0)
    assert est.estimate(T0).predicted_wait_s == pytest.approx(300.0)
    est.observe(zone_msg(2, T0 + 10, people=9, dwell_max=10.0), T0 + 10)
    assert est.estimate(T0 + 10).predicted_wait_s == pytest.approx(600.0)
    # T0 + 210: a track lost in the middle of the queue (dwell 200 s) while the head,
    # who joined at T0, still waits (dwell_max 210 s): out of order, no calibration
    est.observe(
        zone_msg(3, T0 + 210, people=8, departures=1, dwells=[200.0], dwell_max=210.0), T0 + 210
    )
    # T0 + 330: the head leaves after 330 s; the oldest still waiting has 320 s: in order
    est.observe(
        zone_msg(4, T0 + 330, people=7, departures=2, dwells=[330.0], dwell_max=320.0), T0 + 330
    )
    if in_order_only:
        assert est.calibration(T0 + 330) == pytest.approx(330 / 300)
    else:  # both: (200 + 330) / (600 + 300)
        assert est.calibration(T0 + 330) == pytest.approx(530 / 900)


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_a_basic_edge_calibrates_the_ordinary_wait_from_the_head(share: float) -> None:
    """The head of the queue is an ordinary customer (priority ones are called ahead of
    it): on a basic edge its wait calibrates the ordinary prediction shown when it
    joined, not the class-blind one, or kappa carries the priority delay into the
    ordinary wait twice."""
    est = ZoneEstimator(
        EstimatorSettings(
            calibration_prior=0,
            calibration_window_s=1e9,
            service_rate_gated=True,
            calibration_levels_s=(),
            calibration_max=3.0,
        ),
        counters=1,
        mean_service_s=60.0,
        priority_share=share,
    )
    # ten minutes of arrivals, one every 60 s, before T0 (an arrival trend)
    for k in range(11):
        est.observe(zone_msg(k + 1, T0 - 600 + 60 * k, people=4, arrivals=k), T0 - 600 + 60 * k)
    shown = est.estimate(T0)
    blind, ordinary = shown.predicted_wait_s, shown.predicted_wait_ordinary_s
    assert blind == pytest.approx(300.0)  # (4 + 1) x 60 s
    if share > 0:
        # an arrival a minute, a quarter of them priority: the queue ahead of an ordinary
        # customer drains at 1/60 - 0.25/60 per s, so (4 + 1) x 80 s
        assert shown.arrival_rate_per_s == pytest.approx(1 / 60)
        assert ordinary == pytest.approx(400.0)
    else:
        assert ordinary == pytest.approx(blind)
    # T0 + 330: the person who joined at T0 leaves first (in order) after 330 s
    est.observe(
        zone_msg(20, T0 + 330, people=4, arrivals=10, departures=1, dwells=[330.0],
                 dwell_max=320.0),
        T0 + 330,
    )  # fmt: skip
    # 330 / 400 with priority customers (it was 330 / 300, the blind prediction), 1.1 without
    assert est.calibration(T0 + 330) == pytest.approx(330.0 / ordinary)
    # an edge that sends no dwell_max_s: the head is unknown, every departure (priority
    # ones too) calibrates, against the class-blind prediction
    blind_only = ZoneEstimator(est.settings, counters=1, mean_service_s=60.0, priority_share=share)
    for k in range(11):
        at = T0 - 600 + 60 * k
        blind_only.observe(zone_msg(k + 1, at, people=4, arrivals=k), at)
    assert blind_only.estimate(T0).predicted_wait_s == pytest.approx(300.0)  # shown
    blind_only.observe(
        zone_msg(20, T0 + 330, people=4, arrivals=10, departures=1, dwells=[330.0]), T0 + 330
    )
    assert blind_only.calibration(T0 + 330) == pytest.approx(330.0 / 300.0)
