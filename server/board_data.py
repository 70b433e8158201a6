"""What the lobby board shows, computed from the collector's state and minute history.

* :func:`board_page`: every branch as one row, ordered by risk, filtered and
  paginated, so one request per refresh serves the board at any fleet size.
* :func:`day_series`: one branch's day from the minute history (branch-local
  calendar day) with the same weekday's typical day from the previous four weeks.

Fields other collectors' versions may add (``counters_open``, ``walkouts_today``,
``expected_breach_at``, ``stale``) are read when present and ``None`` otherwise;
the board then shows "—" with the reason.

Risk order: worst projected wait against its threshold first (projected = the
larger of the predicted wait now and the forecast), then open alerts (critical
before warning), then stale or offline branches, then the branch id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lobbywatch.server.notify import iso
from lobbywatch.server.state import (
    CollectorState,
    DeviceRecord,
    NodeKey,
    ZoneRecord,
    silence_limit_s,
)
from lobbywatch.server.store import MinuteRow
from lobbywatch.zone_state import ZoneKind

#: share of the threshold at which a wait is "near W1" (AlertPolicy.warn_fraction default)
NEAR_FRACTION = 0.8
#: forecast minus predicted, as a share of the threshold, below which the trend is flat
TREND_FLAT = 0.05
SEVERITY_RANK = {"warning": 1, "critical": 2}


def level_of(ratio: float | None) -> str:
    """``over`` (>= 1), ``near`` (>= 0.8), ``ok`` or ``unknown`` for wait / threshold."""
    if ratio is None:
        return "unknown"
    if ratio >= 1.0:
        return "over"
    if ratio >= NEAR_FRACTION:
        return "near"
    return "ok"


def trend_of(
    predicted: float | None, forecast: float | None, threshold: float | None
) -> str | None:
    """``up``/``down``/``flat`` from the forecast against the wait now; None if unknown."""
    if predicted is None or forecast is None or not threshold:
        return None
    delta = (forecast - predicted) / threshold
    if delta > TREND_FLAT:
        return "up"
    if delta < -TREND_FLAT:
        return "down"
    return "flat"


def _breach_at(est: Any, threshold: float | None, now: float) -> float | None:
    """The estimator's expected breach time when it has one, else from the trend."""
    at = getattr(est, "breach_expected_at", None)
    if at is None:
        at = getattr(est, "expected_breach_at", None)
    if at is not None:
        return float(at)
    if threshold is None or not hasattr(est, "seconds_to_wait"):
        return None
    ahead = est.seconds_to_wait(threshold)
    return now + float(ahead) if ahead is not None and ahead > 0 else None


def _zone_trust(
    z: ZoneRecord, dev: DeviceRecord | None, now: float, timeout_s: float
) -> tuple[str, float | None]:
    """(trust, since): ``offline``/``stale`` with since when, else ``measured``/``fallback``."""
    if dev is not None and not dev.is_up(now, timeout_s):
        since = dev.node.offline_since if dev.node is not None else None
        return "offline", since if since is not None else (dev.last_ts or None)
    limit = dev.silence_limit_s(timeout_s) if dev is not None else timeout_s
    if getattr(z.estimate, "stale", False) or getattr(z, "stale", False) or now - z.ts >= limit:
        return "stale", z.ts
    method = str(getattr(z.estimate, "method", "") or "")
    if method == "fallback":
        return "fallback", None
    if z.estimate is None:
        return "none", None
    return "measured", None


def _waiting_zone(
    z: ZoneRecord,
    dev: DeviceRecord | None,
    names: dict[str, str],
    counters_configured: int | None,
    alert_ids: list[str],
    now: float,
    timeout_s: float,
) -> dict[str, Any]:
    est = z.estimate
    thr = z.threshold_s
    predicted = getattr(est, "predicted_wait_s", None)
    forecast = getattr(est, "forecast_wait_s", None)
    ordinary = getattr(est, "predicted_wait_ordinary_s", None)
    projected = max((v for v in (predicted, forecast) if v is not None), default=None)
    counters = getattr(est, "counters_open", None)
    # an estimator that reports counters says whether it observed or configured them
    measured = counters is not None and getattr(est, "counters_method", "observed") != "configured"
    trust, since = _zone_trust(z, dev, now, timeout_s)
    return {
        "zone": z.zone,
        "name": names.get(z.zone),
        "people": z.people,
        "predicted_wait_s": predicted,
        # priority customers are called first: the wait of an ordinary one (the one W1
        # judges), shown beside the lobby's when it is half a minute or more longer
        "ordinary_wait_s": (
            ordinary
            if ordinary is not None and predicted is not None and ordinary - predicted >= 30.0
            else None
        ),
        "forecast_wait_s": forecast,
        "forecast_horizon_s": getattr(est, "forecast_horizon_s", None),
        "threshold_s": thr,
        "ratio": projected / thr if projected is not None and thr else None,
        "level": level_of(predicted / thr if predicted is not None and thr else None),
        "trend": trend_of(predicted, forecast, thr),
        "expected_breach_at": iso(_breach_at(est, thr, now)) if est is not None else None,
        "oldest_wait_s": getattr(est, "oldest_wait_s", None),
        "counters_open": counters if counters is not None else counters_configured,
        "counters_source": "measured" if measured else "configured",
        "walkouts_today": getattr(est, "walkouts_today", getattr(z, "walkouts_today", None)),
        "stale_reason": getattr(est, "stale_reason", None),
        "method": getattr(est, "method", None),
        "trust": trust,
        "since": iso(since),
        "observed_at": iso(z.ts),
        "alerts": alert_ids,
    }


