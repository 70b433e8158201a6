"""Generate the lobbywatch Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are committed (Grafana's file provider reads them as they are);
this script is their source, so that panel ids, grid positions, the pinned
datasource uid and the variable definitions stay consistent across the three
boards. Edit here, then run::

    .venv/bin/python deploy/grafana/generate_dashboards.py

tests/test_deploy_dashboards.py fails when the committed JSON differs from
what this script produces, and checks every query against the metric
contract and the recording rules (docs/dashboards.md lists the panels).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "lobbywatch-prometheus"}
SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x dashboard schema

FLEET_UID = "lobbywatch-fleet"
BRANCH_UID = "lobbywatch-branch"
EDGE_UID = "lobbywatch-edge"

# Colours for the three alert states the collector exports (0 ok, 1 warning,
# 2 critical), shared by every panel that shows lobbywatch_zone_alert_state.
ALERT_STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "ok", "color": "green", "index": 0},
            "1": {"text": "warning", "color": "orange", "index": 1},
            "2": {"text": "critical", "color": "red", "index": 2},
        },
    }
]
UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]
# Share of the W1 threshold: green below 80 %, orange up to it, red beyond.
W1_RATIO_THRESHOLDS = {
    "mode": "absolute",
    "steps": [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.8},
        {"color": "red", "value": 1},
    ],
}


class Board:
    """Accumulates panels with unique ids and a simple left-to-right layout."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> dict[str, Any]:
        if self._x + w > 24:
            self.newline()
        panel["id"] = self._next_id
        self._next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        panel.setdefault("datasource", DATASOURCE)
        for target in panel.get("targets", []):
            target.setdefault("datasource", DATASOURCE)
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)
        return panel

    def newline(self) -> None:
        self._y += self._row_h
        self._x = 0
        self._row_h = 0

    def row(self, title: str) -> None:
        self.newline()
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.newline()


def target(
    expr: str,
    ref: str = "A",
    legend: str = "__auto",
    instant: bool = False,
    fmt: str = "time_series",
) -> dict[str, Any]:
    return {
        "refId": ref,
        "expr": expr,
        "legendFormat": legend,
        "instant": instant,
        "range": not instant,
        "format": fmt,
        "editorMode": "code",
    }


def alarm_at_one(color: str) -> dict[str, Any]:
    """Thresholds for a count: green at 0, ``color`` from 1 on."""
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": color, "value": 1}],
    }


def stat(
    title: str,
    targets: list[dict[str, Any]],
    unit: str = "none",
    description: str = "",
    thresholds: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    color_mode: str = "value",
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "mappings": mappings or [],
                "thresholds": thresholds
                or {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        },
    }


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    unit: str = "none",
    description: str = "",
    overrides: list[dict[str, Any]] | None = None,
    thresholds: dict[str, Any] | None = None,
    threshold_style: str = "off",
    min_: float | None = 0,
    max_: float | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "min": min_,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 0,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": threshold_style},
        },
        "thresholds": thresholds
        or {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
    }
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def state_timeline(
    title: str, targets: list[dict[str, Any]], mappings: list[dict[str, Any]], description: str = ""
) -> dict[str, Any]:
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "mappings": mappings,
                "color": {"mode": "thresholds"},
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "green", "value": None},
                        {"color": "orange", "value": 1},
                        {"color": "red", "value": 2},
                    ],
                },
                "custom": {"fillOpacity": 80, "lineWidth": 0},
            },
            "overrides": [],
        },
        "options": {
            "showValue": "never",
            "mergeValues": True,
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def table(
    title: str,
    targets: list[dict[str, Any]],
    rename: dict[str, str],
    overrides: list[dict[str, Any]],
    sort_by: str,
    description: str = "",
    exclude: tuple[str, ...] = ("Time",),
) -> dict[str, Any]:
    """Instant queries merged into one row per label set (one per branch/zone)."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": dict.fromkeys(exclude, True),
                    "renameByName": rename,
                    "indexByName": {name: i for i, name in enumerate(rename)},
                },
            },
        ],
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "filterable": True}},
            "overrides": overrides,
        },
        "options": {"showHeader": True, "sortBy": [{"displayName": sort_by, "desc": True}]},
    }


def by_name(name: str, **props: Any) -> dict[str, Any]:
    """A field override matched by (renamed) display name."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k, "value": v} for k, v in props.items()],
    }


