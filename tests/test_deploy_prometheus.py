"""deploy/prometheus/: configuration, recording and alert rules, checked with the
real ``promtool`` (Debian's prometheus package), plus the rules' unit tests
(deploy/prometheus/tests/) and consistency with the runbook and compose file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULES_TEST = PROM_DIR / "tests" / "lobbywatch-rules.test.yml"
RUNBOOK = REPO / "docs" / "operations.md"
COMPOSE = REPO / "deploy" / "docker-compose.yml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def test_rule_files_exist() -> None:
    names = {p.name for p in RULE_FILES}
    assert {"lobbywatch-recording.yml", "lobbywatch-alerts.yml"} <= names


def tree_with_token(tmp_path: Path) -> Path:
    """A copy of deploy/prometheus/ with the scrape tokens it needs present
    (a placeholder: the real one is written at deployment, never committed)."""
    tree = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, tree)
    (tree / "secrets").mkdir(exist_ok=True)
    (tree / "secrets" / "collector.token").write_text("prometheus.placeholder\n")
    (tree / "secrets" / "edge.token").write_text("prometheus.placeholder\n")
    return tree


def test_promtool_check_config(tmp_path: Path) -> None:
    out = promtool("check", "config", str(tree_with_token(tmp_path) / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid prometheus config file syntax" in out.stdout
    # Every rule file is found through rule_files (relative to the config).
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in out.stdout + out.stderr


def test_promtool_check_config_with_the_example_edge_targets(tmp_path: Path) -> None:
    # The shipped example is what operators copy; it must be a valid file_sd
    # file with the labels the rules and dashboards rely on.
    tree = tree_with_token(tmp_path)
    example = tree / "file_sd" / "edge-devices.yml.example"
    example.rename(tree / "file_sd" / "edge-devices.yml")
    out = promtool("check", "config", str(tree / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "does not exist" not in out.stdout + out.stderr
    for group in yaml.safe_load((tree / "file_sd" / "edge-devices.yml").read_text()):
        assert {"branch", "region", "device"} <= set(group["labels"])


def test_promtool_check_config_fails_on_a_broken_config(tmp_path: Path) -> None:
    # The check above can fail: a typo in a relabel action is rejected.
    bad = tree_with_token(tmp_path) / "prometheus.yml"
    bad.write_text(CONFIG.read_text().replace("target_label: instance", "target_lable: instance"))
    out = promtool("check", "config", str(bad))
    assert out.returncode != 0


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", *map(str, RULE_FILES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_rule_unit_tests() -> None:
    out = promtool("test", "rules", str(RULES_TEST))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rule_unit_tests_catch_a_changed_rule(tmp_path: Path) -> None:
    # Copy rules and tests, lengthen the collector-down delay (the first
    # `for: 2m`): the unit test expecting the alert after 2 minutes must fail.
    tree = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, tree)
    alerts = tree / "rules" / "lobbywatch-alerts.yml"
    text = alerts.read_text()
    changed = text.replace("for: 2m\n", "for: 20m\n", 1)
    assert changed != text
    alerts.write_text(changed)
    out = promtool("test", "rules", str(tree / "tests" / RULES_TEST.name))
    assert out.returncode != 0
    assert "LobbywatchCollectorDown" in out.stdout + out.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = set(re.findall(r"alertname:\s*(\w+)", RULES_TEST.read_text()))
    names = {r["alert"] for r in alert_rules()}
    # The Alertmanager self-alert depends only on Alertmanager's own counter.
    untested = names - tested - {"LobbywatchAlertmanagerNotificationsFailing"}
    assert not untested, f"alert rules without a unit test: {untested}"


def _slug(heading: str) -> str:
    """GitHub-style anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_every_alert_has_labels_and_a_runbook_section() -> None:
    anchors = {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", RUNBOOK.read_text(), re.M)}
    for rule in alert_rules():
        name = rule["alert"]
        labels = rule["labels"]
        assert labels["severity"] in {"warning", "critical"}, name
        assert labels.get("audience") == "ops", name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert (REPO / path).is_file(), f"{name}: {path}"
        assert anchor in anchors, f"{name}: no section #{anchor} in {path}"


def test_scrape_targets_are_compose_services() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    services = set(yaml.safe_load(COMPOSE.read_text())["services"])
    hosts = {
        target.rsplit(":", 1)[0]
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for target in sc["targets"]
    }
    hosts |= {
        target.rsplit(":", 1)[0]
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for target in sc["targets"]
    }
    assert hosts - {"localhost"} <= services, hosts - services
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    # The alert rules select these job names.
    assert {"lobbywatch-collector", "lobbywatch-edge"} <= jobs
