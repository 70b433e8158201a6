"""Arrival forecast of a waiting zone: a weekday x time-of-day profile learned from
per-minute history, scaled to today's level and blended with the current trend
(pure logic, numpy; time injected).

History: arrivals per local minute of each past day (the collector's minute
aggregates). The profile for a day is the per-minute mean over past days of the
same weekday when at least ``min_days`` of them are known, else over all past
days (lunch and after-work peaks recur every working day at about the same
hours), smoothed with a centred moving average of ``smooth_min`` minutes (a
15-minute average keeps the peak shape and removes most Poisson noise of a few
days). The average runs over the minutes the zone was open only (observed on
some past day, and inside the branch's business hours when they are known):
normalised convolution (Knutsson and Westin 1993). A plain average across the
opening would mix seven closed, empty minutes into the first open one and halve
the opening rush exactly when it builds the day's first queue.

Forecast for the next minutes (Ibrahim and Whitt 2011 show that predictors
which ignore time-varying arrivals lag behind the peaks):

    lambda(t + h) = w * k * profile(t + h) + (1 - w) * trend

* ``k`` (level): today's arrivals over the last ``level_window_min`` minutes
  divided by the profile's for the same minutes, each plus ``level_prior``
  arrivals (shrinks ``k`` to 1 when little is known), clipped to
  ``[1/k_max, k_max]``: a busy day is busy all day;
* ``w = n / (n + blend_days)`` with ``n`` the days in the profile: the more
  history, the more the profile's shape is trusted over a flat trend;
* no history (cold start): the trend alone (``None`` from :meth:`forecast`, the
  estimator then holds the trend constant).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

MINUTES_PER_DAY = 1440


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    min_days: int = 2
    smooth_min: int = 15
    level_window_min: int = 30
    level_prior: float = 5.0
    k_max: float = 2.0
    blend_days: float = 2.0
    max_days: int = 56
    #: cold start: minutes of today's arrivals the ramp is fitted to (0 = no ramp)
    ramp_fit_min: int = 20
    #: cold start: how far ahead the fitted slope is followed; flat beyond, minutes
    ramp_hold_min: float = 5.0


class ArrivalHistory:
    """Per-minute arrivals of one waiting zone, by local date (bounded to ``max_days``)."""

    def __init__(
        self,
        timezone: str,
        settings: ProfileSettings | None = None,
        open_minutes: Callable[[date], np.ndarray | None] | None = None,
    ) -> None:
        """``open_minutes(day)``: the local minutes (bool, shape (1440,)) the branch is open
        on ``day`` (its business hours), or ``None`` when not known; without it, the
        minutes observed on a past day stand for the opening hours."""
        self.tz = ZoneInfo(timezone)
        self.settings = settings or ProfileSettings()
        self._open_minutes = open_minutes
        #: local date -> (arrivals per minute, minute observed) arrays of 1440
        self._days: dict[date, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: dict[date, tuple[np.ndarray, int] | None] = {}

    def _local(self, t: float) -> tuple[date, int]:
        dt = datetime.fromtimestamp(t, self.tz)
        return dt.date(), dt.hour * 60 + dt.minute

    def add(self, minute_start: float, arrivals: float) -> None:
        """Arrivals counted in the minute starting at ``minute_start`` (Unix s)."""
        day, minute = self._local(minute_start)
        counts, seen = self._days.get(day) or (
            np.zeros(MINUTES_PER_DAY),
            np.zeros(MINUTES_PER_DAY, dtype=bool),
        )
        counts[minute] += arrivals
        seen[minute] = True
        self._days[day] = (counts, seen)
        # a new day invalidates the profiles of the days after it only
        self._cache = {d: v for d, v in self._cache.items() if d <= day}
        if len(self._days) > self.settings.max_days:
            del self._days[min(self._days)]

    def days(self) -> int:
        return len(self._days)

    def profile(self, day: date) -> tuple[np.ndarray, int] | None:
        """(smoothed mean arrivals per minute over 1440 minutes, days used) for ``day``."""
        if day in self._cache:
            return self._cache[day]
        past = [d for d in self._days if d < day]
        same = [d for d in past if d.weekday() == day.weekday()]
        chosen = same if len(same) >= self.settings.min_days else past
        result: tuple[np.ndarray, int] | None = None
        if len(chosen) >= self.settings.min_days:
            counts = np.stack([self._days[d][0] for d in chosen])
            seen = np.stack([self._days[d][1] for d in chosen])
            n = seen.sum(axis=0)
            mean = np.divide(counts.sum(axis=0), n, out=np.zeros(MINUTES_PER_DAY), where=n > 0)
            is_open = n > 0
            hours = self._open_minutes(day) if self._open_minutes is not None else None
            if hours is not None and hours.any():
                is_open &= hours
            result = (open_average(mean, is_open, self.settings.smooth_min), len(chosen))
        self._cache[day] = result
        return result

    def today(self, now: float) -> np.ndarray | None:
        """Today's per-minute arrivals so far (closed minutes), or None."""
        day, _ = self._local(now)
        got = self._days.get(day)
        return got[0] if got is not None else None

    def ramp(self, now: float, steps: int, step_s: float) -> np.ndarray | None:
        """Cold-start arrival forecast (people/s per step): :func:`ramp_forecast` over
        the last ``ramp_fit_min`` closed minutes of today; ``None`` until all of
        them were observed (or with ``ramp_fit_min`` 0)."""
        s = self.settings
        if s.ramp_fit_min < 3:
            return None
        day, minute = self._local(now)
        got = self._days.get(day)
        lo = minute - s.ramp_fit_min
        if got is None or lo < 0 or not got[1][lo:minute].all():
            return None
        into = now - math.floor(now / 60.0) * 60.0
        return ramp_forecast(got[0][lo:minute], into, steps, step_s, 60.0 * s.ramp_hold_min)

    def forecast(
        self, now: float, steps: int, step_s: float, trend_per_s: float | None
    ) -> np.ndarray | None:
        """Arrival rate (people/s, float64) for each of ``steps`` steps from ``now``.

        ``None`` when there is no profile for today yet (cold start).
        """
        day, minute = self._local(now)
        got = self.profile(day)
        if got is None:
            return None
        prof, n_days = got
        s = self.settings
        window = s.level_window_min
        lo = max(0, minute - window)
        today = self.today(now)
        recent = float(today[lo:minute].sum()) if today is not None else 0.0
        expected = float(prof[lo:minute].sum())
        k = (recent + s.level_prior) / (expected + s.level_prior)
        k = min(max(k, 1.0 / s.k_max), s.k_max)
        per_step = max(1, round(step_s / 60.0))
        idx = minute + np.arange(steps * per_step)
        # beyond midnight: the next day's profile is not needed (branches close)
        idx = np.minimum(idx, MINUTES_PER_DAY - 1)
        shaped = (prof[idx] * k / 60.0).reshape(steps, per_step).mean(axis=1)
        w = n_days / (n_days + s.blend_days)
        trend = trend_per_s if trend_per_s is not None else float(shaped[0])
        return np.asarray(w * shaped + (1 - w) * trend, dtype=np.float64)