def by_regex(regex: str, **props: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [{"id": k, "value": v} for k, v in props.items()],
    }


def threshold_line() -> dict[str, Any]:
    """Style for series that are thresholds rather than measurements."""
    return {
        "drawStyle": "line",
        "lineWidth": 2,
        "lineStyle": {"fill": "dash", "dash": [10, 10]},
        "fillOpacity": 0,
        "showPoints": "never",
    }


def query_variable(
    name: str, label: str, query: str, multi: bool, include_all: bool
) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,  # on time range change: new branches appear without a reload
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if include_all:
        # `.*` rather than the list of values keeps queries short with
        # hundreds of branches.
        var["allValue"] = ".*"
    return var


REGION_VAR = query_variable(
    "region", "Region", "label_values(lobbywatch_branch_info, region)", True, True
)


def branch_var(multi: bool) -> dict[str, Any]:
    # Filtered by region through lobbywatch_branch_info, the only series
    # carrying both labels on the collector.
    return query_variable(
        "branch",
        "Branch",
        'label_values(lobbywatch_branch_info{region=~"$region"}, branch)',
        multi=multi,
        include_all=multi,
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    board: Board,
    variables: list[dict[str, Any]],
    annotations: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
    refresh: str = "30s",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["lobbywatch"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "browser",
        "refresh": refresh,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *(annotations or []),
            ]
        },
        "links": links or [],
        "panels": board.panels,
    }


def dashboard_link(title: str, uid: str, keep_vars: bool = True) -> dict[str, Any]:
    return {
        "title": title,
        "type": "link",
        "url": f"/d/{uid}",
        "icon": "dashboard",
        "includeVars": keep_vars,
        "keepTime": True,
        "targetBlank": False,
        "asDropdown": False,
        "tags": [],
    }


# --------------------------------------------------------------------------- fleet


