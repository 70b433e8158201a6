"""Lost tracks re-linked by timing, for the calibration's realised waits (pure logic; time
is always an argument).

A tracker that loses a waiting person (occluded too long, a crossing) ends the track:
the edge reports a departure whose destination it did not see, with the dwell so far,
and the same person comes back seconds later as a new track, an arrival with a fresh
dwell. Protocol v1 carries no track ids, so the collector sees two strangers: a short
wait that is no service, and later a service start whose dwell is only the part of
the wait after the loss. Paired with the prediction shown when the *new* track
"joined" (for a newcomer behind the whole queue, while the person was already half
way through it), that dwell reads as a wait far shorter than predicted, and the
delay-history correction learns to predict short: on the independent cross-check
(lost tracks once per 15 min per waiting person) the calibration factor sat near
0.75 and the ordinary customers' waits were under-predicted by 1.1 min
(docs/wait-estimation.md, "Session 20").

The link: an unseen departure and an arrival within ``window_s`` of each other are
one person (the arrival carries the lost track's first join); a later completed dwell
whose join time (departure time minus dwell) falls within ``join_tolerance_s`` of that
arrival is that person's, and their realised wait runs from the first join. A
newcomer who happens to arrive within the window of an unseen exit is linked by
mistake (an arrival rate of 1/min: about one unseen exit in six); the closest
arrival wins, and each arrival and each loss links once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class LostTrackLinker:
    """Pairs unseen departures with the arrivals that re-acquire them.

    Args:
        window_s: an arrival this close (seconds, either side) to an unseen departure is
            the same person re-acquired.
        join_tolerance_s: a completed dwell's join time this close to a re-acquiring
            arrival is that arrival's (message timing: the edge confirms and publishes
            within a second or two).
        keep_s: a re-acquired person not seen leaving within this long is forgotten
            (walked out, or the link was a coincidence).
        keep_arrivals_s: arrivals wait this long for an unseen departure to be
            classified (the edge classifies exits after they leave).
    """

    def __init__(
        self,
        window_s: float = 5.0,
        join_tolerance_s: float = 3.0,
        keep_s: float = 3600.0,
        keep_arrivals_s: float = 120.0,
    ) -> None:
        self.window_s = window_s
        self.join_tolerance_s = join_tolerance_s
        self.keep_s = keep_s
        self.keep_arrivals_s = keep_arrivals_s
        #: arrivals not linked yet (ts)
        self._arrivals: deque[float] = deque()
        #: unseen departures not linked yet: (left at, first join)
        self._lost: deque[tuple[float, float]] = deque()
        #: re-acquired people still waiting: (arrival of the new track, first join)
        self._relinked: deque[tuple[float, float]] = deque()

    def __len__(self) -> int:
        """Re-acquired people still waiting (as far as the links know)."""
        return len(self._relinked)

    def arrived(self, ts: float, count: int = 1) -> None:
        """``count`` arrivals at ``ts`` (seconds)."""
        self._prune(ts)
        for _ in range(count):
            k = _closest([left for left, _ in self._lost], ts, self.window_s)
            if k is None:
                self._arrivals.append(ts)
            else:
                _, first_join = self._lost[k]
                del self._lost[k]
                self._relinked.append((ts, first_join))

    def lost(self, left_at: float, dwell: float) -> None:
        """An unseen departure at ``left_at`` after ``dwell`` seconds in the zone (itself
        possibly a re-acquired track lost again: the first join carries over)."""
        first_join = left_at - self.realised(left_at, dwell)
        k = _closest(self._arrivals, left_at, self.window_s)
        if k is None:
            self._lost.append((left_at, first_join))
        else:
            arrival = self._arrivals[k]
            del self._arrivals[k]
            self._relinked.append((arrival, first_join))

    def realised(self, left_at: float, dwell: float) -> float:
        """The wait of somebody who left at ``left_at`` after ``dwell`` seconds of their
        track: from their first join when the track re-acquired a lost one (the link is
        used up), else ``dwell``."""
        k = _closest(
            [arrival for arrival, _ in self._relinked], left_at - dwell, self.join_tolerance_s
        )
        if k is None:
            return dwell
        _, first_join = self._relinked[k]
        del self._relinked[k]
        return max(dwell, left_at - first_join)

    def _prune(self, now: float) -> None:
        while self._arrivals and now - self._arrivals[0] > self.keep_arrivals_s:
            self._arrivals.popleft()
        while self._lost and now - self._lost[0][0] > self.window_s:
            self._lost.popleft()
        while self._relinked and now - self._relinked[0][0] > self.keep_s:
            self._relinked.popleft()


def _closest(times: Iterable[float], t: float, within: float) -> int | None:
    """Index of the time closest to ``t``, within ``within`` seconds (``None``: none)."""
    best, best_d = None, within
    for k, at in enumerate(times):  # a handful: the people lost in the last minutes
        d = abs(at - t)
        if d <= best_d:
            best, best_d = k, d
    return best
