"""Device config: examples valid, generated schema in sync, and every kind of mistake
reported with its field path, problem and YAML line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lobbywatch.edge.config import (
    DeviceConfigError,
    device_json_schema,
    load_device_config,
    parse_device_config,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "firmware_config" / "examples"

BASE = """\
device_id: edge-01
branch_id: b042
cameras:
  - id: cam1
    source: {video}
    fps: 2
    zones:
      - id: W1
        kind: waiting
        polygon: [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
      - id: cash-1
        kind: cash_counter
        polygon: [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
mqtt:
  host: 127.0.0.1
  port: 1883
"""


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    path.write_bytes(b"not really a video, only has to exist")
    return path


def _problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(DeviceConfigError) as info:
        parse_device_config(text, base_dir=tmp_path, source="device.yaml")
    return [str(p) for p in info.value.problems]


def test_base_config_is_valid_and_resolves_relative_paths(tmp_path: Path, video: Path) -> None:
    cfg = parse_device_config(BASE.format(video="clip.avi"), base_dir=tmp_path)
    assert cfg.cameras[0].source == str(video)
    assert cfg.cameras[0].is_file_source
    assert cfg.mqtt.qos == 1 and cfg.mqtt.protocol == 5 and cfg.client_id == "edge-01"
    assert cfg.debug_view.enabled is False and cfg.debug_view.bind == "127.0.0.1"
    assert cfg.buffer.path == tmp_path / "outbox.sqlite"


def test_env_references_expand(tmp_path: Path, video: Path, monkeypatch) -> None:
    monkeypatch.setenv("LW_TEST_DIR", str(tmp_path))
    monkeypatch.setenv("LW_CAM_PW", "s3cret")
    text = BASE.format(video="${LW_TEST_DIR}/clip.avi").replace(
        "  host: 127.0.0.1", "  host: ${LW_TEST_HOST:-broker.local}"
    )
    cfg = parse_device_config(text, base_dir=Path("/nonexistent"))
    assert cfg.cameras[0].source == str(video) and cfg.mqtt.host == "broker.local"
    url = BASE.format(video="rtsp://viewer:${LW_CAM_PW}@10.0.0.5/s1")
    assert parse_device_config(url).cameras[0].source == "rtsp://viewer:s3cret@10.0.0.5/s1"
    assert parse_device_config(BASE.format(video="0")).cameras[0].source == 0


BAD = [
    # (edit as (old, new) on BASE, expected path, expected words, expected line)
    pytest.param(("    fps: 2", "    fps: 0"), "cameras[0].fps", "greater than 0", 6, id="fps"),
    pytest.param(("  - id: cam1", "  - id: cam/1"), "cameras[0].id", "should match", 4, id="id"),
    pytest.param(("    fps: 2", "    fsp: 2"), "cameras[0].fsp", "unknown field", 6, id="typo"),
    pytest.param(
        ("        kind: waiting", "        kind: lounge"),
        "cameras[0].zones[0].kind",
        "'waiting'",
        9,
        id="zone-kind",
    ),
    pytest.param(
        ("[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]", "[[0.0, 0.0], [0.5, 0.0]]"),
        "cameras[0].zones[0].polygon",
        "at least 3",
        10,
        id="polygon-short",
    ),
    pytest.param(
        (
            "[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]",
            "[[0.5, 0.0], [1.5, 0.0], [1.0, 1.0], [0.5, 1.0]]",
        ),
        "cameras[0].zones[1].polygon",
        "outside the frame",
        13,
        id="polygon-outside",
    ),
    pytest.param(
        (
            "[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]",
            "[[0.4, 0.0], [1.0, 0.0], [1.0, 1.0], [0.4, 1.0]]",
        ),
        "cameras[0].zones[1].polygon",
        "overlap",
        13,
        id="zones-overlap",
    ),
    pytest.param(
        ("      - id: cash-1", "      - id: W1"),
        "cameras[0].zones[1].id",
        "duplicate zone id 'W1'",
        11,
        id="dup-zone",
    ),
    pytest.param(
        (
            "mqtt:",
            "  - id: cam1\n    source: clip.avi\n    zones:\n      - id: Z\n"
            "        kind: waiting\n        polygon: [[0, 0], [1, 0], [1, 1]]\nmqtt:",
        ),
        "cameras[1].id",
        "duplicate camera id 'cam1'",
        14,
        id="dup-camera",
    ),
    pytest.param(
        ("    source: clip.avi", "    source: missing.avi"),
        "cameras[0].source",
        "does not exist",
        5,
        id="missing-video",
    ),
    pytest.param(
        ("    source: clip.avi", "    source: ftp://cam/stream"),
        "cameras[0].source",
        "unsupported URL scheme",
        5,
        id="url-scheme",
    ),
    pytest.param(
        ("    source: clip.avi", "    source: rtsp://admin:hunter2@10.0.0.5/s1"),
        "cameras[0].source",
        "literal password in the stream URL",
        5,
        id="rtsp-password",
    ),
    pytest.param(
        ("    source: clip.avi", "    source: rtsp://cam/s1\n    loop: true"),
        "cameras[0].loop",
        "only applies to video file",
        6,
        id="loop-rtsp",
    ),
    pytest.param(
        ("    source: clip.avi", "    source: ${LW_UNSET_VAR_X}/clip.avi"),
        "cameras[0].source",
        "LW_UNSET_VAR_X is not set",
        5,
        id="env-unset",
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\n  password: hunter2"),
        "mqtt.password",
        "literal passwords are not allowed",
        17,
        id="mqtt-password",
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\n  username: u\n  password_file: nope.txt"),
        "mqtt.password_file",
        "does not exist",
        18,
        id="password-file-missing",
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\n  username: u\n  password_env: LW_UNSET_PW"),
        "mqtt.password_env",
        "LW_UNSET_PW is not set",
        18,
        id="password-env-unset",
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\n  tls:\n    ca_file: ca.pem"),
        "mqtt.tls.ca_file",
        "does not exist",
        18,
        id="tls-file",
    ),
    pytest.param(
        ("  port: 1883", "  port: 70000"), "mqtt.port", "less than or equal", 16, id="port"
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\npublish:\n  heartbeat_s: 200"),
        "publish.message_expiry_s",
        "twice heartbeat_s",
        17,
        id="expiry-vs-heartbeat",
    ),
    pytest.param(
        ("  port: 1883", "  port: 1883\ndebug_view:\n  enabled: true\n  bind: 0.0.0.0"),
        "debug_view.bind",
        "not a loopback address",
        19,
        id="debug-remote",
    ),
    pytest.param(
        ("branch_id: b042", "branch_id: b042\ntimezone: Mars/Olympus"),
        "timezone",
        "unknown time zone",
        3,
        id="timezone",
    ),
    pytest.param(
        ("device_id: edge-01\n", ""),
        "device_id",
        "required field is missing",
        1,
        id="missing-field",
    ),
    pytest.param(("    zones:", "    zones: [oops"), "", "invalid YAML", 8, id="yaml-syntax"),
]


@pytest.mark.parametrize(("edit", "path", "words", "line"), BAD)
def test_each_mistake_has_a_clear_error(
    tmp_path: Path, video: Path, edit: tuple[str, str], path: str, words: str, line: int | None
) -> None:
    text = BASE.format(video="clip.avi")
    assert edit[0] in text
    problems = _problems(text.replace(edit[0], edit[1], 1), tmp_path)
    where = path or "(top level)"
    if line is not None:
        where += f" (line {line})"
    assert any(p.startswith(where + ":") and words in p for p in problems), problems


def test_secrets_never_echoed(tmp_path: Path, video: Path) -> None:
    text = BASE.format(video="rtsp://admin:hunter2@10.0.0.5/s1")
    problems = _problems(text, tmp_path)
    assert problems and not any("hunter2" in p for p in problems)


def test_password_file_must_be_private(tmp_path: Path, video: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    os.chmod(secret, 0o644)
    text = BASE.format(video="clip.avi") + "  username: u\n  password_file: pw\n"
    assert any("chmod 600" in p for p in _problems(text, tmp_path))
    os.chmod(secret, 0o600)
    cfg = parse_device_config(text, base_dir=tmp_path)
    assert cfg.mqtt.password() == "x"


def test_examples_are_valid() -> None:
    demo = load_device_config(EXAMPLES / "branch-demo.yaml", check_files=False)
    kinds = {z.kind.value for c in demo.cameras for z in c.zones}
    assert kinds >= {"waiting", "cash_counter", "non_cash_counter", "wealth_desk", "self_service"}
    assert sum(z.kind.value == "cash_counter" for c in demo.cameras for z in c.zones) == 2
    prod = load_device_config(EXAMPLES / "branch-rtsp-production.yaml", check_files=False)
    assert prod.mqtt.tls is not None and prod.mqtt.password_file is not None
    assert all(c.detect_source for c in prod.cameras)
    # both flows layouts: counters on the queue's camera, and on another one
    (demo_w1,) = [z for c in demo.cameras for z in c.zones if z.kind.value == "waiting"]
    assert demo_w1.flows is not None and "cash-1" in demo_w1.flows.service_points
    (prod_w1,) = [z for c in prod.cameras for z in c.zones if z.kind.value == "waiting"]
    assert prod_w1.flows is not None
    assert (prod_w1.flows.service_points, prod_w1.flows.exits) == ([], ["entrance"])


def test_demo_example_checks_with_files(vtest_video: Path) -> None:
    env = {**os.environ, "LOBBYWATCH_SHARED": str(vtest_video.parents[2])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lobbywatch.cli",
            "config",
            "check",
            str(EXAMPLES / "branch-demo.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "6 zone(s)" in out.stdout


def test_generated_schema_is_committed_and_current() -> None:
    committed = json.loads((REPO / "firmware_config" / "device.schema.json").read_text())
    assert committed == json.loads(json.dumps(device_json_schema())), (
        "regenerate: lobbywatch config schema -o firmware_config/device.schema.json"
    )


def test_cli_check_exit_2_with_path_and_line(tmp_path: Path, video: Path) -> None:
    bad = tmp_path / "device.yaml"
    bad.write_text(BASE.format(video="clip.avi").replace("    fps: 2", "    fps: -1"))
    out = subprocess.run(
        [sys.executable, "-m", "lobbywatch.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "cameras[0].fps (line 6): Input should be greater than 0" in out.stderr
    schema = subprocess.run(
        [sys.executable, "-m", "lobbywatch.cli", "config", "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(schema.stdout)["title"] == "DeviceConfig"


def test_load_errors_are_config_errors(tmp_path: Path) -> None:
    from lobbywatch.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read config"):
        load_device_config(tmp_path / "absent.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_device_config(empty)


def test_missing_video_does_not_hide_zone_problems(tmp_path: Path) -> None:
    # One run reports the missing file and every bad vertex of every polygon.
    text = BASE.format(video="missing.avi").replace(
        "[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]",
        "[[0.0, 0.0], [1.5, 0.0], [0.5, 1.0], [-0.2, 1.0]]",
    )
    problems = _problems(text, tmp_path)
    assert any(
        "cameras[0].source (line 5): video file" in p and "missing.avi" in p for p in problems
    )
    polygon = [p for p in problems if p.startswith("cameras[0].zones[0].polygon")]
    assert any("vertex 1 (1.5, 0) is outside the frame" in p for p in polygon), problems
    assert any("vertex 3 (-0.2, 1) is outside the frame" in p for p in polygon), problems


def test_missing_sample_data_names_the_variable_that_moves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo example copied elsewhere: its default sample-data folder is not there.
    monkeypatch.delenv("LOBBYWATCH_SHARED", raising=False)
    copy = tmp_path / "elsewhere" / "branch-demo.yaml"
    copy.parent.mkdir()
    copy.write_text((EXAMPLES / "branch-demo.yaml").read_text())
    with pytest.raises(DeviceConfigError) as info:
        load_device_config(copy)
    (problem,) = (str(p) for p in info.value.problems)
    assert "cameras[0].source" in problem and "vtest.avi does not exist" in problem
    assert "LOBBYWATCH_SHARED is not set" in problem
    # ... and setting it is the fix
    shared = tmp_path / "data-home"
    (shared / "data" / "video").mkdir(parents=True)
    (shared / "data" / "video" / "vtest.avi").write_bytes(b"x")
    monkeypatch.setenv("LOBBYWATCH_SHARED", str(shared))
    assert load_device_config(copy).cameras[0].source == str(shared / "data/video/vtest.avi")


def test_relative_model_path_resolves_against_the_config_folder(
    tmp_path: Path, video: Path
) -> None:
    text = BASE.format(video="clip.avi") + "model:\n  path: weights/m.onnx\n"
    (tmp_path / "weights").mkdir()
    # an explicit weights file that is not there is a config error, named with its fix
    with pytest.raises(DeviceConfigError) as info:
        parse_device_config(text, base_dir=tmp_path)
    (problem,) = (str(p) for p in info.value.problems)
    assert "model" in problem and f"model file {tmp_path / 'weights' / 'm.onnx'}" in problem
    assert "fix model.path" in problem
    (tmp_path / "weights" / "m.onnx").write_bytes(b"onnx")
    cfg = parse_device_config(text, base_dir=tmp_path)
    assert cfg.model.path == tmp_path / "weights" / "m.onnx"
