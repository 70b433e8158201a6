"""Static checks of the Grafana provisioning and dashboards in deploy/grafana/.

Every panel query must only use metric names from the metric contract
(collector and edge, see docs/dashboards.md) or from the recording rules in
deploy/prometheus/rules/, must parse as PromQL (checked by the real
``promtool``), and must use the datasource uid pinned in the provisioning
file. The live counterpart, which runs the queries against a real Prometheus
scraping a real collector, is tests/test_deploy_dashboards_live.py; it imports
the helpers below.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"
DATASOURCE_FILE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDER_FILE = DEPLOY / "grafana" / "provisioning" / "dashboards" / "lobbywatch.yaml"
RULES_DIR = DEPLOY / "prometheus" / "rules"
GENERATOR = DEPLOY / "grafana" / "generate_dashboards.py"

# The metric contract between the collector / edge agent and the dashboards.
COLLECTOR_METRICS = {
    "lobbywatch_branch_info",
    "lobbywatch_collector_database_up",
    "lobbywatch_zone_people",
    "lobbywatch_zone_counters_open",
    "lobbywatch_zone_predicted_wait_seconds",
    "lobbywatch_zone_forecast_wait_seconds",
    "lobbywatch_zone_oldest_wait_seconds",
    "lobbywatch_zone_wait_threshold_seconds",
    "lobbywatch_zone_realised_wait_seconds",
    "lobbywatch_zone_service_rate_per_second",
    "lobbywatch_zone_served_within_threshold_ratio",
    "lobbywatch_zone_alert_state",
    "lobbywatch_zone_arrivals_total",
    "lobbywatch_zone_service_starts_total",
    "lobbywatch_zone_walk_outs_total",
    "lobbywatch_zone_departures_unseen_total",
    "lobbywatch_zone_walk_out_ratio",
    "lobbywatch_zone_class_predicted_wait_seconds",
    "lobbywatch_zone_ticket_realised_wait_seconds",
    "lobbywatch_device_up",
    "lobbywatch_device_last_message_timestamp_seconds",
    "lobbywatch_device_last_message_age_seconds",
    "lobbywatch_collector_messages_total",
    "lobbywatch_notifications_total",
    "lobbywatch_alerts_active",
}
EDGE_METRICS = {
    "lobbywatch_edge_frames_processed_total",
    "lobbywatch_edge_frames_dropped_total",
    "lobbywatch_edge_zone_people",
    "lobbywatch_edge_camera_up",
    "lobbywatch_edge_camera_fps",
    "lobbywatch_edge_mqtt_connected",
    "lobbywatch_edge_buffer_depth",
    "lobbywatch_edge_messages_published_total",
    "lobbywatch_edge_messages_dropped_total",
}
HISTOGRAMS = {"lobbywatch_collector_processing_seconds", "lobbywatch_edge_inference_seconds"}
# Series Prometheus makes itself, and Alertmanager's own counter (scraped by
# the `alertmanager` job) used by the stack alerts.
BUILTIN_METRICS = {"up", "alertmanager_notifications_failed_total"}
CONTRACT_METRICS = (
    COLLECTOR_METRICS
    | EDGE_METRICS
    | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

# Values a Grafana variable or macro is replaced with when a query is checked
# or run outside Grafana.
DEFAULT_VARS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "region": ".*",
    "branch": ".*",
}

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every PromQL target of every panel."""
    for panel in all_panels(dash):
        for tgt in panel.get("targets", []):
            if "expr" in tgt:
                yield panel, tgt


