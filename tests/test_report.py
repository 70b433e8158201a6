"""The daily service report: rendered from a simulated month by the real CLI, and
mailed once after closing through the outbox to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from board_support import history_rows, write_history

from lobbywatch.server.config import parse_server_config
from lobbywatch.server.notify import Dispatcher, build_sinks
from lobbywatch.server.report import back_under
from lobbywatch.server.report_schedule import due_reports, enqueue_due
from lobbywatch.server.store import AlertRow, EventRecord, Store

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 25)  # a Wednesday
LOBBYWATCH = Path(sys.executable).with_name("lobbywatch")


def local(h: int, m: int, d: date = DAY) -> float:
    return datetime(d.year, d.month, d.day, h, m, tzinfo=ZoneInfo(TZ)).timestamp()


def alert(start: float, end: float | None, threshold: float = 600.0) -> AlertRow:
    return AlertRow(
        alert_id=f"w1_wait:br-breach:W1:{int(start)}",
        kind="w1_wait",
        severity="warning",
        state="resolved" if end else "firing",
        branch="br-breach",
        zone="W1",
        subject="W1",
        region="south",
        started_at=start,
        ended_at=end,
        summary="W1 wait",
        value=700.0,
        threshold=threshold,
        last_event="resolve" if end else "fire",
        escalated=False,
        last_notified_at=start,
        revision=1,
        updated_at=end or start,
    )


def config(tmp_path: Path, smtp_port: int = 25) -> dict[str, Any]:
    return {
        "database": {"url": f"sqlite:///{tmp_path / 'r.db'}"},
        "locale": "en",
        "branches": [
            {
                "id": "br-breach",
                "name": "Harbour",
                "region": "south",
                "timezone": TZ,
                "zones": {"W1": {"name": "Main hall queue"}},
                "locale": "en",
                "managers": ["manager@harbour.example"],
            },
            {"id": "br-near", "region": "south", "timezone": TZ, "locale": "zh-CN"},
        ],
        "regions": {"south": {"locale": "zh-CN", "managers": ["south@bank.example"]}},
        "notify": {
            "sinks": {
                "mail": {
                    "type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "from": "lobbywatch@bank.example",
                    "to": ["ops@bank.example"],
                }
            },
            "routes": [{"sinks": ["mail"], "kinds": ["device_offline"]}],
        },
        "report": {"sink": "mail", "send_at": "19:30"},
    }


@pytest.fixture
def month(tmp_path: Path) -> tuple[Path, Store]:
    """Four weeks and a day of minute history, and two alerts on the report day."""
    cfg = config(tmp_path)
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(cfg))
    store = Store(cfg["database"]["url"])
    store.migrate()
    write_history(store, ["br-near", "br-stale", "br-breach"], DAY, 28, TZ)
    for a in (alert(local(10, 30), local(11, 40)), alert(local(15, 0), None)):
        store.record_event(EventRecord(a.alert_id + "#1", a, "fire", a.started_at, {}), [])
    return path, store


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOBBYWATCH), "report", "daily", *args], capture_output=True, text=True, timeout=120
    )


def test_report_from_a_simulated_month(month: tuple[Path, Store], tmp_path: Path) -> None:
    cfg_path, store = month
    out = tmp_path / "report.html"
    res = run_cli("--date", DAY.isoformat(), "--branch", "br-breach", "-c", str(cfg_path),
                  "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"wrote {out}: 1 branch(es), 2 charts")
    page = out.read_text()
    # the figures, computed here independently from the same simulated rows
    rows = history_rows("br-breach", "W1", DAY, TZ, seed=1000 * 2 + 0, peak=1.6)
    served = sum(r.served for r in rows)
    within = sum(r.served_within_threshold for r in rows)
    share = f"{round(100 * within / served)}%"
    assert f"Served within the W1 threshold (10 min 00 s): {share} of {served:,} customers." in page
    assert "Waiting zone Main hall queue (W1)" in page
    assert "Harbour <small>(br-breach)</small>" in page
    assert re.search(r"Peak hours: 11:00 \(\d\.\d waiting on average\)", page), page[:3000]
    assert "Longest waits (90th percentile of a minute):" in page
    assert "Walk-outs: not measured by this collector yet" in page
    assert page.count('src="data:image/png;base64,iVBOR') == 2  # PNG charts, inline
    assert "Counters open against demand by hour" in page and "2.0 *" in page
    assert "Compared with the same weekday of the last 4 weeks" in page
    # every alert with the time until the queue was back under the threshold
    assert (
        "10:30 CST: long wait (warning) at Main hall queue; back under the threshold after" in page
    )
    assert "15:00 CST: long wait (warning) at Main hall queue; " in page
    # the same report in Chinese (the region's language)
    out_zh = tmp_path / "report-zh.html"
    res = run_cli("--date", DAY.isoformat(), "--region", "south", "-c", str(cfg_path),
                  "--out", str(out_zh))  # fmt: skip
    assert res.returncode == 0, res.stderr
    zh = out_zh.read_text()
    assert "每日服务报告，2026-11-25" in zh
    assert f"在 W1 阈值（10分00秒）内完成服务：{served:,} 位客户中占 {share}。" in zh
    assert "与过去 4 周同一工作日对比" in zh
    store.close()


def test_back_under_threshold() -> None:
    rows = history_rows("br-breach", "W1", DAY, TZ, seed=2000, peak=1.6)
    a = alert(local(10, 30), local(11, 40))
    first = next(r.minute for r in rows if r.minute > a.started_at and r.predicted_wait_s_avg < 600)
    assert back_under(a, rows) == first + 60 - a.started_at
    assert back_under(alert(local(10, 30), local(11, 40), threshold=1e9), []) == 70 * 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2026-13-01"], "--date: '2026-13-01' is not a date (YYYY-MM-DD)"),
        (["--date", "2026-11-25", "--branch", "nope"], "unknown branch 'nope' (not in the config)"),
        (["--date", "2026-11-25", "--region", "mars"], "no branch in region 'mars'"),
        (["--date", "2026-11-25", "--lang", "fr"], "no catalogue for locale 'fr'"),
        (["--date", "2026-11-25", "--branch", "br-near", "--region", "south"], "give at most one"),
    ],
)
def test_report_cli_errors(
    month: tuple[Path, Store], tmp_path: Path, args: list[str], message: str
) -> None:
    cfg_path, _ = month
    res = run_cli(*args, "-c", str(cfg_path), "--out", str(tmp_path / "x.html"))
    assert res.returncode == 2, res
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "x.html").exists()


def test_report_mail_arrives_once_with_its_images(
    month: tuple[Path, Store], tmp_path: Path, smtp_server: tuple[int, list[Any]]
) -> None:
    port, received = smtp_server
    _, store = month
    cfg = parse_server_config(config(tmp_path, port))
    before = local(19, 29)
    assert due_reports(cfg, before) == []
    after = local(19, 31)
    due = due_reports(cfg, after)
    assert [(d.key, d.to, d.locale) for d in due] == [
        ("report:daily:br-breach:2026-11-25", ("manager@harbour.example",), "en"),
        ("report:daily:region:south:2026-11-25", ("south@bank.example",), "zh_CN"),
    ]
    assert enqueue_due(cfg, store, after) == 2
    dispatcher = Dispatcher(store, build_sinks(cfg.notify), cfg.notify, clock=lambda: after)
    assert dispatcher.deliver_due("mail") == 2
    # a later tick (or a restart) neither re-queues nor re-sends
    assert enqueue_due(cfg, store, after + 600) == 0
    assert dispatcher.deliver_due("mail") == 0
    assert len(received) == 2
    by_rcpt = {tuple(env.rcpt_tos): env for env in received}
    env = by_rcpt[("manager@harbour.example",)]
    msg = email.message_from_bytes(env.content, policy=email.policy.default)
    assert msg["Subject"] == "[lobbywatch] Daily service report br-breach, 2026-11-25"
    html_part = msg.get_body(("html",))
    assert html_part is not None
    page = html_part.get_content()
    cids = re.findall(r'src="cid:([^"]+)"', page)
    images = {
        p["Content-ID"].strip("<>"): p.get_content()
        for p in msg.walk()
        if p.get_content_type() == "image/png"
    }
    assert len(cids) == 2 and set(cids) == set(images)
    assert all(data.startswith(b"\x89PNG") and len(data) > 2000 for data in images.values())
    assert "Served within the W1 threshold (10 min 00 s)" in page
    zh = email.message_from_bytes(
        by_rcpt[("south@bank.example",)].content, policy=email.policy.default
    )
    assert zh["Subject"] == "[lobbywatch] 每日服务报告 south，2026-11-25"
    zh_page = zh.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert zh_page.count('src="cid:') == 4  # two branches with history, two charts each
    store.close()


def test_report_is_due_after_closing(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["regions"] = {}
    raw["branches"][0]["business_hours"] = {
        "weekly": {d: [["09:00", "12:00"], ["13:00", "17:00"]] for d in ("mon", "tue", "wed")},
        "holidays": ["2026-11-24"],
    }
    raw["report"]["after_closing_min"] = 30
    cfg = parse_server_config(raw)
    # Wednesday: closes 17:00, report at 17:30 local (send_at is for branches without hours)
    assert due_reports(cfg, local(17, 29)) == []
    (due,) = due_reports(cfg, local(17, 30))
    assert due.key == "report:daily:br-breach:2026-11-25" and due.branches == ("br-breach",)
    # a holiday (Tuesday 24th) and a closed weekday (Thursday 26th): no report
    assert due_reports(cfg, local(23, 0, date(2026, 11, 24))) == []
    assert due_reports(cfg, local(23, 0, date(2026, 11, 26))) == []


def test_report_after_a_closing_past_midnight_and_not_days_late(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["regions"] = {}
    raw["branches"][0]["business_hours"] = {"weekly": {"wed": [["18:00", "01:00"]]}}
    cfg = parse_server_config(raw)
    thursday = date(2026, 11, 26)
    assert due_reports(cfg, local(1, 29, thursday)) == []
    (due,) = due_reports(cfg, local(1, 30, thursday))
    assert due.day == DAY  # Wednesday's report, due on Thursday morning
    assert due_reports(cfg, local(14, 0, thursday)) == []  # more than 12 h overdue


@pytest.mark.parametrize("where", ["missing.db", "no/such/folder/c.db"])
def test_report_never_creates_a_database(tmp_path: Path, where: str) -> None:
    # a report only reads: a wrong database path is one line naming it, and nothing
    # (no empty database, no lock file) is left behind
    cfg = tmp_path / "server.yaml"
    db = tmp_path / where
    cfg.write_text(f"database: {{url: 'sqlite:///{db}'}}\nbranches: [{{id: b1}}]\n")
    res = run_cli("--date", "2026-11-25", "-c", str(cfg), "--out", str(tmp_path / "r.html"))
    assert res.returncode == 2, res
    assert f"no collector database at '{db}'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.yaml"]
