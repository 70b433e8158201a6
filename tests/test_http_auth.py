"""Authentication and exposure of the collector's HTTP side (issue 12).

The collector runs for real (uvicorn on loopback); Prometheus is the real binary
scraping ``/metrics`` with a bearer token file and with basic auth, exactly as the
shipped deploy/prometheus config does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_support import scrape_four_ways
from test_server_support import server_config

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
    base, s, _ = secured
    (branch,) = scrape_four_ways(
        tmp_path, base.removeprefix("http://"), "prom", s["prom"], "lobbywatch_branch_info"
    )
    assert branch["metric"]["branch"] == "b1"