@dataclass(frozen=True)
class BranchMeta:
    """Config facts the board shows: display name, zone names, configured counters."""

    name: str | None = None
    zone_names: dict[str, str] | None = None
    counters: int | None = None


def branch_row(
    state: CollectorState,
    branch_id: str,
    meta: BranchMeta,
    now: float,
    alerts: list[Any] | None = None,
) -> dict[str, Any]:
    """One branch of the board (call with ``state.lock`` held).

    ``alerts``: the branch's open alerts when the caller has them indexed.
    """
    b = state.branches[branch_id]
    timeout = state.heartbeat_timeout_s
    zones = state.zones_of(branch_id)
    devices = {(d.camera, d.device): d for d in state.devices_of(branch_id)}
    if alerts is None:
        alerts = state.alerts_of(branch_id)
    by_subject: dict[str, list[str]] = {}
    for a in alerts:
        by_subject.setdefault(str(a.subject), []).append(str(a.alert_id))
    names = meta.zone_names or {}
    waiting = []
    others = []
    for z in sorted(zones, key=lambda z: z.zone):
        dev = devices.get((z.camera, z.device))
        if z.kind == ZoneKind.WAITING:
            waiting.append(
                _waiting_zone(
                    z, dev, names, meta.counters, by_subject.get(z.zone, []), now, timeout
                )
            )
        else:
            others.append(
                {
                    "zone": z.zone,
                    "name": names.get(z.zone),
                    "kind": str(z.kind),
                    "people": z.people,
                    "observed_at": iso(z.ts),
                }
            )
    down = [d for d in devices.values() if not d.is_up(now, timeout)]
    ratios = [w["ratio"] for w in waiting if w["ratio"] is not None]
    worst_alert = max((SEVERITY_RANK.get(str(a.severity), 1) for a in alerts), default=0)
    stale = [w for w in waiting if w["trust"] in ("stale", "offline")]
    stale_since = min((w["since"] for w in stale if w["since"]), default=None)
    return {
        "id": b.id,
        "name": meta.name,
        "region": b.region,
        "timezone": b.timezone,
        "worst_ratio": max(ratios) if ratios else None,
        "level": level_of(max(ratios) if ratios else None),
        "people_waiting": sum(w["people"] for w in waiting),
        "active_alerts": len(alerts),
        "worst_alert_severity": {0: None, 1: "warning", 2: "critical"}[worst_alert],
        "stale": bool(stale) or bool(down),
        "stale_since": stale_since,
        "devices_up": len(devices) - len(down),
        "devices_total": len(devices),
        "waiting": waiting,
        "service_points": {
            "zones": len(others),
            "people": sum(o["people"] for o in others),
            "list": others,
        },
        "_alert_rank": worst_alert,
    }


def risk_of(
    state: CollectorState, branch_id: str, alerts: list[Any], now: float
) -> tuple[float, int, int, str]:
    """The :func:`risk_key` of a branch without building its row (every branch, each poll)."""
    timeout = state.heartbeat_timeout_s
    worst: float | None = None
    stale = False
    for z in state.branch_zones.get(branch_id, {}).values():
        if z.kind != ZoneKind.WAITING:
            continue
        thr = z.threshold_s
        est = z.estimate
        if thr and est is not None:
            vals = [v for v in (est.predicted_wait_s, est.forecast_wait_s) if v is not None]
            if vals:
                r = max(vals) / thr
                worst = r if worst is None or r > worst else worst
        node = state.nodes.get(NodeKey(z.branch, z.device))
        limit = silence_limit_s(timeout, node.heartbeat_s if node is not None else None)
        if now - z.ts >= limit or getattr(est, "stale", False):
            stale = True
    if not stale:
        stale = any(not d.is_up(now, timeout) for d in state.devices_of(branch_id))
    rank = max((SEVERITY_RANK.get(str(a.severity), 1) for a in alerts), default=0)
    return (-(worst if worst is not None else -1.0), -rank, -int(stale), branch_id)


def risk_key(row: dict[str, Any]) -> tuple[float, int, int, str]:
    """Sort key: worst projected wait/threshold, alerts, stale, id (riskiest first)."""
    ratio = row["worst_ratio"]
    return (-(ratio if ratio is not None else -1.0), -row["_alert_rank"], -row["stale"], row["id"])


