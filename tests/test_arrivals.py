"""The arrival forecast: weekday x time-of-day profile from minute history, scaled to
today's level and blended with the trend (hand-computed)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from lobbywatch.server.arrivals import ArrivalHistory, ProfileSettings, minute_starts

TZ = "Europe/Berlin"
MONDAY = date(2025, 6, 2)


def _day(history: ArrivalHistory, day: date, per_minute: float, hours: tuple[int, int]) -> None:
    midnight = minute_starts(day, TZ)
    for m in range(hours[0] * 60, hours[1] * 60):
        history.add(midnight + 60 * m, per_minute)


def test_no_history_is_a_cold_start() -> None:
    history = ArrivalHistory(TZ)
    assert history.forecast(minute_starts(MONDAY, TZ) + 10 * 3600, 5, 60.0, 0.01) is None


def test_profile_of_the_same_weekday_scaled_and_blended_with_the_trend() -> None:
    history = ArrivalHistory(TZ, ProfileSettings(smooth_min=1))
    # two past Mondays: 1 arrival a minute from 09:00 to 12:00
    for weeks in (1, 2):
        _day(history, MONDAY - timedelta(weeks=weeks), 1.0, (9, 12))
    # a past Tuesday with another shape must not be used for a Monday (2 Mondays known)
    _day(history, MONDAY - timedelta(days=6), 5.0, (9, 12))
    # today (Monday) so far: 2 a minute over the last 30 minutes before 11:00
    midnight = minute_starts(MONDAY, TZ)
    for m in range(10 * 60 + 30, 11 * 60):
        history.add(midnight + 60 * m, 2.0)
    lam = history.forecast(midnight + 11 * 3600, 3, 60.0, trend_per_s=0.01)
    assert lam is not None
    # level k = (60 + 5) / (30 + 5); profile 1/min = 1/60 per s; w = 2 / (2 + 2)
    k = 65 / 35
    expected = 0.5 * (k / 60) + 0.5 * 0.01
    assert lam == pytest.approx(np.full(3, expected))


def test_the_level_is_clipped_and_all_weekdays_pooled_when_one_weekday_is_scarce() -> None:
    history = ArrivalHistory(TZ, ProfileSettings(smooth_min=1, k_max=2.0))
    _day(history, MONDAY - timedelta(days=1), 1.0, (9, 12))  # Sunday
    _day(history, MONDAY - timedelta(days=2), 1.0, (9, 12))  # Saturday
    midnight = minute_starts(MONDAY, TZ)
    for m in range(10 * 60 + 30, 11 * 60):
        history.add(midnight + 60 * m, 10.0)  # ten times the profile
    lam = history.forecast(midnight + 11 * 3600, 2, 60.0, trend_per_s=None)
    assert lam is not None
    # k clipped to 2; without a trend the profile's own rate stands in for it
    assert lam == pytest.approx(np.full(2, 0.5 * 2 / 60 + 0.5 * 2 / 60))