def annotation_queries(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for ann in dash.get("annotations", {}).get("list", []):
        if "expr" in ann:
            yield ann


def variable_queries(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(name, query) of query variables, e.g. ``label_values(metric{...}, label)``."""
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            yield var["name"], query


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace ``$var`` / ``${var}`` / ``${var:fmt}`` as Grafana would (raw value)."""
    vals = {**DEFAULT_VARS, **(values or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in vals:
            raise KeyError(f"no value for variable ${name} in {expr!r}")
        return vals[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def label_values_selector(query: str) -> tuple[str, str]:
    """``label_values(sel, label)`` -> (sel, label)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
    if not m:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group(1), m.group(2)


def metric_names(expr: str) -> set[str]:
    """Rough PromQL scan: the metric names an expression selects.

    Strips strings, label matchers, ranges, grouping clauses, durations and
    numbers, then keeps identifiers that are neither keywords nor called as
    functions. Good enough for the expressions we write; it is not a parser
    (``promtool`` checks syntax separately).
    """
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    # Dropping the keyword too leaves `sum by (x) (...)` as `sum (...)`, a call.
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)\b", " ", s)
    s = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if word.lower() in _PROMQL_WORDS:
            continue
        if re.match(r"\s*\(", s[m.end() :]):  # function or aggregation call
            continue
        names.add(word)
    return names


def recording_rule_names() -> set[str]:
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


def pinned_datasource_uid() -> str:
    doc = yaml.safe_load(DATASOURCE_FILE.read_text())
    (ds,) = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    return str(ds["uid"])


# --------------------------------------------------------------------- tests


DASHBOARDS = load_dashboards()


def test_the_three_dashboards_exist() -> None:
    uids = {d["uid"] for d in DASHBOARDS.values()}
    assert uids == {"lobbywatch-fleet", "lobbywatch-branch", "lobbywatch-edge"}
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"


def test_committed_json_matches_the_generator() -> None:
    # The generator is the source; a hand edit of the JSON would be
    # overwritten by the next regeneration, so it must not drift.
    spec = importlib.util.spec_from_file_location("generate_dashboards", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert set(rendered) == set(DASHBOARDS)
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, (
            f"{name} is stale: run .venv/bin/python deploy/grafana/generate_dashboards.py"
        )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_are_unique_and_layout_fits(name: str) -> None:
    dash = DASHBOARDS[name]
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    for p in all_panels(dash):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        assert p.get("title"), f"panel {p['id']} has no title"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_uses_the_pinned_datasource(name: str) -> None:
    uid = pinned_datasource_uid()
    dash = DASHBOARDS[name]
    for panel in all_panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for tgt in panel["targets"]:
            assert tgt["datasource"]["uid"] == uid, (panel["title"], tgt["refId"])
    for ann in annotation_queries(dash):
        assert ann["datasource"]["uid"] == uid, ann["name"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == uid, var["name"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_uses_only_contract_or_recorded_metrics(name: str) -> None:
    allowed = CONTRACT_METRICS | BUILTIN_METRICS | recording_rule_names()
    dash = DASHBOARDS[name]
    exprs = [(p["title"], t["expr"]) for p, t in panel_queries(dash)]
    exprs += [(a["name"], a["expr"]) for a in annotation_queries(dash)]
    exprs += [(n, label_values_selector(q)[0]) for n, q in variable_queries(dash)]
    assert exprs
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        unknown = names - allowed
        assert not unknown, f"{name} / {where}: unknown metrics {unknown} in {expr!r}"


def test_metric_scan_finds_names_and_ignores_syntax() -> None:
    # The scan must be able to flag a wrong name, or the check above is void.
    expr = (
        "histogram_quantile(0.9, sum by (le, zone) (rate(lobbywatch_edge_inference_seconds_bucket"
        '{branch=~"$branch", x="a{b}"}[$__rate_interval]))) / on (zone) group_left (region) '
        "lobbywatch_zone_wat_seconds offset 5m > bool 1e3 or vector(0)"
    )
    assert metric_names(expr) == {
        "lobbywatch_edge_inference_seconds_bucket",
        "lobbywatch_zone_wat_seconds",
    }
    assert metric_names("branch:lobbywatch_device_up:sum{region=~'.*'}") == {
        "branch:lobbywatch_device_up:sum"
    }


def test_recording_and_alert_rules_use_only_contract_metrics() -> None:
    # A typo in a rule would silently produce an empty series (and an empty
    # panel); check the rules' inputs against the same contract.
    allowed = CONTRACT_METRICS | BUILTIN_METRICS | recording_rule_names()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = metric_names(rule["expr"]) - allowed
                assert not unknown, f"{path.name}: {rule.get('record') or rule['alert']}"


def test_all_recording_rules_are_used_by_a_dashboard_or_alert() -> None:
    used: set[str] = set()
    for dash in DASHBOARDS.values():
        used |= {n for _, t in panel_queries(dash) for n in metric_names(t["expr"])}
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                used |= metric_names(rule["expr"])
    unused = recording_rule_names() - used
    assert not unused, f"recording rules nobody reads: {unused}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    # promtool has no "parse this expression" command, but `check rules`
    # parses every recording rule's expr with Prometheus' own parser.
    rules = []
    for name, dash in DASHBOARDS.items():
        exprs = [t["expr"] for _, t in panel_queries(dash)]
        exprs += [a["expr"] for a in annotation_queries(dash)]
        exprs += [label_values_selector(q)[0] for _, q in variable_queries(dash)]
        for i, expr in enumerate(exprs):
            stem = name.removesuffix(".json").replace("-", "_")
            rules.append({"record": f"check:{stem}:q{i}", "expr": substitute(expr)})
    path = tmp_path / "panel-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    out = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(rules)} rules found" in out.stdout


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_region_and_branch_variables(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert set(variables) >= {"region", "branch"}
    assert label_values_selector(variables["region"]["definition"]) == (
        "lobbywatch_branch_info",
        "region",
    )
    sel, label = label_values_selector(variables["branch"]["definition"])
    assert label == "branch"
    assert metric_names(sel) == {"lobbywatch_branch_info"}
    assert '$region"' in sel, "branch must be filtered by the selected region"
    # Every query that filters by branch must honour the variable, so that no
    # panel silently shows another branch.
    for panel, tgt in panel_queries(DASHBOARDS[name]):
        if "branch" in tgt["expr"] and "$branch" not in tgt["expr"]:
            pytest.fail(f"{panel['title']}: mentions branch but ignores $branch")


def test_fleet_table_links_to_the_branch_dashboard() -> None:
    fleet = DASHBOARDS["fleet-overview.json"]
    tables = [p for p in all_panels(fleet) if p["type"] == "table"]
    assert tables
    links = [
        link["url"]
        for t in tables
        for o in t["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert any(
        url.startswith("/d/lobbywatch-branch/") and "var-branch=${__value.raw}" in url
        for url in links
    ), links
    # sortable: the table declares a default sort on an existing column.
    (table,) = tables
    sort_col = table["options"]["sortBy"][0]["displayName"]
    renamed = table["transformations"][1]["options"]["renameByName"].values()
    assert sort_col in renamed


def test_branch_detail_has_alert_history_annotations() -> None:
    anns = list(annotation_queries(DASHBOARDS["branch-detail.json"]))
    assert anns
    assert all(metric_names(a["expr"]) == {"lobbywatch_zone_alert_state"} for a in anns)
    assert all('branch="$branch"' in a["expr"] for a in anns)


def test_edge_health_covers_the_edge_signals() -> None:
    used = {
        n for _, t in panel_queries(DASHBOARDS["edge-health.json"]) for n in metric_names(t["expr"])
    }
    assert {
        "lobbywatch_edge_camera_fps",
        "lobbywatch_edge_inference_seconds_bucket",
        "lobbywatch_edge_camera_up",
        "lobbywatch_edge_mqtt_connected",
        "lobbywatch_edge_buffer_depth",
    } <= used


def test_provisioning_files() -> None:
    ds = yaml.safe_load(DATASOURCE_FILE.read_text())
    assert ds["apiVersion"] == 1
    (prom,) = ds["datasources"]
    assert prom["uid"] == "lobbywatch-prometheus" and prom["type"] == "prometheus"
    prov = yaml.safe_load(PROVIDER_FILE.read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    # The compose file mounts deploy/grafana/dashboards at this path.
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(
        m.split(":")[0] == "./grafana/dashboards" and m.split(":")[1] == provider["options"]["path"]
        for m in mounts
    ), mounts
