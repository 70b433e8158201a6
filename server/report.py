"""The daily service report: one branch's (or a region's) day, for its managers.

Computed from the store (minute aggregates and alert history) for one local
calendar day of each branch, rendered as one self-contained HTML page in the
branch's language: charts are PNG images (Matplotlib, :mod:`charts`) that mail
clients show, either inline ``data:`` URIs (file, board page) or ``cid:`` parts
(e-mail, :func:`report_email`); bar charts by hour are HTML tables.

Figures and their sources:

* share served within W1 = sum(served_within_threshold) / sum(served) of the day's
  minutes (customers whose measured wait ended that day);
* peaks = the hours with the highest mean queue length;
* longest waits = the minutes with the highest 90th-percentile realised wait;
* walk-outs and counters open: from minute fields a collector may record
  (``walk_outs``, ``counters_open``); shown as "not measured" when absent, and
  counters then fall back to the configured number (marked as such);
* time back under threshold: from an alert's start to the first later minute
  whose mean predicted wait is below the threshold (else the alert's end);
* comparison: the same figures for the same weekday of the previous four weeks.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from lobbywatch.server.board_data import day_series, local_day_bounds
from lobbywatch.server.config import ServerConfig
from lobbywatch.server.i18n import Translator
from lobbywatch.server.store import AlertRow, MinuteRow, Store

COMPARE_WEEKS = 4


@dataclass
class ZoneDay:
    """One waiting zone's day (all durations seconds, times UTC epoch seconds)."""

    zone: str
    name: str | None
    threshold_s: float | None
    served: int
    within: int
    peak_hours: list[tuple[int, float]]
    longest: list[tuple[float, float]]
    walkouts: int | None
    by_hour: list[dict[str, Any]]
    series: dict[str, Any]
    past: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.within / self.served if self.served else None


@dataclass
class BranchDay:
    branch: str
    name: str | None
    timezone: str
    day: date
    zones: list[ZoneDay]
    alerts: list[dict[str, Any]]
    zone_names: dict[str, str] = field(default_factory=dict)

    @property
    def noon(self) -> float:
        """Midday of the day: times of the day are shown without their date."""
        return local_day_bounds(self.day, self.timezone)[0] + 12 * 3600


def _hour(ts: float, tz: str) -> int:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).hour


def _figures(rows: list[MinuteRow]) -> dict[str, Any]:
    served = sum(r.served for r in rows)
    within = sum(r.served_within_threshold for r in rows)
    waits = [r.predicted_wait_s_avg for r in rows if r.predicted_wait_s_avg is not None]
    return {
        "served": served,
        "share": within / served if served else None,
        "peak_queue": max((r.queue_length_max for r in rows), default=None),
        "mean_wait_s": sum(waits) / len(waits) if waits else None,
    }


def zone_day(
    zone: str,
    name: str | None,
    rows: list[MinuteRow],
    past: list[tuple[float, list[MinuteRow]]],
    start: float,
    tz: str,
    counters_configured: int | None,
) -> ZoneDay:
    """Figures of one zone's day from its minute rows and those of earlier weeks."""
    rows = sorted(rows, key=lambda r: r.minute)
    hours: dict[int, list[MinuteRow]] = {}
    for r in rows:
        hours.setdefault(_hour(r.minute, tz), []).append(r)
    by_hour: list[dict[str, Any]] = []
    for h in sorted(hours):
        hr = hours[h]
        counters = [float(v) for r in hr if (v := getattr(r, "counters_open", None)) is not None]
        by_hour.append(
            {
                "hour": h,
                "queue": sum(r.queue_length_avg for r in hr) / len(hr),
                "served": sum(r.served for r in hr),
                "counters": sum(counters) / len(counters) if counters else counters_configured,
                "counters_measured": bool(counters),
            }
        )
    peaks = sorted(((b["hour"], b["queue"]) for b in by_hour), key=lambda x: -x[1])[:3]
    longest = sorted(
        ((float(r.minute), float(r.realised_wait_p90_s)) for r in rows if r.realised_wait_p90_s),
        key=lambda x: -x[1],
    )[:5]
    walk = [getattr(r, "walk_outs", None) for r in rows]
    thr = [r.threshold_s for r in rows if r.threshold_s is not None]
    return ZoneDay(
        zone=zone,
        name=name,
        threshold_s=thr[-1] if thr else None,
        served=sum(r.served for r in rows),
        within=sum(r.served_within_threshold for r in rows),
        peak_hours=peaks,
        longest=longest,
        walkouts=sum(int(w) for w in walk if w is not None)
        if any(w is not None for w in walk)
        else None,
        by_hour=by_hour,
        series=day_series(rows, past, start),
        past=[_figures(pr) for _, pr in past if pr],
    )


