"""The edge agent's /metrics (issue 12): loopback by default, credentials (the
collector's hashed file format) required beyond loopback unless the config says
``allow_anonymous`` explicitly, and a real Prometheus scraping a real agent with a
bearer token and with basic auth while wrong and missing credentials are refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for_port
from prometheus_support import scrape_four_ways
from pydantic import ValidationError
from test_agent import running
from test_agent_support import device_config, device_dict, write_video

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
    target = f"127.0.0.1:{mport}"
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
        (series,) = scrape_four_ways(
            tmp_path, target, "prometheus", secret, "lobbywatch_edge_buffer_depth"
        )
        assert series["metric"]["job"] == "bearer"
