"""Done-when test of the managers' board in a real headless Chromium.

A real collector (store, estimator, alert engine, HTTP server) is fed three
simulated branches (one near W1, one stale, one in breach with an alert) and
four weeks of minute history; Chromium loads the board, and the test checks the
risk order and what each row shows, opens a branch page and checks its charts
have data, and saves screenshots under ``test-output/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from board_support import afternoon_tz, fleet_behind_login, write_history
from test_board_browser import CHROMIUM, DevTools, start_chromium, stop_chromium

pytestmark = pytest.mark.slow

OUT = Path(__file__).resolve().parent.parent / "test-output"


def shoot(devtools: DevTools, name: str) -> Path:
    shot = base64.b64decode(
        devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
    )
    assert shot.startswith(b"\x89PNG")
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    path.write_bytes(shot)
    return path


def goto(devtools: DevTools, url: str) -> None:
    devtools.call("Page.navigate", url=url)


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    now = time.time()
    tz = afternoon_tz(now)
    with fleet_behind_login(tmp_path, now, tz) as (collector, clock, base, secret):
        today = datetime.fromtimestamp(now, ZoneInfo(tz)).date()
        write_history(collector.store, ["br-near", "br-stale", "br-breach"], today, 28, tz, now)
        clock.follow_real_time()
        yield collector, base, ("manager", secret)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_board_risk_order_rows_and_branch_charts(fleet: Any, tmp_path: Path) -> None:
    _collector, base, (user, secret) = fleet
    # the API: one request for the whole board, riskiest first; anonymous is refused
    assert httpx.get(base + "/api/v1/board").status_code == 401
    bearer = {"Authorization": f"Bearer {user}.{secret}"}
    data = httpx.get(base + "/api/v1/board", params={"lang": "en"}, headers=bearer).json()
    assert [b["id"] for b in data["branches"]] == ["br-breach", "br-near", "br-stale"]

    chromium, devtools_url = start_chromium(tmp_path / "profile", "about:blank")
    devtools = None
    try:
        page = next(t for t in httpx.get(devtools_url + "/json/list").json() if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call("Network.enable")
        devtools.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
        # log in through the form (a POST: nothing secret in any URL), then the board
        goto(devtools, base + "/board/?lang=en")
        devtools.wait_js("document.querySelector('#password') !== null")
        assert devtools.js("location.pathname") == "/login"
        devtools.js(
            f"document.querySelector('#user').value = {json.dumps(user)};"
            f"document.querySelector('#password').value = {json.dumps(secret)};"
            "document.querySelector('form').submit(); true"
        )
        devtools.wait_js("location.pathname === '/board/' && document.readyState === 'complete'")
        goto(devtools, base + "/board/?lang=en")
        devtools.wait_js(
            "document.body && document.querySelectorAll('tbody[data-branch]').length === 3"
        )

        order = devtools.js(
            "[...document.querySelectorAll('tbody[data-branch]')].map(b => b.dataset.branch)"
        )
        assert order == ["br-breach", "br-near", "br-stale"]

        def row(branch: str) -> dict[str, Any]:
            return devtools.js(
                f"(() => {{ const b = document.querySelector('tbody[data-branch=\"{branch}\"]');"
                " const r = b.querySelector('tr[data-kind=\"waiting\"]');"
                " return {head: b.querySelector('th[scope=rowgroup]').innerText,"
                " level: r.dataset.level, trust: r.dataset.trust,"
                " cells: [...r.children].map(c => c.innerText.trim()),"
                " stale: b.dataset.stale,"
                " hidden: [...b.querySelectorAll('tr.service-point')].map(x => x.hidden)}; })()"
            )

        breach, near, stale = row("br-breach"), row("br-near"), row("br-stale")
        # breach: over W1, alert pill, counters from config (marked), walk-outs not measured
        assert breach["level"] == "over"
        assert breach["head"].startswith("Harbour · br-breach")
        assert breach["cells"][0] == "Main hall queue (W1)"
        assert breach["cells"][1] == "7"
        assert breach["cells"][2].endswith("/ 10 min 00 s") and breach["cells"][2].startswith("1")
        assert breach["cells"][5] == "2 *" and breach["cells"][6] == "—"
        assert "critical" in breach["cells"][8] or "warning" in breach["cells"][8]
        # near: 4 waiting, between 8 and 10 min against 10 min
        assert near["level"] == "near" and near["cells"][1] == "4"
        assert re.fullmatch(r"[89] min \d\d s / 10 min 00 s", near["cells"][2]), near
        assert near["trust"] == "measured" and near["cells"][7] == "measured"
        assert near["cells"][8] == "—"
        # stale: says since when
        assert stale["stale"] == "true" and stale["trust"] in ("stale", "offline")
        assert stale["cells"][7].startswith(("stale since", "offline since")), stale
        assert "no fresh data since" in stale["head"]
        # service points collapsed into one line until opened
        assert breach["hidden"] == [True, True]
        devtools.js(
            "document.querySelector('tbody[data-branch=\"br-breach\"] button.toggle').click()"
        )
        assert row("br-breach")["hidden"] == [False, False]

        # active alerts first, with what the notification says and how long it is open
        alerts = devtools.js(
            "[...document.querySelectorAll('#alerts li')]"
            ".map(li => [li.dataset.branch, li.innerText])"
        )
        breach_alerts = [text for b, text in alerts if b == "br-breach"]
        assert any(
            "W1 critical: Harbour, Main hall queue" in t
            or "W1 warning: Harbour, Main hall queue" in t
            for t in breach_alerts
        ), alerts
        assert all("open for" in t for _, t in alerts)
        assert any(
            "Predicted wait" in t and "against a threshold of 10 min 00 s" in t
            for t in breach_alerts
        )
        board_png = shoot(devtools, "board.png")

        # search and region filters: one request, only matching branches
        devtools.js(
            "document.querySelector('#search').value = 'river';"
            "document.querySelector('#search').dispatchEvent(new Event('input'))"
        )
        devtools.wait_js("document.querySelectorAll('tbody[data-branch]').length === 1")
        assert (
            devtools.js("document.querySelector('tbody[data-branch]').dataset.branch") == "br-near"
        )

        # the branch page: today's charts have data
        goto(devtools, base + "/board/branch?id=br-breach&lang=en")
        devtools.wait_js("document.body && document.body.dataset.ready === '1'")
        charts = devtools.js(
            "Object.fromEntries([...document.querySelectorAll('figure.chart')].map("
            "f => [f.dataset.chart, Number(f.dataset.points)]))"
        )
        assert charts["queue"] > 60 and charts["wait"] > 60 and charts["service"] > 10, charts
        # not recorded by this collector: said so, no empty chart
        assert charts["walkouts"] == 0 and charts["counters"] == 0
        devtools.wait_js(
            "[...document.querySelectorAll('figure.chart img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert devtools.js("document.querySelectorAll('figure.chart img').length") == 3
        svg = httpx.get(base + "/board/charts/br-breach/W1/wait.svg", headers=bearer).text
        assert svg.count("<path") > 5  # lines, band and threshold drawn
        shoot(devtools, "branch.png")

        # the daily report is a page of the board too (yesterday by default)
        devtools.js("document.querySelector('#report-link').click()")
        devtools.wait_js("location.pathname.endsWith('/board/report')")
        devtools.wait_js(
            "document.readyState === 'complete' && document.images.length === 2"
            " && [...document.images].every(i => i.complete && i.naturalWidth > 0)"
        )
        text = devtools.js("document.body.innerText")
        assert "Daily service report" in text and "Harbour (br-breach)" in text
        assert "Served within the W1 threshold (10 min 00 s):" in text
        shoot(devtools, "report.png")

        # the same board in Chinese
        goto(devtools, base + "/board/?lang=zh-CN")
        devtools.wait_js(
            "document.body && document.querySelectorAll('tbody[data-branch]').length === 3"
        )
        assert devtools.js("document.querySelector('h1').textContent") == "大堂看板"
        assert devtools.js("document.documentElement.lang") == "zh-CN"
        near_zh = devtools.js(
            'document.querySelector(\'tbody[data-branch="br-near"]'
            ' tr[data-kind="waiting"] .wait\').innerText'
        )
        assert re.fullmatch(r"[89]分\d\d秒 / 10分00秒", near_zh), near_zh
        shoot(devtools, "board-zh.png")

        # nothing but the collector was asked for anything
        urls = [
            e["params"]["request"]["url"]
            for e in devtools.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        assert any("/api/v1/board" in u for u in urls)
        assert [u for u in urls if not u.startswith((base, "data:", "about:"))] == []
        # one request per refresh: the board polls only /api/v1/board
        api = [u for u in urls if "/api/v1/" in u and "/day" not in u]
        assert all("/api/v1/board" in u for u in api), api
        assert board_png.stat().st_size > 10_000
    finally:
        if devtools is not None:
            devtools.close()
        stop_chromium(chromium)
