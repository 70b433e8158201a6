"""``lobbywatch server replay``: input validation, hand-computed alert timeline, and the
same stream run live (real Mosquitto + collector, recorded with ``--record``) gives the
same alert events as its replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_server_support import (
    Publisher,
    device_status_msg,
    raw,
    server_config,
    status_msg,
    wait_until,
    zone_msg,
)

from lobbywatch.cli import main as cli_main
from lobbywatch.errors import ConfigError
from lobbywatch.protocol import StatusMessage, ZoneMessage
from lobbywatch.server.collector import Collector
from lobbywatch.server.config import parse_server_config
from lobbywatch.server.replay import (
    ReplayInputError,
    SimClock,
    read_records,
    record_line,
    replay,
)

T0 = 1_764_400_000.0  # a Saturday, 07:06:40 UTC (the test branch is always open)


def _cfg(tmp_path: Path, **alerts: Any) -> dict[str, Any]:
    cfg = server_config(
        mqtt_port=1883,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        alerts={"min_duration_s": 20, "offline_after_s": 15, **alerts},
        shared_group=None,
    )
    cfg["branches"][0].pop("timezone")
    cfg["ingest"] = {"evaluate_interval_s": 0}
    return cfg


def _script() -> list[tuple[float, ZoneMessage | StatusMessage]]:
    """A queue builds at a 1-counter, 60 s branch, then the device dies (last will)."""
    out: list[tuple[float, ZoneMessage | StatusMessage]] = [
        (0, device_status_msg(0, T0)),
        (0, status_msg(1, T0)),
    ]
    seq = 2
    for k in range(1, 13):  # 5..60 s: one arrival every 5 s, nobody served
        t = 5.0 * k
        out.append((t, zone_msg(seq, T0 + t, people=k, arrivals=k, dwell_max=t)))
        seq += 1
    out.append((70, device_status_msg(seq - 1, T0 + 70, "offline", will=True)))
    return out


def _write(path: Path, script: list[tuple[float, ZoneMessage | StatusMessage]]) -> None:
    with path.open("w") as f:
        for t, msg in script:
            topic, payload = raw(msg)
            f.write(record_line(T0 + t, topic, payload) + "\n")


def _alert_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (
        p["event_id"],
        p["event"],
        p["kind"],
        p["severity"],
        p["state"],
        p["started_at_ts"],
        p["ended_at_ts"],
        p["summary"],
        p["value"],
    )


def test_replay_fires_w1_at_the_hand_computed_time(tmp_path: Path) -> None:
    # Fallback capacity 1/60 s. At t = 5k s, k waiting: predicted (k + 1) * 60 s; it
    # reaches T = 300 s at k = 4 (t = 20 s), and 1.35 T = 405 s at k = 6 (t = 30 s), when
    # the queue rule holds alone; the head rule (oldest + 30 s >= 300 s) never holds
    # before 60 s. Held min_duration_s = 20 s: fires at t = 50 s. Severity critical
    # (predicted >= T).
    raw_cfg = _cfg(tmp_path, warn_head_fraction=0.6)
    # the configured capacity until departures are seen (the default posterior would
    # already read the standing queue as slower service)
    raw_cfg["estimator"] = {"service_rate_gated": True}
    cfg = parse_server_config(raw_cfg)
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    out: list[dict[str, Any]] = []
    summary = replay(cfg, read_records(src), out.append, estimates_every_s=10)
    alerts = [o for o in out if o["type"] == "alert"]
    w1 = [o for o in alerts if o["kind"] == "w1_wait"]
    assert [(o["event"], o["severity"], o["started_at_ts"]) for o in w1][:1] == [
        ("fire", "critical", T0 + 50)
    ]
    estimates = [o for o in out if o["type"] == "estimate"]
    # an estimate line at ts reflects the messages received before ts (timers first)
    at40 = next(o for o in estimates if o["ts"] == T0 + 40)
    assert at40["queue_length"] == 7 and at40["predicted_wait_s"] == pytest.approx(480.0)
    assert {o["zone"] for o in estimates} == {"W1"}
    # the last will at t = 70 s: device offline for offline_after_s (15 s) fires at t = 85 s
    # only if the stream lasts that long; it ends at 70 s, so no device alert yet
    assert not [o for o in alerts if o["kind"] == "device_offline"]
    assert summary.messages == 15 and summary.alert_events == len(alerts)


def test_zones_the_config_names_that_never_reported_are_warned_of(tmp_path: Path) -> None:
    # a misspelt service point falls back to the configured counters without a word
    raw_cfg = _cfg(tmp_path)
    raw_cfg["branches"][0]["zones"] = {"W1": {"service_points": ["C9"]}, "W2": {"counters": 2}}
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    summary = replay(parse_server_config(raw_cfg), read_records(src), lambda o: None)
    assert summary.warnings == [
        "branch b1: service point 'C9' of 'W1' never reported: its counters are the "
        "configured ones",
        "branch b1: zone 'W2' is configured but never reported (reported: W1)",
    ]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ReplayInputError, match=r"^no records: the stream is empty$"):
        replay(parse_server_config(raw_cfg), read_records(empty), lambda o: None)
    # every message refused (a space instead of the T in each ts): not a quiet day
    refused = tmp_path / "refused.jsonl"
    lines = src.read_text().splitlines()
    refused.write_text(
        "\n".join(ln.replace("T", " ", 1) if '"ts"' in ln else ln for ln in lines[2:5]) + "\n"
    )
    with pytest.raises(
        ReplayInputError,
        match=r"^none of the 3 messages was applied \(3 malformed; by cause: 3 malformed/schema\); "
        r"the log above",
    ):
        replay(parse_server_config(raw_cfg), read_records(refused), lambda o: None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "in.jsonl:2: not JSON (Expecting value, column 1)"),
        (
            '{"received_at": 1764408601 "topic": "a"}',
            "not JSON (Expecting ',' delimiter, column 28)",
        ),
        ('{"topic": "a", "payload": {}}', "in.jsonl:2: missing received_at"),
        ('{"received_at": "x", "topic": "a", "payload": {}}', "received_at must be a number"),
        ('{"received_at": 1764408601, "topic": "", "payload": {}}', "topic must be a non-empty"),
        ('{"received_at": 1764408601, "topic": "a", "payload": 3}', "payload must be an object"),
        (
            '{"received_at": 1764408599.5, "topic": "a", "payload": {}}',
            "in.jsonl:2: received_at 1764408599.5 is earlier than the previous line's",
        ),
        # milliseconds, or seconds from the start of a simulation: not a crash on a date
        # nor every message "from the future", but the line named
        (
            '{"received_at": 1764408601250, "topic": "a", "payload": {}}',
            "in.jsonl:2: received_at 1764408601250 is not Unix seconds within 2020..2100",
        ),
        (
            '{"received_at": 12.5, "topic": "a", "payload": {}}',
            "in.jsonl:2: received_at 12.5 is not Unix seconds within 2020..2100",
        ),
        ("[1, 2]", "in.jsonl:2: expected an object"),
    ],
)
def test_bad_input_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"received_at": 1764408600, "topic": "a", "payload": {}}\n' + line + "\n")
    with pytest.raises(ReplayInputError) as err:
        list(read_records(src))
    assert message in str(err.value)


def test_cli_replay_writes_jsonl_and_exits_2_on_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    conf = tmp_path / "server.yaml"
    conf.write_text(yaml.safe_dump(_cfg(tmp_path)))
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as done:
        cli_main(["server", "replay", "-c", str(conf), "--messages", str(src), "--out", str(out)])
    assert done.value.code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and {x["type"] for x in lines} == {"alert"}
    assert "replayed 15 messages: " in capsys.readouterr().out

    # lines the collector refuses (as live) are counted in the summary, not dropped unsaid
    refused = tmp_path / "refused.jsonl"
    refused.write_text(
        src.read_text()
        + json.dumps({"received_at": T0 + 900, "topic": "lobbywatch/v1/b1/x", "payload": "{"})
        + "\n"
        + src.read_text()
        .splitlines()[-1]
        .replace(
            f'"received_at": {json.loads(src.read_text().splitlines()[-1])["received_at"]}',
            f'"received_at": {T0 + 901}',
        )
        + "\n"
    )
    with pytest.raises(SystemExit) as done:
        cli_main(
            ["server", "replay", "-c", str(conf), "--messages", str(refused), "--out", str(out)]
        )
    assert done.value.code == 0
    said = capsys.readouterr().out
    assert "replayed 17 messages (not applied: 1 duplicate, 1 malformed): " in said
    assert "refused by cause: 1 malformed/topic " in said  # "lobbywatch/v1/b1/x"

    # a bad line at the end: exit 2, and the OUT of the last good run is left as it was
    # (nothing half-written that looks complete), with no temporary file beside it
    before = out.read_text()
    src.write_text(src.read_text() + "{broken\n")
    with pytest.raises(SystemExit) as done:
        cli_main(["server", "replay", "-c", str(conf), "--messages", str(src), "--out", str(out)])
    assert done.value.code == 2
    assert f"{src}:16: not JSON" in capsys.readouterr().err
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    fresh = tmp_path / "fresh.jsonl"
    with pytest.raises(SystemExit) as done:
        cli_main(["server", "replay", "-c", str(conf), "--messages", str(src), "--out", str(fresh)])
    assert done.value.code == 2 and not fresh.exists()


@pytest.mark.slow
def test_replay_builds_no_notification_sink(tmp_path: Path) -> None:
    # the branches' live config, copied to a workstation: its webhook key file exists only
    # on the collector's host. A live collector refuses to start without it; the replay
    # notifies nobody, so it reads no secret and still gives the alert events.
    cfg = _cfg(tmp_path)
    missing = tmp_path / "absent" / "webhook.key"
    cfg["notify"] = {
        "sinks": {
            "north": {
                "type": "webhook",
                "url": "https://hooks.example",
                "secret_file": str(missing),
            }
        },
    }
    parsed = parse_server_config(cfg)
    # the error names the sink, as a config with several would need
    with pytest.raises(
        ConfigError, match=f"notify.sinks.north: webhook secret_file: cannot read {missing}"
    ):
        Collector(parsed, with_mqtt=False, with_http=False)
    src = tmp_path / "in.jsonl"
    _write(src, _script())
    out: list[dict[str, Any]] = []
    summary = replay(parsed, read_records(src), out.append)
    assert summary.alert_events == len(out) > 0
    assert {o["kind"] for o in out} >= {"w1_wait"}


def test_live_run_and_replay_of_its_recording_give_the_same_alert_events(
    mosquitto: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    raw_cfg = _cfg(tmp_path)
    raw_cfg["mqtt"]["port"] = broker.port
    cfg = parse_server_config(raw_cfg)
    script = _script()
    end = 100  # 30 s after the will: device_offline fires at 85 s
    clock = SimClock(T0)
    recording = tmp_path / "recorded.jsonl"
    live = Collector(cfg, clock=clock, with_http=False, record_to=recording)
    live_events: list[dict[str, Any]] = []
    live.event_listeners.append(live_events.extend)
    pub = Publisher(broker.port)
    live.start()
    try:
        assert live.mqtt is not None
        wait_until(live.mqtt.connected.is_set, 10)
        sent = 0
        for second in range(end + 1):
            # advance the injected clock one second; the processing loop ticks at it,
            # then the messages of that second are received (stamped) and processed
            clock.now = T0 + second
            wait_until(lambda: live._last_tick == clock.now, 10, 0.005)
            for t, msg in script:
                if t == second:
                    topic, payload = raw(msg)
                    pub.send_raw(topic, payload)
                    sent += 1
                    wait_until(lambda n=sent: sum(live.state.results.values()) == n, 10, 0.005)
        clock.now = T0 + end + 1
        wait_until(lambda: live._last_tick == clock.now, 10, 0.005)
    finally:
        live.stop()
        pub.close()

    records = list(read_records(recording))
    assert len(records) == len(script)
    assert [r.received_at for r in records] == [T0 + t for t, _ in script]
    replayed: list[dict[str, Any]] = []
    # the live run went on to end + 1: so does the replay
    replay(cfg, records, replayed.append, until=T0 + end + 1)
    replayed_alerts = [o for o in replayed if o["type"] == "alert"]
    kinds = {(p["kind"], p["event"]) for p in live_events}
    assert {("w1_wait", "fire"), ("device_offline", "fire")} <= kinds
    assert [_alert_key(p) for p in replayed_alerts] == [_alert_key(p) for p in live_events]


def test_a_device_whose_messages_are_refused_is_not_called_offline(tmp_path: Path) -> None:
    # it publishes every 5 s throughout; after 60 s to the wrong zone topic (payload W1,
    # topic W2): nothing valid arrives, and the alert says why instead of "offline"
    lines = []
    for t, msg in [(0.0, device_status_msg(0, T0)), (0.0, status_msg(1, T0))]:
        lines.append(record_line(T0 + t, *raw(msg)))
    for k in range(1, 60):
        t = 5.0 * k
        topic, payload = raw(zone_msg(k + 1, T0 + t, people=1, arrivals=1, dwell_max=t))
        if t > 60:
            topic = topic.replace("/zones/W1", "/zones/W2")
        lines.append(record_line(T0 + t, topic, payload))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out: list[dict[str, Any]] = []
    replay(parse_server_config(_cfg(tmp_path)), read_records(src), out.append)
    offline = [o for o in out if o["type"] == "alert" and o["kind"] == "device_offline"]
    assert [o["event"] for o in offline] == ["fire"]
    # the last valid message at 60 s, silent from 120 s (the heartbeat timeout), fired
    # after offline_after_s 15 s; "no valid message" for the 75 s since the last one
    assert offline[0]["started_at_ts"] == pytest.approx(T0 + 135, abs=1.5)
    assert offline[0]["summary"] == (
        "Device edge-1 at b1: no valid message for 1 min; its messages are refused: "
        "payload zone 'W1' differs from the topic's"
    )
