"""A real Prometheus scraping one target four ways (bearer token, basic auth, a wrong
token, no credentials): shared by the collector's and the edge's /metrics tests."""

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
from test_server_support import wait_until


def _query(port: int, query: str) -> list[Any]:
    r = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5
    ).json()
    return list(r["data"]["result"])


def _targets(port: int) -> dict[str, tuple[str, str]]:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
    return {
        t["labels"]["job"]: (t["health"], t["lastError"])
        for t in r["data"]["activeTargets"]
        if t["health"] != "unknown"
    }


def scrape_four_ways(tmp_path: Path, target: str, user: str, secret: str, metric: str) -> list[Any]:
    """Run Prometheus against ``target`` (host:port) with jobs ``bearer``
    (``<user>.<secret>``), ``basic``, ``wrong`` and ``anonymous``; assert the first two
    are up, the others down with a 401, and that ``metric`` was stored from the bearer
    job only. Returns the bearer job's series of ``metric``."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed")
    token = tmp_path / "scrape.token"
    token.write_text(f"{user}.{secret}\n")
    password = tmp_path / "scrape.password"
    password.write_text(secret + "\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text(f"{user}.not-the-secret\n")

    def job(name: str, **auth: Any) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [target]}], **auth}

    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            job("bearer", authorization={"type": "Bearer", "credentials_file": str(token)}),
            job("basic", basic_auth={"username": user, "password_file": str(password)}),
            job("wrong", authorization={"type": "Bearer", "credentials_file": str(wrong)}),
            job("anonymous"),
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
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
        got = wait_until(lambda: len(t := _targets(port)) == 4 and t, 60)
        assert got["bearer"] == ("up", ""), got
        assert got["basic"] == ("up", ""), got
        assert got["wrong"][0] == "down" and "401" in got["wrong"][1], got
        assert got["anonymous"][0] == "down" and "401" in got["anonymous"][1], got
        series = wait_until(lambda: _query(port, f'{metric}{{job="bearer"}}'), 30)
        time.sleep(1.5)  # more scrapes of the refused jobs: still nothing stored
        assert _query(port, f'{metric}{{job="wrong"}}') == []
        assert _query(port, f'{metric}{{job="anonymous"}}') == []
        return list(series)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
