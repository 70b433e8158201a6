"""Retention of stored minute aggregates: when to prune, and up to which minute.

``database.retention_days`` says how long per-zone minute aggregates are kept. The
collector asks :class:`RetentionSchedule` on every tick (its own injected clock); once
a day (and at the first tick after a start) the schedule returns the cut-off and the
collector deletes older rows on its store-writer thread (``Store.prune_minutes``).
Alert history is an audit trail and is not pruned here.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_S = 86_400.0


@dataclass(slots=True)
class RetentionSchedule:
    """Daily prune schedule for data older than ``retention_days``.

    Attributes:
        retention_days: days of minute aggregates kept (``database.retention_days``).
        interval_s: seconds between prunes (one day).
        next_at: epoch seconds of the next prune; None until the first tick, which
            prunes at once (a collector that restarts daily still prunes).
    """

    retention_days: int
    interval_s: float = DAY_S
    next_at: float | None = None

    def due(self, now: float) -> float | None:
        """The cut-off (epoch seconds, UTC) if a prune is due at ``now``, else None.

        Rows whose minute starts before the cut-off are older than ``retention_days``.
        Schedules the next prune ``interval_s`` after ``now``.
        """
        if self.next_at is not None and now < self.next_at:
            return None
        self.next_at = now + self.interval_s
        return now - self.retention_days * DAY_S
