"""The typed alert boundary: engine values to stored rows, notification
payloads and API views, and back from a row to the engine's Alert."""

from __future__ import annotations

import dataclasses
import json

from lobbywatch.server.alert_records import (
    AlertPayload,
    AlertView,
    alert_view,
    event_payload,
    event_row,
    row_to_alert,
    row_view,
)
from lobbywatch.server.alerts import Alert, AlertEvent
from lobbywatch.server.api import AlertOut
from lobbywatch.server.store import AlertRow

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _alert(**kw: object) -> Alert:
    base: dict[str, object] = dict(
        alert_id="b1/W1/w1_wait/1",
        kind="w1_wait",
        severity="critical",
        state="firing",
        branch="b1",
        subject="W1",
        region=None,
        started_at=T0,
        ended_at=None,
        summary="W1 wait 700 s",
        value=700.0,
        threshold=600.0,
        escalated=True,
        last_notified_at=T0 + 60,
        revision=3,
    )
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_event_row_round_trips_to_the_same_alert() -> None:
    alert = _alert()
    ev = AlertEvent.of(alert, "escalate", T0 + 60)
    row = event_row(ev, T0 + 61, "north")
    assert row.last_event == "escalate" and row.revision == 3 and row.zone == "W1"
    assert row.updated_at == T0 + 61 and row.last_notified_at == T0 + 60
    assert row_to_alert(row) == dataclasses.replace(alert, region="north")


def test_escalation_payload_names_the_previous_severity_and_is_json() -> None:
    ev = AlertEvent.of(_alert(), "escalate", T0 + 60, previous_severity="warning")
    p = event_payload(ev, "north")
    assert p["event_id"] == "b1/W1/w1_wait/1#3"
    assert p["previous_severity"] == "warning"
    assert p["started_at"] == "2026-01-01T00:00:00Z" and p["started_at_ts"] == T0
    assert p["zone"] == "W1" and p["device"] is None and p["region"] == "north"
    assert json.loads(json.dumps(p)) == p
    fire = event_payload(
        AlertEvent.of(_alert(severity="warning", escalated=False), "fire", T0), None
    )
    assert "previous_severity" not in fire
    # a time-based escalation keeps the severity: no previous one to end (issue 12)
    timed = event_payload(AlertEvent.of(_alert(), "escalate", T0 + 60), "north")
    assert "previous_severity" not in timed
    # the time-based escalation says so (docs/wait-estimation.md: escalated = true)
    assert timed["escalated"] is True and "escalated" not in fire


def test_device_alert_has_a_device_and_no_zone() -> None:
    dev = _alert(kind="device_offline", subject="edge-7", severity="warning")
    view = alert_view(dev, "south")
    assert view["device"] == "edge-7" and view["zone"] is None
    row = event_row(AlertEvent.of(dev, "fire", T0), T0, "south")
    assert row.zone is None and row_view(row) == view


def test_every_boundary_covers_every_field() -> None:
    """A field added to one side and forgotten on another fails here."""
    assert set(AlertView.__annotations__) == set(AlertOut.model_fields)
    assert set(AlertPayload.__annotations__) >= set(AlertView.__annotations__)
    row_fields = {f.name for f in dataclasses.fields(AlertRow)}
    alert_fields = {f.name for f in dataclasses.fields(Alert)}
    # stored-only: where the row came from; the rest maps one to one
    assert row_fields - alert_fields == {"zone", "last_event", "updated_at"}
    # the advice (``details``) is not stored: it is recomputed at the next evaluation
    assert alert_fields - row_fields == {"details"}
    event = {f.name for f in dataclasses.fields(AlertEvent)}
    assert alert_fields - event == {"last_notified_at"}  # an event carries ``at``
