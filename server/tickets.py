"""Ticket-system events: realised waits by service class and the learned priority share.

A ticket system (queue-management system) is optional. When one is connected it
publishes ``TicketMessage`` events (``issued`` / ``called`` / ``cancelled``, each
with a ticket id, a service class and the waiting zone) on
``{root}/v1/{branch}/_tickets/{source}/events``; the ingest (``server/ingest.py``)
validates and de-duplicates them by ``(branch, source, seq)`` and hands each one to
:meth:`TicketBook.apply`. Pure logic, no I/O, time always injected.

What the book keeps, bounded:

* one entry per ticket ``(branch, source, ticket)`` (open, called, cancelled, or
  an out-of-order ``called``/``cancelled`` still waiting for its ``issued``),
  evicted ``open_max_age_s`` after its last event (an open ticket evicted is
  counted ``expired``: the system never reported its call), and at most
  ``max_tickets`` in all (the oldest go first, counted the same way);
* per waiting zone (:class:`ZoneTickets`): the ``issued`` events of the last
  ``share_window_s`` (the priority share), the realised waits (``issued`` ->
  ``called``) by class of the last ``wait_window_s``, counters by event and
  class, open tickets by class.

Pairing rules (docs/wait-estimation.md "Class-aware waits"):

* ``called`` after ``issued``: the wait is ``called.ts - issued.ts``, of the class
  the ticket was issued with; a later ``called`` of the same ticket (a re-call) or a
  ``cancelled`` after the call changes nothing (the wait ended at the first call);
* ``called`` or ``cancelled`` before its ``issued`` (out of order): kept until the
  ``issued`` arrives, then paired as above;
* the same event of a ticket again with the same ``ts`` (a re-send under a new
  ``seq``): ``duplicate``; an ``issued`` with a *newer* ``ts`` for a ticket id
  still held (numbers restart every morning) starts a new ticket (an open one it
  replaces counts ``expired``); one with an *older* ``ts`` is ``stale``;
* a ``called`` stamped before its ``issued`` is refused (``implausible``).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from lobbywatch.protocol_bounds import BOUNDS

if TYPE_CHECKING:
    from lobbywatch.protocol import TicketMessage

CLASSES = ("ordinary", "priority")
EVENTS = ("issued", "called", "cancelled")


class TicketSettings(BaseModel):
    """``tickets:`` in SERVER.yaml: how ticket-system events are kept and used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_max_age_s: float = Field(
        default=14_400.0,
        gt=0,
        le=BOUNDS["dwell_s"].hi,
        description="a ticket is forgotten this long after its last event (an open one is "
        "counted expired: its call was never reported)",
    )
    max_tickets: int = Field(
        default=100_000,
        gt=0,
        description="tickets held in all (open, recently closed, out-of-order); beyond it "
        "the oldest are forgotten first",
    )
    share_window_s: float = Field(
        default=7_200.0,
        gt=0,
        description="the priority share is learned from the tickets issued in this window",
    )
    min_share_tickets: int = Field(
        default=20,
        ge=1,
        description="tickets issued in the window before the learned share replaces the "
        "configured priority_share",
    )
    share_prior_tickets: float = Field(
        default=10.0,
        ge=0,
        description="weight of the configured priority_share in the learned one, in tickets "
        "(Beta prior)",
    )
    max_share: float = Field(
        default=0.95, gt=0, lt=1, description="largest priority share used (the model needs < 1)"
    )
    wait_window_s: float = Field(
        default=3_600.0,
        gt=0,
        description="window of realised ticket waits (issued -> called) for the per-class "
        "quantiles",
    )
    max_events_per_zone: int = Field(
        default=10_000,
        gt=0,
        description="issued events and realised waits kept per zone and class at most",
    )


@dataclass(frozen=True, slots=True)
class TicketWait:
    """A realised wait: ticket ``issued_at`` -> ``called_at`` (epoch s), of ``klass``."""

    branch: str
    zone: str
    klass: str
    issued_at: float
    called_at: float

    @property
    def wait_s(self) -> float:
        return self.called_at - self.issued_at


@dataclass(frozen=True, slots=True)
class TicketSummary:
    """What the tickets of one waiting zone say at ``now`` (estimate fields)."""

    priority_share: float
    #: "tickets" (learned) or "configured"
    priority_share_method: str
    #: tickets issued in the share window
    share_tickets: int
    #: realised waits of the wait window by class: (p50, p90, n)
    waits: dict[str, tuple[float | None, float | None, int]]
    open_tickets: dict[str, int]


