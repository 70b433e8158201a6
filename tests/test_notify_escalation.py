"""Time-based escalation against the real Alertmanager and a webhook receiver behind it.

An alert that is critical from the moment it fires and is then escalated by time
must not make the collector push a ``severity=warning`` alert (a warning that never
existed, which receivers saw as "resolved [warning]"). Checked for every event kind,
from the alert engine's own events through the collector's payload and the sink;
the receivers are the real Alertmanager and a webhook receiver it notifies.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for_port
from test_server_support import WebhookReceiver, wait_until

from lobbywatch.server.alerts import AlertEngine, AlertEvent, AlertPolicy
from lobbywatch.server.collector import event_payload
from lobbywatch.server.config import AlertmanagerSink
from lobbywatch.server.estimator import WaitEstimate
from lobbywatch.server.notify import AlertmanagerNotifier

POLICY = AlertPolicy(
    w1_threshold_s=600,
    min_duration_s=0,
    head_min_duration_s=0,
    resolve_after_s=0,
    renotify_s=0,
    escalate_after_s=30,
    stalled_after_s=600,
    heartbeat_timeout_s=60,
    offline_after_s=0,
)
T0 = time.time() - 120  # the alerts started two minutes ago


def est(predicted: float, quiet: float | None = None) -> WaitEstimate:
    return WaitEstimate(
        queue_length=5,
        predicted_wait_s=predicted,
        service_rate_per_s=0.01,
        method="observed",
        realised_wait_p50_s=None,
        realised_wait_p90_s=None,
        oldest_wait_s=None,
        forecast_wait_s=None,
        forecast_horizon_s=300.0,
        served_within_threshold_ratio=None,
        no_departure_for_s=quiet,
    )


def critical_then_escalated(kind: str) -> list[AlertEvent]:
    """Fire ``kind`` as critical at T0, then the time-based escalation 30 s later."""
    eng = AlertEngine(lambda b, z: POLICY, lambda b: None, lambda b: "north")
    events: list[AlertEvent] = []
    if kind == "w1_wait":
        events += eng.evaluate("b1", "W1", est(900), T0)
    elif kind == "service_stalled":
        events += eng.evaluate("b1", "W1", est(100, quiet=700), T0)
    else:
        eng.device_status("b1", "d1", False, T0)
        events += eng.tick(T0)
    events = [e for e in events if e.kind == kind]
    assert [(e.event, e.severity) for e in events] == [("fire", "critical")], events
    events += [e for e in eng.tick(T0 + 31) if e.kind == kind]
    assert [(e.event, e.severity, e.escalated) for e in events[1:]] == [
        ("escalate", "critical", True)
    ]
    return events


@pytest.fixture
def am_with_webhook(tmp_path: Path) -> Iterator[tuple[str, WebhookReceiver]]:
    """The real Alertmanager, notifying a local webhook receiver (resolved ones too)."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager not installed")
    hook = WebhookReceiver().start()
    port = free_port()
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname, branch]\n"
        "  group_wait: 200ms\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: hook\n    webhook_configs:\n"
        f"      - url: {hook.url}\n        send_resolved: true\n"
    )
    (tmp_path / "am").mkdir()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={conf}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=15)
        wait_until(lambda: _ready(url), 15)
        yield url, hook
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        hook.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def notified(hook: WebhookReceiver) -> list[tuple[str, str, str]]:
    """(alert status, alertname, severity) of every alert in every notification."""
    out = []
    for r in list(hook.requests):
        for a in r.json()["alerts"]:
            out.append((a["status"], a["labels"]["alertname"], a["labels"]["severity"]))
    return out


def test_time_based_escalation_of_a_critical_alert_pushes_no_warning(
    am_with_webhook: tuple[str, WebhookReceiver],
) -> None:
    url, hook = am_with_webhook
    sink = AlertmanagerNotifier("am", AlertmanagerSink(url=url, ends_after_s=600))
    kinds = ["w1_wait", "service_stalled", "device_offline"]
    names = {"w1_wait": "LobbywatchW1Wait", "service_stalled": "LobbywatchServiceStalled"}
    names["device_offline"] = "LobbywatchDeviceOffline"
    escalations: list[dict[str, Any]] = []
    for kind in kinds:
        fire, escalate = critical_then_escalated(kind)
        sink.send(event_payload(fire, "north"))
        escalations.append(event_payload(escalate, "north"))
    # every kind's critical reaches the receiver through Alertmanager first
    want = {("firing", names[k], "critical") for k in kinds}
    wait_until(lambda: want <= set(notified(hook)), 20)
    for p in escalations:
        assert "previous_severity" not in p, p
        sink.send(p)
    # a marker alert sent after the escalations: once its notification is in, every
    # notification the escalations could have caused (same group interval) is too
    marker = event_payload(critical_then_escalated("w1_wait")[0], "north")
    marker["branch"] = "marker"
    sink.send(marker)
    wait_until(lambda: any(r.json()["groupLabels"].get("branch") == "marker"
                           for r in list(hook.requests)), 20)  # fmt: skip
    time.sleep(2.5)  # two more group intervals for a late resolved notification
    seen = notified(hook)
    assert all(sev == "critical" for _, _, sev in seen), seen
    assert all(status == "firing" for status, _, _ in seen), seen
    active = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
    assert {a["labels"]["severity"] for a in active} == {"critical"}
    assert len(active) == 4


def test_a_severity_escalation_still_ends_the_warning(
    am_with_webhook: tuple[str, WebhookReceiver],
) -> None:
    """warning → critical: the warning alert is ended (a resolved [warning] is right)."""
    url, hook = am_with_webhook
    policy = POLICY.model_copy(update={"warn_fraction": 0.5, "warn_head_fraction": 0.0})
    eng = AlertEngine(lambda b, z: policy, lambda b: None, lambda b: "north")
    fire = [e for e in eng.evaluate("b1", "W1", est(400), T0) if e.kind == "w1_wait"]
    esc = [e for e in eng.evaluate("b1", "W1", est(900), T0 + 5) if e.kind == "w1_wait"]
    assert [(e.event, e.severity) for e in fire + esc] == [
        ("fire", "warning"),
        ("escalate", "critical"),
    ]
    sink = AlertmanagerNotifier("am", AlertmanagerSink(url=url, ends_after_s=600))
    sink.send(event_payload(fire[0], "north"))
    wait_until(lambda: ("firing", "LobbywatchW1Wait", "warning") in notified(hook), 20)
    p = event_payload(esc[0], "north")
    assert p["previous_severity"] == "warning"
    sink.send(p)
    wait_until(lambda: ("resolved", "LobbywatchW1Wait", "warning") in notified(hook), 20)
    assert ("firing", "LobbywatchW1Wait", "critical") in notified(hook)
