"""``lobbywatch demo`` end to end: a real subprocess with its real embedded Mosquitto,
collector, simulated fleet and (when the model and video exist) real edge agent."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_demo_support import (
    BROKER_RE,
    EDGE_RE,
    RUNNING_RE,
    DemoRun,
    pid_alive,
    port_in_use,
    processes_mentioning,
)

from lobbywatch.demo.broker import EmbeddedBroker, parse_address
from lobbywatch.demo.demo import DemoOptions, run_demo
from lobbywatch.errors import LobbywatchError

pytestmark = pytest.mark.slow

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None, reason="mosquitto binary not installed"
)


def branches_with_zones(run: DemoRun) -> list[dict]:
    out = []
    for b in run.get("/api/v1/branches"):
        detail = run.get(f"/api/v1/branches/{b['id']}")
        if detail["zone_states"]:
            out.append(detail)
    return out


def zone_people_series(run: DemoRun) -> dict[tuple[str, str], float]:
    text = httpx.get(run.base_url + "/metrics", timeout=5, headers=run.headers).text
    series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "lobbywatch_zone_people":
                series[(s.labels["branch"], s.labels["zone"])] = s.value
    return series


def assert_nothing_left(run: DemoRun, broker_pid: int, broker_port: int) -> None:
    assert not pid_alive(broker_pid), "the embedded mosquitto outlived the demo"
    assert not port_in_use(broker_port), f"broker port {broker_port} still open"
    assert not port_in_use(run.http_port), f"HTTP port {run.http_port} still open"
    # every child's command line names a file in the demo's working folder
    assert processes_mentioning(str(run.workdir)) == []


@needs_mosquitto
def test_demo_fleet_api_metrics_and_clean_sigint(tmp_path: Path) -> None:
    launched = time.monotonic()
    run = DemoRun(["--duration", "20", "--no-edge", "--branches", "3"], tmp_path / "wd").start()
    try:
        m = run.wait_for_line(BROKER_RE)
        broker_pid, broker_port = int(m.group(1)), int(m.group(3))
        assert pid_alive(broker_pid)
        run.wait_for_line(RUNNING_RE)
        assert "edge pipeline: off (--no-edge)" in run.output
        assert f"http://127.0.0.1:{run.http_port}/board/" in run.output

        branches = run.wait_until(
            lambda: (b := branches_with_zones(run)) and len(b) == 3 and b,
            timeout=30,
            what="3 simulated branches with zones in the API",
        )
        assert {b["id"] for b in branches} == {"sim-b0001", "sim-b0002", "sim-b0003"}
        for b in branches:
            kinds = {z["kind"] for z in b["zone_states"]}
            assert "waiting" in kinds and "cash_counter" in kinds, b
            waiting = next(z for z in b["zone_states"] if z["kind"] == "waiting")
            # the warm-up went through the estimator: a predicted wait against W1
            assert waiting["estimate"] is not None
            assert waiting["estimate"]["predicted_wait_s"] is not None
            assert waiting["wait_threshold_s"] == 600
            assert b["devices_up"] == b["devices_total"] == 1, b["devices"]

        series = zone_people_series(run)
        for b in branches:
            for z in b["zone_states"]:
                assert (b["id"], z["zone"]) in series, f"no lobbywatch_zone_people for {z['zone']}"

        # uptime is real time since start: the replayed warm-up (demo minutes) is not in it
        health = run.get("/healthz")
        assert 0 < health["uptime_s"] <= time.monotonic() - launched, health

        # the replayed warm-up shares the collector's clock: no device looked silent
        history = run.get("/api/v1/alerts/history?kind=device_offline")
        assert history == [], history

        board = httpx.get(run.base_url + "/board/", timeout=5, headers=run.headers)
        assert board.status_code == 200 and "<table" in board.text
        assert "default-src 'none'" in board.headers["content-security-policy"]
        js = httpx.get(run.base_url + "/board/assets/board.js", timeout=5, headers=run.headers)
        assert js.status_code == 200
        # without credentials the board sends the browser to the login form
        anon = httpx.get(run.base_url + "/board/", timeout=5)
        assert anon.status_code == 303 and anon.headers["location"] == "/login"

        code = run.interrupt()
        assert code == 0, run.output
        assert "stopping (signal)" in run.output, "the demo ended before SIGINT was sent"
        assert run.output.rstrip().endswith("demo stopped")
        assert_nothing_left(run, broker_pid, broker_port)
    finally:
        run.kill()


@needs_mosquitto
def test_demo_with_real_edge_pipeline(tmp_path: Path, model_path: Path, vtest_video: Path) -> None:
    # --speed 20: the agent's wall-clock stream is time-lapsed onto the demo clock
    # by the relay; a wrong mapping shows as a device down or messages rejected
    run = DemoRun(
        ["--duration", "120", "--branches", "1", "--speed", "20", "--video", str(vtest_video)],
        tmp_path / "wd",
    ).start()
    try:
        m = run.wait_for_line(BROKER_RE)
        broker_pid, broker_port = int(m.group(1)), int(m.group(3))
        edge_pid = int(run.wait_for_line(EDGE_RE, timeout=60).group(1))
        assert pid_alive(edge_pid)

        def edge_branch() -> dict | None:
            b = run.get("/api/v1/branches/demo-branch")
            zones = {z["zone"] for z in b["zone_states"]}
            return b if {"W1", "cash-1"} <= zones and b["devices_up"] == 1 else None

        run.wait_until(edge_branch, timeout=60, what="the demo edge branch's zones")
        # 4 real s = 80 demo s, past the collector's 60 s liveness timeout: only a
        # stream mapped onto the demo clock keeps the device up and its data fresh
        time.sleep(4)
        branch = run.wait_until(edge_branch, timeout=10, what="the edge device still up")
        assert branch["devices"][0]["last_message_age_s"] < 60, branch["devices"]
        waiting = next(z for z in branch["zone_states"] if z["zone"] == "W1")
        assert waiting["kind"] == "waiting" and waiting["estimate"] is not None
        assert branch["timezone"] == "Europe/Berlin"  # as branch-demo.yaml says
        device = branch["devices"][0]
        assert device["device"] == "demo-edge-01" and device["camera_up"] is True
        assert device["model"].startswith("bytetrack_nano")  # the shipped default
        series = zone_people_series(run)
        assert ("demo-branch", "W1") in series
        # the simulated branch runs beside it
        assert run.get("/api/v1/branches/sim-b0001")["zone_states"]

        code = run.interrupt()
        assert code == 0, run.output
        assert not pid_alive(edge_pid), "the edge agent outlived the demo"
        assert_nothing_left(run, broker_pid, broker_port)
    finally:
        run.kill()


def test_broker_missing_says_how_to_get_one(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path)
    broker.binary = None  # as on a machine without mosquitto
    with pytest.raises(LobbywatchError, match=r"apt-get install mosquitto.*--broker"):
        broker.start()


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    from test_demo_support import free_port

    port = free_port()  # nothing listens there
    opts = DemoOptions(broker=f"127.0.0.1:{port}", workdir=tmp_path / "wd", edge=False)
    with pytest.raises(LobbywatchError, match=f"no MQTT broker answers at 127.0.0.1:{port}"):
        run_demo(opts, out=(tmp_path / "out.txt").open("w"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mqtt.local:8883", ("mqtt.local", 8883)),
        ("10.0.0.5", ("10.0.0.5", 1883)),
        ("[::1]:1884", ("::1", 1884)),
    ],
)
def test_parse_broker_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [("host:port", "port must be a number"), ("host:0", "expected HOST:PORT"),
     (":1883", "expected HOST:PORT")],
)  # fmt: skip
def test_parse_broker_address_rejects(value: str, why: str) -> None:
    with pytest.raises(LobbywatchError, match=f"--broker '{value}': {why}"):
        parse_address(value)


@needs_mosquitto
def test_demo_says_what_it_skipped_without_the_video(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.avi"
    run = DemoRun(["--duration", "3", "--branches", "1", "--video", str(missing)], tmp_path / "wd")
    run.start()
    try:
        assert run.process is not None
        assert run.process.wait(timeout=60) == 0, run.output
        run.wait_for_line(RUNNING_RE)
        skipped = next(line for line in run.lines if line.startswith("edge pipeline:"))
        assert "SKIPPED" in skipped and str(missing) in skipped, skipped
        assert EDGE_RE.search(run.output) is None  # no agent was started
    finally:
        run.kill()
