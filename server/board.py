"""The lobby board: risk at a glance for branches without Grafana, in English and Chinese.

Plain HTML, CSS and vanilla JavaScript from ``server/static/`` (package data),
no build step and nothing fetched from anywhere but the collector itself.
:func:`install_board` adds to the app that ``lobbywatch.server.api.create_app`` returns:

* ``GET /board/`` the board: one ``GET /api/v1/board`` per refresh (every 5 s),
  whatever the number of branches (branches by risk, paginated, filtered by region
  and search);
* ``GET /board/branch?id=B`` a branch's day in charts (``/api/v1/branches/B/day``
  and the server-drawn SVG charts ``/board/charts/B/ZONE/CHART.svg``);
* ``GET /board/i18n.json`` the message catalogue for the browser's
  ``Accept-Language`` (``/board/i18n/zh-CN.json`` for one language);
* ``GET /board/assets/...`` script and style sheet.

The page's Content-Security-Policy allows only same-origin scripts, styles, images
and requests, so a board left open on a branch screen can never reach out.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import date as _date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lobbywatch.server.alert_texts import alert_context, notice
from lobbywatch.server.board_data import BranchMeta, board_page, day_series, local_day_bounds
from lobbywatch.server.i18n import Translator, catalogue_json, negotiate, normalise
from lobbywatch.server.notify import iso

if TYPE_CHECKING:
    from lobbywatch.server.collector import Collector

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
#: weeks of history behind the typical-day band
TYPICAL_WEEKS = 4


def branch_meta(collector: Collector) -> dict[str, BranchMeta]:
    """Names and configured counters of the configured branches."""
    return {
        b.id: BranchMeta(
            name=b.name,
            zone_names={z: o.name for z, o in b.zones.items() if o.name},
            counters=b.counters,
        )
        for b in collector.cfg.branches
    }


def board_alert(collector: Collector, a: Any, tr: Translator, now: float) -> dict[str, Any]:
    """An open alert as the board lists it, with what its notification says."""
    cfg = collector.cfg
    branch = str(a.branch)
    b = cfg.branch(branch)
    is_device = str(a.kind) == "device_offline"
    zone = None if is_device else str(a.subject)
    started = float(a.started_at)
    estimate = None
    if zone is not None:
        from lobbywatch.server.state import ZoneKey

        rec = collector.state.zones.get(ZoneKey(branch, zone))
        estimate = rec.estimate if rec is not None else None
    payload = {
        "kind": str(a.kind),
        "severity": str(a.severity),
        "state": str(a.state),
        "branch": branch,
        "zone": zone,
        "device": str(a.subject) if is_device else None,
        "value": getattr(a, "value", None),
        "threshold": getattr(a, "threshold", None),
        "started_at_ts": started,
        "details": getattr(a, "details", None),
        "summary": getattr(a, "summary", None),
        "context": alert_context(
            branch_name=b.name if b else None,
            zone_name=cfg.zone_name(branch, zone) if zone else None,
            timezone=b.timezone if b else "UTC",
            locale=tr.locale,
            estimate=estimate,
            threshold_s=getattr(a, "threshold", None),
            counters_configured=cfg.service_for(branch, zone)[0] if zone else None,
            board_url=None,
            now=now,
        ),
    }
    text = notice(payload, tr, now)
    return {
        "alert_id": str(a.alert_id),
        "kind": str(a.kind),
        "severity": str(a.severity),
        "branch": branch,
        "zone": zone,
        "device": payload["device"],
        "started_at": iso(started),
        "open_s": max(0.0, now - started),
        "title": text.title,
        "lines": text.lines,
    }


def _walk_outs_today(collector: Collector, rows: list[dict[str, Any]], now: float) -> None:
    """Fill ``walkouts_today`` from the stored minutes (since local midnight) when recorded."""
    since = {
        r["id"]: local_day_bounds(
            datetime.fromtimestamp(now, ZoneInfo(r["timezone"])).date(), r["timezone"]
        )[0]
        for r in rows
    }
    try:
        totals = collector.store.walk_outs_since(since)
    except Exception:  # the board must render even when the store is down
        return
    for r in rows:
        for z in r["waiting"]:
            if z["walkouts_today"] is None and (r["id"], z["zone"]) in totals:
                z["walkouts_today"] = totals[(r["id"], z["zone"])]


def no_alert_reason(
    collector: Collector, branch: str, zone: dict[str, Any], now: float
) -> str | None:
    """Why a zone at or over its threshold has no W1 alert (None when it has one or is below).

    ``closed`` (outside business hours), ``disabled`` (alerts off for the zone),
    ``stale`` (the figure is not fresh) or ``waiting`` (the rule holds the condition
    for ``min_duration_s`` before firing, so one high reading does not alert).
    """
    if zone["level"] != "over" or zone["alerts"]:
        return None
    if zone["trust"] in ("stale", "offline"):
        return "stale"
    policy = collector.policy_for(branch, zone["zone"])
    if not policy.enabled:
        return "disabled"
    if not collector.engine.is_open(branch, now):
        return "closed"
    return "waiting"


def install_board(app: FastAPI, collector: Collector | None = None, path: str = "/board") -> None:
    """Serve the board under ``path`` on ``app`` (and redirect ``/`` to it if free)."""
    path = "/" + path.strip("/")
    page = STATIC_DIR / "board.html"
    branch_page = STATIC_DIR / "branch.html"
    for f in (page, branch_page):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing (server/static is package data)")

    app.mount(f"{path}/assets", StaticFiles(directory=STATIC_DIR), name="board-assets")

    @app.get(f"{path}/", include_in_schema=False)
    def board_html() -> FileResponse:
        return FileResponse(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get(f"{path}/branch", include_in_schema=False)
    def branch_html() -> FileResponse:
        return FileResponse(
            branch_page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    @app.get(f"{path}/i18n.json", include_in_schema=False)
    def i18n_negotiated(request: Request) -> JSONResponse:
        loc = negotiate(request.headers.get("accept-language"))
        return JSONResponse(catalogue_json(loc), headers={"Vary": "Accept-Language"})

    @app.get(f"{path}/i18n/{{tag}}.json", include_in_schema=False)
    def i18n_one(tag: str) -> JSONResponse:
        return JSONResponse(catalogue_json(normalise(tag)))

    @app.get(path, include_in_schema=False)
    def board_redirect() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    taken = {getattr(r, "path", None) for r in app.routes}
    if "/" not in taken:

        @app.get("/", include_in_schema=False)
        def root_redirect() -> RedirectResponse:
            return RedirectResponse(f"{path}/", status_code=307)

    if collector is None:
        return
    meta = branch_meta(collector)
    state = collector.state

    @app.get("/api/v1/board", tags=["board"])
    def board(
        request: Request,
        region: str | None = None,
        q: str | None = Query(None, max_length=100, description="substring of id or name"),
        page: int = Query(1, ge=1, le=100_000),
        per_page: int = Query(50, ge=1, le=500),
        lang: str | None = Query(None, description="en | zh-CN; default: Accept-Language"),
    ) -> dict[str, Any]:
        """The board's one request per refresh: branches by risk, open alerts, counts."""
        now = collector.clock()
        tr = (
            Translator.of(lang)
            if lang
            else Translator(negotiate(request.headers.get("accept-language")))
        )
        out = board_page(state, meta, now, region=region, search=q, page=page, per_page=per_page)
        with state.lock:
            alerts = [board_alert(collector, a, tr, now) for a in out["alerts"]]
        rank = {"critical": 0, "warning": 1}
        alerts.sort(key=lambda a: (rank.get(a["severity"], 2), a["started_at"] or ""))
        out["alerts"] = alerts[:100]
        _walk_outs_today(collector, out["branches"], now)
        for row in out["branches"]:
            for z in row["waiting"]:
                z["no_alert_reason"] = no_alert_reason(collector, row["id"], z, now)
        return out

    def _branch_tz(branch_id: str) -> str:
        with state.lock:
            rec = state.branches.get(branch_id)
        if rec is None:
            raise HTTPException(404, f"unknown branch {branch_id!r}")
        return rec.timezone

    def _day(branch_id: str, day: str | None) -> tuple[str, date, dict[str, Any]]:
        tz = _branch_tz(branch_id)
        if day is None:
            d = datetime.fromtimestamp(collector.clock(), ZoneInfo(tz)).date()
        else:
            try:
                d = date.fromisoformat(day)
            except ValueError:
                raise HTTPException(422, f"date: {day!r} is not YYYY-MM-DD") from None
        start, end = local_day_bounds(d, tz)
        store = collector.store
        rows = [
            r for r in store.minutes(branch_id, None, since=start, limit=100_000) if r.minute < end
        ]
        past = []
        for w in range(1, TYPICAL_WEEKS + 1):
            ps, pe = local_day_bounds(d - timedelta(days=7 * w), tz)
            pr = [
                r for r in store.minutes(branch_id, None, since=ps, limit=100_000) if r.minute < pe
            ]
            past.append((ps, pr))
        zones: dict[str, Any] = {}
        names = sorted({r.zone for r in rows} | {r.zone for _, pr in past for r in pr})
        with state.lock:
            waiting = {z.zone for z in state.zones_of(branch_id) if str(z.kind) == "waiting"}
        for z in names:
            if waiting and z not in waiting:
                continue
            zones[z] = day_series(
                [r for r in rows if r.zone == z],
                [(ps, [r for r in pr if r.zone == z]) for ps, pr in past],
                start,
            )
        return tz, d, zones

    @app.get("/api/v1/branches/{branch_id}/day", tags=["history"])
    def branch_day(branch_id: str, date: str | None = None) -> dict[str, Any]:
        """One local day of a branch's waiting zones, minute by minute, with the typical band."""
        tz, d, zones = _day(branch_id, date)
        b = collector.cfg.branch(branch_id)
        return {
            "branch": branch_id,
            "name": b.name if b else None,
            "timezone": tz,
            "date": d.isoformat(),
            "typical_weeks": TYPICAL_WEEKS,
            "zones": zones,
        }

    @app.get(f"{path}/report", include_in_schema=False)
    def report_page(
        request: Request,
        date: str | None = None,
        branch: str | None = None,
        region: str | None = None,
        lang: str | None = None,
    ) -> Response:
        """The daily service report as a board page (yesterday by default)."""
        from lobbywatch.server.report import branch_day, branches_for, render_report

        cfg = collector.cfg
        try:
            ids = branches_for(cfg, branch, region)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        first = cfg.branch(ids[0])
        tz = first.timezone if first is not None else "UTC"
        if date is None:
            day = datetime.fromtimestamp(collector.clock(), ZoneInfo(tz)).date() - timedelta(days=1)
        else:
            try:
                day = _date.fromisoformat(date)
            except ValueError:
                raise HTTPException(422, f"date: {date!r} is not YYYY-MM-DD") from None
        tr = (
            Translator.of(lang)
            if lang
            else Translator(negotiate(request.headers.get("accept-language")))
        )
        days = [branch_day(cfg, collector.store, b, day) for b in ids]
        page, _ = render_report(days, tr, collector.clock())
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            # the report page has no script; its one inline style sheet is allowed
            headers={
                "Content-Security-Policy": CSP.replace(
                    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
                ),
                "Cache-Control": "no-cache",
            },
        )

    @app.get(f"{path}/charts/{{branch_id}}/{{zone}}/{{chart}}.svg", include_in_schema=False)
    def chart_svg(branch_id: str, zone: str, chart: str, date: str | None = None) -> Response:
        from lobbywatch.server.charts import CHARTS, render

        if chart not in CHARTS:
            raise HTTPException(404, f"unknown chart {chart!r} (known: {', '.join(CHARTS)})")
        _, _, zones = _day(branch_id, date)
        if zone not in zones:
            raise HTTPException(404, f"no minute history for zone {zone!r} on that day")
        return Response(
            render(zones[zone], chart, "svg"),
            media_type="image/svg+xml",
            headers={"Cache-Control": "max-age=30"},
        )
