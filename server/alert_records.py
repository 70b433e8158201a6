"""The alert boundary: typed conversions from the alert engine's values
(:class:`~lobbywatch.server.alerts.Alert`, :class:`~lobbywatch.server.alerts.AlertEvent`)
to what their consumers hold: the stored row (:class:`~lobbywatch.server.store.AlertRow`),
the notification payload every sink receives (:class:`AlertPayload`) and the
public view the API serves (:class:`AlertView`).

Pure functions, no I/O; every consumer goes through here, so a field added to
an alert is converted in one place.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from lobbywatch.server.alerts import Alert, AlertEvent
from lobbywatch.server.notify import iso
from lobbywatch.server.store import AlertRow

#: the alert kind about a device (its subject is the device, it has no zone)
DEVICE_KIND = "device_offline"

Facts = Alert | AlertEvent


class AlertView(TypedDict):
    """An alert as people see it (API ``/alerts``, and the core of every notification)."""

    alert_id: str
    kind: str
    severity: str
    state: str
    branch: str
    region: str | None
    #: zone of zone alerts (``w1_wait``, ``service_stalled``); None for device alerts
    zone: str | None
    #: device of ``device_offline`` alerts; None for zone alerts
    device: str | None
    #: ISO-8601 UTC
    started_at: str | None
    ended_at: str | None
    summary: str | None
    value: float | None
    threshold: float | None


class AlertPayload(AlertView):
    """The JSON body every sink receives (webhook body; source of e-mail and
    Alertmanager alerts). ``event_id`` is the idempotency key ``{alert_id}#{revision}``."""

    event_id: str
    event: str
    subject: str
    #: Unix seconds of ``started_at``/``ended_at`` (for sinks that compute durations)
    started_at_ts: float
    ended_at_ts: float | None
    #: on an escalation to critical: the severity before it (Alertmanager
    #: resolves that alert so the warning does not linger)
    previous_severity: NotRequired[str]
    #: on the time-based escalation (``escalate_after_s``) and every event after it:
    #: true (route it to the region)
    escalated: NotRequired[bool]
    #: what would help and when: for ``w1_wait`` the counters open, the predicted
    #: wait with one more counter, the expected breach; for ``closing_backlog`` the
    #: people projected not to be served before closing (``alerts.w1_advice``)
    details: dict[str, Any] | None
    #: facts a manager acts on (alert_texts.alert_context): zone in words, counters,
    #: expected breach, board link, locale
    context: NotRequired[dict[str, Any]]


def zone_of(a: Facts | AlertRow) -> str | None:
    """Zone of a zone alert; device alerts (``device_offline``) have none."""
    return None if a.kind == DEVICE_KIND else a.subject


def device_of(a: Facts | AlertRow) -> str | None:
    """Device of a ``device_offline`` alert; zone alerts have none."""
    return a.subject if a.kind == DEVICE_KIND else None


def alert_view(a: Facts, region: str | None) -> AlertView:
    """The public view of ``a``; ``region`` is the branch's region as resolved by the caller."""
    return AlertView(
        alert_id=a.alert_id,
        kind=a.kind,
        severity=a.severity,
        state=a.state,
        branch=a.branch,
        region=region,
        zone=zone_of(a),
        device=device_of(a),
        started_at=iso(a.started_at),
        ended_at=iso(a.ended_at),
        summary=a.summary,
        value=a.value,
        threshold=a.threshold,
    )


def row_view(r: AlertRow) -> AlertView:
    """The public view of a stored alert (history queries)."""
    return AlertView(
        alert_id=r.alert_id,
        kind=r.kind,
        severity=r.severity,
        state=r.state,
        branch=r.branch,
        region=r.region,
        zone=r.zone,
        device=device_of(r),
        started_at=iso(r.started_at),
        ended_at=iso(r.ended_at),
        summary=r.summary,
        value=r.value,
        threshold=r.threshold,
    )


def previous_severity(ev: AlertEvent) -> str | None:
    """The severity before ``ev`` when ``ev`` changed it, else None.

    Only the engine knows (``AlertEvent.previous_severity``): a time-based escalation
    of an alert that was critical from the start keeps its severity, and inferring
    "warning" there made the Alertmanager sink end a warning that never existed.
    """
    prev = ev.previous_severity
    return prev if prev is not None and prev != ev.severity else None


def event_payload(ev: AlertEvent, region: str | None) -> AlertPayload:
    """The notification payload of ``ev``; ``region`` as resolved by the caller."""
    payload = AlertPayload(
        **alert_view(ev, region),
        event_id=ev.event_id,
        event=ev.event,
        subject=ev.subject,
        started_at_ts=ev.started_at,
        ended_at_ts=ev.ended_at,
        details=dict(ev.details) if ev.details else None,
    )
    prev = previous_severity(ev)
    if prev is not None:
        payload["previous_severity"] = prev
    if ev.escalated:
        payload["escalated"] = True
    return payload


def event_row(ev: AlertEvent, now: float, region: str | None) -> AlertRow:
    """The stored row of the alert as of ``ev`` (one row per alert id, updated per event).

    Args:
        ev: the event.
        now: Unix seconds of the write (``updated_at``).
        region: the branch's region as resolved by the caller.
    """
    return AlertRow(
        alert_id=ev.alert_id,
        kind=ev.kind,
        severity=ev.severity,
        state=ev.state,
        branch=ev.branch,
        zone=zone_of(ev),
        subject=ev.subject,
        region=region,
        started_at=ev.started_at,
        ended_at=ev.ended_at,
        summary=ev.summary,
        value=ev.value,
        threshold=ev.threshold,
        last_event=ev.event,
        escalated=ev.escalated,
        last_notified_at=ev.at,
        revision=ev.revision,
        updated_at=now,
    )


def row_to_alert(row: AlertRow) -> Alert:
    """Rebuild an :class:`Alert` from its stored row (for ``AlertEngine.restore``)."""
    return Alert(
        alert_id=row.alert_id,
        kind=row.kind,
        severity=row.severity,
        state=row.state,
        branch=row.branch,
        subject=row.subject,
        region=row.region,
        started_at=row.started_at,
        ended_at=row.ended_at,
        summary=row.summary or "",
        value=row.value,
        threshold=row.threshold,
        escalated=row.escalated,
        last_notified_at=row.last_notified_at,
        revision=row.revision,
    )
