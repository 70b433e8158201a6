"""Live terminal view of the collector's state (``lobbywatch demo``).

A rich ``Live`` table — branch, zone, people, predicted wait against W1, alert
state — redrawn once a second from the collector's in-memory state. When the
output is not a terminal (a log file, a test) a one-line summary is printed
every few seconds instead, so the output stays readable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from lobbywatch.demo.demo import Demo

#: colour a waiting zone amber from this fraction of the threshold on; a visual
#: cue only; whether managers are warned is the alert engine's decision
NEAR_FRACTION = 0.8
SEVERITY_RANK = {"warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class ZoneRow:
    branch: str
    zone: str
    kind: str
    people: int
    predicted_wait_s: float | None
    threshold_s: float | None
    alert: str | None  # worst firing alert on the zone: "warning" | "critical"
    device_up: bool


def snapshot(collector: Any, now: float) -> list[ZoneRow]:
    """Every zone of every branch, copied under the state lock, sorted."""
    state = collector.state
    timeout = state.heartbeat_timeout_s
    rows = []
    with state.lock:
        for branch in sorted(state.branches):
            alerts: dict[str, int] = {}
            for a in state.alerts_of(branch):
                if str(getattr(a, "state", "firing")) != "firing":
                    continue
                key = str(a.subject)
                alerts[key] = max(alerts.get(key, 0), SEVERITY_RANK.get(str(a.severity), 1))
            devices = {d.device: d.is_up(now, timeout) for d in state.devices_of(branch)}
            zones = sorted(state.zones_of(branch), key=lambda z: (str(z.kind) != "waiting", z.zone))
            for z in zones:
                est = z.estimate
                rank = max(alerts.get(z.zone, 0), alerts.get(z.device, 0))
                rows.append(
                    ZoneRow(
                        branch=branch,
                        zone=z.zone,
                        kind=str(getattr(z.kind, "value", z.kind)),
                        people=z.people,
                        predicted_wait_s=None if est is None else est.predicted_wait_s,
                        threshold_s=z.threshold_s,
                        alert={0: None, 1: "warning", 2: "critical"}[rank],
                        device_up=devices.get(z.device, False),
                    )
                )
    return rows


def fmt_wait(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def wait_style(wait: float | None, threshold: float | None) -> tuple[str, str]:
    """(label, rich style) of a predicted wait against its threshold."""
    if wait is None or threshold is None:
        return "", "dim"
    if wait >= threshold:
        return "over W1", "bold red"
    if wait >= NEAR_FRACTION * threshold:
        return "near W1", "yellow"
    return "ok", "green"


def render(rows: list[ZoneRow], title: str, footer: list[str]) -> Group:
    table = Table(title=title, expand=False, show_lines=False, header_style="bold")
    table.add_column("Branch")
    table.add_column("Zone")
    table.add_column("Kind", style="dim")
    table.add_column("People", justify="right")
    table.add_column("Predicted wait", justify="right")
    table.add_column("W1", justify="right", style="dim")
    table.add_column("Alert")
    previous = None
    for r in rows:
        label, style = wait_style(r.predicted_wait_s, r.threshold_s)
        wait = Text(fmt_wait(r.predicted_wait_s), style=style)
        if label:
            wait.append(f" {label}", style=style)
        alert = Text("—", style="dim")
        if r.alert == "critical":
            alert = Text("CRITICAL", style="bold white on red")
        elif r.alert == "warning":
            alert = Text("warning", style="bold yellow")
        if not r.device_up:
            alert.append(" (device down)", style="red")
        table.add_row(
            r.branch if r.branch != previous else "",
            r.zone,
            r.kind,
            str(r.people),
            wait,
            fmt_wait(r.threshold_s) if r.threshold_s is not None else "—",
            alert,
        )
        previous = r.branch
    if not rows:
        table.add_row("(waiting for the first messages...)", "", "", "", "", "", "")
    parts: list[Any] = [table]
    parts += [Text(line, style="yellow") for line in footer]
    return Group(*parts)


class LiveView:
    """Context manager: a rich Live table on a terminal, summary lines otherwise."""

    def __init__(self, demo: Demo, file: TextIO, summary_every_s: float = 5.0) -> None:
        self.demo = demo
        self.console = Console(file=file)
        self.live: Live | None = None
        self.summary_every_s = summary_every_s
        self._last_summary = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self.live = Live(self._renderable(), console=self.console, auto_refresh=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def _title(self) -> str:
        d = self.demo
        now = d.clock.now()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")
        results = d.collector.state.results if d.collector is not None else {}
        alerts = len(d.collector.state.alerts) if d.collector is not None else 0
        return (
            f"lobbywatch demo — demo clock {stamp} (x{d.clock.speed:g}) — "
            f"{results.get('ok', 0)} messages, {alerts} active alert(s)"
        )

    def _renderable(self) -> Group:
        d = self.demo
        rows = snapshot(d.collector, d.clock.now()) if d.collector is not None else []
        return render(rows, self._title(), d.status_lines())

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._renderable(), refresh=True)
            return
        if time.monotonic() - self._last_summary < self.summary_every_s:
            return
        self._last_summary = time.monotonic()
        d = self.demo
        rows = snapshot(d.collector, d.clock.now()) if d.collector is not None else []
        branches = len({r.branch for r in rows})
        waiting = [r for r in rows if r.kind == "waiting"]
        worst = max(
            (r.predicted_wait_s for r in waiting if r.predicted_wait_s is not None), default=None
        )
        line = (
            f"[status] {self._title()}; {branches} branch(es), {len(rows)} zone(s), "
            f"{sum(r.people for r in waiting)} waiting, worst predicted wait {fmt_wait(worst)}"
        )
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        for problem in d.status_lines():
            self.console.print(f"[status] {problem}", highlight=False, markup=False)