@dataclass(slots=True)
class _Ticket:
    branch: str
    zone: str
    klass: str
    issued_at: float | None = None
    called_at: float | None = None
    cancelled_at: float | None = None
    #: receive time of its last event (eviction)
    seen_at: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.issued_at is not None and self.called_at is None and self.cancelled_at is None


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(slots=True)
class ZoneTickets:
    """Ticket statistics of one waiting zone (bounded by the settings' windows and caps)."""

    #: (issued ts, 1 if priority else 0), sorted by ts
    issued: list[tuple[float, int]] = field(default_factory=list)
    #: class -> (called ts, wait s), sorted by called ts
    waits: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {c: [] for c in CLASSES}
    )
    #: (event, class) -> events applied since the collector started
    totals: dict[tuple[str, str], int] = field(default_factory=dict)
    open: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    #: open tickets forgotten without a call (age or the max_tickets cap)
    expired: int = 0

    def count(self, event: str, klass: str) -> None:
        self.totals[(event, klass)] = self.totals.get((event, klass), 0) + 1

    def add_issued(self, ts: float, klass: str, cap: int) -> None:
        bisect.insort(self.issued, (ts, int(klass == "priority")))
        if len(self.issued) > cap:
            del self.issued[: len(self.issued) - cap]

    def add_wait(self, w: TicketWait, cap: int) -> None:
        lst = self.waits[w.klass]
        bisect.insort(lst, (w.called_at, w.wait_s))
        if len(lst) > cap:
            del lst[: len(lst) - cap]

    def prune(self, now: float, settings: TicketSettings) -> None:
        i = bisect.bisect_left(self.issued, (now - settings.share_window_s, -1))
        if i:
            del self.issued[:i]
        for lst in self.waits.values():
            j = bisect.bisect_left(lst, (now - settings.wait_window_s, -math.inf))
            if j:
                del lst[:j]

    def share(self, now: float, prior: float, settings: TicketSettings) -> tuple[float, str, int]:
        """(share, method, tickets in the window) at ``now``.

        With ``n`` tickets issued in ``(now - share_window_s, now]`` of which ``n_p``
        priority, once ``n >= min_share_tickets``: ``(n_p + k s0) / (n + k)`` with
        ``s0`` the configured share and ``k = share_prior_tickets``, at most
        ``max_share`` ("tickets"); before that ``s0`` ("configured").
        """
        lo = bisect.bisect_right(self.issued, (now - settings.share_window_s, 2))
        hi = bisect.bisect_right(self.issued, (now, 2))
        window = self.issued[lo:hi]
        n = len(window)
        if n < settings.min_share_tickets:
            return prior, "configured", n
        n_p = sum(p for _, p in window)
        k = settings.share_prior_tickets
        share = (n_p + k * prior) / (n + k)
        return min(share, settings.max_share), "tickets", n

    def wait_quantiles(
        self, now: float, settings: TicketSettings
    ) -> dict[str, tuple[float | None, float | None, int]]:
        """class -> (p50, p90, n) of the waits whose call is in ``(now - wait_window_s, now]``."""
        out: dict[str, tuple[float | None, float | None, int]] = {}
        for klass, lst in self.waits.items():
            lo = bisect.bisect_right(lst, (now - settings.wait_window_s, math.inf))
            hi = bisect.bisect_right(lst, (now, math.inf))
            waits = sorted(w for _, w in lst[lo:hi])
            if waits:
                out[klass] = (_quantile(waits, 0.5), _quantile(waits, 0.9), len(waits))
            else:
                out[klass] = (None, None, 0)
        return out