def open_average(values: np.ndarray, is_open: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``values`` over the open minutes only (float64, same shape).

    Normalised convolution: ``conv(values x open) / conv(open)`` at open minutes, 0 at
    closed ones, so a window at the opening or closing averages the open minutes it
    covers instead of diluting them with closed ones. ``width`` in minutes (>= 1).
    """
    weight = np.asarray(is_open, dtype=np.float64)
    kernel = np.ones(max(1, int(width)))
    num = np.convolve(np.asarray(values, dtype=np.float64) * weight, kernel, mode="same")
    den = np.convolve(weight, kernel, mode="same")
    return np.divide(num, den, out=np.zeros(len(weight)), where=(weight > 0) & (den > 0))


def ramp_forecast(
    counts: np.ndarray, into_minute_s: float, steps: int, step_s: float, hold_s: float
) -> np.ndarray:
    """Arrival rate (people/s, float64) per step from a straight line through the last
    closed minutes' counts (the cold-start forecast: no profile yet).

    ``counts[-1]`` is the minute that ended ``into_minute_s`` seconds ago, ``counts[-n]``
    the one that ended ``n - 1`` minutes before it. Ordinary least squares on the
    minute centres gives the rate now (level ``a``) and its slope ``b``; the forecast
    at ``h`` seconds from now is ``a + b * min(h, hold_s)`` floored at 0, averaged
    over each step. Why a line: an EWMA of a rising rate lags it by its time
    constant (the mean age of its data), exactly while a peak builds (Ibrahim and
    Whitt 2011); the line's value at the window's end has no such lag, and
    ``hold_s`` keeps the slope from being followed past the next few minutes
    (peaks turn).
    """
    y = np.asarray(counts, dtype=np.float64)
    n = len(y)
    if n < 3:
        raise ValueError("need at least 3 minutes")
    # minute centres in seconds relative to now (negative: the past)
    x = -into_minute_s - 60.0 * (n - 1 - np.arange(n)) - 30.0
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())  # per minute per s
    level = ym - slope * xm  # people per minute, now
    # sample each step at 1 s resolution-free: the line is piecewise linear, so the
    # step mean is the mean of its values at many evenly spaced points
    t = (np.arange(steps)[:, None] + (np.arange(12)[None, :] + 0.5) / 12) * step_s
    rate = np.maximum(level + slope * np.minimum(t, hold_s), 0.0).mean(axis=1)
    return np.asarray(rate / 60.0, dtype=np.float64)


def minute_starts(day: date, timezone: str) -> float:
    """Unix time of local midnight of ``day`` (helper for tests and seeding)."""
    return datetime.combine(day, datetime.min.time(), ZoneInfo(timezone)).timestamp()


def next_day(day: date) -> date:
    return day + timedelta(days=1)