def back_under(a: AlertRow, rows: list[MinuteRow]) -> float | None:
    """Seconds from an alert's start until the queue was back under its threshold."""
    if a.threshold is not None:
        for r in sorted(rows, key=lambda r: r.minute):
            if (
                r.minute > a.started_at
                and r.predicted_wait_s_avg is not None
                and r.predicted_wait_s_avg < a.threshold
            ):
                return r.minute + 60 - a.started_at
    return a.ended_at - a.started_at if a.ended_at is not None else None


def branch_day(cfg: ServerConfig, store: Store, branch: str, day: date) -> BranchDay:
    """Everything the report says about one branch's local day."""
    b = cfg.branch(branch)
    tz = b.timezone if b else "UTC"
    start, end = local_day_bounds(day, tz)
    rows = [r for r in store.minutes(branch, None, since=start, limit=1_000_000) if r.minute < end]
    past: list[tuple[float, list[MinuteRow]]] = []
    for w in range(1, COMPARE_WEEKS + 1):
        ps, pe = local_day_bounds(day - timedelta(days=7 * w), tz)
        pr = [r for r in store.minutes(branch, None, since=ps, limit=1_000_000) if r.minute < pe]
        past.append((ps, pr))
    zones = []
    for z in sorted({r.zone for r in rows}):
        zones.append(
            zone_day(
                z,
                cfg.zone_name(branch, z),
                [r for r in rows if r.zone == z],
                [(ps, [r for r in pr if r.zone == z]) for ps, pr in past],
                start,
                tz,
                cfg.service_for(branch, z)[0],
            )
        )
    alerts = []
    for a in sorted(
        store.alert_history(branch=branch, since=start, until=end, limit=10_000),
        key=lambda a: a.started_at,
    ):
        zone_rows = [r for r in rows if r.zone == a.zone]
        alerts.append(
            {
                "row": a,
                "back_under_s": back_under(a, zone_rows) if a.kind == "w1_wait" else None,
            }
        )
    names = {z: o.name for z, o in b.zones.items() if o.name} if b else {}
    return BranchDay(branch, b.name if b else None, tz, day, zones, alerts, names)


# ----------------------------------------------------------------- rendering


def _e(v: Any) -> str:
    return html.escape(str(v))


def _bar(value: float, top: float, colour: str) -> str:
    """A horizontal bar as a table cell width (mail clients render tables, not SVG)."""
    pct = 0 if top <= 0 else max(1, round(100 * value / top))
    return (
        f'<table role="presentation" cellpadding="0" cellspacing="0" width="100%"><tr>'
        f'<td width="{pct}%" style="background:{colour};height:10px;font-size:0">&nbsp;</td>'
        f'<td style="font-size:0">&nbsp;</td></tr></table>'
    )


def _change(now: float | None, before: list[float], tr: Translator, pct: bool) -> str:
    if now is None or not before:
        return "—"
    mean = sum(before) / len(before)
    if pct:
        points = 100 * (now - mean)
        return tr.gettext(
            "{value} points", value=tr.number(0.0 if abs(points) < 0.05 else points, 1)
        )
    if mean == 0:
        return "—"
    change = (now - mean) / mean
    return tr.percent(0.0 if abs(change) < 0.005 else change)


def _tag(name: str, text: str, attrs: str = "") -> str:
    return f"<{name}{attrs}>{_e(text)}</{name}>"


