"""Stale data never alerts, the W1 alert carries its advice, and the closing-time
backlog is told once (hand-computed timelines; the collector through replay)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_replay import T0, _cfg, _script, _write

from lobbywatch.server.alerts import AlertEngine, AlertPolicy, BusinessHours
from lobbywatch.server.config import parse_server_config
from lobbywatch.server.estimator import WaitEstimate
from lobbywatch.server.replay import read_records, replay


def test_a_last_will_stands_the_zone_alerts_down_and_only_the_device_alert_speaks(
    tmp_path: Path,
) -> None:
    # W1 fires at T0 + 50 (see test_replay). The will arrives at T0 + 70, after that
    # second's sweep; the next sweep (T0 + 80) finds the zone stale and resolves W1 with
    # the reason. device_offline fires offline_after_s (15 s) after the will: T0 + 85.
    cfg = parse_server_config(_cfg(tmp_path))
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    out: list[dict[str, Any]] = []
    replay(cfg, read_records(src), out.append, estimates_every_s=10, until=T0 + 400)
    w1 = [o for o in out if o["type"] == "alert" and o["kind"] == "w1_wait"]
    assert [(o["event"], o["started_at_ts"]) for o in w1] == [
        ("fire", T0 + 50),
        ("resolve", T0 + 50),
    ]
    resolved = w1[1]
    assert resolved["ended_at_ts"] == T0 + 80
    assert resolved["summary"].endswith("(stale data: device edge-1 offline (last will))")
    dev = [o for o in out if o["type"] == "alert" and o["kind"] == "device_offline"]
    assert [(o["event"], o["started_at_ts"]) for o in dev] == [("fire", T0 + 85)]
    # no service_stalled either, although 12 people "wait" with no departure for 340 s
    assert not [o for o in out if o["type"] == "alert" and o["kind"] == "service_stalled"]
    # the estimate lines say so
    last = [o for o in out if o["type"] == "estimate"][-1]
    assert last["stale"] is True and last["stale_reason"] == "device edge-1 offline (last will)"
    before = next(o for o in out if o["type"] == "estimate" and o["ts"] == T0 + 70)
    assert before["stale"] is False


@pytest.mark.parametrize(
    ("heartbeat_s", "stale_from"), [(None, T0 + 120), (30.0, T0 + 140), (120.0, None)]
)
def test_a_zone_is_stale_after_the_longer_of_the_timeout_and_its_heartbeats(
    tmp_path: Path, heartbeat_s: float | None, stale_from: float | None
) -> None:
    # W1 fires at T0 + 50 (see test_replay); then the device stays quiet after T0 + 60
    # until it republishes the same queue at T0 + 200. alerts.heartbeat_timeout_s is
    # 60 s: silent from T0 + 120, the sweep at T0 + 120 resolves W1 with the reason.
    # A device that announced a heartbeat of 30 s is silent after 2.5 x 30 = 75 s (from
    # T0 + 135: the sweep at T0 + 140), one of 120 s only after 300 s (never here).
    cfg = parse_server_config(_cfg(tmp_path))
    assert cfg.alerts.heartbeat_timeout_s == 60.0
    script = _script()[:-1]  # no last will
    status = script[0][1].model_copy(update={"heartbeat_s": heartbeat_s})
    script[0] = (0, status)
    last = script[-1][1]
    script.append((200, last.model_copy(update={"seq": last.seq + 1, "ts": _at(T0 + 200)})))
    src = tmp_path / "in.jsonl"
    _write(src, script)
    out: list[dict[str, Any]] = []
    replay(cfg, read_records(src), out.append, estimates_every_s=10, until=T0 + 210)
    w1 = [(o["event"], o["ended_at_ts"]) for o in out if o.get("kind") == "w1_wait"]
    stale = [o["ts"] for o in out if o["type"] == "estimate" and o["stale"]]
    offline = [o["event"] for o in out if o.get("kind") == "device_offline"]
    if stale_from is None:
        assert w1 == [("fire", None)]  # still open: nothing stale, nothing resolved
        assert stale == [] and offline == []
    else:
        assert w1[:2] == [("fire", None), ("resolve", stale_from)]
        assert stale == [t for t in range(int(stale_from), int(T0) + 201, 10)]
        assert offline[:1] == ["fire"]


def _at(t: float) -> Any:
    from datetime import UTC

    return datetime.fromtimestamp(t, UTC)


def test_the_w1_fire_carries_counters_the_wait_with_one_more_and_the_summary(
    tmp_path: Path,
) -> None:
    # At T0 + 50, 10 waiting at the configured 1 counter x 60 s: 11 x 60 = 660 s; with
    # a second counter 11 x 30 = 330 s (5.5 min).
    raw_cfg = _cfg(tmp_path)
    raw_cfg["estimator"] = {"service_rate_gated": True}  # the configured capacity throughout
    cfg = parse_server_config(raw_cfg)
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    out: list[dict[str, Any]] = []
    replay(cfg, read_records(src), out.append)
    fire = next(o for o in out if o["type"] == "alert" and o["event"] == "fire")
    details = fire["details"]
    assert details["counters_open"] == 1 and details["counters_method"] == "configured"
    assert details["predicted_wait_s"] == pytest.approx(660.0)
    assert details["predicted_wait_one_more_counter_s"] == pytest.approx(330.0)
    assert "1 counters open (configured), 5.5 min with one more" in fire["summary"]


def _estimate(**kw: Any) -> WaitEstimate:
    base = WaitEstimate(
        queue_length=12,
        predicted_wait_s=1300.0,
        service_rate_per_s=0.01,
        method="observed",
        realised_wait_p50_s=None,
        realised_wait_p90_s=None,
        oldest_wait_s=700.0,
        forecast_wait_s=None,
        forecast_horizon_s=300.0,
        served_within_threshold_ratio=None,
        no_departure_for_s=900.0,
    )
    return dataclasses.replace(base, **kw)


def test_a_stale_zone_never_fires_whatever_its_last_numbers_say() -> None:
    policy = AlertPolicy(w1_threshold_s=600, min_duration_s=0, head_min_duration_s=0)
    engine = AlertEngine(lambda b, z: policy, lambda b: None, lambda b: None)
    stale = _estimate(stale=True, stale_reason="camera cam1 down")
    for k in range(60):
        assert engine.evaluate("b", "W1", stale, T0 + 10 * k) == []
    # the same numbers from a live source fire W1 and service_stalled at once
    kinds = {e.kind for e in engine.evaluate("b", "W1", _estimate(), T0 + 600)}
    assert kinds == {"w1_wait", "service_stalled"}


def test_closing_backlog_is_told_once_and_resolves_at_closing() -> None:
    tz = "Europe/Berlin"
    hours = BusinessHours(timezone=tz, weekly={"mon": [("09:00", "17:00")]})
    policy = AlertPolicy(w1_threshold_s=6000, closing_warn_s=1800)
    engine = AlertEngine(lambda b, z: policy, lambda b: hours, lambda b: None)

    def at(hhmm: str) -> float:
        h, m = map(int, hhmm.split(":"))
        return datetime(2025, 6, 2, h, m, tzinfo=ZoneInfo(tz)).timestamp()  # a Monday

    # 16:25: 35 min before closing, outside the 30 min window
    est = _estimate(
        queue_length=10, service_rate_per_s=0.005, oldest_wait_s=100.0, no_departure_for_s=None
    )
    assert [e.kind for e in engine.evaluate("b", "W1", est, at("16:25"))] == []
    # 16:45: 900 s left at 0.005/s -> 4.5 served, 6 of 10 not
    events = engine.evaluate("b", "W1", est, at("16:45"))
    assert [(e.kind, e.event, e.value) for e in events] == [("closing_backlog", "fire", 6.0)]
    assert events[0].summary.startswith(
        "Closing at b W1: 6 of 10 waiting projected not to be served before closing at 17:00"
    )
    assert events[0].details is not None and events[0].details["unserved"] == 6
    # told once, even as the numbers move
    later = dataclasses.replace(est, queue_length=12)
    assert engine.evaluate("b", "W1", later, at("16:50")) == []
    closed = engine.evaluate("b", "W1", est, at("17:00"))
    assert [(e.kind, e.event) for e in closed] == [("closing_backlog", "resolve")]
    assert closed[0].summary.endswith("(branch closed)")


def test_the_w1_summary_gives_the_breach_time_in_the_branch_time_zone() -> None:
    # the branch has a time zone but no business hours: the clock is still local
    policy = AlertPolicy(w1_threshold_s=600, min_duration_s=0, head_min_duration_s=0)
    breach = T0 + 300  # 07:11:40 UTC, 15:11 in Shanghai
    est = _estimate(breach_expected_at=breach)

    def summary(timezone_for: Any) -> str:
        engine = AlertEngine(lambda b, z: policy, lambda b: None, lambda b: None, timezone_for)
        fire = next(e for e in engine.evaluate("b", "W1", est, T0) if e.kind == "w1_wait")
        return fire.summary

    assert "; breach expected 15:11" in summary(lambda b: "Asia/Shanghai")
    assert "UTC" not in summary(lambda b: "Asia/Shanghai")
    # a zone not known (or UTC): the clock says so
    assert summary(None).endswith("; breach expected 07:11 UTC")
    assert summary(lambda b: "UTC").endswith("; breach expected 07:11 UTC")
