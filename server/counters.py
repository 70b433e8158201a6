"""Open counters seen, not configured: inferred from the occupancy of a waiting zone's
service points (pure logic; time injected).

A branch links each waiting zone to the service-point zones (counters, desks) that
serve it (``branches[].zones.<waiting zone>.service_points`` in SERVER.yaml). The
edge publishes those zones' occupancy like any other zone. The inference rests on
one fact of a work-conserving queue: **while people wait, every open counter is
busy** (a freed counter takes the next customer within seconds). So once the
waiting zone has been occupied for a whole window ``window_s``, every service
point that was occupied at some moment of that window is open, and one that
stayed empty throughout is closed (at lunch, absent). While nobody waits an idle
counter says nothing, so the last inference made while people waited is kept.

The service points' completed dwells are service durations; their mean
(exponentially weighted, time constant ``service_window_s``, shrunk towards the
configured mean by ``prior_services`` pseudo-observations) gives the capacity
``mu = open counters / mean service``, which walk-outs from the queue do not
inflate (a walk-out never reaches a counter).

With ``censored_max_age_s`` set, the mean is the **total time on test** (the
maximum-likelihood mean of exponential lifetimes under right censoring, e.g. J. F.
Lawless, *Statistical Models and Methods for Lifetime Data*, 2nd ed., 2003, sec. 2.2):
the counters' busy seconds, completed services *and* the services still running,
divided by the completions, each second weighted by ``exp(-age / service_window_s)``
like the counts. The completed services alone are biased short for the first hour of
a day: at the opening every counter starts a service at once and the short ones end
first. With 4 counters busy from the opening, a true mean of 480 s (cv 1.2) and 300 s
configured, the completed-only mean read 0.62 and 0.71 of the truth at 10 and 30 min,
the total time on test 0.83 and 0.81; both 0.92-0.93 after 4 h (median of 150 runs,
``bench/service_mean_opening.py``; docs/wait-estimation.md, "Session 20").

The completed services' log-moments, decayed the same way, give the spread of the
service law (a lognormal fit), and each service point's latest message says how long
its current customer has been served: together the time until the first counter
frees (:mod:`service_progress`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lobbywatch.server.service_progress import LogMoments, ServicePointState, elapsed_services


@dataclass(frozen=True, slots=True)
class CounterReading:
    """What the service points say at ``now``."""

    #: counters inferred open (``None``: not observed yet)
    open_counters: int | None
    #: smoothed mean service duration at the service points, seconds (``None``: too few)
    mean_service_s: float | None
    #: decayed number of service durations behind ``mean_service_s``
    services: float


class CounterObserver:
    """Open counters and service time of one waiting zone, from its service points.

    Args:
        service_points: zone ids of the counters/desks that serve this queue.
        mean_service_prior_s: configured mean service time (the prior).
        window_s: a service point occupied within this window, while people
            waited throughout it, is open.
        min_dwell_s: shorter counter dwells are passers-by or phantom tracks,
            not services.
        censored_max_age_s: ``None``: the mean of the completed services (at least
            ``min_services`` of them). A number: the total time on test, with the
            services running now (a service point's latest message no older than
            this, in seconds) counted as censored, once a completed service is in
            (its weight decayed to no less than a half).
        max_censored_means: a running service counts at most this many configured
            means (somebody lingering at a counter for hours is not a service).
    """

    def __init__(
        self,
        service_points: tuple[str, ...],
        mean_service_prior_s: float,
        *,
        window_s: float = 180.0,
        min_dwell_s: float = 20.0,
        service_window_s: float = 1800.0,
        prior_services: float = 3.0,
        min_services: float = 5.0,
        censored_max_age_s: float | None = None,
        max_censored_means: float = 4.0,
    ) -> None:
        self.service_points = tuple(service_points)
        self.prior_s = mean_service_prior_s
        self.window_s = window_s
        self.min_dwell_s = min_dwell_s
        self.service_window_s = service_window_s
        self.prior_services = prior_services
        self.min_services = min_services
        self.censored_max_age_s = censored_max_age_s
        self.max_censored_means = max_censored_means
        #: decayed busy seconds of the completed services (each second weighted by
        #: its own age, not the completion's)
        self._busy_s = 0.0
        self._last_busy: dict[str, float] = {}
        self._sum_s = 0.0
        self._n = 0.0
        self._sums_at: float | None = None
        self._open: int | None = None
        #: log-moments of the services (the lognormal fit's spread), decayed alike
        self._logs = LogMoments()
        #: the latest message of each service point (its occupant's elapsed service)
        self._latest: dict[str, ServicePointState] = {}

    def observe(
        self,
        zone: str,
        people: int,
        completed_dwells_s: list[float],
        ts: float,
        dwell_max_s: float | None = None,
    ) -> None:
        """A message of service point ``zone`` observed at ``ts`` (``dwell_max_s``: how
        long its current occupant has been there, the edge's longest current dwell)."""
        if zone not in self.service_points:
            return
        if people > 0:
            last = self._last_busy.get(zone)
            self._last_busy[zone] = ts if last is None else max(last, ts)
        latest = self._latest.get(zone)
        if latest is None or ts >= latest.ts:
            self._latest[zone] = ServicePointState(ts, people, dwell_max_s)
        services = [d for d in completed_dwells_s if d >= self.min_dwell_s]
        if services:
            self._decay_to(ts)
            self._sum_s += sum(services)
            self._busy_s += self.service_window_s * sum(
                -math.expm1(-d / self.service_window_s) for d in services
            )
            self._n += len(services)
            self._logs.add(ts, services, self.service_window_s)

    def elapsed_services(self, now: float, max_age_s: float) -> list[float]:
        """Elapsed service (s) of each service point busy now by its fresh latest message
        (:func:`service_progress.elapsed_services`)."""
        return elapsed_services(self._latest, now, max_age_s)

    def busy_now(self, now: float, max_age_s: float) -> int:
        """Service points serving somebody at ``now`` by their fresh latest message (no
        older than ``max_age_s``). An occupant there longer than ``max_censored_means``
        configured means is not a service (staff in view, a stationary false detection)."""
        cap = self.max_censored_means * self.prior_s
        busy = 0
        for st in self._latest.values():
            age = now - st.ts
            if st.people < 1 or not -5.0 <= age <= max_age_s:
                continue
            if st.dwell_max_s is not None and st.dwell_max_s + max(0.0, age) > cap:
                continue
            busy += 1
        return busy

    def service_sigma2(self) -> float:
        """Log-variance of the lognormal fit to the services seen (shrunk to a prior cv
        of 1; :meth:`service_progress.LogMoments.sigma2`)."""
        return self._logs.sigma2()

    def _decay_to(self, ts: float) -> None:
        if self._sums_at is not None and ts > self._sums_at:
            f = math.exp(-(ts - self._sums_at) / self.service_window_s)
            self._sum_s *= f
            self._busy_s *= f
            self._n *= f
        if self._sums_at is None or ts > self._sums_at:
            self._sums_at = ts

    def reading(self, now: float, queue_since: float | None) -> CounterReading:
        """Open counters and mean service at ``now``.

        ``queue_since``: since when people have waited without a break (``None``
        when nobody waits). The open count is re-inferred only when the queue has
        lasted ``window_s``; otherwise the last inference stands.
        """
        if queue_since is not None and now - queue_since >= self.window_s:
            self._open = sum(
                1
                for z in self.service_points
                if (t := self._last_busy.get(z)) is not None and now - t <= self.window_s
            )
        n = self._n
        mean = None
        k = self.prior_services
        if self._sums_at is not None:
            f = math.exp(-max(0.0, now - self._sums_at) / self.service_window_s)
            n = self._n * f
            if self.censored_max_age_s is not None:
                if n >= 0.5:
                    mean = (self._busy_s * f + self._running_s(now) + k * self.prior_s) / (n + k)
            elif n >= self.min_services:
                mean = (self._sum_s * f + k * self.prior_s) / (n + k)
        return CounterReading(self._open, mean, n)

    def _running_s(self, now: float) -> float:
        """Decayed busy seconds of the services running at ``now`` (censored lifetimes)."""
        assert self.censored_max_age_s is not None
        cap = self.max_censored_means * self.prior_s
        tau = self.service_window_s
        return tau * sum(
            -math.expm1(-min(e, cap) / tau)
            for e in self.elapsed_services(now, self.censored_max_age_s)
        )