def _zone_html(
    d: BranchDay, z: ZoneDay, tr: Translator, now: float, images: dict[str, bytes], cid: bool
) -> list[str]:
    from lobbywatch.server.charts import render

    g = tr.gettext
    label = f"{z.name} ({z.zone})" if z.name else z.zone
    parts = [_tag("h3", g("Waiting zone {zone}", zone=label))]
    share = tr.percent(z.share) if z.share is not None else "—"
    parts.append(
        _tag(
            "p",
            g(
                "Served within the W1 threshold ({threshold}): {share} of {served} customers.",
                threshold=tr.wait(z.threshold_s),
                share=share,
                served=tr.number(z.served),
            ),
        )
    )
    walk = (
        tr.number(z.walkouts) if z.walkouts is not None else g("not measured by this collector yet")
    )
    parts.append(_tag("p", g("Walk-outs: {n}", n=walk)))
    if z.peak_hours:
        peaks = ", ".join(
            g("{hour}:00 ({queue} waiting on average)", hour=str(h).zfill(2), queue=tr.number(q, 1))
            for h, q in z.peak_hours
        )
        parts.append(_tag("p", g("Peak hours: {peaks}", peaks=peaks)))
    if z.longest:
        heading = g("Longest waits (90th percentile of a minute):")
        items = [
            _tag("li", g("{wait} at {time}", wait=tr.wait(w), time=tr.time(t, d.timezone, d.noon)))
            for t, w in z.longest
        ]
        parts.append(_tag("p", heading) + "<ul>" + "".join(items) + "</ul>")
    band = g("faint band: typical day (same weekday, last 4 weeks, 10th–90th percentile)")
    for chart, caption in (
        ("queue", g("Queue length (people)")),
        ("wait", g("Predicted and realised wait (min) against the W1 threshold")),
    ):
        name = f"{d.branch}-{z.zone}-{chart}.png"
        images[name] = render(z.series, chart, "png", size=(6.4, 2.0))
        src = (
            f"cid:{name}"
            if cid
            else "data:image/png;base64," + base64.b64encode(images[name]).decode()
        )
        parts.append(
            "<figure>"
            + _tag("figcaption", f"{caption} · {band}")
            + f'<img src="{src}" alt="{_e(caption)}" width="640" height="200"></figure>'
        )
    if z.by_hour:
        parts.append(_hours_table(z, tr))
    if z.past:
        parts.append(_comparison_table(z, tr))
    return parts


def _hours_table(z: ZoneDay, tr: Translator) -> str:
    """Counters open against demand (customers served, mean queue) by hour, as bars."""
    g = tr.gettext
    top_q = max(b["queue"] for b in z.by_hour) or 1.0
    top_s = max(b["served"] for b in z.by_hour) or 1.0
    rows = []
    for b in z.by_hour:
        counters = "—" if b["counters"] is None else tr.number(b["counters"], 1)
        if b["counters"] is not None and not b["counters_measured"]:
            counters += " *"
        rows.append(
            "<tr>"
            + _tag("td", str(b["hour"]).zfill(2) + ":00")
            + _tag("td", counters)
            + _tag("td", tr.number(b["served"]))
            + f"<td>{_bar(b['served'], top_s, '#2e8b57')}</td>"
            + _tag("td", tr.number(b["queue"], 1))
            + f"<td>{_bar(b['queue'], top_q, '#1f5fa8')}</td></tr>"
        )
    head = (
        "<tr>"
        + _tag("th", g("Hour"))
        + _tag("th", g("Counters open"))
        + _tag("th", g("Customers served"), " colspan=2")
        + _tag("th", g("Mean queue"), " colspan=2")
        + "</tr>"
    )
    title = _tag("strong", g("Counters open against demand by hour"))
    note = _tag("small", g("* configured, not measured"))
    return (
        f'<p>{title} {note}</p><table class="hours" cellpadding="3">{head}{"".join(rows)}</table>'
    )


def _comparison_table(z: ZoneDay, tr: Translator) -> str:
    """This day against the mean of the same weekday in earlier weeks."""
    g = tr.gettext
    today = _figures_of(z)

    def before(k: str) -> list[float]:
        return [p[k] for p in z.past if p[k] is not None]

    share = tr.percent(today["share"]) if today["share"] is not None else "—"
    rows = [
        (g("Served within W1"), share, _change(today["share"], before("share"), tr, True)),
        (
            g("Customers served"),
            tr.number(today["served"]),
            _change(today["served"], before("served"), tr, False),
        ),
        (
            g("Peak queue"),
            tr.number(today["peak_queue"] or 0),
            _change(today["peak_queue"], before("peak_queue"), tr, False),
        ),
        (
            g("Mean predicted wait"),
            tr.wait(today["mean_wait_s"]),
            _change(today["mean_wait_s"], before("mean_wait_s"), tr, False),
        ),
    ]
    body = "".join(
        "<tr>" + _tag("td", a) + _tag("td", b) + _tag("td", c) + "</tr>" for a, b, c in rows
    )
    title = _tag("strong", g("Compared with the same weekday of the last {n} weeks", n=len(z.past)))
    head = "<tr><th></th>" + _tag("th", g("This day")) + _tag("th", g("Change against their mean"))
    return f'<p>{title}</p><table class="cmp" cellpadding="3">{head}</tr>{body}</table>'