def fleet_overview() -> dict[str, Any]:
    b = Board()
    sel = 'region=~"$region", branch=~"$branch"'
    b.add(
        stat(
            "Branches",
            [target(f"count(lobbywatch_branch_info{{{sel}}})", instant=True)],
            description="Branches the collector knows in the selected regions.",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Branches over W1",
            [
                target(
                    "count(branch:lobbywatch_zone_predicted_wait_over_threshold:max_ratio"
                    f"{{{sel}}} >= 1) or vector(0)",
                    instant=True,
                )
            ],
            description="Branches where a customer joining now is predicted to wait longer "
            "than the zone's W1 threshold.",
            thresholds=alarm_at_one("red"),
            color_mode="background",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Zone alerts firing",
            [
                target(
                    f"sum(branch:lobbywatch_zone_alert_state:count_firing{{{sel}}})",
                    instant=True,
                )
            ],
            description="(zone, kind) pairs in warning or critical: W1 wait, service "
            "stalled, device offline.",
            thresholds=alarm_at_one("orange"),
            color_mode="background",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Collector alerts by severity (all regions)",
            [
                target(
                    "sum by (severity) (lobbywatch_alerts_active)",
                    legend="{{severity}}",
                    instant=True,
                )
            ],
            description="Open alerts in the collector, whatever the region filter.",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Devices up",
            [
                target(f"sum(branch:lobbywatch_device_up:sum{{{sel}}})", "A", "up", True),
                target(f"sum(branch:lobbywatch_device_up:count{{{sel}}})", "B", "total", True),
            ],
            description="Edge devices (per camera) the collector considers up, of all known.",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "People waiting",
            [target(f"sum(branch:lobbywatch_zone_people_waiting:sum{{{sel}}})", instant=True)],
            description="People in waiting zones across the selected branches.",
        ),
        4,
        4,
    )

    b.row("Branches")
    # Region is left at "All" on the branch board: the branch id alone is
    # unique, and the renamed table column is awkward to reference here.
    link = (
        f"/d/{BRANCH_UID}/lobbywatch-branch-detail"
        "?var-branch=${__value.raw}&${__url_time_range}"
    )
    b.add(
        table(
            "Branches (click a branch for its detail)",
            [
                target(
                    f"branch:lobbywatch_zone_predicted_wait_seconds:max{{{sel}}}",
                    "A",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_wait_threshold_seconds:min{{{sel}}}",
                    "B",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_predicted_wait_over_threshold:max_ratio{{{sel}}}",
                    "C",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_people_waiting:sum{{{sel}}}",
                    "D",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_alert_state:count_firing{{{sel}}}",
                    "E",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_alert_state:max{{{sel}}}",
                    "F",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_device_up:sum{{{sel}}}",
                    "G",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_device_up:count{{{sel}}}",
                    "H",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_served_within_threshold_ratio:min{{{sel}}}",
                    "I",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"branch:lobbywatch_zone_oldest_wait_seconds:max{{{sel}}}",
                    "J",
                    instant=True,
                    fmt="table",
                ),
            ],
            rename={
                "branch": "Branch",
                "region": "Region",
                "Value #C": "Worst % of W1",
                "Value #A": "Worst predicted wait",
                "Value #B": "W1 threshold (strictest zone)",
                "Value #D": "People waiting",
                "Value #E": "Alerts firing",
                "Value #F": "Worst alert",
                "Value #G": "Devices up",
                "Value #H": "Devices",
                "Value #I": "Served within W1 (worst zone)",
                "Value #J": "Longest current wait",
            },
            overrides=[
                by_name(
                    "Branch",
                    links=[{"title": "Branch detail", "url": link, "targetBlank": False}],
                ),
                by_name(
                    "Worst % of W1",
                    unit="percentunit",
                    thresholds=W1_RATIO_THRESHOLDS,
                    **{"custom.cellOptions": {"type": "color-background"}},
                ),
                by_name("Worst predicted wait", unit="s"),
                by_name("W1 threshold (strictest zone)", unit="s"),
                by_name(
                    "Worst alert",
                    mappings=ALERT_STATE_MAPPINGS,
                    **{"custom.cellOptions": {"type": "color-text"}},
                ),
                by_name("Served within W1 (worst zone)", unit="percentunit"),
                by_name("Longest current wait", unit="s"),
            ],
            sort_by="Worst % of W1",
            description="One row per branch; sort by any column. Worst % of W1 is the "
            "highest predicted wait / W1 threshold over the branch's zones.",
            exclude=("Time", "__name__"),
        ),
        24,
        12,
    )

    b.row("Trends")
    b.add(
        timeseries(
            "Worst predicted wait as share of W1 (top 10 branches)",
            [
                target(
                    "topk(10, branch:lobbywatch_zone_predicted_wait_over_threshold:max_ratio"
                    f"{{{sel}}})",
                    legend="{{branch}}",
                )
            ],
            unit="percentunit",
            thresholds=W1_RATIO_THRESHOLDS,
            threshold_style="line",
            description="1 (100 %) is the W1 threshold.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "People waiting per branch (top 10)",
            [
                target(
                    f"topk(10, branch:lobbywatch_zone_people_waiting:sum{{{sel}}})",
                    legend="{{branch}}",
                )
            ],
        ),
        12,
        8,
    )
    b.add(
        {
            "type": "bargauge",
            "title": "Worst predicted wait by branch",
            "description": "Sorted, worst first; the colour is the share of the W1 threshold.",
            "targets": [
                target(
                    f"sort_desc(branch:lobbywatch_zone_predicted_wait_seconds:max{{{sel}}})",
                    legend="{{branch}}",
                    instant=True,
                )
            ],
            "fieldConfig": {
                "defaults": {
                    "unit": "s",
                    "min": 0,
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "green", "value": None},
                            {"color": "orange", "value": 480},
                            {"color": "red", "value": 600},
                        ],
                    },
                },
                "overrides": [],
            },
            "options": {
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        },
        12,
        10,
    )
    b.add(
        timeseries(
            "Zone alerts firing per branch",
            [
                target(
                    f"branch:lobbywatch_zone_alert_state:count_firing{{{sel}}} > 0",
                    legend="{{branch}}",
                )
            ],
            description="Only branches with at least one alert are drawn.",
        ),
        12,
        10,
    )

    b.row("Collector")
    b.add(
        timeseries(
            "MQTT messages by result",
            [
                target(
                    "sum by (result) (rate(lobbywatch_collector_messages_total[$__rate_interval]))",
                    legend="{{result}}",
                )
            ],
            unit="reqps",
            description="Accepted, duplicate and rejected (by reason) messages per second.",
        ),
        8,
        8,
    )
    b.add(
        timeseries(
            "Processing latency",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    "lobbywatch_collector_processing_seconds_bucket[$__rate_interval])))",
                    ref,
                    f"p{int(q * 100)}",
                )
                for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))
            ],
            unit="s",
        ),
        8,
        8,
    )
    b.add(
        timeseries(
            "Notifications by sink and result",
            [
                target(
                    "sum by (sink, result) (increase(lobbywatch_notifications_total"
                    "[$__rate_interval]))",
                    legend="{{sink}} {{result}}",
                )
            ],
            description="Notifications the collector sent (or failed to send) per interval.",
        ),
        8,
        8,
    )

    return dashboard(
        FLEET_UID,
        "lobbywatch / Fleet overview",
        "Every branch: worst predicted wait against its W1 threshold, alerts, devices.",
        b,
        [REGION_VAR, branch_var(multi=True)],
        links=[
            dashboard_link("Branch detail", BRANCH_UID),
            dashboard_link("Edge health", EDGE_UID),
        ],
    )