Result = Literal["ok", "duplicate", "stale", "rejected"]


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`TicketBook.apply` did: ``result`` (``rejected`` with ``why``), and the
    realised wait the event completed, if any."""

    result: Result
    wait: TicketWait | None = None
    why: str | None = None


class TicketBook:
    """Every ticket-system event the collector holds, by ticket and by waiting zone."""

    def __init__(self, settings: TicketSettings | None = None) -> None:
        self.settings = settings or TicketSettings()
        #: (branch, source, ticket) -> ticket, least recently touched first
        self.tickets: OrderedDict[tuple[str, str, str], _Ticket] = OrderedDict()
        #: (branch, zone) -> statistics
        self.zones: dict[tuple[str, str], ZoneTickets] = {}

    def zone(self, branch: str, zone: str) -> ZoneTickets:
        z = self.zones.get((branch, zone))
        if z is None:
            z = self.zones[(branch, zone)] = ZoneTickets()
        return z

    def apply(self, msg: TicketMessage, ts: float, now: float) -> Applied:
        """Apply one validated, seq-de-duplicated event observed at ``ts`` (epoch s),
        received at ``now``."""
        s = self.settings
        self.evict(now)
        key = (msg.branch, msg.source, msg.ticket)
        klass = msg.service_class
        t = self.tickets.get(key)
        wait: TicketWait | None = None
        if msg.event == "issued":
            if t is not None and t.issued_at is not None:
                if ts == t.issued_at:
                    return Applied("duplicate")
                if ts < t.issued_at:
                    return Applied("stale")
                # the id again, newer: a new ticket (numbers restart every day)
                self._forget(key, t)
                t = None
            zs = self.zone(msg.branch, msg.zone)
            if t is None:
                t = _Ticket(msg.branch, msg.zone, klass)
                self._hold(key, t)
            else:  # an out-of-order call or cancellation waited for this
                t.zone, t.klass = msg.zone, klass
            if t.called_at is not None and t.called_at < ts:
                # the held call is stamped before this issue: not this ticket's call
                t.called_at = None
            t.issued_at = ts
            zs.add_issued(ts, klass, s.max_events_per_zone)
            zs.count("issued", klass)
            if t.called_at is not None:
                wait = TicketWait(t.branch, t.zone, t.klass, ts, t.called_at)
                zs.add_wait(wait, s.max_events_per_zone)
            elif t.cancelled_at is None:
                zs.open[klass] += 1
        elif msg.event == "called":
            if t is not None and t.called_at is not None:
                return Applied("duplicate")  # the same call again, or a re-call
            if t is not None and t.issued_at is not None:
                if ts < t.issued_at:
                    return Applied("rejected", why=f"ticket {msg.ticket} called before issued")
                zs = self.zone(t.branch, t.zone)
                if t.is_open:
                    zs.open[t.klass] -= 1
                t.called_at = ts
                zs.count("called", t.klass)
                if t.cancelled_at is None:
                    wait = TicketWait(t.branch, t.zone, t.klass, t.issued_at, ts)
                    zs.add_wait(wait, s.max_events_per_zone)
            else:
                if t is None:
                    t = _Ticket(msg.branch, msg.zone, klass)
                    self._hold(key, t)
                t.called_at = ts
                self.zone(msg.branch, msg.zone).count("called", klass)
        else:  # cancelled
            if t is not None and t.cancelled_at is not None:
                return Applied("duplicate")
            if t is None:
                t = _Ticket(msg.branch, msg.zone, klass)
                self._hold(key, t)
            zs = self.zone(t.branch, t.zone)
            if t.is_open:
                zs.open[t.klass] -= 1
            t.cancelled_at = ts
            zs.count("cancelled", t.klass)
        t.seen_at = now
        self.tickets.move_to_end(key)
        return Applied("ok", wait)

    def _hold(self, key: tuple[str, str, str], t: _Ticket) -> None:
        self.tickets[key] = t
        while len(self.tickets) > self.settings.max_tickets:
            old_key, old = next(iter(self.tickets.items()))
            self._forget(old_key, old)

    def _forget(self, key: tuple[str, str, str], t: _Ticket) -> None:
        del self.tickets[key]
        if t.is_open:
            zs = self.zone(t.branch, t.zone)
            zs.open[t.klass] -= 1
            zs.expired += 1

    def evict(self, now: float) -> int:
        """Forget tickets whose last event was received ``open_max_age_s`` before ``now``."""
        horizon = now - self.settings.open_max_age_s
        n = 0
        while self.tickets:
            key, t = next(iter(self.tickets.items()))
            if t.seen_at >= horizon:
                break
            self._forget(key, t)
            n += 1
        return n

    def summary(
        self, branch: str, zone: str, now: float, configured_share: float
    ) -> TicketSummary | None:
        """The zone's ticket figures at ``now``; None if no ticket event ever named it."""
        zs = self.zones.get((branch, zone))
        if zs is None:
            return None
        zs.prune(now, self.settings)
        share, method, n = zs.share(now, configured_share, self.settings)
        return TicketSummary(
            priority_share=share,
            priority_share_method=method,
            share_tickets=n,
            waits=zs.wait_quantiles(now, self.settings),
            open_tickets=dict(zs.open),
        )
