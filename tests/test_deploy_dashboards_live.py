"""Every dashboard query against a real stack: Mosquitto, the collector
(`lobbywatch server run`) fed by the lobby simulator, and Debian's Prometheus
scraping it every second with the shipped recording and alert rules.

Each panel target, annotation and variable query of deploy/grafana/dashboards/
is run through Prometheus' HTTP API with the dashboard variables filled in as
Grafana would. The query must succeed. For the fleet and branch boards it
must also return data, except for the few panels listed in
ALLOWED_EMPTY with the reason why. The edge-health board only gets the "query
succeeds" check: no edge agent runs here, and its metrics come from the edge
boxes (their names are checked statically in test_deploy_dashboards.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Broker, free_port, wait_for_port
from test_deploy_dashboards import (
    DASHBOARDS,
    RULES_DIR,
    annotation_queries,
    label_values_selector,
    panel_queries,
    substitute,
    variable_queries,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

# Simulated branches and the regions the collector config gives them.
BRANCHES = {"sim-b0000": "north", "sim-b0001": "north", "sim-b0002": "south"}
CHOSEN_BRANCH = "sim-b0001"
CHOSEN_REGION = BRANCHES[CHOSEN_BRANCH]

# (dashboard, panel title) that may legitimately be empty with this traffic.
ALLOWED_EMPTY = {
    # Draws only branches with at least one alert (`> 0`); whether the
    # simulated hour raises one depends on the random demand.
    ("fleet-overview.json", "Zone alerts firing per branch"),
    # Counts exist only once the collector has sent a notification.
    ("fleet-overview.json", "Notifications by sink and result"),
    # Drawn only while a predicted wait is rising and still below the threshold.
    ("branch-detail.json", "Expected W1 breach (if the trend holds)"),
}


def _process(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


#: walk-outs per branch in the fed hour, as the edge counted them (set by `stack`)
FED_WALK_OUTS: dict[str, int] = {}


def _feed_simulated_branches(broker: Broker) -> int:
    """Publish one simulated hour (the morning peak) of every branch.

    The simulator's branch-days are dated in the past; the timestamps are
    shifted so the hour ends now, as if the edge boxes had published it live.
    Counters, sequence numbers and dwells are the simulator's own. Customers
    give up after 4-8 min, so the walk-out panels have something to show. Each branch
    has a ticket system too (``simulate --tickets``), for the class-wait panel.
    """
    from lobbywatch.demo import simulator

    patience = simulator.PatienceSettings(share=0.8, min_s=240.0, max_s=480.0)
    scenarios = [
        simulator.scenario(
            "normal",
            int(b.removeprefix("sim-b")),
            seed=3,
            report_interval_s=5.0,
            patience=patience,
        )
        for b in BRANCHES
    ]
    start_h, end_h = 9.5, 10.5
    messages = []
    for msg in simulator.merged_messages(scenarios, status=True, tickets=True):
        sc = scenarios[0]
        hour = (msg.ts.timestamp() - sc.midnight()) / 3600
        if hour > end_h:
            break
        if hour >= start_h or msg.type == "status":
            messages.append(msg)
    first: dict[str, int] = {}
    for m in messages:
        if m.type == "zone" and m.walk_outs_total is not None:
            first.setdefault(m.branch, m.walk_outs_total)
            FED_WALK_OUTS[m.branch] = m.walk_outs_total - first[m.branch]
    shift = time.time() - 1.0 - messages[-1].ts.timestamp()
    rebased = [m.model_copy(update={"ts": m.ts + timedelta(seconds=shift)}) for m in messages]
    return simulator.publish(rebased, host="127.0.0.1", port=broker.port, qos=1, speed=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Broker, collector, simulated traffic and Prometheus; yields Prometheus' URL."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto binary not installed")
    tmp = tmp_path_factory.mktemp("live")
    procs: list[subprocess.Popen[bytes]] = []
    # The conftest `mosquitto` fixture is function-scoped; a module-scoped
    # stack starts its own Broker the same way.
    mq_port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {mq_port} 127.0.0.1\npersistence false\nallow_anonymous true\n")
    broker = Broker(port=mq_port, config_path=conf)
    broker.start()
    try:
        http_port = free_port()
        server_cfg = {
            "mqtt": {"host": "127.0.0.1", "port": mq_port, "shared_group": None},
            "database": {"url": f"sqlite:///{tmp / 'collector.db'}"},
            "http": {"host": "127.0.0.1", "port": http_port},
            "branches": [{"id": b, "region": r} for b, r in BRANCHES.items()],
            "notify": {"sinks": {"log": {"type": "log"}}},
        }
        (tmp / "server.yaml").write_text(yaml.safe_dump(server_cfg))
        collector = _process(
            [
                sys.executable,
                "-m",
                "lobbywatch.cli",
                "server",
                "run",
                "--config",
                str(tmp / "server.yaml"),
            ],
            tmp / "collector.log",
        )
        procs.append(collector)
        wait_for_port(http_port, timeout=30)
        # The collector loads retained state with a plain subscription at
        # start; publishing after it is up exercises the live path.
        assert _feed_simulated_branches(broker) > 1000

        prom_port = free_port()
        prom_cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yml"))],
            "scrape_configs": [
                {
                    "job_name": "lobbywatch-collector",
                    "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
        prom = _process(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--storage.tsdb.retention.time=1h",
            ],
            tmp / "prometheus.log",
        )
        procs.append(prom)
        wait_for_port(prom_port, timeout=30)
        url = f"http://127.0.0.1:{prom_port}"
        _wait_ready(url, prom, tmp / "prometheus.log")
        # Ready when every branch has its recorded headline series.
        deadline = time.monotonic() + 90
        while True:
            got = _instant(url, "branch:lobbywatch_zone_predicted_wait_seconds:max")
            if {r["metric"].get("branch") for r in got} >= set(BRANCHES):
                break
            if time.monotonic() > deadline:
                logs = (tmp / "collector.log").read_text()[-3000:]
                pytest.fail(f"no recorded data in Prometheus after 90 s; collector log:\n{logs}")
            time.sleep(1)
        # A few more evaluations so rate() windows hold several samples.
        time.sleep(5)
        yield url
    finally:
        for proc in reversed(procs):
            _stop(proc)
        broker.stop()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Prometheus answers 503 until its TSDB is open and the config loaded."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"Prometheus not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def _instant(base: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    body = _get(f"{base}/api/v1/query?{query}")
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


# Grafana's values for the board's variables: a chosen region and branch as
# a user would pick them, $__rate_interval as Grafana computes it for a 1 s
# scrape interval (4 x scrape interval, at least).
VARIABLES = {
    "fleet-overview.json": {"region": CHOSEN_REGION, "branch": ".*"},
    "branch-detail.json": {"region": CHOSEN_REGION, "branch": CHOSEN_BRANCH},
    "edge-health.json": {"region": CHOSEN_REGION, "branch": ".*"},
}
MACROS = {"__rate_interval": "20s", "__interval": "1s", "__range": "5m"}
MUST_HAVE_DATA = {"fleet-overview.json", "branch-detail.json"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_query_returns_data(stack: str, name: str) -> None:
    values = {**MACROS, **VARIABLES[name]}
    empty = []
    checked = 0
    for panel, tgt in panel_queries(DASHBOARDS[name]):
        expr = substitute(tgt["expr"], values)
        result = _instant(stack, expr)
        checked += 1
        if name in MUST_HAVE_DATA and not result and (name, panel["title"]) not in ALLOWED_EMPTY:
            empty.append(f"{panel['title']} [{tgt['refId']}]: {expr}")
        # Per-branch queries return only the selected branch.
        if VARIABLES[name]["branch"] != ".*":
            for r in result:
                assert r["metric"].get("branch", CHOSEN_BRANCH) == CHOSEN_BRANCH, (expr, r)
    assert checked > 0
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_annotation_queries_run(stack: str, name: str) -> None:
    values = {**MACROS, **VARIABLES[name]}
    for ann in annotation_queries(DASHBOARDS[name]):
        # Empty is fine (no alert in the window); the query must be valid and
        # select the series the alert history is made of.
        _instant(stack, substitute(ann["expr"], values))
    for ann in annotation_queries(DASHBOARDS[name]):
        selector = substitute(ann["expr"], values).split(" == ")[0].split(" > ")[0]
        assert _instant(stack, selector), f"{ann['name']}: no alert-state series at all"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variable_queries_list_branches_and_regions(stack: str, name: str) -> None:
    for var, query in variable_queries(DASHBOARDS[name]):
        selector, label = label_values_selector(query)
        selector = substitute(selector, {"region": CHOSEN_REGION})
        params = urllib.parse.urlencode({"match[]": selector})
        body = _get(f"{stack}/api/v1/series?{params}")
        assert body["status"] == "success"
        values = {s[label] for s in body["data"] if label in s}
        if var == "region":
            assert values == set(BRANCHES.values())
        else:
            # Filtered by the chosen region.
            assert values == {b for b, r in BRANCHES.items() if r == CHOSEN_REGION}


def test_rules_evaluate_without_errors_on_real_data(stack: str) -> None:
    # Joins such as `* on (branch) group_left (region)` fail at evaluation
    # time (many-to-many) rather than at load: check Prometheus ran them all.
    body = _get(f"{stack}/api/v1/rules")
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert len(rules) > 20
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # The stack is healthy, so no stack alert about the collector fires.
    firing = {a["labels"]["alertname"] for a in _get(f"{stack}/api/v1/alerts")["data"]["alerts"]}
    assert not firing & {"LobbywatchCollectorDown", "LobbywatchCollectorMissing"}


def test_recorded_values_match_the_collector(stack: str) -> None:
    # The dashboards read recorded series; they must equal what the raw
    # metrics say (here: worst predicted wait and people waiting per branch).
    for branch in BRANCHES:
        raw = _instant(stack, f'max(lobbywatch_zone_predicted_wait_seconds{{branch="{branch}"}})')
        rec = _instant(
            stack, f'branch:lobbywatch_zone_predicted_wait_seconds:max{{branch="{branch}"}}'
        )
        assert rec[0]["metric"]["region"] == BRANCHES[branch]
        # Recorded at most one evaluation (1 s) before the raw sample.
        assert float(rec[0]["value"][1]) == pytest.approx(float(raw[0]["value"][1]), abs=1.0)


def test_walk_outs_reach_prometheus_as_counted_by_the_edge(stack: str) -> None:
    # The collector counts increases from its first message of each zone on; the
    # simulated edge's walk-out totals rose by FED_WALK_OUTS over the fed hour.
    assert sum(FED_WALK_OUTS.values()) > 0
    for branch, walk_outs in FED_WALK_OUTS.items():
        got = _instant(stack, f'sum(lobbywatch_zone_walk_outs_total{{branch="{branch}"}})')
        assert float(got[0]["value"][1]) == walk_outs, branch
        ratio = _instant(stack, f'max(lobbywatch_zone_walk_out_ratio{{branch="{branch}"}})')
        assert 0.0 <= float(ratio[0]["value"][1]) < 1.0
