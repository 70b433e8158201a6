"""Lost tracks re-linked by timing, for the calibration's realised waits and the
head-of-line wait (pure logic; time is always an argument).

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

The head-of-line wait (``head_join``): the same links, kept apart, tell the estimator
that somebody who joined at the first join still waits, so a head whose track was lost
does not restart the head rule's clock (on the cross-check, lost tracks cost the W1
warning 0.11 of its recall). A mislink there is worse than for the calibration: it
puts the wait of somebody who has left on the queue. So a head link is dropped at once
when the re-acquired track leaves (any departure whose join matches its arrival), and
after ``head_passes`` (default 1) departures in first-come-first-served order that joined after
the first join left while it stayed: the person a counter calls is the head, so a
link that people behind it pass was a coincidence (or the person walked out unseen).
Only a loss after at least ``head_min_s`` of waiting opens a head link (a phantom that
ends is young; a person lost in mid-queue is the head once those ahead are served).
The caller also uses a link only while the wait at the loss was under the W1 threshold
(a walk-out after a long wait, unseen, is the likeliest mislink and would fire W1 at
once; a head lost after the breach adds nothing to the warning).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _HeadLink:
    """A re-acquired person taken to be still waiting, for the head-of-line wait (Unix s)."""

    arrival: float  # of the new track
    first_join: float
    lost_at: float
    passes: int = 0  # departures in order that joined later and left first


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
        head_passes: a head link ends after this many departures in order pass it.
        head_min_s: a head lost before waiting this long opens no head link (its clock
            matters little, and a phantom that ends is such a "head").
    """

    def __init__(
        self,
        window_s: float = 5.0,
        join_tolerance_s: float = 3.0,
        keep_s: float = 3600.0,
        keep_arrivals_s: float = 120.0,
        head_passes: int = 1,
        head_min_s: float = 60.0,
    ) -> None:
        self.window_s = window_s
        self.join_tolerance_s = join_tolerance_s
        self.keep_s = keep_s
        self.keep_arrivals_s = keep_arrivals_s
        self.head_passes = head_passes
        self.head_min_s = head_min_s
        #: arrivals not linked yet (ts)
        self._arrivals: deque[float] = deque()
        #: unseen departures not linked yet: (left at, first join)
        self._lost: deque[tuple[float, float]] = deque()
        #: re-acquired people still waiting: (arrival of the new track, first join)
        self._relinked: deque[tuple[float, float]] = deque()
        #: the same for the head-of-line wait
        self._heads: list[_HeadLink] = []
        #: recent departures that had waited head_min_s (left at, first join)
        self._head_exits: list[tuple[float, float]] = []
        #: head links that people passed (when, first join): not reopened by a chain
        self._passed_firsts: deque[tuple[float, float]] = deque()

    def __len__(self) -> int:
        """Re-acquired people still waiting (as far as the links know)."""
        return len(self._relinked)

    def arrived(self, ts: float, count: int = 1) -> None:
        """``count`` arrivals at ``ts`` (seconds)."""
        self._prune(ts)
        for _ in range(count):
            k = closest_time([left for left, _ in self._lost], ts, self.window_s)
            if k is None:
                self._arrivals.append(ts)
            else:
                left, first_join = self._lost[k]
                del self._lost[k]
                self._link(ts, first_join, left)

    def lost(self, left_at: float, dwell: float) -> None:
        """An unseen departure at ``left_at`` after ``dwell`` seconds in the zone (itself
        possibly a re-acquired track lost again: the first join carries over)."""
        first_join = left_at - self.realised(left_at, dwell)
        k = closest_time(self._arrivals, left_at, self.window_s)
        if k is None:
            self._lost.append((left_at, first_join))
        else:
            arrival = self._arrivals[k]
            del self._arrivals[k]
            self._link(arrival, first_join, left_at)

    def _link(self, arrival: float, first_join: float, lost_at: float) -> None:
        self._relinked.append((arrival, first_join))
        tol = self.join_tolerance_s
        was_head = any(
            abs(at - lost_at) <= 0.5 and abs(first - first_join) <= tol
            for at, first in self._head_exits
        )
        passed = any(abs(first - first_join) <= tol for _, first in self._passed_firsts)
        if was_head and not passed:
            self._heads.append(_HeadLink(arrival, first_join, lost_at))

    def departed(self, ts: float, dwells: Iterable[float], in_order_floor: float | None) -> None:
        """Departures at ``ts`` with their completed dwells (s), any destination, for the
        head links. A dwell whose join matches a link's arrival is the re-acquired track
        leaving: the link ends. One of at least ``in_order_floor`` (s; ``None``: every
        dwell) that joined after a link's first join passed it. Only a departure whose wait
        (from the first join) was at least ``head_min_s`` opens a head link, once
        classified unseen."""
        self._head_exits = [e for e in self._head_exits if ts - e[0] <= self.keep_arrivals_s]
        for dwell in dwells:
            join = ts - dwell
            k = closest_time([h.arrival for h in self._heads], join, self.join_tolerance_s)
            # from the first join when this track re-acquired a lost one
            j = closest_time([a for a, _ in self._relinked], join, self.join_tolerance_s)
            first = self._relinked[j][1] if j is not None else join
            if k is not None:
                del self._heads[k]
            elif in_order_floor is None or dwell >= in_order_floor:
                for head in self._heads:
                    if join > head.first_join + self.join_tolerance_s:
                        head.passes += 1
            if ts - first >= self.head_min_s:
                self._head_exits.append((ts, first))
        passed = [h for h in self._heads if h.passes >= self.head_passes]
        if passed:
            # a chain from a link that people passed must not reopen it: the calibration
            # link lives on, and the same "person" lost again would carry its first join
            self._passed_firsts.extend((ts, h.first_join) for h in passed)
            self._heads = [h for h in self._heads if h.passes < self.head_passes]

    def clear_heads(self) -> None:
        """Nobody is in the zone: no re-acquired person still waits."""
        self._heads.clear()

    def head_join(self, now: float, max_wait_at_loss_s: float) -> float | None:
        """The earliest first join (Unix s) of a re-acquired person still taken to wait,
        among links whose wait at the loss was under ``max_wait_at_loss_s``; ``None``:
        none."""
        self._heads = [h for h in self._heads if now - h.arrival <= self.keep_s]
        joins = [h.first_join for h in self._heads if h.lost_at - h.first_join < max_wait_at_loss_s]
        return min(joins) if joins else None

    def realised(self, left_at: float, dwell: float) -> float:
        """The wait of somebody who left at ``left_at`` after ``dwell`` seconds of their
        track: from their first join when the track re-acquired a lost one (the link is
        used up), else ``dwell``."""
        k = closest_time(
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
        while self._passed_firsts and now - self._passed_firsts[0][0] > self.keep_s:
            self._passed_firsts.popleft()


def closest_time(times: Iterable[float], t: float, within: float) -> int | None:
    """Index of the time closest to ``t``, within ``within`` seconds (``None``: none)."""
    best, best_d = None, within
    for k, at in enumerate(times):  # a handful: the people lost in the last minutes
        d = abs(at - t)
        if d <= best_d:
            best, best_d = k, d
    return best
