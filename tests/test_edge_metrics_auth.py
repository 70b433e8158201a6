"""The edge agent's /metrics (issue 12): loopback by default, credentials (the
collector's hashed file format) required beyond loopback unless the config says
``allow_anonymous`` explicitly, and a real Prometheus scraping a real agent with a
bearer token and with basic auth while wrong and missing credentials are refused."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import free_port, wait_for_port, wait_for_ready
from pydantic import ValidationError
from test_agent import running
from test_agent_support import device_config, device_dict, write_video
from test_server_support import wait_until

from lobbywatch.edge.config import DeviceConfig, MetricsConfig
from lobbywatch.server.auth import add_credential


def test_metrics_bind_loopback_by_default_and_refuse_anonymous_exposure(tmp_path: Path) -> None:
    assert MetricsConfig().bind == "127.0.0.1"
    assert MetricsConfig().credentials_file is None
    video = write_video(tmp_path / "v.avi")
    exposed = device_dict(
        video=video, port=1, tmp=tmp_path, metrics={"enabled": True, "bind": "0.0.0.0"}
    )
    with pytest.raises(ValidationError) as err:
        DeviceConfig.model_validate(exposed)
    assert "metrics.bind 0.0.0.0 is not a loopback address: set metrics.credentials_file" in str(
        err.value
    )
    # knowingly anonymous, or with credentials: accepted
    anon = {**exposed["metrics"], "allow_anonymous": True}
    assert DeviceConfig.model_validate({**exposed, "metrics": anon}).metrics.allow_anonymous
    creds = tmp_path / "metrics-credentials"
    add_credential(creds, "prometheus", "metrics")
    with_creds = {**exposed["metrics"], "credentials_file": str(creds)}
    cfg = DeviceConfig.model_validate({**exposed, "metrics": with_creds})
    assert cfg.metrics.credentials_file == creds
    # a malformed one is a config error naming the line
    bad = tmp_path / "bad-credentials"
    bad.write_text("prometheus metrics not-a-hash\n")
    malformed = {**exposed["metrics"], "credentials_file": str(bad)}
    with pytest.raises(ValidationError) as err:
        DeviceConfig.model_validate({**exposed, "metrics": malformed})
    assert f"metrics.credentials_file {bad} line 1: expected" in str(err.value)
    # a credentials file that is not there is a config error naming it
    missing = {**exposed["metrics"], "credentials_file": str(tmp_path / "nope")}
    with pytest.raises(ValidationError, match="does not exist"):
        DeviceConfig.model_validate({**exposed, "metrics": missing})


def test_real_prometheus_scrapes_an_edge_agent_with_credentials(
    tmp_path: Path, mosquitto: Any
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed")
    broker = mosquitto()
    creds = tmp_path / "metrics-credentials"
    secret = add_credential(creds, "prometheus", "metrics")
    mport = free_port()
    cfg = device_config(
        video=write_video(tmp_path / "v.avi"),
        port=broker.port,
        tmp=tmp_path,
        metrics={
            "enabled": True,
            "bind": "127.0.0.1",
            "port": mport,
            "credentials_file": str(creds),
        },
    )
    token = tmp_path / "edge.token"
    token.write_text(f"prometheus.{secret}\n")
    password = tmp_path / "edge.password"
    password.write_text(secret + "\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("prometheus.not-the-secret\n")
    target = f"127.0.0.1:{mport}"

    def job(name: str, **auth: Any) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [target]}], **auth}

    prom_cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            job("bearer", authorization={"type": "Bearer", "credentials_file": str(token)}),
            job("basic", basic_auth={"username": "prometheus", "password_file": str(password)}),
            job("wrong", authorization={"type": "Bearer", "credentials_file": str(wrong)}),
            job("anonymous"),
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
    port = free_port()
    with running(cfg):
        wait_for_port(mport, timeout=30)
        plain = httpx.get(f"http://{target}/metrics", timeout=5)
        assert plain.status_code == 401, plain.text
        assert "credentials required" in plain.text
        assert plain.headers["WWW-Authenticate"].startswith("Basic")
        ok = httpx.get(
            f"http://{target}/metrics", headers={"Authorization": f"Bearer prometheus.{secret}"}
        )
        assert ok.status_code == 200 and "lobbywatch_edge_buffer_depth" in ok.text
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, timeout=30)
            wait_for_ready(port)

            def targets() -> dict[str, tuple[str, str]]:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
                return {
                    t["labels"]["job"]: (t["health"], t["lastError"])
                    for t in r["data"]["activeTargets"]
                    if t["health"] != "unknown"
                }

            got = wait_until(lambda: len(t := targets()) == 4 and t, 60)
            assert got["bearer"] == ("up", ""), got
            assert got["basic"] == ("up", ""), got
            assert got["wrong"][0] == "down" and "401" in got["wrong"][1], got
            assert got["anonymous"][0] == "down" and "401" in got["anonymous"][1], got

            def series(job: str) -> list[Any]:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": f'lobbywatch_edge_buffer_depth{{job="{job}"}}'},
                    timeout=5,
                ).json()
                return list(r["data"]["result"])

            assert wait_until(lambda: series("bearer"), 30)
            time.sleep(1.5)
            assert series("wrong") == [] and series("anonymous") == []
        finally:
            proc.terminate()
            proc.wait(timeout=20)
