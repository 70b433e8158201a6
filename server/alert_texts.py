"""What an alert notification says to a branch manager, in the branch's language.

Two halves:

* :func:`alert_context` (at event time, in the collector): the facts a manager
  acts on, taken from the zone's current estimate and the config, stored in the
  event payload under ``"context"`` so a notification re-sent after a restart says
  the same thing.
* :func:`notice` (at send time, in a sink): the title and lines of the message in
  one locale, from the payload alone. Missing facts are left out, never invented.

"One more counter" is the queueing approximation the estimator's fallback uses:
with ``c`` counters serving at the same per-counter rate the wait of a customer
joining now is about ``queue / (c * mu1)``, so with ``c + 1`` it is
``wait * c / (c + 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lobbywatch.server.i18n import Translator


@dataclass(frozen=True, slots=True)
class Notice:
    """One rendered notification: ``title`` (one line), ``lines`` (body), ``link``."""

    title: str
    lines: list[str] = field(default_factory=list)
    link: str | None = None

    def plain(self) -> str:
        body = [self.title, "", *self.lines]
        if self.link:
            body += ["", self.link]
        return "\n".join(body) + "\n"

    def markdown(self) -> str:
        """Markdown as WeCom and DingTalk robots render it (bold title, one line each)."""
        out = [f"**{self.title}**", *(f"> {line}" for line in self.lines)]
        if self.link:
            out.append(f"[{self.link}]({self.link})")
        return "\n".join(out)


def one_more_counter_wait(wait_s: float | None, counters: int | None) -> float | None:
    """Predicted wait with one more counter open: ``wait * c / (c + 1)``; None if unknown."""
    if wait_s is None or not counters or counters < 1:
        return None
    return wait_s * counters / (counters + 1)


def alert_context(
    *,
    branch_name: str | None,
    zone_name: str | None,
    timezone: str,
    locale: str,
    estimate: Any | None,
    threshold_s: float | None,
    counters_configured: int | None,
    board_url: str | None,
    now: float,
    worst_wait_s: float | None = None,
) -> dict[str, Any]:
    """The JSON-safe facts stored with an alert event (``payload["context"]``).

    ``estimate`` is the zone's WaitEstimate (or None); fields a later estimator
    provides (``counters_open``/``counters_method``, ``breach_expected_at``,
    ``predicted_wait_one_more_counter_s``) are read when present.
    Counters open come from the estimate when it measures them, else the configured
    number (``counters_source`` says which).
    """
    ctx: dict[str, Any] = {
        "branch_name": branch_name,
        "zone_name": zone_name,
        "timezone": timezone,
        "locale": locale,
        "threshold_s": threshold_s,
        "board_url": board_url,
        "worst_wait_s": worst_wait_s,
    }
    if estimate is None:
        return ctx
    # the wait W1 judged: a customer's who stays however long (the board shows a served
    # customer's, shorter once the patience is known); the one-more figure is on it too
    predicted = getattr(estimate, "potential_wait_s", None)
    if predicted is None:
        predicted = getattr(estimate, "predicted_wait_s", None)
    counters = getattr(estimate, "counters_open", None)
    source = (
        "configured" if getattr(estimate, "counters_method", None) == "configured" else "measured"
    )
    if counters is None:
        counters, source = counters_configured, "configured"
    # the estimator's own one-more-counter figure when it has one
    one_more = getattr(estimate, "predicted_wait_one_more_counter_s", None)
    if one_more is None:
        one_more = one_more_counter_wait(predicted, counters)
    breach_at = getattr(estimate, "breach_expected_at", None)
    if breach_at is None:
        breach_at = getattr(estimate, "expected_breach_at", None)
    if breach_at is None and threshold_s is not None and hasattr(estimate, "seconds_to_wait"):
        try:
            ahead = estimate.seconds_to_wait(threshold_s)
        except (TypeError, ValueError, ZeroDivisionError):
            ahead = None
        if ahead is not None:
            breach_at = now + float(ahead)
    ctx.update(
        people=getattr(estimate, "queue_length", None),
        predicted_wait_s=predicted,
        forecast_wait_s=getattr(estimate, "forecast_wait_s", None),
        oldest_wait_s=getattr(estimate, "oldest_wait_s", None),
        method=getattr(estimate, "method", None),
        counters_open=counters,
        counters_source=source if counters is not None else None,
        wait_with_one_more_s=one_more,
        expected_breach_at=breach_at,
    )
    return ctx


def _where(p: dict[str, Any], tr: Translator) -> str:
    ctx = p.get("context") or {}
    branch = ctx.get("branch_name") or p.get("branch")
    if p.get("kind") == "device_offline":
        return tr.gettext("{branch}, camera {device}", branch=branch, device=p.get("device"))
    zone = ctx.get("zone_name") or p.get("zone")
    return tr.gettext("{branch}, {zone}", branch=branch, zone=zone)


def notice(p: dict[str, Any], tr: Translator, now: float) -> Notice:
    """Title and lines of one alert event in ``tr``'s language (pure; ``now`` for dates)."""
    ctx = p.get("context") or {}
    tz = ctx.get("timezone") or "UTC"
    where = _where(p, tr)
    kind = p.get("kind")
    resolved = p.get("state") == "resolved"
    link = ctx.get("board_url")
    started = p.get("started_at_ts")
    ended = p.get("ended_at_ts")

    if resolved:
        lines = []
        if started is not None and ended is not None:
            lines.append(
                tr.gettext("Lasted {duration}.", duration=tr.duration(float(ended - started)))
            )
        if kind == "w1_wait" and ctx.get("worst_wait_s") is not None:
            lines.append(
                tr.gettext(
                    "Worst predicted wait {wait} against a threshold of {threshold}.",
                    wait=tr.wait(ctx["worst_wait_s"]),
                    threshold=tr.wait(ctx.get("threshold_s") or p.get("threshold")),
                )
            )
        return Notice(tr.gettext("Resolved: {where}", where=where), lines, link)

    if kind == "device_offline":
        since = tr.time(float(started), tz, now) if started is not None else "—"
        return Notice(
            tr.gettext("Camera offline: {where}", where=where),
            [tr.gettext("No data from this camera since {time}.", time=since)],
            link,
        )
    if kind == "closing_backlog":
        # from the forecasting alert engine: payload["details"] (read when present)
        det = p.get("details") or {}
        closes = det.get("closes_at_ts")
        lines = []
        if det.get("unserved") is not None:
            lines.append(
                tr.gettext(
                    "{unserved} of {waiting} waiting are not expected to be served before "
                    "closing at {time}.",
                    unserved=det["unserved"],
                    waiting=det.get("waiting", "—"),
                    time=tr.time(float(closes), tz, now) if closes is not None else "—",
                )
            )
        return Notice(tr.gettext("Closing backlog: {where}", where=where), lines, link)
    if kind not in ("w1_wait", "service_stalled"):
        # a kind this module does not know yet: its engine summary, untranslated
        return Notice(f"{kind}: {where}", [str(p.get("summary") or "")], link)
    if kind == "service_stalled":
        value = p.get("value")
        lines = [
            tr.gettext(
                "{people} waiting and nobody served for {duration}.",
                people=ctx.get("people", "—"),
                duration=tr.duration(float(value)) if value is not None else "—",
            )
        ]
        return Notice(tr.gettext("Service stalled: {where}", where=where), lines, link)

    # w1_wait
    critical = p.get("severity") == "critical"
    title = (
        tr.gettext("W1 critical: {where}", where=where)
        if critical
        else tr.gettext("W1 warning: {where}", where=where)
    )
    threshold = ctx.get("threshold_s") or p.get("threshold")
    predicted = ctx.get("predicted_wait_s", p.get("value"))
    lines = [
        tr.gettext(
            "Predicted wait {wait} against a threshold of {threshold}; {people} waiting.",
            wait=tr.wait(predicted),
            threshold=tr.wait(threshold),
            people=ctx.get("people", "—"),
        )
    ]
    breach = ctx.get("expected_breach_at")
    if predicted is not None and threshold is not None and predicted >= threshold:
        lines.append(tr.gettext("The wait is over the threshold now."))
    elif breach is not None:
        lines.append(
            tr.gettext(
                "Expected to reach the threshold at {time}.", time=tr.time(float(breach), tz, now)
            )
        )
    counters = ctx.get("counters_open")
    if counters is not None:
        text = (
            tr.gettext("{counters} counters open (configured).", counters=counters)
            if ctx.get("counters_source") == "configured"
            else tr.gettext("{counters} counters open.", counters=counters)
        )
        lines.append(text)
        more = ctx.get("wait_with_one_more_s")
        if more is not None:
            lines.append(
                tr.gettext(
                    "One more counter would bring the predicted wait to about {wait}.",
                    wait=tr.wait(more),
                )
            )
    if ctx.get("oldest_wait_s") is not None:
        lines.append(
            tr.gettext("Longest current wait: {wait}.", wait=tr.wait(ctx["oldest_wait_s"]))
        )
    return Notice(title, lines, link)
