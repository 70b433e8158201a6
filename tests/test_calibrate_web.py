"""``lobbywatch calibrate --web``: real HTTP on 127.0.0.1 and real clicks in headless Chromium."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from test_board_browser import CHROMIUM, DevTools, start_chromium, stop_chromium

from lobbywatch.edge.config import load_device_config

pytestmark = [pytest.mark.slow, pytest.mark.model]

CONFIG = """\
device_id: dev1
branch_id: br1
cameras:
  - id: hall
    source: 0
    zones:
      - {id: left, kind: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
      - {id: right, kind: cash_counter, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_installer_clicks_people_and_the_choice_is_written(
    tmp_path: Path, people_dir: Path
) -> None:
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    frames = sorted((people_dir / "tud_campus" / "frames").glob("*.jpg"))[:2]
    for f in frames:
        shutil.copy(f, snaps / f.name)
    cfg = tmp_path / "device.yaml"
    cfg.write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lobbywatch.cli", "calibrate", "--config", str(cfg),
         "--camera", "hall", "--snapshots", str(snaps), "--web", "--port", str(port),
         "--model", "bytetrack_nano", "--size", "416"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    chromium = None
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                listing = httpx.get(f"{base}/api/snapshots", timeout=2).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "calibration page did not come up"
                time.sleep(0.2)
        assert [s["name"] for s in listing["snapshots"]] == [f.name for f in frames]
        assert listing["snapshots"][0]["width"] == 640 and listing["snapshots"][0]["height"] == 480
        assert [z["id"] for z in listing["zones"]] == ["left", "right"]
        assert httpx.get(f"{base}/snapshot/0").content == frames[0].read_bytes()
        miss = httpx.get(f"{base}/snapshot/7")
        assert miss.status_code == 404 and "no snapshot 7 (0..1)" in miss.text
        bad = httpx.post(f"{base}/api/counts", json={"clicks": [[[10, 10]]]})
        assert bad.status_code == 422 and "clicks for 1 snapshots, expected 2" in bad.text
        bad = httpx.post(f"{base}/api/counts", json={"clicks": [[[700, 10]], []]})
        assert bad.status_code == 422 and "outside the 640x480 image" in bad.text

        chromium, devtools_url = start_chromium(tmp_path / "profile", base + "/")
        target = next(
            t for t in httpx.get(f"{devtools_url}/json/list").json() if t["type"] == "page"
        )
        page = DevTools(target["webSocketDebuggerUrl"])
        loaded = (
            "(() => {const i = document.getElementById('img');"
            " return !!i && i.complete && i.naturalWidth === 640})()"
        )
        page.wait_js(loaded)
        # the camera's zones are drawn over the snapshot (clicks pass through them)
        assert page.wait_js("document.querySelectorAll('#zones polygon').length === 2")

        def click_image(x: float, y: float) -> None:
            """Click image pixel (x, y) as a mouse would, through the real page."""
            r = page.js(
                "(() => {const r = document.getElementById('img').getBoundingClientRect();"
                " return [r.left, r.top, r.width, r.height]})()"
            )
            vx, vy = r[0] + x * r[2] / 640, r[1] + y * r[3] / 480
            for kind in ("mousePressed", "mouseReleased"):
                page.call("Input.dispatchMouseEvent", type=kind, x=vx, y=vy, button="left",
                          clickCount=1)  # fmt: skip

        # Snapshot 1: three people, two on the left half, one on the right.
        for x, y in ((100, 400), (250, 420), (500, 410)):
            click_image(x, y)
        assert page.wait_js("document.getElementById('count').textContent === '3'")
        page.js("document.getElementById('next').click()")
        page.wait_js("document.getElementById('pos').textContent === '2 / 2'")
        page.wait_js(loaded)
        # Snapshot 2: two clicks, then the installer removes a mistaken one.
        click_image(600, 300)
        click_image(50, 300)
        assert page.wait_js("document.getElementById('count').textContent === '2'")
        page.js("document.querySelectorAll('.dot')[1].click()")
        assert page.wait_js("document.getElementById('count').textContent === '1'")
        page.js("document.getElementById('done').click()")
        page.wait_js("document.getElementById('status').textContent.startsWith('saved: 3, 1')")
        page.close()
        out, _ = proc.communicate(timeout=300)
    finally:
        if chromium is not None:
            stop_chromium(chromium)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert "open http://127.0.0.1:" in out and "chosen  :" in out and "written :" in out
    with (snaps / "counts.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"file": frames[0].name, "count": "3", "zone:left": "2", "zone:right": "1"},
        {"file": frames[1].name, "count": "1", "zone:left": "0", "zone:right": "1"},
    ]
    cam = load_device_config(cfg, check_files=False).cameras[0]
    assert cam.model is not None and cam.model.calibration is not None
    assert cam.model.calibration.snapshots == 2
    # The clicks are positions, so the search scored them as such (a box on no
    # clicked person is an error), not as per-zone counts.
    assert cam.model.calibration.objective == "points" and not cam.model.calibration.per_zone
    assert "missed or boxed off a clicked person" in out
