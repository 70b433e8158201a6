"""Walk-outs from the middle of the queue on an edge that does not classify exits
(pure logic; time is always an argument).

An edge that sends only protocol v1's basic fields reports every exit from the
waiting zone as a departure. The collector tells the head's departures apart: a
departure that had waited at least as long as everyone still waiting left in
first-come-first-served order, as the person a counter calls does
(``in_order_departures``); those are the service rate. The others left from the
middle of the queue. Three things do that:

- **a walk-out** (patience ran out): it drains the queue ahead of a newcomer
  beyond the counters, the abandonment rate ``theta`` of the Erlang-A predictor;
- **a lost track**: the tracker ends a person's track and starts a new one for the
  same person seconds later, an arrival within a few seconds of the departure
  (either order: a tracker may start the new track before it drops the old one);
  nobody left;
- **a re-acquired person leaving**: their new track is younger than people who joined
  after them, so when a counter calls them (they are the head) they seem to leave
  from the middle. Their track's join time is the re-acquiring arrival's, which is
  how they are told apart (on the independent cross-check, with a lost track per
  15 min per waiting person, these outnumbered the walk-outs many times over);
- **a priority customer served ahead** of older ordinary ones: a service, already in
  the service rate (the caller subtracts their expected number).

A phantom (a false detection confirmed as a person) also leaves from the middle of
the queue, young: departures shorter than ``min_dwell_s`` are not counted.

So a mid-queue departure with no arrival within ``window_s`` of it is counted a
walk-out, once the window has passed. A newcomer who happens to arrive within the
window of a real walk-out hides it (at an arrival a minute and a 5 s window, about
one walk-out in six): the rate errs low, towards the model without walk-outs.
Without this, a basic edge's predictions ignore mid-queue walk-outs: on our
simulator's basic edges the mean error was +0.96 min (docs/wait-estimation.md,
"Session 20", change 5, and "Session 22").
"""

from __future__ import annotations

from collections import deque

from lobbywatch.server.track_relink import closest_time


class MidQueueWalkouts:
    """Counts mid-queue departures that no arrival re-acquires.

    Args:
        window_s: an arrival this close (seconds, either side) to a mid-queue departure
            is the same person's track re-acquired, not a walk-out.
        min_dwell_s: mid-queue departures that had waited less than this (seconds) are
            not counted (phantoms are young; a walk-out that early drains little).
    """

    def __init__(
        self,
        window_s: float = 5.0,
        min_dwell_s: float = 60.0,
        join_tolerance_s: float = 3.0,
        keep_s: float = 3600.0,
    ) -> None:
        self.window_s = window_s
        self.min_dwell_s = min_dwell_s
        self.join_tolerance_s = join_tolerance_s
        self.keep_s = keep_s
        #: arrivals that re-acquired a lost track (ts), until that track leaves
        self._reacquired: deque[float] = deque()
        #: arrivals of the last window_s not used by a pairing (ts)
        self._arrivals: deque[float] = deque()
        #: mid-queue departures waiting for their window to pass (ts, a walk-out if
        #: no arrival comes: old enough and not a re-acquired person leaving; dwell, s)
        self._pending: deque[tuple[float, bool, float]] = deque()
        #: the dwells (s) of the walk-outs confirmed so far, for the caller to take
        #: (the patience they ran out of: server/patience.py)
        self.walked_out_dwells: list[float] = []

    def observe(
        self, ts: float, arrivals: int, mid_queue_dwells: list[float], in_order: int = 0
    ) -> int:
        """One message at ``ts`` (s): its ``arrivals``, the dwells (s) of its departures
        that left from the middle of the queue, and how many left ``in_order`` (the head:
        never a walk-out here, but when an arrival re-acquires a lost head, that
        person's later departure must be recognised). Returns the walk-outs confirmed
        by now (mid-queue departures whose window passed unpaired), counted once
        each."""
        confirmed = self._expire(ts)
        for _ in range(arrivals):
            if self._pending and ts - self._pending[0][0] <= self.window_s:
                self._pending.popleft()  # the lost track's new one
                self._reacquired.append(ts)
            else:
                self._arrivals.append(ts)
        for dwell in mid_queue_dwells:
            k = closest_time(self._reacquired, ts - dwell, self.join_tolerance_s)
            if k is not None:
                # a re-acquired person leaving (no walk-out), or lost again (an arrival
                # re-acquires them: the chain goes on)
                del self._reacquired[k]
            if self._arrivals:
                # the new track came first (a young fragment too: its new track's own
                # departure must be recognised later)
                self._reacquired.append(self._arrivals.popleft())
            else:
                self._pending.append((ts, k is None and dwell >= self.min_dwell_s, dwell))
        for _ in range(in_order):
            # a service start that meets a newcomer's arrival makes a false candidate:
            # it only excuses that newcomer if they later leave from mid-queue
            if self._arrivals:
                self._reacquired.append(self._arrivals.popleft())
            else:
                self._pending.append((ts, False, 0.0))
        return confirmed

    def _expire(self, now: float) -> int:
        while self._arrivals and now - self._arrivals[0] > self.window_s:
            self._arrivals.popleft()
        while self._reacquired and now - self._reacquired[0] > self.keep_s:
            self._reacquired.popleft()
        confirmed = 0
        while self._pending and now - self._pending[0][0] > self.window_s:
            _, walked_out, dwell = self._pending.popleft()
            confirmed += walked_out
            if walked_out:
                self.walked_out_dwells.append(dwell)
        return confirmed

    def reset(self) -> None:
        """The edge restarted: pairings across the restart mean nothing."""
        self._arrivals.clear()
        self._pending.clear()
        self._reacquired.clear()
