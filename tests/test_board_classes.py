"""The board with priority customers: the ordinary customer's wait beside the lobby's."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from board_support import afternoon_tz, fleet_behind_login
from test_board_browser import CHROMIUM, DevTools, start_chromium, stop_chromium

pytestmark = pytest.mark.slow


def test_the_board_shows_the_ordinary_customers_wait_where_priority_ones_go_first(
    tmp_path: Path,
) -> None:
    now = time.time()

    def quarter_priority(cfg: dict[str, Any]) -> None:
        # br-near: a quarter of its customers are priority ones, called first
        cfg["branches"][0]["priority_share"] = 0.25

    with fleet_behind_login(tmp_path, now, afternoon_tz(now), quarter_priority) as fleet:
        collector, clock, base, secret = fleet
        clock.follow_real_time()
        bearer = {"Authorization": f"Bearer manager.{secret}"}
        data = httpx.get(base + "/api/v1/board", params={"lang": "en"}, headers=bearer).json()
        rows = {b["id"]: b["waiting"][0] for b in data["branches"] if b["waiting"]}
        near, breach = rows["br-near"], rows["br-breach"]
        est = collector.state.zones[
            next(k for k in collector.state.zones if k.branch == "br-near" and k.zone == "W1")
        ].estimate
        # 4 waiting, one arrival every 2 min: priority ones take a slot every 8 min, so
        # an ordinary customer waits (L + r) / (mu - lambda_p) > (L + r) / mu
        assert est.predicted_wait_ordinary_s > est.predicted_wait_s + 30
        # (the collector runs on in real time: a sweep may re-estimate in between)
        assert abs(near["ordinary_wait_s"] - est.predicted_wait_ordinary_s) < 10
        assert abs(near["predicted_wait_s"] - est.predicted_wait_s) < 10
        # no priority customers: nothing beside the lobby's wait
        assert breach["ordinary_wait_s"] is None and breach["predicted_wait_s"] is not None
        if CHROMIUM is None:
            pytest.skip("chromium not installed (apt-get install -y chromium)")
        cells = _wait_cells(base, "manager", secret, tmp_path)
        # the board re-reads the estimate a few seconds later (the collector runs on): the
        # same wait within a few seconds
        m = re.fullmatch(
            r"\d+ min \d\d s / 10 min 00 s ordinary customers (\d+) min (\d\d) s",
            cells["en"]["br-near"],
        )
        assert m is not None, cells
        shown = 60 * int(m[1]) + int(m[2])
        assert abs(shown - est.predicted_wait_ordinary_s) < 20
        assert "ordinary" not in cells["en"]["br-breach"]
        assert "普通客户" in cells["zh-CN"]["br-near"]


def _wait_cells(base: str, user: str, secret: str, tmp: Path) -> dict[str, dict[str, str]]:
    """The waiting rows' wait cell per branch, as a real Chromium renders the board, in
    English and in Chinese."""
    chromium, devtools_url = start_chromium(tmp / "profile", "about:blank")
    devtools = None
    try:
        page = next(t for t in httpx.get(devtools_url + "/json/list").json() if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call("Page.navigate", url=base + "/board/?lang=en")
        devtools.wait_js("document.querySelector('#password') !== null")
        devtools.js(
            f"document.querySelector('#user').value = {json.dumps(user)};"
            f"document.querySelector('#password').value = {json.dumps(secret)};"
            "document.querySelector('form').submit(); true"
        )
        devtools.wait_js("location.pathname === '/board/' && document.readyState === 'complete'")
        out: dict[str, dict[str, str]] = {}
        for lang in ("en", "zh-CN"):
            devtools.call("Page.navigate", url=base + f"/board/?lang={lang}")
            devtools.wait_js("document.querySelectorAll('tbody[data-branch] td.wait').length >= 2")
            out[lang] = devtools.js(
                "Object.fromEntries([...document.querySelectorAll('tbody[data-branch]')]"
                ".filter(b => b.querySelector('td.wait'))"
                ".map(b => [b.dataset.branch, b.querySelector('td.wait').innerText.trim()]))"
            )
        return out
    finally:
        if devtools is not None:
            devtools.close()
        stop_chromium(chromium)
