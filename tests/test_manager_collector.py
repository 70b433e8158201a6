"""The collector side of what managers get: alert events carry the manager context,
and the daily report is queued by the collector's own minute tick, once."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from board_support import Clock, Feed, board_config, feed_scenario, make_collector, wait_stored

from lobbywatch.server.alert_texts import notice
from lobbywatch.server.i18n import Translator


def test_alert_events_carry_the_manager_context(tmp_path: Path) -> None:
    now = time.time()
    clock = Clock(now - 700)
    cfg = board_config(
        f"sqlite:///{tmp_path / 'c.db'}",
        tz="Asia/Shanghai",
        board={"public_url": "https://lobby.bank.example/"},
    )
    cfg["branches"][2]["locale"] = "zh-CN"
    collector = make_collector(cfg, clock)
    collector.start()
    try:
        feed_scenario(collector, clock, Feed(), now)
        rows = collector.store.alert_history(branch="br-breach", kind="w1_wait")
        assert rows, "the breach branch raised no W1 alert"
        (fire, *_) = collector.store.events_of(rows[0].alert_id)
        ctx = fire["context"]
        assert ctx["branch_name"] == "Harbour" and ctx["zone_name"] == "Main hall queue"
        assert ctx["locale"] == "zh_CN" and ctx["timezone"] == "Asia/Shanghai"
        assert ctx["counters_open"] == 2 and ctx["counters_source"] == "configured"
        assert ctx["board_url"] == "https://lobby.bank.example/board/branch?id=br-breach"
        assert ctx["threshold_s"] == 600.0 and ctx["people"] >= 3
        # what a sink sends, from the stored payload alone
        n = notice(fire, Translator(ctx["locale"]), now)
        assert n.title.startswith("W1 ") and n.title.endswith("：Harbour，Main hall queue")
        assert n.link == ctx["board_url"]

        # the queue empties: the resolve says the episode's worst wait, which is at least
        # what fired it (taken from memory, so no event ever waits on the database)
        feed = Feed()
        t = now
        for _ in range(80):
            t += 15
            clock.now = t
            collector.process_batch([feed.zone(t, "br-breach", "W1", 0, served=1)])
            collector.flush(t)
            collector.tick(t)
        wait_stored(collector)
        events = collector.store.events_of(rows[0].alert_id)
        resolves = [e for e in events if e.get("state") == "resolved"]
        assert resolves, [e.get("event") for e in events]
        worst = resolves[-1]["context"]["worst_wait_s"]
        fired = max(float(e["value"]) for e in events if e.get("value") is not None)
        assert worst is not None and worst >= fired > 600.0, (worst, fired)
    finally:
        collector.stop()


def test_the_daily_report_is_queued_by_the_minute_tick_once(tmp_path: Path) -> None:
    now = time.time()
    clock = Clock(now - 700)
    send_at = datetime.fromtimestamp(now, ZoneInfo("Asia/Shanghai"))
    cfg = board_config(
        f"sqlite:///{tmp_path / 'c.db'}",
        notify={
            "sinks": {
                "mail": {
                    "type": "smtp",
                    "host": "127.0.0.1",
                    "port": 1,  # nothing listens: the report stays pending, not lost
                    "from": "lw@bank.example",
                    "to": ["ops@bank.example"],
                }
            },
            "routes": [{"sinks": ["mail"], "kinds": ["device_offline"]}],
        },
        # due at the minute the test runs (a fixed 00:00 is only due for 12 h a day)
        report={"sink": "mail", "send_at": send_at.strftime("%H:%M")},
    )
    cfg["branches"][0]["managers"] = ["m@riverside.example"]
    collector = make_collector(cfg, clock)
    collector.start()
    try:
        feed_scenario(collector, clock, Feed(), now)
        for step in (60, 120):  # two minute roll-overs: two chances to queue it
            clock.now = now + step
            collector.tick(clock.now)
            collector.wait_for_store_writes()
        day = send_at.date()  # the report's day is the local day of its send time
        key = f"report:daily:br-near:{day.isoformat()}"
        assert collector.store.has_event(key)
        assert collector.store.delivery_status(key) == {"mail": "pending"}
        (payload,) = collector.store.events_of(key)
        assert payload["to"] == ["m@riverside.example"]
        assert payload["subject"] == f"Daily service report br-near, {day.isoformat()}"
        assert "<h1>Daily service report, " in payload["html"]
    finally:
        collector.stop()


def test_board_says_why_a_zone_over_its_threshold_has_no_alert(tmp_path: Path) -> None:
    import httpx

    now = time.time()
    clock = Clock(now - 700)
    cfg = board_config(f"sqlite:///{tmp_path / 'c.db'}")
    cfg["branches"][0]["alerts"] = {"enabled": False}  # br-near: alerts off
    collector = make_collector(cfg, clock)
    collector.start()
    try:
        feed = Feed()
        feed_scenario(collector, clock, feed, now)
        # br-near jumps over its threshold now; br-breach has an alert
        clock.now = now + 1
        collector.process_batch([feed.zone(clock.now, "br-near", "W1", 9)])
        collector.flush(clock.now)
        clock.follow_real_time()
        data = httpx.get(f"http://127.0.0.1:{collector.http_port}/api/v1/board").json()
        zones = {b["id"]: b["waiting"][0] for b in data["branches"]}
        assert zones["br-near"]["level"] == "over"
        assert zones["br-near"]["no_alert_reason"] == "disabled"
        assert zones["br-breach"]["alerts"] and zones["br-breach"]["no_alert_reason"] is None
        assert zones["br-stale"]["no_alert_reason"] is None  # below its threshold
    finally:
        collector.stop()