def _alerts_html(d: BranchDay, tr: Translator, now: float) -> list[str]:
    g = tr.gettext
    parts = [_tag("h3", g("Alerts"))]
    if not d.alerts:
        return [*parts, _tag("p", g("No alert this day."))]
    kinds = {
        "w1_wait": g("long wait"),
        "service_stalled": g("service stalled"),
        "device_offline": g("camera offline"),
    }
    items = []
    for item in d.alerts:
        a: AlertRow = item["row"]
        text = g(
            "{time}: {kind} ({severity}) at {where}",
            time=tr.time(a.started_at, d.timezone, d.noon),
            kind=kinds.get(a.kind, a.kind),
            severity=g("critical") if a.severity == "critical" else g("warning"),
            where=d.zone_names.get(a.zone or "", a.zone or a.subject),
        )
        if item["back_under_s"] is not None:
            outcome = g(
                "back under the threshold after {duration}",
                duration=tr.duration(item["back_under_s"]),
            )
        elif a.ended_at is not None:
            outcome = g("ended after {duration}", duration=tr.duration(a.ended_at - a.started_at))
        else:
            outcome = g("still open")
        items.append(_tag("li", g("{first}; {then}", first=text, then=outcome)))
    return [*parts, "<ul>" + "".join(items) + "</ul>"]


def render_branch(
    d: BranchDay, tr: Translator, now: float, images: dict[str, bytes], cid: bool
) -> str:
    """HTML of one branch's day; chart PNGs are added to ``images`` (name -> bytes)."""
    g = tr.gettext
    day = tr.date(local_day_bounds(d.day, d.timezone)[0], d.timezone)
    parts = [
        f"<h2>{_e(d.name or d.branch)} <small>({_e(d.branch)})</small></h2>",
        _tag("p", g("{date}, times in {tz}", date=day, tz=d.timezone)),
    ]
    if not d.zones:
        parts.append(_tag("p", g("No minute history for this day.")))
    for z in d.zones:
        parts += _zone_html(d, z, tr, now, images, cid)
    parts += _alerts_html(d, tr, now)
    return "\n".join(parts)


def _figures_of(z: ZoneDay) -> dict[str, Any]:
    s = z.series
    waits = [v for v in (s.get("predicted_wait_s_avg") or []) if v is not None]
    queues = [v for v in (s.get("queue_length_avg") or []) if v is not None]
    return {
        "served": z.served,
        "share": z.share,
        "peak_queue": math.ceil(max(queues)) if queues else None,
        "mean_wait_s": sum(waits) / len(waits) if waits else None,
    }


STYLE = (
    "body{font-family:system-ui,sans-serif;color:#1b1b1b;max-width:760px;margin:1rem auto;"
    "padding:0 1rem}table.hours,table.cmp{border-collapse:collapse;width:100%}"
    "table.hours td,table.hours th,table.cmp td,table.cmp th{border-bottom:1px solid #ddd;"
    "text-align:left}figure{margin:.5rem 0}figcaption{font-size:.9rem;color:#555}"
)


def render_report(
    days: list[BranchDay], tr: Translator, now: float, cid: bool = False
) -> tuple[str, dict[str, bytes]]:
    """The whole report page and its chart images (name -> PNG bytes).

    ``cid=False``: images inline as ``data:`` URIs (a self-contained file);
    ``cid=True``: ``cid:<name>`` references for a multipart e-mail.
    """
    g = tr.gettext
    images: dict[str, bytes] = {}
    day = days[0].day if days else None
    title = g("Daily service report, {date}", date=day.isoformat() if day else "—")
    body = "\n<hr>\n".join(render_branch(d, tr, now, images, cid) for d in days)
    lang = tr.locale.replace("_", "-")
    page = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{body}</body></html>"
    )
    return page, images


def report_email(
    html_text: str, images: dict[str, bytes], subject: str, sender: str, to: list[str], msg_id: str
) -> EmailMessage:
    """A multipart/related e-mail: the HTML page and its PNG charts as inline parts."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = msg_id
    msg.set_content("This report is HTML; open it in a mail client that shows HTML.\n")
    msg.add_alternative(html_text, subtype="html")
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    for name, data in images.items():
        html_part.add_related(data, maintype="image", subtype="png", cid=f"<{name}>", filename=name)
    return msg


def branches_for(cfg: ServerConfig, branch: str | None, region: str | None) -> list[str]:
    """Branch ids a report covers; ValueError naming the unknown branch or region."""
    if branch is not None:
        if cfg.branch(branch) is None:
            raise ValueError(f"unknown branch {branch!r} (not in the config)")
        return [branch]
    ids = [b.id for b in cfg.branches if region is None or b.region == region]
    if not ids:
        raise ValueError(f"no branch in region {region!r}" if region else "no branch configured")
    return ids
