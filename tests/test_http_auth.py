"""Authentication and exposure of the collector's HTTP side (issue 12).

The collector runs for real (uvicorn on loopback); Prometheus is the real binary
scraping ``/metrics`` with a bearer token file and with basic auth, exactly as the
shipped deploy/prometheus config does.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import free_port, wait_for_port, wait_for_ready
from test_server_support import server_config, wait_until

from lobbywatch.errors import ConfigError
from lobbywatch.server.auth import add_credential, load_credentials
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A collector with credentials: base URL, name -> secret, the credentials file."""
    creds = tmp_path / "credentials"
    secrets = {
        "alice": add_credential(creds, "alice", "read"),
        "prom": add_credential(creds, "prom", "metrics"),
    }
    cfg = server_config(mqtt_port=1, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    cfg["http"]["credentials_file"] = str(creds)
    c = Collector(parse_server_config(cfg), with_mqtt=False)
    c.start()
    try:
        yield f"http://127.0.0.1:{c.http_port}", secrets, creds
    finally:
        c.stop()


def bearer(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}.{secret}"}


def test_exposed_address_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"http\.host 0\.0\.0\.0 is not a loopback address"):
        parse_server_config({"http": {"host": "0.0.0.0"}})
    assert parse_server_config({"http": {"host": "0.0.0.0", "allow_anonymous": True}})
    assert parse_server_config({"http": {"host": "127.0.0.1"}})


def test_credentials_file_holds_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    secret = add_credential(path, "bob", "read")
    assert secret not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_credentials(path)["bob"].role == "read"
    with pytest.raises(ConfigError, match="already has a credential named 'bob'"):
        add_credential(path, "bob", "read")
    path.write_text("carol writer scrypt$x\n")
    with pytest.raises(ConfigError, match="line 1: expected"):
        load_credentials(path)


def test_api_tokens_roles_and_open_healthz(
    secured: tuple[str, dict[str, str], Path],
) -> None:
    base, s, _ = secured
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    anon = httpx.get(f"{base}/api/v1/branches", timeout=5)
    assert anon.status_code == 401 and "Bearer" in anon.headers["www-authenticate"]
    assert httpx.get(f"{base}/docs", timeout=5).status_code == 401
    assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401
    ok = httpx.get(f"{base}/api/v1/branches", headers=bearer("alice", s["alice"]), timeout=5)
    assert ok.status_code == 200 and ok.json()[0]["id"] == "b1"
    wrong = httpx.get(f"{base}/api/v1/branches", headers=bearer("alice", "guess"), timeout=5)
    assert wrong.status_code == 401
    # the metrics role reads /metrics and nothing else
    metrics_only = bearer("prom", s["prom"])
    denied = httpx.get(f"{base}/api/v1/branches", headers=metrics_only, timeout=5)
    assert denied.status_code == 403 and "role 'metrics'" in denied.json()["detail"]
    assert httpx.get(f"{base}/metrics", headers=metrics_only, timeout=5).status_code == 200
    basic = httpx.get(f"{base}/metrics", auth=("prom", s["prom"]), timeout=5)
    assert basic.status_code == 200 and "lobbywatch_collector_messages_total" in basic.text


def test_host_header_is_checked(secured: tuple[str, dict[str, str], Path]) -> None:
    base, s, _ = secured
    evil = httpx.get(
        f"{base}/api/v1/branches",
        headers={**bearer("alice", s["alice"]), "Host": "attacker.example"},
        timeout=5,
    )
    assert evil.status_code == 400 and "Invalid host header" in evil.text
    assert httpx.get(f"{base}/healthz", headers={"Host": "attacker.example"}).status_code == 400


def test_board_login_sets_a_strict_session_cookie_and_refuses_cross_origin(
    secured: tuple[str, dict[str, str], Path],
) -> None:
    base, s, _ = secured
    assert httpx.get(f"{base}/board/", timeout=5).headers["location"] == "/login"
    form = {"user": "alice", "password": s["alice"]}
    # a login posted from another site (CSRF) is refused
    cross = httpx.post(f"{base}/login", data=form, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert httpx.post(f"{base}/login", data=form).status_code == 403  # no Origin at all
    bad = httpx.post(f"{base}/login", data={**form, "password": "x"}, headers={"Origin": base})
    assert bad.status_code == 401 and "wrong password" in bad.text
    ok = httpx.post(f"{base}/login", data=form, headers={"Origin": base})
    assert ok.status_code == 303 and ok.headers["location"] == "/board/"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    jar = ok.cookies
    assert httpx.get(f"{base}/api/v1/branches", cookies=jar, timeout=5).status_code == 200
    assert "<table" in httpx.get(f"{base}/board/", cookies=jar, timeout=5).text
    forged = httpx.get(f"{base}/api/v1/branches", cookies={"lw_session": "x.y.z"}, timeout=5)
    assert forged.status_code == 401
    # a metrics-only credential cannot open the board
    prom = httpx.post(
        f"{base}/login", data={"user": "prom", "password": s["prom"]}, headers={"Origin": base}
    )
    assert prom.status_code == 401


def test_real_prometheus_scrapes_with_credentials(
    secured: tuple[str, dict[str, str], Path], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed")
    base, s, _ = secured
    target = base.removeprefix("http://")
    token = tmp_path / "collector.token"
    token.write_text(f"prom.{s['prom']}\n")
    password = tmp_path / "prom.password"
    password.write_text(s["prom"] + "\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("prom.not-the-secret\n")

    def job(name: str, **auth: Any) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [target]}], **auth}

    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            job("bearer", authorization={"type": "Bearer", "credentials_file": str(token)}),
            job("basic", basic_auth={"username": "prom", "password_file": str(password)}),
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

        # the scraped series are in Prometheus, from the authenticated job only
        def series(job: str) -> list[Any]:
            r = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/query",
                params={"query": f'lobbywatch_branch_info{{job="{job}"}}'},
                timeout=5,
            ).json()
            return list(r["data"]["result"])

        (branch,) = wait_until(lambda: series("bearer"), 30)
        assert branch["metric"]["branch"] == "b1"
        assert series("wrong") == [] and series("anonymous") == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
