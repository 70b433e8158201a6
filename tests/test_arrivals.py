"""The arrival forecast: weekday x time-of-day profile from minute history, scaled to
today's level and blended with the trend (hand-computed)."""

from __future__ import annotations

from datetime import date, time, timedelta

import numpy as np
import pytest

from lobbywatch.server.alerts import BusinessHours
from lobbywatch.server.arrivals import (
    ArrivalHistory,
    ProfileSettings,
    minute_starts,
    open_average,
    ramp_forecast,
)

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


def test_the_collector_learns_the_profile_from_stored_minute_aggregates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two past Mondays in the store: on a third Monday the projection uses the profile."""
    from lobbywatch.server.config import parse_server_config
    from lobbywatch.server.replay import Recorded, replay
    from lobbywatch.server.store import MinuteRow, Store

    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = Store(url)
    store.migrate()
    rows = []
    for weeks in (1, 2):
        midnight = minute_starts(MONDAY - timedelta(weeks=weeks), "UTC")
        for m in range(9 * 60, 12 * 60):
            rows.append(
                MinuteRow(
                    "b1",
                    "W1",
                    int(midnight + 60 * m),
                    12,
                    1.0,
                    1,
                    None,
                    None,
                    None,
                    None,
                    0,
                    0,
                    None,
                    600.0,
                    arrivals=1,
                )
            )
    store.write_minutes(rows)
    store.close()
    cfg = parse_server_config({"branches": [{"id": "b1", "timezone": "UTC"}]})
    t0 = minute_starts(MONDAY, "UTC") + 10 * 3600
    records = []
    for k in range(60):  # ten minutes of a waiting zone, a message every 10 s
        payload = {"v": 1, "type": "zone", "device": "d1", "seq": k,
                   "ts": f"2025-06-02T10:{k // 6:02d}:{k % 6 * 10:02d}Z", "branch": "b1",
                   "camera": "c1", "zone": "W1", "kind": "waiting", "people": 2,
                   "raw_count": 2, "arrivals_total": k // 6, "departures_total": 0}  # fmt: skip
        records.append(Recorded(t0 + 10 * k, "lobbywatch/v1/b1/c1/zones/W1",
                                __import__("json").dumps(payload).encode()))  # fmt: skip
    out: list[dict[str, object]] = []
    replay(cfg, records, out.append, estimates_every_s=60, database_url=url)
    methods = [o["arrival_forecast_method"] for o in out if o["type"] == "estimate"]
    # the stored history is read off the processing thread, then adopted
    assert methods[-1] == "history"


def test_ramp_is_the_least_squares_line_at_now_followed_for_hold_s() -> None:
    # 1, 2, 3, 4 arrivals in the last four minutes (the last ended now): the line rises
    # 1/min per minute; at now (30 s after the last minute's centre) it is 4.5/min
    lam = ramp_forecast(np.array([1.0, 2.0, 3.0, 4.0]), 0.0, 3, 60.0, 60.0)
    # step 0 (0-60 s): mean of 4.5 + t/60 = 5.0/min; beyond hold_s = 60 s: 5.5/min flat
    assert lam * 60 == pytest.approx([5.0, 5.5, 5.5])


def test_ramp_of_a_falling_rate_is_floored_at_zero() -> None:
    # 3, 2, 1, 0: the line is at -0.5/min now and keeps falling: no negative arrivals
    lam = ramp_forecast(np.array([3.0, 2.0, 1.0, 0.0]), 0.0, 2, 60.0, 600.0)
    assert lam == pytest.approx([0.0, 0.0])


def test_ramp_is_the_cold_start_forecast_once_enough_minutes_are_seen() -> None:
    history = ArrivalHistory(TZ, ProfileSettings(ramp_fit_min=3, ramp_hold_min=5))
    midnight = minute_starts(MONDAY, TZ)
    now = midnight + 11 * 3600 + 30  # 11:00:30
    history.add(midnight + 60 * (10 * 60 + 58), 2.0)
    history.add(midnight + 60 * (10 * 60 + 59), 3.0)
    assert history.ramp(now, 1, 60.0) is None  # 10:57 not observed
    history.add(midnight + 60 * (10 * 60 + 57), 1.0)
    # centres at -180, -120, -60 s with 1, 2, 3: slope 1/min per min, 4/min now;
    # step 0 (30-90 s after 11:00): mean 4 + 0.5 = 4.5/min
    lam = history.ramp(now, 1, 60.0)
    assert lam is not None and lam * 60 == pytest.approx([4.5])
    assert history.forecast(now, 1, 60.0, 0.01) is None  # still no profile: cold start


def test_a_cold_start_collector_projects_with_the_ramp_once_20_minutes_are_seen() -> None:
    from lobbywatch.server.config import parse_server_config
    from lobbywatch.server.replay import Recorded, replay

    cfg = parse_server_config({"branches": [{"id": "b1", "timezone": "UTC"}]})
    t0 = minute_starts(MONDAY, "UTC") + 10 * 3600
    records = []
    for k in range(6 * 25):  # 25 minutes, a message every 10 s, an arrival a minute
        ts = f"2025-06-02T10:{k // 6:02d}:{k % 6 * 10:02d}Z"
        payload = {"v": 1, "type": "zone", "device": "d1", "seq": k, "ts": ts,
                   "branch": "b1", "camera": "c1", "zone": "W1", "kind": "waiting",
                   "people": 2, "raw_count": 2, "arrivals_total": k // 6,
                   "departures_total": 0}  # fmt: skip
        records.append(Recorded(t0 + 10 * k, "lobbywatch/v1/b1/c1/zones/W1",
                                __import__("json").dumps(payload).encode()))  # fmt: skip
    out: list[dict[str, object]] = []
    replay(cfg, records, out.append, estimates_every_s=60)
    methods = {
        round((float(o["ts"]) - t0) / 60): o["arrival_forecast_method"]  # type: ignore[arg-type]
        for o in out
        if o["type"] == "estimate"
    }
    # no profile (no past days): the flat trend until 20 closed minutes are known
    # (10:00-10:19, closed at 10:20), then the line through them
    assert methods[19] == "trend"
    assert methods[20] == "ramp" and methods[24] == "ramp"


def test_an_estimate_made_on_the_minute_already_has_the_minute_that_just_closed() -> None:
    """The forecast shown must not jump once a minute: an estimate between a minute's end
    and the collector's next one-second tick (here every :00, the ticks fall at .2 s) used
    to miss the closed minute, so the ramp had a gap and the flat trend stood in."""
    from lobbywatch.server.config import parse_server_config
    from lobbywatch.server.replay import Recorded, replay

    cfg = parse_server_config({"branches": [{"id": "b1", "timezone": "UTC"}]})
    t0 = minute_starts(MONDAY, "UTC") + 10 * 3600
    records = []
    for k in range(6 * 25):  # 25 minutes, a message every 10 s (at .2 s), an arrival a minute
        ts = f"2025-06-02T10:{k // 6:02d}:{k % 6 * 10:02d}Z"
        payload = {"v": 1, "type": "zone", "device": "d1", "seq": k, "ts": ts,
                   "branch": "b1", "camera": "c1", "zone": "W1", "kind": "waiting",
                   "people": 2, "raw_count": 2, "arrivals_total": k // 6,
                   "departures_total": 0}  # fmt: skip
        records.append(Recorded(t0 + 10 * k + 0.2, "lobbywatch/v1/b1/c1/zones/W1",
                                __import__("json").dumps(payload).encode()))  # fmt: skip
    out: list[dict[str, object]] = []
    replay(cfg, records, out.append, estimates_every_s=5)
    lines = [
        (float(o["ts"]) - t0, o["arrival_forecast_method"])  # type: ignore[arg-type]
        for o in out
        if o["type"] == "estimate"
    ]
    after = [m for t, m in lines if 20 * 60 < t <= 24 * 60 + 50]
    on_the_minute = [m for t, m in lines if 20 * 60 < t <= 24 * 60 + 50 and t % 60 == 0]
    assert len(after) == 58 and len(on_the_minute) == 4
    assert set(after) == {"ramp"}
    # the ramp exists from the end of the 20th minute: the first line that can have it is
    # 10:20:00 itself
    assert dict(lines)[20 * 60] == "ramp" and dict(lines)[20 * 60 - 5] == "trend"


def test_the_profile_is_not_diluted_at_the_opening() -> None:
    # two past Mondays with 2 arrivals a minute from 09:00 to 10:00 and nothing observed
    # before (the edge starts at opening): a 15-minute average at 09:00 covers 09:00-09:07
    # only, 2.0 (a plain average with the 7 closed minutes would give 8 x 2 / 15 = 1.07)
    history = ArrivalHistory(TZ)
    for weeks in (1, 2):
        _day(history, MONDAY - timedelta(weeks=weeks), 2.0, (9, 10))
    got = history.profile(MONDAY)
    assert got is not None
    profile, days = got
    assert days == 2
    assert profile[9 * 60] == pytest.approx(2.0)
    assert profile[9 * 60 + 30] == pytest.approx(2.0)
    assert profile[9 * 60 - 1] == 0.0 and profile[10 * 60] == 0.0  # closed: none expected
    # an edge that publishes around the clock reports the closed minutes as observed, with
    # no arrivals: the branch's business hours then say which minutes were open
    always_on = ArrivalHistory(TZ)
    hours = BusinessHours(timezone=TZ, weekly={"mon": [(time(9), time(10))]})
    with_hours = ArrivalHistory(TZ, open_minutes=hours.open_minutes)
    for h in (always_on, with_hours):
        for weeks in (1, 2):
            _day(h, MONDAY - timedelta(weeks=weeks), 0.0, (0, 9))
            _day(h, MONDAY - timedelta(weeks=weeks), 2.0, (9, 10))
    diluted = always_on.profile(MONDAY)
    kept = with_hours.profile(MONDAY)
    assert diluted is not None and kept is not None
    assert diluted[0][9 * 60] == pytest.approx(16 / 15)
    assert kept[0][9 * 60] == pytest.approx(2.0)


def test_open_average_and_business_minutes() -> None:
    values = np.array([0.0, 0.0, 3.0, 6.0, 9.0, 0.0])
    is_open = np.array([False, False, True, True, True, False])
    # width 3: (3 + 6) / 2, (3 + 6 + 9) / 3, (6 + 9) / 2 at the open minutes, 0 elsewhere
    assert open_average(values, is_open, 3).tolist() == pytest.approx([0, 0, 4.5, 6, 7.5, 0])
    hours = BusinessHours(
        timezone=TZ,
        weekly={
            "sun": [(time(22), time(2))],
            "mon": [(time(8, 30), time(12)), (time(13), time(17, 30))],
        },
        holidays=[MONDAY + timedelta(days=7)],
    )
    mask = hours.open_minutes(MONDAY)
    # Sunday's evening interval runs into Monday until 02:00
    assert mask[:120].all() and not mask[120]
    assert not mask[8 * 60 + 29] and mask[8 * 60 + 30] and mask[11 * 60 + 59]
    assert not mask[12 * 60] and mask[13 * 60] and not mask[17 * 60 + 30]
    assert int(mask.sum()) == 120 + 210 + 270
    # a holiday Monday: no interval starts (Sunday's still ends at 02:00)
    assert int(hours.open_minutes(MONDAY + timedelta(days=7)).sum()) == 120
    # Sunday: from 22:00 to midnight
    assert int(hours.open_minutes(MONDAY - timedelta(days=1)).sum()) == 120
