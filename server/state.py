"""In-memory current state of branches, zones and devices held by the collector.

One :class:`CollectorState` is written by the processing thread (in batches,
under its lock) and read by the API and the metrics scrape, which take the same
lock only long enough to copy what they render. Nothing here does I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lobbywatch.edge.state import ZoneKind

#: Message results counted in ``lobbywatch_collector_messages_total{result}``.
RESULTS = (
    "ok",
    "duplicate",
    "malformed",
    "oversized",
    "wrong_version",
    "stale",
    "rejected",
)


class ZoneKey(NamedTuple):
    """A zone is identified by its branch and its id (zone ids are unique per branch)."""

    branch: str
    zone: str


class DeviceKey(NamedTuple):
    branch: str
    camera: str
    device: str


@dataclass(slots=True)
class ZoneRecord:
    """Newest known state of one zone (by message ``(ts, seq)``), plus its estimate."""

    branch: str
    camera: str
    zone: str
    kind: ZoneKind
    blueprint: str | None
    device: str
    people: int
    raw_count: int
    dwell_p50_s: float | None
    dwell_p90_s: float | None
    dwell_max_s: float | None
    arrivals_total: int
    departures_total: int
    device_wait_threshold_s: float | None
    ts: float
    seq: int
    received_at: float
    #: WaitEstimate from the estimator (waiting zones only), None until computed.
    estimate: Any | None = None
    #: W1 threshold in force for this zone (policy), seconds.
    threshold_s: float | None = None


@dataclass(slots=True)
class DeviceRecord:
    """Liveness of one device for one camera (status topics are per camera)."""

    branch: str
    camera: str
    device: str
    #: from the retained status / last will: "online", "offline" or "unknown" (none seen)
    status: str = "unknown"
    status_ts: float = 0.0
    #: newest message timestamp (device clock, UTC epoch seconds), any topic
    last_ts: float = 0.0
    last_seq: int = -1
    received_at: float = 0.0
    camera_up: bool | None = None
    fps: float | None = None
    error: str | None = None
    model: str | None = None
    software: str | None = None

    def is_up(self, now: float, timeout_s: float) -> bool:
        """Up = not declared offline and heard from within the heartbeat timeout."""
        return self.status != "offline" and (now - self.last_ts) < timeout_s


@dataclass(slots=True)
class BranchRecord:
    id: str
    region: str
    timezone: str = "UTC"
    configured: bool = True


@dataclass
class CollectorState:
    """Everything the collector currently knows; guard every access with ``lock``."""

    heartbeat_timeout_s: float = 120.0
    branches: dict[str, BranchRecord] = field(default_factory=dict)
    zones: dict[ZoneKey, ZoneRecord] = field(default_factory=dict)
    devices: dict[DeviceKey, DeviceRecord] = field(default_factory=dict)
    #: active alerts by alert_id (Alert objects from alerts.py)
    alerts: dict[str, Any] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def ensure_branch(self, branch: str, region: str = "unknown") -> BranchRecord:
        rec = self.branches.get(branch)
        if rec is None:
            rec = self.branches[branch] = BranchRecord(branch, region, configured=False)
        return rec

    def zones_of(self, branch: str) -> list[ZoneRecord]:
        return [z for k, z in self.zones.items() if k.branch == branch]

    def devices_of(self, branch: str) -> list[DeviceRecord]:
        return [d for k, d in self.devices.items() if k.branch == branch]

    def alerts_of(self, branch: str) -> list[Any]:
        return [a for a in self.alerts.values() if a.branch == branch]
