"""What a manager reads in a notification, in English and Chinese, against hand-written texts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lobbywatch.server.alert_texts import Notice, alert_context, notice, one_more_counter_wait
from lobbywatch.server.estimator import WaitEstimate
from lobbywatch.server.i18n import Translator

# 2026-11-28 06:00 UTC = 14:00 in Shanghai
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC).timestamp()


def estimate(**kw: Any) -> WaitEstimate:
    base: dict[str, Any] = dict(
        queue_length=6,
        predicted_wait_s=517.0,
        service_rate_per_s=1 / 120,
        method="observed",
        realised_wait_p50_s=300.0,
        realised_wait_p90_s=420.0,
        oldest_wait_s=431.0,
        forecast_wait_s=640.0,
        forecast_horizon_s=300.0,
        served_within_threshold_ratio=0.9,
        net_inflow_per_s=1 / 600,
    )
    base.update(kw)
    return WaitEstimate(**base)


def warning_payload(est: WaitEstimate, locale: str) -> dict[str, Any]:
    ctx = alert_context(
        branch_name="Harbour",
        zone_name="Main hall queue",
        timezone="Asia/Shanghai",
        locale=locale,
        estimate=est,
        threshold_s=600.0,
        counters_configured=2,
        board_url="https://board.example/board/branch?id=br-7",
        now=NOW,
    )
    return {
        "kind": "w1_wait",
        "severity": "warning",
        "state": "firing",
        "branch": "br-7",
        "zone": "W1",
        "value": est.predicted_wait_s,
        "threshold": 600.0,
        "started_at_ts": NOW,
        "context": ctx,
    }


def test_one_more_counter() -> None:
    assert one_more_counter_wait(600.0, 2) == 400.0
    assert one_more_counter_wait(600.0, None) is None
    assert one_more_counter_wait(None, 3) is None


def test_warning_in_english_and_chinese() -> None:
    est = estimate()
    # predicted 517 s grows by (1/600)/(1/120) = 0.2 s per s: 600 s reached after 415 s
    assert est.seconds_to_wait(600.0) == 415.0
    p = warning_payload(est, "en")
    assert notice(p, Translator("en"), NOW) == Notice(
        "W1 warning: Harbour, Main hall queue",
        [
            "Predicted wait 8 min 37 s against a threshold of 10 min 00 s; 6 waiting.",
            "Expected to reach the threshold at 14:06 CST.",
            "2 counters open (configured).",
            "One more counter would bring the predicted wait to about 5 min 45 s.",
            "Longest current wait: 7 min 11 s.",
        ],
        "https://board.example/board/branch?id=br-7",
    )
    assert notice(p, Translator("zh_CN"), NOW) == Notice(
        "W1 预警：Harbour，Main hall queue",
        [
            "预计等候 8分37秒，阈值 10分00秒；6 人在等候。",
            "预计于 14:06 CST 达到阈值。",
            "开放柜台 2 个（配置值）。",
            "再开一个柜台，预计等候可降至约 5分45秒。",
            "当前最长等候：7分11秒。",
        ],
        "https://board.example/board/branch?id=br-7",
    )


def test_critical_over_threshold_with_measured_counters() -> None:
    class Measured:
        """A later estimator that measures counters open (read when present)."""

        queue_length = 9
        predicted_wait_s = 780.0
        forecast_wait_s = 800.0
        oldest_wait_s = None
        method = "observed"
        counters_open = 3

    p = warning_payload(Measured(), "en")  # type: ignore[arg-type]
    p["severity"] = "critical"
    n = notice(p, Translator("en"), NOW)
    assert n.title == "W1 critical: Harbour, Main hall queue"
    assert n.lines == [
        "Predicted wait 13 min 00 s against a threshold of 10 min 00 s; 9 waiting.",
        "The wait is over the threshold now.",
        "3 counters open.",
        "One more counter would bring the predicted wait to about 9 min 45 s.",
    ]
    assert notice(p, Translator("zh_CN"), NOW).lines[2] == "开放柜台 3 个。"


def test_resolve_says_duration_and_worst_wait() -> None:
    p = warning_payload(estimate(), "en")
    p.update(state="resolved", ended_at_ts=NOW + 25 * 60)
    p["context"]["worst_wait_s"] = 845.0
    assert notice(p, Translator("en"), NOW) == Notice(
        "Resolved: Harbour, Main hall queue",
        [
            "Lasted 25 minutes.",
            "Worst predicted wait 14 min 05 s against a threshold of 10 min 00 s.",
        ],
        "https://board.example/board/branch?id=br-7",
    )
    assert notice(p, Translator("zh_CN"), NOW) == Notice(
        "已恢复：Harbour，Main hall queue",
        ["持续 25分钟。", "最高预计等候 14分05秒，阈值 10分00秒。"],
        "https://board.example/board/branch?id=br-7",
    )


def test_device_offline_and_unknown_facts_are_left_out() -> None:
    p = {
        "kind": "device_offline",
        "severity": "critical",
        "state": "firing",
        "branch": "br-7",
        "device": "edge-3",
        "started_at_ts": NOW - 86400,
        "context": {"timezone": "Asia/Shanghai", "branch_name": None},
    }
    n = notice(p, Translator("en"), NOW)
    assert n.title == "Camera offline: br-7, camera edge-3"
    assert n.lines == ["No data from this camera since Nov 27, 14:00 CST."]
    assert notice(p, Translator("zh_CN"), NOW).lines == ["该摄像头自 11月27日 14:00 CST 起无数据。"]
    # no estimate: only what is known, no invented counters or breach time
    bare = warning_payload(estimate(), "en")
    bare["context"] = {"timezone": "UTC", "threshold_s": 600.0}
    assert notice(bare, Translator("en"), NOW).lines == [
        "Predicted wait 8 min 37 s against a threshold of 10 min 00 s; — waiting."
    ]
    assert notice(bare, Translator("en"), NOW).link is None


def test_markdown_for_chat_robots() -> None:
    n = Notice("W1 warning: Harbour, W1", ["a", "b"], "https://x/b")
    assert n.markdown() == "**W1 warning: Harbour, W1**\n> a\n> b\n[https://x/b](https://x/b)"
    assert n.plain() == "W1 warning: Harbour, W1\n\na\nb\n\nhttps://x/b\n"


def test_fields_of_a_forecasting_estimator_are_used_when_present() -> None:
    class Forecasting:
        """Fields the forecasting estimator adds: its breach time, counters, one-more figure."""

        queue_length = 6
        predicted_wait_s = 517.0
        forecast_wait_s = 640.0
        oldest_wait_s = None
        method = "observed"
        counters_open = 3
        counters_method = "observed"
        predicted_wait_one_more_counter_s = 401.0
        breach_expected_at = NOW + 1200

    p = warning_payload(Forecasting(), "en")  # type: ignore[arg-type]
    assert notice(p, Translator("en"), NOW).lines == [
        "Predicted wait 8 min 37 s against a threshold of 10 min 00 s; 6 waiting.",
        "Expected to reach the threshold at 14:20 CST.",
        "3 counters open.",
        "One more counter would bring the predicted wait to about 6 min 41 s.",
    ]
    Forecasting.counters_method = "configured"
    p = warning_payload(Forecasting(), "zh_CN")  # type: ignore[arg-type]
    assert notice(p, Translator("zh_CN"), NOW).lines[1:3] == [
        "预计于 14:20 CST 达到阈值。",
        "开放柜台 3 个（配置值）。",
    ]


def test_closing_backlog_and_unknown_kinds() -> None:
    p = {
        "kind": "closing_backlog",
        "severity": "warning",
        "state": "firing",
        "branch": "br-7",
        "zone": "W1",
        "details": {"unserved": 4, "waiting": 11, "closes_at_ts": NOW + 3 * 3600},
        "context": {"branch_name": "Harbour", "zone_name": "Hall", "timezone": "Asia/Shanghai"},
    }
    assert notice(p, Translator("en"), NOW) == Notice(
        "Closing backlog: Harbour, Hall",
        ["4 of 11 waiting are not expected to be served before closing at 17:00 CST."],
    )
    assert notice(p, Translator("zh_CN"), NOW) == Notice(
        "闭店前积压：Harbour，Hall",
        ["11 位等候客户中预计有 4 位无法在 17:00 CST 闭店前办理。"],
    )
    p.update(kind="future_kind", summary="engine summary")
    assert notice(p, Translator("en"), NOW) == Notice(
        "future_kind: Harbour, Hall", ["engine summary"]
    )
