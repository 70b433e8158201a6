"""SERVER.yaml: schema, layered alert policies, errors with field paths, the sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lobbywatch.errors import ConfigError
from lobbywatch.server.config import load_server_config, parse_server_config

REPO = Path(__file__).resolve().parents[1]


def test_sample_config_loads_and_layers_policies() -> None:
    cfg = load_server_config(REPO / "deploy" / "server.example.yaml")
    assert [b.id for b in cfg.branches] == ["berlin-mitte", "munich-ost"]
    zone = cfg.policy_for("berlin-mitte", "W1")
    branch = cfg.policy_for("berlin-mitte", None)
    other = cfg.policy_for("munich-ost", "W1")
    assert (zone.w1_threshold_s, branch.w1_threshold_s, other.w1_threshold_s) == (480, 600, 600)
    assert (other.renotify_s, zone.renotify_s) == (900, 1800)
    assert cfg.service_for("berlin-mitte", "VIP") == (1, 900)
    assert cfg.service_for("berlin-mitte", "W1") == (3, 240)
    assert cfg.service_for("unknown", "W1") == (2, 240.0)
    hours = cfg.branches[0].business_hours
    assert hours is not None and hours.timezone == cfg.branches[0].timezone
    # Monday 2025-06-02 10:00 Berlin (08:00 UTC) open; 20:00 closed
    assert hours.is_open(1748851200.0) and not hours.is_open(1748887200.0)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"mqtt": {"shared_group": "a/b"}}, "mqtt.shared_group"),
        ({"mqtt": {"tls": {"cert_file": "/x"}}}, "mqtt.tls"),
        ({"database": {"url": "mysql://x"}}, "database.url"),
        ({"branches": [{"id": "b 1"}]}, "branches[0].id"),
        ({"branches": [{"id": "b1", "timezone": "Mars/Base"}]}, "branches[0].timezone"),
        ({"branches": [{"id": "b1"}, {"id": "b1"}]}, "branches[1].id"),
        ({"branches": [{"id": "b1", "zones": {"W 1": {}}}]}, "branches[0].zones"),
        ({"alerts": {"w1_threshold_s": -5}}, "alerts.w1_threshold_s"),
        ({"alerts": {"no_such_knob": 1}}, "alerts.no_such_knob"),
        ({"estimator": {"rate_window_s": 0}}, "estimator.rate_window_s"),
        (
            {"branches": [{"id": "b1", "alerts": {"renotify_s": "often"}}]},
            "branches[0].alerts.renotify_s",
        ),
        (
            {"branches": [{"id": "b1", "alerts": {"no_such_knob": 1}}]},
            "branches[0].alerts.no_such_knob",
        ),
        (
            {"branches": [{"id": "b1", "business_hours": {"timezone": "Mars/Base"}}]},
            "branches[0].business_hours.timezone",
        ),
        (
            {"branches": [{"id": "b1", "zones": {"W1": {"alerts": {"warn_fraction": 2}}}}]},
            "branches[0].zones.W1.alerts.warn_fraction",
        ),
        (
            {"branches": [{"id": "b1", "business_hours": {"weekly": {"mon": [["9", "x"]]}}}]},
            "branches[0].business_hours.weekly.mon",
        ),
        ({"notify": {"routes": [{"sinks": ["nope"]}]}}, "routes[0]: unknown sink 'nope'"),
        ({"notify": {"sinks": {"x": {"type": "pager"}}}}, "notify.sinks.x"),
        (
            {
                "notify": {
                    "sinks": {"am": {"type": "alertmanager", "url": "http://a", "ends_after_s": 10}}
                }
            },
            "notify.sinks.am.alertmanager",
        ),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_errors_name_the_field(data: object, path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_server_config(data)
    assert path in str(exc.value)


def test_a_misspelt_setting_names_the_one_meant_and_each_problem_has_its_line() -> None:
    data = {
        "branches": [{"id": "b1", "zones": {"W1": {"service_point": ["C1"]}}}],
        "alerts": {"w1_treshold_s": 300},
        "zzz": 1,
    }
    with pytest.raises(ConfigError) as exc:
        parse_server_config(data, "s.yaml")
    assert str(exc.value) == (
        "s.yaml: 3 problems:"
        "\n  alerts.w1_treshold_s: unknown setting (did you mean 'w1_threshold_s'?)"
        "\n  branches[0].zones.W1.service_point: unknown setting (did you mean "
        "'service_points'?)"
        "\n  zzz: unknown setting"
    )


def test_errors_of_a_yaml_file_give_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text(
        "branches:\n"  # 1
        "  - id: b1\n"  # 2
        "    counters: -2\n"  # 3
        "    alerts:\n"  # 4
        "      w1_treshold_s: 300\n"  # 5
        "alerts:\n"  # 6
        "  resolve_after_s: -1\n"  # 7
    )
    with pytest.raises(ConfigError) as exc:
        load_server_config(cfg)
    assert str(exc.value) == (
        f"{cfg}: 3 problems:"
        "\n  alerts.resolve_after_s (line 7): Input should be greater than or equal to 0"
        "\n  branches[0].counters (line 3): Input should be greater than 0"
        "\n  branches[0].alerts.w1_treshold_s (line 5): unknown setting (did you mean "
        "'w1_threshold_s'?)"
    )
    # a zone's alert section is validated once merged with the branch's: its line too
    cfg.write_text(
        "branches:\n  - id: b1\n    zones:\n      W1:\n        alerts:\n"
        "          resolve_fraction: 3\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_server_config(cfg)
    assert str(exc.value) == (
        f"{cfg}: branches[0].zones.W1.alerts.resolve_fraction (line 6): Input should be "
        "less than or equal to 1"
    )


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_server_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_server_config(bad)


def test_mqtt_password_from_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    cfg = parse_server_config({"mqtt": {"username": "c", "password_file": str(pw)}})
    assert cfg.mqtt.password() == "hunter2"
    monkeypatch.setenv("LOBBYWATCH_MQTT_PASSWORD", "fromenv")
    assert cfg.mqtt.password() == "fromenv"
    monkeypatch.delenv("LOBBYWATCH_MQTT_PASSWORD")
    pw.unlink()
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):
        cfg.mqtt.password()


def test_cli_check_config_reports_field_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lobbywatch.cli import main

    bad = tmp_path / "s.yaml"
    bad.write_text("http: {port: 70000}\n")
    with pytest.raises(SystemExit) as exc:
        main(["server", "check-config", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: ") and len(err.splitlines()) == 1, err
    assert "http.port" in err and "65535" in err
    from lobbywatch.cli import app

    result = CliRunner().invoke(
        app, ["server", "check-config", str(REPO / "deploy/server.example.yaml")]
    )
    assert result.exit_code == 0 and "2 branches" in result.output
    # the same file through -c, as `server run -c` and `report daily -c` take it
    result = CliRunner().invoke(
        app, ["server", "check-config", "-c", str(REPO / "deploy/server.example.yaml")]
    )
    assert result.exit_code == 0 and "2 branches" in result.output, result.output


def test_cli_check_config_names_a_nested_policy_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text(
        "alerts: {w1_threshold_s: 600}\n"
        "branches:\n"
        "  - id: b1\n"
        "    zones: {W1: {alerts: {w1_threshold_s: -1}}}\n"
    )
    from lobbywatch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["server", "check-config", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "branches[0].zones.W1.alerts.w1_threshold_s" in err and "greater than 0" in err
    assert "Traceback" not in err


def test_policy_layers_override_only_what_they_set() -> None:
    cfg = parse_server_config(
        {
            "alerts": {"w1_threshold_s": 500, "resolve_fraction": 0.5},
            "branches": [
                {"id": "b1", "alerts": {"warn_fraction": 0.6}},
                {"id": "b2", "zones": {"W1": {"alerts": {"w1_threshold_s": 300}}}},
            ],
        }
    )
    b1 = cfg.policy_for("b1", "W1")
    assert (b1.w1_threshold_s, b1.warn_fraction, b1.resolve_fraction) == (500, 0.6, 0.5)
    assert cfg.policy_for("b2", "W1").w1_threshold_s == 300
    assert cfg.policy_for("b2", "W2").w1_threshold_s == 500
    assert cfg.policy_for("unknown", None) == cfg.alerts


def test_relative_file_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """TLS, password and secret files are found wherever the collector is started."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "server.yaml").write_text(
        "mqtt:\n"
        "  password_file: secrets/mqtt.password\n"
        "  tls: {ca_file: certs/ca.pem, cert_file: /abs/client.pem, key_file: certs/c.key}\n"
        "notify:\n"
        "  sinks:\n"
        "    ops: {type: webhook, url: 'http://127.0.0.1:9/hook', secret_file: hook.secret}\n"
    )
    cfg = load_server_config(conf_dir / "server.yaml")
    assert cfg.mqtt.password_file == conf_dir / "secrets/mqtt.password"
    assert cfg.mqtt.tls is not None
    assert cfg.mqtt.tls.ca_file == conf_dir / "certs/ca.pem"
    assert cfg.mqtt.tls.cert_file == Path("/abs/client.pem")  # absolute stays as written
    assert cfg.mqtt.tls.key_file == conf_dir / "certs/c.key"
    assert cfg.notify.sinks["ops"].secret_file == conf_dir / "hook.secret"  # type: ignore[union-attr]


def test_old_max_zones_name_still_read_with_a_deprecation_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.warns(DeprecationWarning, match="rename it to ingest.max_zones_and_devices"):
        cfg = parse_server_config({"ingest": {"max_zones": 7}})
    assert cfg.ingest.max_zones_and_devices == 7
    assert "ingest.max_zones is deprecated" in caplog.text
    with pytest.raises(ConfigError, match="old name of max_zones_and_devices"):
        parse_server_config({"ingest": {"max_zones": 7, "max_zones_and_devices": 8}})


def test_max_clock_skew_description_says_reject() -> None:
    from lobbywatch.server.config import IngestSettings

    text = IngestSettings.model_fields["max_clock_skew_s"].description or ""
    assert "rejected" in text
    assert "not clamped" in text
