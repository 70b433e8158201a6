"""deploy/alertmanager/: checked with the real ``amtool`` and a real Alertmanager
(Debian's prometheus-alertmanager): config validity, routing by region and
severity, grouping by branch, inhibition of warnings by criticals, templates,
and no literal secrets."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port, wait_for_port, wait_for_ready

from lobbywatch.server.config import AlertmanagerSink
from lobbywatch.server.notify import AlertmanagerNotifier

REPO = Path(__file__).resolve().parents[1]
AM_DIR = REPO / "deploy" / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"

needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=60)


@needs_amtool
def test_amtool_check_config() -> None:
    out = amtool("check-config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert "1 templates" in out.stdout


@needs_amtool
def test_amtool_check_config_rejects_a_broken_config(tmp_path: Path) -> None:
    # A route to a receiver that does not exist must fail the check above.
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(CONFIG.read_text().replace("receiver: north-critical", "receiver: nobody"))
    shutil.copytree(AM_DIR / "templates", tmp_path / "templates")
    assert amtool("check-config", str(bad)).returncode != 0


# (labels, receiver that must get the alert). Collector-pushed alerts carry
# alertname, kind, severity, branch, region, zone (server/notify.py);
# Prometheus stack alerts carry audience="ops".
ROUTES = [
    (
        "alertname=LobbywatchW1Wait kind=w1_wait severity=critical region=north "
        "branch=sim-b0001 zone=waiting",
        "north-critical",
    ),
    (
        "alertname=LobbywatchW1Wait kind=w1_wait severity=warning region=north "
        "branch=sim-b0001 zone=waiting",
        "north-managers",
    ),
    (
        "alertname=LobbywatchServiceStalled kind=service_stalled severity=critical "
        "region=south branch=sim-b0003 zone=waiting",
        "south-critical",
    ),
    (
        "alertname=LobbywatchW1Wait severity=warning region=south branch=sim-b0004 zone=w",
        "south-managers",
    ),
    (
        "alertname=LobbywatchW1Wait severity=critical region=east branch=sim-b0005 zone=w",
        "east-critical",
    ),
    (
        "alertname=LobbywatchDeviceOffline kind=device_offline severity=warning region=east "
        "branch=sim-b0005",
        "east-managers",
    ),
    # A region nobody routes yet goes to operations instead of nowhere.
    ("alertname=LobbywatchW1Wait severity=critical region=west branch=w1 zone=w", "ops"),
    # Pipeline health goes to operations even when it has a region.
    (
        "alertname=LobbywatchEdgeCameraDown severity=warning audience=ops region=north "
        "branch=sim-b0001 device=d1 camera=cam1",
        "ops",
    ),
    ("alertname=LobbywatchCollectorDown severity=critical audience=ops", "ops"),
]


@needs_amtool
@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_amtool_routes(labels: str, receiver: str) -> None:
    out = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels.split(),
    )
    assert out.returncode == 0, f"{labels}: {out.stdout}{out.stderr}"
    assert out.stdout.strip().splitlines()[-1] == receiver


# Collector alerts routed with the labels the collector's sink really sends.
SINK_ROUTES = [
    ("w1_wait", "critical", "north", "north-critical"),
    ("w1_wait", "warning", "north", "north-managers"),
    ("service_stalled", "critical", "south", "south-critical"),
    ("device_offline", "warning", "east", "east-managers"),
    ("w1_wait", "critical", "west", "ops"),
]


@needs_amtool
@pytest.mark.parametrize(("kind", "severity", "region", "receiver"), SINK_ROUTES)
def test_amtool_routes_labels_from_the_sink(
    kind: str, severity: str, region: str, receiver: str
) -> None:
    sink = AlertmanagerNotifier("am", AlertmanagerSink(url="http://127.0.0.1:9"))
    payload = {"kind": kind, "severity": severity, "branch": "sim-b0001", "region": region,
               "zone": "waiting", "state": "firing", "alert_id": "a1"}  # fmt: skip
    labels = sink.to_am(payload, 1_750_000_000.0)["labels"]
    assert labels["alertname"].startswith("Lobbywatch") and labels["region"] == region
    out = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert out.returncode == 0, f"{labels}: {out.stdout}{out.stderr}"
    assert out.stdout.strip().splitlines()[-1] == receiver


@needs_amtool
def test_amtool_routes_verify_can_fail() -> None:
    out = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=south-critical",
        "severity=critical",
        "region=north",
    )
    assert out.returncode != 0


def test_grouping_and_inhibition_shape() -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    assert "branch" in cfg["route"]["group_by"]
    inhibit = cfg["inhibit_rules"]
    zone_rule = next(r for r in inhibit if "zone" in r["equal"])
    assert set(zone_rule["equal"]) == {"branch", "zone"}
    assert 'severity="critical"' in zone_rule["source_matchers"]
    assert 'severity="warning"' in zone_rule["target_matchers"]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", v
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def test_no_literal_secrets() -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    literal = {
        "smtp_auth_password",
        "smtp_auth_secret",
        "auth_password",
        "auth_secret",
        "password",
        "credentials",
        "bearer_token",
        "api_key",
        "routing_key",
        "service_key",
        "token",
        "client_secret",
    }
    files = []
    for path, value in _walk(cfg):
        key = path.rsplit(".", 1)[-1]
        assert key not in literal, f"literal secret field {path}"
        if key.endswith("_file"):
            files.append(value)
            assert str(value).startswith("/etc/alertmanager/secrets/"), path
        if isinstance(value, str) and value.startswith("http"):
            assert "@" not in value.split("/")[2], f"credentials in URL at {path}"
    assert files, "credentials must be read from *_file fields"


@needs_amtool
def test_templates_render() -> None:
    out = amtool(
        "template",
        "render",
        f"--template.glob={AM_DIR / 'templates' / '*.tmpl'}",
        '--template.text={{ template "lobbywatch.subject" . }}|{{ template "lobbywatch.text" . }}',
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "|" in out.stdout


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager with the shipped config, on a free loopback port."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager binary not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={CONFIG}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=15)
        wait_for_ready(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def test_real_alertmanager_inhibits_warning_by_critical_same_branch_zone(
    alertmanager: str,
) -> None:
    now = datetime.now(UTC)

    sink = AlertmanagerNotifier("am", AlertmanagerSink(url=alertmanager, ends_after_s=300))

    def alert(severity: str, zone: str, branch: str = "sim-b0001") -> None:
        # Through the collector's own sink: its label conversion is what is routed and
        # inhibited, so a renamed or dropped label fails here.
        sink.send(
            {
                "alert_id": f"w1_wait:{branch}:{zone}:1",
                "kind": "w1_wait",
                "event": "open",
                "state": "firing",
                "severity": severity,
                "branch": branch,
                "region": "north",
                "zone": zone,
                "summary": f"{branch}/{zone} {severity}",
                "value": 600.0,
                "threshold": 300.0,
                "started_at_ts": now.timestamp(),
            }
        )

    alert("critical", "hall")
    alert("warning", "hall")  # inhibited: same branch and zone
    alert("warning", "lobby")  # other zone: stays active
    alert("warning", "hall", branch="sim-b0002")  # other branch: stays active
    deadline = time.monotonic() + 10
    state: dict[tuple[str, str, str], dict[str, Any]] = {}
    while time.monotonic() < deadline:
        alerts = _get(f"{alertmanager}/api/v2/alerts")
        state = {
            (a["labels"]["branch"], a["labels"]["zone"], a["labels"]["severity"]): a["status"]
            for a in alerts
        }
        if len(state) == 4 and state[("sim-b0001", "hall", "warning")]["inhibitedBy"]:
            break
        time.sleep(0.2)
    assert state[("sim-b0001", "hall", "warning")]["state"] == "suppressed", state
    assert state[("sim-b0001", "hall", "warning")]["inhibitedBy"]
    assert state[("sim-b0001", "hall", "critical")]["state"] == "active"
    assert state[("sim-b0001", "lobby", "warning")]["state"] == "active"
    assert state[("sim-b0002", "hall", "warning")]["state"] == "active"

    # Grouped by branch: both zones' warnings of sim-b0001 share one group
    # (one notification), sim-b0002 gets its own; the critical goes to the
    # region's critical receiver.
    groups = _get(f"{alertmanager}/api/v2/alerts/groups")
    zones = {
        (g["receiver"]["name"], g["labels"].get("branch")): {
            a["labels"]["zone"] for a in g["alerts"]
        }
        for g in groups
    }
    assert zones[("north-managers", "sim-b0001")] == {"hall", "lobby"}, zones
    assert zones[("north-managers", "sim-b0002")] == {"hall"}, zones
    assert zones[("north-critical", "sim-b0001")] == {"hall"}, zones
