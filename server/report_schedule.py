"""When the daily report e-mails go out, and putting them into the outbox once.

After closing (``report.after_closing_min`` after the end of the day's last
business-hours interval; ``report.send_at`` local time for a branch without
business hours; no report on a day it does not open; a region's report once all
its branches' reports are due) the collector renders the day's report for each
branch with ``managers`` and each region with ``managers`` and stores it as one
outbox message keyed ``report:daily:<scope>:<date>``: the SMTP sink delivers it
with retries like an alert, and the key makes a second render (a restart, another
tick) a no-op, so each report is mailed once.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lobbywatch.server.config import BranchConfig, ServerConfig
from lobbywatch.server.i18n import Translator
from lobbywatch.server.store import Store

log = logging.getLogger(__name__)


#: how long after its send time a report is still sent (a collector down longer skips it)
DUE_WINDOW_S = 12 * 3600.0


@dataclass(frozen=True)
class DueReport:
    """One report to send: its outbox key, branches, recipients, language and day."""

    key: str
    branches: tuple[str, ...]
    to: tuple[str, ...]
    locale: str
    day: date


def send_time(cfg: ServerConfig, branch: BranchConfig, day: date) -> float | None:
    """When ``branch``'s report for its local ``day`` is due (None: closed that day)."""
    if branch.business_hours is not None:
        # intervals of the day in Unix seconds (BusinessHours' own calendar: DST, holidays)
        intervals = branch.business_hours._intervals(day)
        if not intervals:
            return None
        return max(end for _, end in intervals) + 60.0 * cfg.report.after_closing_min
    hh, mm = (int(x) for x in cfg.report.send_at.split(":"))
    return datetime.combine(day, time(hh, mm), ZoneInfo(branch.timezone)).timestamp()


def due_reports(cfg: ServerConfig, now: float) -> list[DueReport]:
    """Reports whose send time has passed today (pure: the outbox decides what is new)."""
    if cfg.report.sink is None:
        return []
    out = []

    def due_day(b: BranchConfig) -> date | None:
        today = datetime.fromtimestamp(now, ZoneInfo(b.timezone)).date()
        # yesterday too: an interval that closes after midnight makes its report due today
        for day in (today, today - timedelta(days=1)):
            at = send_time(cfg, b, day)
            if at is not None and at <= now < at + DUE_WINDOW_S:
                return day
        return None

    for b in cfg.branches:
        day = due_day(b)
        if b.managers and day is not None:
            out.append(
                DueReport(
                    f"report:daily:{b.id}:{day.isoformat()}",
                    (b.id,),
                    tuple(b.managers),
                    cfg.locale_for(b.id),
                    day,
                )
            )
    for region, rc in sorted(cfg.regions.items()):
        members = [b for b in cfg.branches if b.region == region]
        if not rc.managers or not members:
            continue
        days = {d for d in (due_day(b) for b in members) if d is not None}
        if len(days) != 1:
            continue  # none due yet (or members on different days: wait for one day)
        (day,) = days
        if any((at := send_time(cfg, b, day)) is not None and now < at for b in members):
            continue  # a branch that opened that day has not closed yet
        out.append(
            DueReport(
                f"report:daily:region:{region}:{day.isoformat()}",
                tuple(b.id for b in members),
                tuple(rc.managers),
                rc.locale or cfg.locale,
                day,
            )
        )
    return out


def enqueue_due(cfg: ServerConfig, store: Store, now: float) -> int:
    """Render and store every due report not yet in the outbox; returns how many."""
    from lobbywatch.server.report import branch_day, render_report

    stored = 0
    for due in due_reports(cfg, now):
        if store.has_event(due.key):
            continue
        tr = Translator(due.locale)
        days = [branch_day(cfg, store, b, due.day) for b in due.branches]
        page, images = render_report(days, tr, now, cid=True)
        scope = due.branches[0] if len(due.branches) == 1 else due.key.split(":")[3]
        payload = {
            "event_id": due.key,
            "event": "report",
            "kind": "daily_report",
            "alert_id": due.key,
            "subject": tr.gettext(
                "Daily service report {scope}, {date}", scope=scope, date=due.day.isoformat()
            ),
            "to": list(due.to),
            "html": page,
            "images": {k: base64.b64encode(v).decode() for k, v in images.items()},
        }
        assert cfg.report.sink is not None
        if store.record_message(due.key, due.key, payload, [cfg.report.sink], now):
            stored += 1
            log.info("daily report %s queued for %d recipients", due.key, len(due.to))
    return stored