# --------------------------------------------------------------------------- branch


def branch_detail() -> dict[str, Any]:
    b = Board()
    br = 'branch="$branch"'
    b.add(
        stat(
            "People waiting",
            [target(f"branch:lobbywatch_zone_people_waiting:sum{{{br}}}", instant=True)],
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Worst predicted wait",
            [target(f"branch:lobbywatch_zone_predicted_wait_seconds:max{{{br}}}", instant=True)],
            unit="s",
            description="Predicted wait for a customer joining the worst zone now.",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Worst % of W1",
            [
                target(
                    f"branch:lobbywatch_zone_predicted_wait_over_threshold:max_ratio{{{br}}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            thresholds=W1_RATIO_THRESHOLDS,
            color_mode="background",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "W1 threshold (strictest zone)",
            [target(f"branch:lobbywatch_zone_wait_threshold_seconds:min{{{br}}}", instant=True)],
            unit="s",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Served within W1 (worst zone)",
            [
                target(
                    f"branch:lobbywatch_zone_served_within_threshold_ratio:min{{{br}}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            description="Share of customers whose realised wait was within the threshold.",
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Devices up",
            [
                target(f"branch:lobbywatch_device_up:sum{{{br}}}", "A", "up", True),
                target(f"branch:lobbywatch_device_up:count{{{br}}}", "B", "total", True),
            ],
        ),
        4,
        4,
    )

    b.row("Waiting zones")
    thr_override = by_regex(
        ".*W1 threshold$",
        **{
            "custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
            "custom.lineWidth": 2,
            "color": {"mode": "fixed", "fixedColor": "red"},
        },
    )
    b.add(
        timeseries(
            "People waiting per zone",
            [
                target(
                    f'sum by (zone) (lobbywatch_zone_people{{{br}, kind="waiting"}})',
                    legend="{{zone}}",
                )
            ],
            description="Confirmed people in each waiting zone, summed over cameras.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Predicted wait vs W1 threshold",
            [
                target(
                    f"max by (zone) (lobbywatch_zone_predicted_wait_seconds{{{br}}})",
                    "A",
                    "{{zone}} predicted",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_forecast_wait_seconds{{{br}}})",
                    "B",
                    "{{zone}} forecast",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_wait_threshold_seconds{{{br}}})",
                    "C",
                    "{{zone}} W1 threshold",
                ),
            ],
            unit="s",
            overrides=[
                thr_override,
                by_regex(".*forecast$", **{"custom.lineStyle": {"fill": "dot", "dash": [0, 5]}}),
            ],
            description="Predicted: wait for a customer joining now. Forecast: the same a few "
            "minutes ahead, from the arrivals vs departures trend. Dashed: the W1 threshold.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Realised waits vs W1 threshold",
            [
                target(
                    f"max by (zone, quantile) (lobbywatch_zone_realised_wait_seconds{{{br}}})",
                    "A",
                    "{{zone}} q{{quantile}}",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_wait_threshold_seconds{{{br}}})",
                    "B",
                    "{{zone}} W1 threshold",
                ),
            ],
            unit="s",
            overrides=[thr_override],
            description="Median (q0.5) and 90th percentile (q0.9) of the waits of customers "
            "who recently left the waiting zone.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Longest current wait",
            [
                target(
                    f"max by (zone) (lobbywatch_zone_oldest_wait_seconds{{{br}}})",
                    "A",
                    "{{zone}} oldest",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_wait_threshold_seconds{{{br}}})",
                    "B",
                    "{{zone}} W1 threshold",
                ),
            ],
            unit="s",
            overrides=[thr_override],
            description="How long the person who has waited longest so far has been waiting.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Service rate (customers per minute)",
            [
                target(
                    f"60 * max by (zone) (lobbywatch_zone_service_rate_per_second{{{br}}})",
                    legend="{{zone}}",
                )
            ],
            description="Smoothed departures from the waiting zone, i.e. customers called to "
            "a counter, per minute.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Served within W1 threshold",
            [
                target(
                    f"max by (zone) (lobbywatch_zone_served_within_threshold_ratio{{{br}}})",
                    legend="{{zone}}",
                )
            ],
            unit="percentunit",
            min_=0,
            max_=1,
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Walk-outs (abandonment share)",
            [
                target(
                    f"max by (zone) (lobbywatch_zone_walk_out_ratio{{{br}}})",
                    legend="{{zone}}",
                )
            ],
            unit="percentunit",
            min_=0,
            max_=1,
            description="Share of the customers who left the waiting zone over the last "
            "30 min that walked out through an exit instead of going to a counter "
            "(walk-outs / departures classified by the edge). Only zones whose edge has "
            "service points and exits configured (flows) report it.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Arrivals, service starts and walk-outs (per minute)",
            [
                target(
                    f"60 * sum by (zone) (rate(lobbywatch_zone_arrivals_total{{{br}}}"
                    "[$__rate_interval]))",
                    "A",
                    "{{zone}} arrivals",
                ),
                target(
                    f"60 * sum by (zone) (rate(lobbywatch_zone_service_starts_total{{{br}}}"
                    "[$__rate_interval]))",
                    "B",
                    "{{zone}} service starts",
                ),
                target(
                    f"60 * sum by (zone) (rate(lobbywatch_zone_walk_outs_total{{{br}}}"
                    "[$__rate_interval]))",
                    "C",
                    "{{zone}} walk-outs",
                ),
            ],
            description="Customers joining the queue, called to a counter, and giving up, "
            "per minute, as counted by the edge.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Counters open (seen vs configured)",
            [
                target(
                    f"max by (zone, method) (lobbywatch_zone_counters_open{{{br}}})",
                    legend="{{zone}} ({{method}})",
                )
            ],
            min_=0,
            description="Counters serving each waiting zone: method=observed when seen busy at "
            "its service points while people waited, configured when the collector has no "
            "view of the counters. The predicted wait uses this number.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Waits by class (ticket system)",
            [
                target(
                    f"max by (zone, class) (lobbywatch_zone_class_predicted_wait_seconds{{{br}}})",
                    "A",
                    "{{zone}} {{class}} predicted",
                ),
                target(
                    "max by (zone, class) (lobbywatch_zone_ticket_realised_wait_seconds"
                    f'{{{br},quantile="0.5"}})',
                    "B",
                    "{{zone}} {{class}} realised (tickets, median)",
                ),
            ],
            unit="s",
            description="Predicted wait of a customer joining now by service class (priority "
            "served first), and the median realised wait of the tickets called in the last "
            "hour (issued -> called) where a ticket system is connected. The priority share "
            "behind the class waits is learned from the tickets issued "
            "(lobbywatch_zone_priority_share, method=tickets) or configured.",
        ),
        12,
        8,
    )
    hourly = timeseries(
        "Service level by hour",
        [
            target(
                "avg by (zone) (avg_over_time("
                f"lobbywatch_zone_served_within_threshold_ratio{{{br}}}[1h]))",
                legend="{{zone}}",
            )
        ],
        unit="percentunit",
        min_=0,
        max_=1,
        description="Hourly mean of the share of customers served within the W1 threshold "
        "(one bar per hour), the figure the daily report gives per branch.",
    )
    hourly["interval"] = "1h"
    hourly["fieldConfig"]["defaults"]["custom"].update(drawStyle="bars", fillOpacity=60)
    b.add(hourly, 12, 8)
    b.add(
        timeseries(
            "Expected W1 breach (if the trend holds)",
            [
                target(
                    f"(max by (zone) (lobbywatch_zone_wait_threshold_seconds{{{br}}})"
                    f" - max by (zone) (lobbywatch_zone_predicted_wait_seconds{{{br}}}))"
                    f" / (max by (zone) (deriv(lobbywatch_zone_predicted_wait_seconds{{{br}}}[5m]))"
                    " > 0) > 0",
                    legend="{{zone}}",
                )
            ],
            unit="s",
            description="Seconds until the predicted wait reaches the W1 threshold if it keeps "
            "rising as over the last 5 minutes: (threshold - predicted wait) / its slope. "
            "Drawn only while the wait is rising and below the threshold.",
        ),
        12,
        8,
    )

    b.row("Alerts and service points")
    b.add(
        state_timeline(
            "Alert state per zone",
            [
                target(
                    f"max by (zone, kind) (lobbywatch_zone_alert_state{{{br}}})",
                    legend="{{zone}} {{kind}}",
                )
            ],
            ALERT_STATE_MAPPINGS,
            description="W1 wait, service stalled and device offline, as the collector "
            "evaluates them (0 ok, 1 warning, 2 critical).",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Occupancy of service points",
            [
                target(
                    f'sum by (zone, kind) (lobbywatch_zone_people{{{br}, kind!="waiting"}})',
                    legend="{{zone}} ({{kind}})",
                )
            ],
            description="People at counters, desks and self-service: an occupied counter is "
            "an open counter.",
        ),
        12,
        8,
    )

    b.row("Now")
    b.add(
        table(
            "Zones now",
            [
                target(
                    f"max by (zone) (lobbywatch_zone_predicted_wait_seconds{{{br}}})",
                    "A",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_wait_threshold_seconds{{{br}}})",
                    "B",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f'sum by (zone) (lobbywatch_zone_people{{{br}, kind="waiting"}})',
                    "C",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"max by (zone) (lobbywatch_zone_oldest_wait_seconds{{{br}}})",
                    "D",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"60 * max by (zone) (lobbywatch_zone_service_rate_per_second{{{br}}})",
                    "E",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f'max by (zone) (lobbywatch_zone_alert_state{{{br}, kind="w1_wait"}})',
                    "F",
                    instant=True,
                    fmt="table",
                ),
            ],
            rename={
                "zone": "Zone",
                "Value #C": "People waiting",
                "Value #A": "Predicted wait",
                "Value #B": "W1 threshold",
                "Value #D": "Longest current wait",
                "Value #E": "Served per minute",
                "Value #F": "W1 alert",
            },
            overrides=[
                by_name("Predicted wait", unit="s"),
                by_name("W1 threshold", unit="s"),
                by_name("Longest current wait", unit="s"),
                by_name(
                    "W1 alert",
                    mappings=ALERT_STATE_MAPPINGS,
                    **{"custom.cellOptions": {"type": "color-text"}},
                ),
            ],
            sort_by="Predicted wait",
        ),
        12,
        8,
    )
    b.add(
        table(
            "Devices",
            [
                target(
                    f"max by (device, camera) (lobbywatch_device_up{{{br}}})",
                    "A",
                    instant=True,
                    fmt="table",
                ),
                target(
                    f"min by (device, camera) (lobbywatch_device_last_message_age_seconds{{{br}}})",
                    "B",
                    instant=True,
                    fmt="table",
                ),
            ],
            rename={
                "device": "Device",
                "camera": "Camera",
                "Value #A": "Up",
                "Value #B": "Last message",
            },
            overrides=[
                by_name(
                    "Up", mappings=UP_MAPPINGS, **{"custom.cellOptions": {"type": "color-text"}}
                ),
                by_name("Last message", unit="s"),
            ],
            sort_by="Last message",
            description="As the collector sees them (status messages, last wills, heartbeats).",
        ),
        12,
        8,
    )

    # Alert history from lobbywatch_zone_alert_state (Prometheus) rather than
    # the collector's alert table: Grafana cannot query the collector's
    # database without a plugin, and the gauge changes exactly when an alert
    # opens, escalates or resolves. Grafana draws each run of non-zero samples
    # as one region.
    annotations = [
        {
            "name": "W1 critical",
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "red",
            "expr": f'max by (zone) (lobbywatch_zone_alert_state{{{br}, kind="w1_wait"}}) == 2',
            "step": "1m",
            "titleFormat": "W1 critical",
            "textFormat": "{{zone}}: predicted wait over the W1 threshold",
            "tagKeys": "zone",
            "useValueForTime": False,
        },
        {
            "name": "W1 warning",
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "orange",
            "expr": f'max by (zone) (lobbywatch_zone_alert_state{{{br}, kind="w1_wait"}}) == 1',
            "step": "1m",
            "titleFormat": "W1 warning",
            "textFormat": "{{zone}}: W1 threshold about to be crossed",
            "tagKeys": "zone",
            "useValueForTime": False,
        },
        {
            "name": "Service stalled / device offline",
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "purple",
            "expr": f'max by (zone, kind) (lobbywatch_zone_alert_state{{{br}, kind!="w1_wait"}})'
            " > 0",
            "step": "1m",
            "titleFormat": "{{kind}}",
            "textFormat": "{{zone}}: {{kind}}",
            "tagKeys": "zone,kind",
            "useValueForTime": False,
        },
    ]
    return dashboard(
        BRANCH_UID,
        "lobbywatch / Branch detail",
        "One branch, per zone: people waiting, predicted and realised waits against the W1 "
        "threshold, service rate, alert history.",
        b,
        [REGION_VAR, branch_var(multi=False)],
        annotations=annotations,
        links=[
            dashboard_link("Fleet overview", FLEET_UID),
            dashboard_link("Edge health", EDGE_UID),
        ],
    )


