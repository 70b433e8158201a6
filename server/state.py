"""In-memory current state of branches, zones and devices held by the collector.

One :class:`CollectorState` is written by the processing thread (in batches,
under its lock) and read by the API and the metrics scrape, which take the same
lock only long enough to copy what they render. Nothing here does I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from lobbywatch.server.flows import FlowCounts
from lobbywatch.zone_state import ZoneKind

if TYPE_CHECKING:  # the engine's value type only; state holds no engine
    from lobbywatch.server.alerts import Alert
    from lobbywatch.server.tickets import TicketBook

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

#: Bounded reasons behind a non-ok result, counted in
#: ``lobbywatch_collector_invalid_messages_total{result,reason}``.
REASONS = (
    "topic",  # not a v1 protocol topic (or another root)
    "json",  # not JSON
    "schema",  # JSON, but not a valid protocol message
    "topic_mismatch",  # valid message, but branch/camera/zone/device/type differ from the topic
    "future_timestamp",  # ts more than max_clock_skew_s ahead
    "internal",  # a bug on our side, never the sender's fault
    "oversized",
    "wrong_version",
    "unknown_branch",
    "limit",  # ingest.max_zones_and_devices cap on zones/cameras/devices
    "identity",  # the device may not publish for this branch/camera (server/identity.py)
    "zone_limit",  # per-device cap on zones, or on new zones per minute
    "implausible",  # a cumulative counter jumped further than physically possible
    "unknown_zone",  # a ticket event names a zone that is neither configured nor a seen queue
)


class ZoneKey(NamedTuple):
    """A zone is identified by its branch and its id (zone ids are unique per branch)."""

    branch: str
    zone: str


class DeviceKey(NamedTuple):
    """One camera of one device (camera status and zone topics are per camera)."""

    branch: str
    camera: str
    device: str


class NodeKey(NamedTuple):
    """One edge device (one MQTT connection, one last will, one ``seq`` sequence)."""

    branch: str
    device: str


@dataclass(slots=True)
class NodeRecord:
    """Device-level liveness from ``{root}/v1/{branch}/_device/{device}/status``.

    ``status`` is "online"/"offline" from the device status (the MQTT last will is an
    offline device status with ``will`` true) or "unknown" while none was seen (an
    older edge that publishes camera statuses only). ``last_ts`` is the newest
    observation of any message of the device, for heartbeat timeouts.
    """

    branch: str
    device: str
    status: str = "unknown"
    status_ts: float = 0.0
    #: sequence numbers skipped so far (messages lost between edge and collector)
    seq_gaps: int = 0
    #: receive time of the offline status / will (drives the offline alert's clock)
    offline_since: float | None = None
    will: bool = False
    #: (seq, ts) of the last will applied: the same will delivered twice is a duplicate
    will_key: tuple[int, float] | None = None
    cameras: tuple[str, ...] = ()
    heartbeat_s: float | None = None
    model: str | None = None
    software: str | None = None
    last_ts: float = 0.0
    received_at: float = 0.0

    def is_online(self) -> bool:
        return self.status != "offline"


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
    #: how many times the sending device's numbering restarted before ``seq``
    #: (``(ts, seq)`` orders messages within one numbering only)
    seq_epoch: int = 0
    #: WaitEstimate from the estimator (waiting zones only), None until computed.
    estimate: Any | None = None
    #: W1 threshold in force for this zone (policy), seconds.
    threshold_s: float | None = None
    #: departures by destination as the edge last reported them (None: not classified)
    service_starts_total: int | None = None
    walk_outs_total: int | None = None
    departures_unseen_total: int | None = None
    #: arrivals, service starts, walk-outs as the collector has counted them
    flows: FlowCounts = field(default_factory=FlowCounts)


@dataclass(slots=True)
class DeviceRecord:
    """Liveness of one camera of one device (camera status topics are per camera).

    A camera is live only while its device is online (``node``), its own status is not
    offline nor reports the camera down, and the newest message is within the
    heartbeat timeout.
    """

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
    node: NodeRecord | None = field(default=None, repr=False)

    def is_up(self, now: float, timeout_s: float) -> bool:
        """Up = device online, camera not declared offline or down, heard from recently
        (within :func:`silence_limit_s` of ``timeout_s`` and the announced heartbeat)."""
        node = self.node
        return (
            self.status != "offline"
            and self.camera_up is not False
            and (node is None or node.status != "offline")
            and (now - self.last_ts) < self.silence_limit_s(timeout_s)
        )

    def silence_limit_s(self, timeout_s: float) -> float:
        """:func:`silence_limit_s` for this camera's device."""
        return silence_limit_s(timeout_s, self.node.heartbeat_s if self.node is not None else None)


#: a device that announces its heartbeat (``heartbeat_s`` of its status) is silent
#: once this many heartbeats are missing (docs/protocol.md, StatusMessage)
HEARTBEAT_MISSES = 2.5


def silence_limit_s(timeout_s: float, heartbeat_s: float | None) -> float:
    """How long (s) a device may stay silent before its data counts as stale: the
    collector's ``alerts.heartbeat_timeout_s`` (``timeout_s``), or
    :data:`HEARTBEAT_MISSES` of the heartbeat the device announced when that is
    longer (a device that republishes every 60 s is not silent after 60 s)."""
    if heartbeat_s is None or heartbeat_s <= 0:
        return timeout_s
    return max(timeout_s, HEARTBEAT_MISSES * heartbeat_s)


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
    nodes: dict[NodeKey, NodeRecord] = field(default_factory=dict)
    #: active alerts by alert_id (Alert objects from alerts.py)
    alerts: dict[str, Alert] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    #: (result, reason) -> count for every non-ok, non-duplicate, non-stale message
    invalid: dict[tuple[str, str], int] = field(default_factory=dict)
    #: per-branch indexes of zones and devices (the API reads one branch at a time)
    branch_zones: dict[str, dict[ZoneKey, ZoneRecord]] = field(default_factory=dict)
    branch_devices: dict[str, dict[DeviceKey, DeviceRecord]] = field(default_factory=dict)
    #: ticket-system events (server/tickets.py), set by the ingest
    tickets: TicketBook | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def ensure_branch(self, branch: str, region: str = "unknown") -> BranchRecord:
        rec = self.branches.get(branch)
        if rec is None:
            rec = self.branches[branch] = BranchRecord(branch, region, configured=False)
        return rec

    def add_zone(self, key: ZoneKey, rec: ZoneRecord) -> None:
        self.zones[key] = rec
        self.branch_zones.setdefault(key.branch, {})[key] = rec

    def add_device(self, key: DeviceKey, rec: DeviceRecord) -> None:
        self.devices[key] = rec
        self.branch_devices.setdefault(key.branch, {})[key] = rec

    def zones_of(self, branch: str) -> list[ZoneRecord]:
        return list(self.branch_zones.get(branch, {}).values())

    def devices_of(self, branch: str) -> list[DeviceRecord]:
        return list(self.branch_devices.get(branch, {}).values())

    def nodes_of(self, branch: str) -> list[NodeRecord]:
        return [n for k, n in self.nodes.items() if k.branch == branch]

    def alerts_of(self, branch: str) -> list[Any]:
        return [a for a in self.alerts.values() if a.branch == branch]
