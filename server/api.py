"""HTTP API of the collector (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

Read-only: current state from memory (copied under the state lock), history and
aggregates from the store. Times are ISO 8601 UTC strings; durations seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, Field

from lobbywatch import __version__
from lobbywatch.server.alert_records import alert_view, row_view
from lobbywatch.server.alerts import Alert
from lobbywatch.server.auth import Authenticator, install_auth
from lobbywatch.server.notify import iso
from lobbywatch.server.state import DeviceRecord, ZoneRecord
from lobbywatch.server.store import AlertRow, MinuteRow
from lobbywatch.zone_state import ZONE_STATE_FIELDS, ZoneKind

if TYPE_CHECKING:
    from lobbywatch.server.collector import Collector

SEVERITY_RANK = {"warning": 1, "critical": 2}
#: largest epoch a time parameter may name (year 2100): beyond it the databases overflow
MAX_EPOCH_S = 4_102_444_800.0
#: largest history offset (a 64-bit OFFSET overflowed SQLite's and psycopg's integers)
MAX_OFFSET = 1_000_000_000
_WORST: dict[int, Literal["warning", "critical"] | None] = {0: None, 1: "warning", 2: "critical"}


class EstimateOut(BaseModel):
    queue_length: int
    predicted_wait_s: float | None = Field(description="wait for a customer joining now")
    forecast_wait_s: float | None
    forecast_horizon_s: float
    service_rate_per_s: float | None
    method: str = Field(description="observed | fallback (configured counters)")
    realised_wait_p50_s: float | None
    realised_wait_p90_s: float | None
    oldest_wait_s: float | None
    served_within_threshold_ratio: float | None
    stale: bool = Field(
        False, description="the zone's device or camera is offline or down: numbers not current"
    )
    stale_reason: str | None = None
    counters_open: int | None = Field(None, description="counters in the capacity")
    counters_method: str | None = Field(
        None, description="observed (service points occupied while people waited) | configured"
    )
    predicted_wait_ordinary_s: float | None = Field(
        None, description="wait of an ordinary customer joining now (priority served first)"
    )
    predicted_wait_priority_s: float | None = None
    predicted_wait_one_more_counter_s: float | None = Field(
        None,
        description="the wait with one more counter open, for a customer who stays however "
        "long (set against potential_wait_s, as in the W1 alert's advice)",
    )
    breach_expected_at: str | None = Field(
        None, description="when the projection expects the W1 threshold to be crossed"
    )
    projected_waits_s: list[float] | None = Field(
        None, description="projected wait of a customer joining at each projection step"
    )
    projection_step_s: float | None = None
    priority_share: float | None = Field(
        None, description="share of priority arrivals in the class-aware waits"
    )
    priority_share_method: str | None = Field(
        None, description="tickets (learned from a ticket system) | configured"
    )
    priority_share_tickets: int | None = Field(
        None, description="tickets issued in the share window (null: no ticket system)"
    )
    ticket_wait_ordinary_p50_s: float | None = Field(
        None, description="realised waits (ticket issued -> called) of ordinary tickets"
    )
    ticket_wait_ordinary_p90_s: float | None = None
    ticket_waits_ordinary: int | None = Field(
        None, description="ordinary tickets called in the ticket wait window"
    )
    ticket_wait_priority_p50_s: float | None = None
    ticket_wait_priority_p90_s: float | None = None
    ticket_waits_priority: int | None = None
    tickets_open_ordinary: int | None = Field(
        None, description="tickets issued, not yet called or cancelled"
    )
    tickets_open_priority: int | None = None
    calibration_factor: float | None = Field(
        None, description="kappa: the correction from realised waits in the predictions"
    )
    calibration_source: str | None = Field(
        None, description="tickets (realised ticket waits) | camera (completed dwells)"
    )
    calibration_level_factor: float | None = Field(
        None,
        description="the calibration by level on top of kappa, for the wait shown "
        "(null: no bands, or tickets as the source)",
    )
    potential_wait_s: float | None = Field(
        None,
        description="the wait of a customer who stays however long, what W1 judges; "
        "predicted_wait_s is a served customer's (null: the same)",
    )
    potential_wait_ordinary_s: float | None = None


#: estimate fields copied to the API as they are (all optional there)
_TICKET_FIELDS = (
    "priority_share",
    "priority_share_method",
    "priority_share_tickets",
    "ticket_wait_ordinary_p50_s",
    "ticket_wait_ordinary_p90_s",
    "ticket_waits_ordinary",
    "ticket_wait_priority_p50_s",
    "ticket_wait_priority_p90_s",
    "ticket_waits_priority",
    "tickets_open_ordinary",
    "tickets_open_priority",
    "calibration_factor",
    "calibration_source",
    "calibration_level_factor",
    "potential_wait_s",
    "potential_wait_ordinary_s",
)


class ZoneOut(BaseModel):
    zone: str
    camera: str
    kind: str
    blueprint: str | None
    device: str
    people: int
    raw_count: int
    dwell_p50_s: float | None
    dwell_p90_s: float | None
    dwell_max_s: float | None
    arrivals_total: int
    departures_total: int
    service_starts_total: int | None = Field(
        None, description="waiting zones with flows: departures into a service point"
    )
    walk_outs_total: int | None = Field(
        None, description="waiting zones with flows: departures through an exit, unserved"
    )
    departures_unseen_total: int | None = Field(
        None, description="waiting zones with flows: departures to an unseen destination"
    )
    observed_at: str | None
    wait_threshold_s: float | None = Field(description="W1 threshold in force (policy)")
    estimate: EstimateOut | None = Field(None, description="waiting zones only")


class DeviceOut(BaseModel):
    device: str
    camera: str
    up: bool
    status: str = Field(description="online | offline | unknown (this camera's status)")
    device_status: str = Field(
        description="online | offline | unknown: the device-level status (offline after "
        "its MQTT last will); a camera is up only while its device is not offline"
    )
    last_message_at: str | None
    last_message_age_s: float | None
    camera_up: bool | None
    fps: float | None
    error: str | None
    model: str | None
    software: str | None
    seq_gaps: int = Field(
        0, description="sequence numbers of this device never received (lost messages)"
    )


class AlertOut(BaseModel):
    alert_id: str
    kind: str
    severity: str
    state: str
    branch: str
    region: str | None
    zone: str | None = Field(description="zone of w1_wait/service_stalled alerts")
    device: str | None = Field(description="device of device_offline alerts")
    started_at: str | None
    ended_at: str | None
    summary: str | None
    value: float | None
    threshold: float | None


class BranchSummary(BaseModel):
    id: str
    region: str
    timezone: str
    configured: bool = Field(description="false: seen on MQTT but not in SERVER.yaml")
    zones: int
    people_waiting: int
    max_predicted_wait_s: float | None
    devices_up: int
    devices_total: int
    active_alerts: int
    worst_alert_severity: Literal["warning", "critical"] | None


class BranchDetail(BranchSummary):
    zone_states: list[ZoneOut]
    devices: list[DeviceOut]
    alerts: list[AlertOut]


class MinuteOut(BaseModel):
    branch: str
    zone: str
    minute: str
    samples: int
    queue_length_avg: float
    queue_length_max: int
    predicted_wait_s_avg: float | None
    forecast_wait_s_avg: float | None
    realised_wait_p50_s: float | None
    realised_wait_p90_s: float | None
    served: int
    served_within_threshold: int
    served_within_threshold_ratio: float | None
    threshold_s: float | None
    arrivals: int | None = Field(None, description="confirmed entries into the zone")
    service_starts: int | None = Field(
        None, description="departures into a service point (null: the edge does not classify)"
    )
    walk_outs: int | None = Field(
        None, description="departures through an exit without service (abandonment)"
    )
    departures_unseen: int | None = Field(
        None, description="departures whose destination the camera did not see"
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    mqtt_connected: bool
    database: bool
    reason: str | None = Field(None, description="why the status is degraded")
    role: Literal["single", "active", "standby"] = Field(
        "single", description="active/standby within the collector's cluster.partition"
    )
    alert_events_spooled: int = Field(0, description="alert events waiting for the database")
    queue_messages: int
    messages_total: int = Field(description="MQTT messages processed so far (all results)")
    last_batch_age_s: float | None
    uptime_s: float = Field(
        description="real seconds since the API started (a monotonic clock, not the "
        "collector's clock, which a replay or the demo's warm-up may run fast)"
    )


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def zone_out(z: ZoneRecord) -> ZoneOut:
    e = z.estimate
    est = None
    if e is not None:
        est = EstimateOut(
            queue_length=e.queue_length,
            predicted_wait_s=_f(e.predicted_wait_s),
            forecast_wait_s=_f(e.forecast_wait_s),
            forecast_horizon_s=float(e.forecast_horizon_s),
            service_rate_per_s=_f(e.service_rate_per_s),
            method=str(e.method),
            realised_wait_p50_s=_f(e.realised_wait_p50_s),
            realised_wait_p90_s=_f(e.realised_wait_p90_s),
            oldest_wait_s=_f(e.oldest_wait_s),
            served_within_threshold_ratio=_f(e.served_within_threshold_ratio),
            stale=bool(getattr(e, "stale", False)),
            stale_reason=getattr(e, "stale_reason", None),
            counters_open=getattr(e, "counters_open", None),
            counters_method=getattr(e, "counters_method", None),
            predicted_wait_ordinary_s=_f(getattr(e, "predicted_wait_ordinary_s", None)),
            predicted_wait_priority_s=_f(getattr(e, "predicted_wait_priority_s", None)),
            predicted_wait_one_more_counter_s=_f(
                getattr(e, "predicted_wait_one_more_counter_s", None)
            ),
            breach_expected_at=iso(getattr(e, "breach_expected_at", None)),
            projected_waits_s=(
                list(e.projected_waits_s) if getattr(e, "projected_waits_s", None) else None
            ),
            projection_step_s=_f(getattr(e, "projection_step_s", None)),
            **{name: getattr(e, name, None) for name in _TICKET_FIELDS},
        )
    # the one collector -> API conversion: the shared zone fields by name
    return ZoneOut(
        zone=z.zone,
        camera=z.camera,
        device=z.device,
        observed_at=iso(z.ts),
        wait_threshold_s=z.threshold_s,
        estimate=est,
        **{name: getattr(z, name) for name in ZONE_STATE_FIELDS},
    )


def device_out(d: DeviceRecord, now: float, timeout_s: float) -> DeviceOut:
    seen = d.last_ts > 0
    return DeviceOut(
        device=d.device,
        camera=d.camera,
        up=d.is_up(now, timeout_s),
        status=d.status,
        device_status=d.node.status if d.node is not None else "unknown",
        last_message_at=iso(d.last_ts) if seen else None,
        last_message_age_s=max(0.0, now - d.last_ts) if seen else None,
        camera_up=d.camera_up,
        fps=d.fps,
        error=d.error,
        model=d.model,
        software=d.software,
        seq_gaps=d.node.seq_gaps if d.node is not None else 0,
    )


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(**alert_view(a, a.region))


def minute_out(r: MinuteRow) -> MinuteOut:
    d = {k: getattr(r, k) for k in MinuteOut.model_fields if k != "minute"}
    return MinuteOut(minute=iso(float(r.minute)) or "", **d)


def create_app(collector: Collector) -> FastAPI:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(
        title="lobbywatch collector",
        version=__version__,
        description="Current queue state of every branch, W1 alerts and their history. "
        "Prometheus metrics at /metrics.",
    )
    state = collector.state
    booted = time.monotonic()

    def summary(branch_id: str, now: float) -> BranchDetail:
        b = state.branches[branch_id]
        zones = state.zones_of(branch_id)
        devices = state.devices_of(branch_id)
        alerts = state.alerts_of(branch_id)
        waiting = [z for z in zones if z.kind == ZoneKind.WAITING]
        preds = [
            z.estimate.predicted_wait_s
            for z in waiting
            if z.estimate is not None and z.estimate.predicted_wait_s is not None
        ]
        worst = max((SEVERITY_RANK.get(str(a.severity), 1) for a in alerts), default=0)
        timeout = state.heartbeat_timeout_s
        return BranchDetail(
            id=b.id,
            region=b.region,
            timezone=b.timezone,
            configured=b.configured,
            zones=len(zones),
            people_waiting=sum(z.people for z in waiting),
            max_predicted_wait_s=max(preds) if preds else None,
            devices_up=sum(1 for d in devices if d.is_up(now, timeout)),
            devices_total=len(devices),
            active_alerts=len(alerts),
            worst_alert_severity=_WORST[worst],
            zone_states=[zone_out(z) for z in sorted(zones, key=lambda z: z.zone)],
            devices=[
                device_out(d, now, timeout)
                for d in sorted(devices, key=lambda d: (d.camera, d.device))
            ],
            alerts=[alert_out(a) for a in sorted(alerts, key=lambda a: str(a.alert_id))],
        )

    @app.get("/api/v1/branches", response_model=list[BranchSummary], tags=["state"])
    def list_branches(region: str | None = None) -> list[BranchSummary]:
        """Every known branch (configured or seen on MQTT) with a one-line status."""
        now = collector.clock()
        with state.lock:
            ids = sorted(b for b, r in state.branches.items() if region in (None, r.region))
            out = [summary(b, now) for b in ids]
        return [BranchSummary.model_validate(d.model_dump()) for d in out]

    @app.get("/api/v1/branches/{branch_id}", response_model=BranchDetail, tags=["state"])
    def get_branch(branch_id: str) -> BranchDetail:
        """One branch: every zone's newest state and estimate, its devices and open alerts."""
        now = collector.clock()
        with state.lock:
            if branch_id not in state.branches:
                raise HTTPException(404, f"unknown branch {branch_id!r}")
            return summary(branch_id, now)

    @app.get(
        "/api/v1/branches/{branch_id}/minutes", response_model=list[MinuteOut], tags=["history"]
    )
    def branch_minutes(
        branch_id: str,
        zone: str | None = None,
        since: float | None = Query(
            None, description="UTC epoch seconds", ge=0, le=MAX_EPOCH_S, allow_inf_nan=False
        ),
        limit: int = Query(1440, ge=1, le=100_000),
    ) -> list[MinuteOut]:
        """Per-zone minute aggregates, newest first."""
        return [minute_out(r) for r in collector.store.minutes(branch_id, zone, since, limit)]

    @app.get("/api/v1/alerts", response_model=list[AlertOut], tags=["alerts"])
    def list_alerts(
        active: bool = Query(True, description="true: firing now (memory); false: resolved"),
        branch: str | None = None,
        region: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
    ) -> list[AlertOut]:
        """Firing alerts (``active=true``) or the most recently resolved ones."""
        if active:
            with state.lock:
                alerts = [
                    a
                    for a in state.alerts.values()
                    if branch in (None, a.branch)
                    and region in (None, a.region or _region(a.branch))
                ]
            alerts.sort(key=lambda a: (a.started_at, a.alert_id))
            return [alert_out(a) for a in alerts[:limit]]
        rows = collector.store.alert_history(
            branch=branch, region=region, active=False, limit=limit
        )
        return [_row_out(r) for r in rows]

    def _region(branch: str) -> str:
        rec = state.branches.get(branch)
        return rec.region if rec else "unknown"

    @app.get("/api/v1/alerts/history", response_model=list[AlertOut], tags=["alerts"])
    def alert_history(
        branch: str | None = None,
        region: str | None = None,
        kind: Literal["w1_wait", "service_stalled", "device_offline"] | None = None,
        since: float | None = Query(
            None,
            description="started at or after (UTC epoch s)",
            ge=0,
            le=MAX_EPOCH_S,
            allow_inf_nan=False,
        ),
        until: float | None = Query(
            None,
            description="started before (UTC epoch s)",
            ge=0,
            le=MAX_EPOCH_S,
            allow_inf_nan=False,
        ),
        limit: int = Query(100, ge=1, le=10_000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> list[AlertOut]:
        """All stored alerts (firing and resolved), newest first."""
        rows = collector.store.alert_history(
            branch=branch,
            region=region,
            kind=kind,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return [_row_out(r) for r in rows]

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(response: Response) -> Health:
        """200 when MQTT is connected, database calls succeed and processing keeps up.

        Never touches the database itself (it answers while the database hangs): the
        database writer's last result and a watchdog on calls in progress decide.
        """
        now = collector.clock()
        mqtt_ok = collector.mqtt.connected.is_set() if collector.mqtt is not None else True
        db_problem = collector.db_health.problem(collector.cfg.database.statement_timeout_s + 2)
        db_ok = db_problem is None
        last = collector.last_batch_at
        depth = len(collector.queue)
        queue_ok = depth < collector.cfg.ingest.queue_max // 2
        ok = mqtt_ok and db_ok and queue_ok
        reasons = [
            *([] if mqtt_ok else ["MQTT not connected"]),
            *([] if db_problem is None else [db_problem]),
            *([] if queue_ok else [f"processing queue {depth} messages deep"]),
        ]
        if not ok:
            response.status_code = 503
        return Health(
            status="ok" if ok else "degraded",
            version=__version__,
            mqtt_connected=mqtt_ok,
            database=db_ok,
            reason="; ".join(reasons) or None,
            role=collector.role,
            alert_events_spooled=len(collector.spool),
            queue_messages=depth,
            messages_total=sum(list(collector.state.results.values())),
            last_batch_age_s=(now - last) if last else None,
            uptime_s=time.monotonic() - booted,
        )

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text exposition (see server/metrics.py for the names)."""
        return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)

    # The lobby board for branches without Grafana: static files polling the
    # JSON API above, served by every collector (not only the demo).
    from lobbywatch.server.board import install_board

    install_board(app, collector)

    from fastapi import Request
    from fastapi.responses import JSONResponse
    from sqlalchemy.exc import DBAPIError

    @app.exception_handler(DBAPIError)
    def database_unavailable(_request: Request, exc: DBAPIError) -> JSONResponse:
        # history and aggregates come from the database: while it fails, say so (503,
        # retry later) instead of a 500 with a stack trace in the log
        first = (str(exc.orig or exc).strip().splitlines() or [""])[0][:200]
        return JSONResponse(
            {"detail": f"database unavailable: {first}"},
            status_code=503,
            headers={"Retry-After": "10"},
        )

    install_auth(app, authenticator(collector.cfg.http), collector.cfg.http.host_names())
    return app


def authenticator(http: Any) -> Authenticator | None:
    """The configured :class:`Authenticator`, or None when no credentials are configured."""
    import secrets

    from lobbywatch.server.auth import load_credentials

    if http.credentials_file is None:
        return None
    creds = load_credentials(http.credentials_file)
    if http.session_secret_file is not None:
        key = http.session_secret_file.read_bytes().strip()
    else:
        key = secrets.token_bytes(32)  # sessions end with the process
    return Authenticator(
        creds,
        key,
        cookie_secure=http.cookie_secure,
        session_max_age_s=http.session_max_age_s,
    )


def _row_out(r: AlertRow) -> AlertOut:
    return AlertOut(**row_view(r))