# --------------------------------------------------------------------------- edge


def edge_health() -> dict[str, Any]:
    b = Board()
    # `branch` and `region` are target labels from file_sd (see
    # deploy/prometheus/prometheus.yml); the edge metrics carry no branch.
    sel = 'region=~"$region", branch=~"$branch"'
    b.add(
        stat(
            "Edge boxes scraped",
            [
                target(f'sum(up{{job="lobbywatch-edge", {sel}}})', "A", "up", True),
                target(f'count(up{{job="lobbywatch-edge", {sel}}})', "B", "total", True),
            ],
        ),
        6,
        4,
    )
    b.add(
        stat(
            "MQTT disconnected",
            [
                target(
                    f"count(lobbywatch_edge_mqtt_connected{{{sel}}} == 0) or vector(0)",
                    instant=True,
                )
            ],
            thresholds=alarm_at_one("red"),
            color_mode="background",
        ),
        6,
        4,
    )
    b.add(
        stat(
            "Cameras down",
            [
                target(
                    f"count(lobbywatch_edge_camera_up{{{sel}}} == 0) or vector(0)",
                    instant=True,
                )
            ],
            thresholds=alarm_at_one("red"),
            color_mode="background",
        ),
        6,
        4,
    )
    b.add(
        stat(
            "Buffered messages",
            [target(f"sum(lobbywatch_edge_buffer_depth{{{sel}}})", instant=True)],
            description="Messages waiting in edge buffers for the broker.",
        ),
        6,
        4,
    )

    b.row("Cameras and inference")
    b.add(
        timeseries(
            "Camera fps",
            [target(f"lobbywatch_edge_camera_fps{{{sel}}}", legend="{{device}} {{camera}}")],
            description="Frames per second the detector actually processes per camera.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Inference latency",
            [
                target(
                    f"histogram_quantile({q}, sum by (device, camera, le) (rate("
                    f"lobbywatch_edge_inference_seconds_bucket{{{sel}}}[$__rate_interval])))",
                    ref,
                    f"{{{{device}}}} {{{{camera}}}} p{int(q * 100)}",
                )
                for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))
            ],
            unit="s",
            description="Quantiles from the lobbywatch_edge_inference_seconds histogram.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Frames processed and dropped per second",
            [
                target(
                    "sum by (device, camera) (rate(lobbywatch_edge_frames_processed_total"
                    f"{{{sel}}}[$__rate_interval]))",
                    "A",
                    "{{device}} {{camera}} processed",
                ),
                target(
                    "sum by (device, camera) (rate(lobbywatch_edge_frames_dropped_total"
                    f"{{{sel}}}[$__rate_interval]))",
                    "B",
                    "{{device}} {{camera}} dropped",
                ),
            ],
            unit="fps",
            description="Dropped frames are those the capture thread replaced by a newer one "
            "before the detector took them: normal when the camera is faster than sampling.",
        ),
        12,
        8,
    )
    b.add(
        state_timeline(
            "Camera up",
            [target(f"lobbywatch_edge_camera_up{{{sel}}}", legend="{{device}} {{camera}}")],
            UP_MAPPINGS,
        ),
        12,
        8,
    )

    b.row("MQTT and buffer")
    b.add(
        state_timeline(
            "MQTT connected",
            [target(f"lobbywatch_edge_mqtt_connected{{{sel}}}", legend="{{device}}")],
            UP_MAPPINGS,
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Buffer depth",
            [target(f"lobbywatch_edge_buffer_depth{{{sel}}}", legend="{{device}}")],
            description="Messages held on disk while the broker is unreachable; replayed in "
            "order on reconnect.",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Messages published and dropped per second",
            [
                target(
                    "sum by (device) (rate(lobbywatch_edge_messages_published_total"
                    f"{{{sel}}}[$__rate_interval]))",
                    "A",
                    "{{device}} published",
                ),
                target(
                    "sum by (device, reason) (rate(lobbywatch_edge_messages_dropped_total"
                    f"{{{sel}}}[$__rate_interval]))",
                    "B",
                    "{{device}} dropped ({{reason}})",
                ),
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "People per zone (edge view)",
            [
                target(
                    f"lobbywatch_edge_zone_people{{{sel}}}",
                    legend="{{device}} {{camera}} {{zone}}",
                )
            ],
            description="What each box counts before the collector aggregates.",
        ),
        12,
        8,
    )
    return dashboard(
        EDGE_UID,
        "lobbywatch / Edge health",
        "Edge boxes: camera fps, inference latency, camera and MQTT status, buffer depth.",
        b,
        [REGION_VAR, branch_var(multi=True)],
        links=[
            dashboard_link("Fleet overview", FLEET_UID),
            dashboard_link("Branch detail", BRANCH_UID),
        ],
    )


DASHBOARDS = {
    "fleet-overview.json": fleet_overview,
    "branch-detail.json": branch_detail,
    "edge-health.json": edge_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