def board_page(
    state: CollectorState,
    meta: dict[str, BranchMeta],
    now: float,
    *,
    region: str | None = None,
    search: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    """The board's one response: a page of branches by risk, the alerts, fleet counts.

    Args:
        state: collector state; the lock is taken here.
        meta: branch id -> config facts (missing: branch only seen on MQTT).
        now: UTC epoch seconds.
        region: only this region.
        search: case-insensitive substring of the branch id or name.
        page, per_page: 1-based page of ``per_page`` branches.
    """
    needle = (search or "").strip().casefold()
    empty = BranchMeta()
    with state.lock:
        regions = sorted({b.region for b in state.branches.values()})
        ids = [
            bid
            for bid, b in state.branches.items()
            if (region is None or b.region == region)
            and (
                not needle
                or needle in bid.casefold()
                or needle in ((meta.get(bid) or empty).name or "").casefold()
            )
        ]
        wanted = set(ids)
        by_branch: dict[str, list[Any]] = {}
        for a in state.alerts.values():
            if a.branch in wanted:
                by_branch.setdefault(a.branch, []).append(a)
        alerts = [a for group in by_branch.values() for a in group]
        keys = sorted(risk_of(state, bid, by_branch.get(bid, []), now) for bid in ids)
        start = (page - 1) * per_page
        shown = [
            branch_row(state, k[3], meta.get(k[3]) or empty, now, by_branch.get(k[3], []))
            for k in keys[start : start + per_page]
        ]
        newest = max((z.ts for z in state.zones.values()), default=None)
    for r in shown:
        del r["_alert_rank"]
    counts = {
        "branches": len(keys),
        # projected wait (now or forecast) against the threshold
        "over": sum(-k[0] >= 1.0 for k in keys),
        "near": sum(NEAR_FRACTION <= -k[0] < 1.0 for k in keys),
        "alerts": len(alerts),
        "stale": sum(k[2] != 0 for k in keys),
    }
    return {
        "now": iso(now),
        "data_time": iso(newest),
        "page": page,
        "per_page": per_page,
        "total": len(keys),
        "regions": regions,
        "counts": counts,
        "alerts": alerts,
        "branches": shown,
    }


# ------------------------------------------------------------------ day charts


def local_day_bounds(day: date, tz: str) -> tuple[float, float]:
    """UTC epoch seconds of local midnight at the start and end of ``day`` in ``tz``."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.timestamp(), end.timestamp()


#: minute-row fields charted on the branch page (``walk_outs`` and ``counters_open`` only
#: when the collector records them)
SERIES = (
    "queue_length_avg",
    "predicted_wait_s_avg",
    "realised_wait_p50_s",
    "served_within_threshold_ratio",
    "walk_outs",
    "counters_open",
)
BAND_BUCKET_S = 900


def _pct(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted ``values`` (numpy's default method)."""
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _bucket_rows(rows: Iterable[MinuteRow], start: float) -> dict[str, dict[int, list[float]]]:
    out: dict[str, dict[int, list[float]]] = {k: {} for k in SERIES}
    for r in rows:
        b = int((r.minute - start) // BAND_BUCKET_S)
        for k in SERIES:
            v = getattr(r, k, None)
            if v is not None:
                out[k].setdefault(b, []).append(float(v))
    return out


def day_series(
    rows_today: list[MinuteRow],
    rows_past: list[tuple[float, list[MinuteRow]]],
    start: float,
) -> dict[str, Any]:
    """Series of one zone for one local day, with the typical-day band.

    Args:
        rows_today: minute rows of the day (any order).
        rows_past: (local midnight, rows) of the same weekday in earlier weeks.
        start: local midnight of the day, UTC epoch seconds.

    Returns:
        ``{"t": [minute offsets, s], <series>: [values or None], "band": {<series>:
        {"t": [bucket start offsets], "lo": [...], "hi": [...]}}, "threshold_s"}``;
        the band spans the 10th to 90th percentile of the earlier weeks' minute
        values in each 15-minute slot of the day (where a typical day lies).
    """
    rows = sorted(rows_today, key=lambda r: r.minute)
    out: dict[str, Any] = {"t": [r.minute - start for r in rows]}
    for k in SERIES:
        vals = [getattr(r, k, None) for r in rows]
        out[k] = vals if any(v is not None for v in vals) else None
    thr = [r.threshold_s for r in rows if r.threshold_s is not None]
    out["threshold_s"] = thr[-1] if thr else None
    band: dict[str, Any] = {}
    if rows_past:
        weeks = [_bucket_rows(rs, s) for s, rs in rows_past]
        for k in SERIES:
            buckets = sorted({b for w in weeks for b in w[k]})
            if not buckets:
                continue
            lo, hi = [], []
            for b in buckets:
                values = sorted(v for w in weeks for v in w[k].get(b, []))
                lo.append(_pct(values, 0.1))
                hi.append(_pct(values, 0.9))
            band[k] = {"t": [b * BAND_BUCKET_S for b in buckets], "lo": lo, "hi": hi}
    out["band"] = band
    out["points"] = len(rows)
    return out
