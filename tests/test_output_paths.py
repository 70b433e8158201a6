"""Every output path option of every command, as a new user gets them wrong.

A folder where a file is expected, or a parent that is a file, is one line naming
the option and exit 2 (no stack trace); missing parent folders are created.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_count_cli import write_config

from lobbywatch.cli import main

Argv = Callable[[Path, Path], list[str]]


def _count(option: str) -> Argv:
    return lambda tmp, out: ["count", str(tmp / "v.avi"), "-c", str(write_config(tmp)),
                             option, str(out)]  # fmt: skip


def _preview(tmp: Path, out: Path) -> list[str]:
    image = tmp / "view.png"
    cv2.imwrite(str(image), np.zeros((40, 60, 3), np.uint8))
    return ["zones", "preview", "-c", str(write_config(tmp)), "--source", str(image),
            "--no-detect", "--out", str(out)]  # fmt: skip


def _schema(tmp: Path, out: Path) -> list[str]:
    return ["config", "schema", "--out", str(out)]


def _truth(tmp: Path, out: Path) -> list[str]:
    return ["simulate", "--dry-run", "--truth", str(out)]


def _provision(tmp: Path, out: Path) -> list[str]:
    return ["device", "provision", "--branch", "b1", "--device", "d1", "--camera", "cam1",
            "--out", str(out)]  # fmt: skip


def _provision_tickets(tmp: Path, out: Path) -> list[str]:
    return ["device", "provision-tickets", "--branch", "b1", "--source", "qms-1",
            "--out", str(out)]  # fmt: skip


def _demo(tmp: Path, out: Path) -> list[str]:
    return ["demo", "--no-edge", "--duration", "0.1", "--workdir", str(out)]


def _replay(tmp: Path, out: Path) -> list[str]:
    conf = tmp / "server.yaml"
    conf.write_text(f"database: {{url: 'sqlite:///{tmp / 'unused.db'}'}}\n")
    messages = tmp / "in.jsonl"
    zone = {"v": 1, "type": "zone", "device": "d1", "seq": 0, "ts": "2026-01-01T09:00:00Z",
            "branch": "b1", "camera": "cam1", "zone": "W1", "kind": "waiting", "people": 1,
            "raw_count": 1, "arrivals_total": 1, "departures_total": 0}  # fmt: skip
    line = {"received_at": 1767258000.0, "topic": "lobbywatch/v1/b1/cam1/zones/W1",
            "payload": zone}  # fmt: skip
    later = {**line, "received_at": 1767258002.0,
             "payload": {**zone, "seq": 1, "ts": "2026-01-01T09:00:02Z"}}  # fmt: skip
    messages.write_text(json.dumps(line) + "\n" + json.dumps(later) + "\n")
    return ["server", "replay", "-c", str(conf), "--messages", str(messages), "--out", str(out),
            "--estimates-every", "1"]  # fmt: skip


def _record(tmp: Path, out: Path) -> list[str]:
    # refused before the collector starts (a good path would run it: not tested here)
    conf = tmp / "server.yaml"
    conf.write_text(f"database: {{url: 'sqlite:///{tmp / 'unused.db'}'}}\n")
    return ["server", "run", "-c", str(conf), "--record", str(out)]


def _report(tmp: Path, out: Path) -> list[str]:
    cfg = tmp / "server.yaml"
    (tmp / "r.db").touch()  # a report reads the collector's database; it never creates one
    cfg.write_text(f"database: {{url: 'sqlite:///{tmp / 'r.db'}'}}\nbranches: [{{id: b1}}]\n")
    return ["report", "daily", "--date", "2026-11-25", "-c", str(cfg), "--out", str(out)]


def _credential(option: str) -> Argv:
    def argv(tmp: Path, out: Path) -> list[str]:
        paths = {"--file": tmp / "creds", "--token-out": tmp / "token", option: out}
        return ["server", "add-credential", "--name", "n", "--file", str(paths["--file"]),
                "--token-out", str(paths["--token-out"])]  # fmt: skip

    return argv


#: (option, argv, file name suffix, the option names a file (not a folder))
FILE_OPTIONS = [
    pytest.param("--out", _count("--out"), ".avi", id="count --out"),
    pytest.param("--csv", _count("--csv"), ".csv", id="count --csv"),
    pytest.param("--out", _preview, ".png", id="zones preview --out"),
    pytest.param("--out", _schema, ".json", id="config schema --out"),
    pytest.param("--truth", _truth, ".csv", id="simulate --truth"),
    pytest.param("--out", _replay, ".jsonl", id="server replay --out"),
    pytest.param("--record", _record, ".jsonl", id="server run --record"),
    pytest.param("--out", _report, ".html", id="report daily --out"),
    pytest.param("--file", _credential("--file"), "", id="server add-credential --file"),
    pytest.param(
        "--token-out", _credential("--token-out"), "", id="server add-credential --token-out"
    ),
]


def _model_dest(tmp: Path, out: Path) -> list[str]:
    return ["model", "pull", "--dest", str(out)]


FOLDER_OPTIONS = [
    pytest.param("--out", _provision, id="device provision --out"),
    pytest.param("--out", _provision_tickets, id="device provision-tickets --out"),
    pytest.param("--dest", _model_dest, id="model pull --dest"),
    pytest.param("--workdir", _demo, id="demo --workdir"),
]


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(("option", "argv", "suffix"), FILE_OPTIONS)
def test_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, argv: Argv, suffix: str
) -> None:
    folder = tmp_path / f"results{suffix}"
    folder.mkdir()
    err = run_error(argv(tmp_path, folder), capsys)
    assert err == f"error: {option} {folder}: is a folder; give a file name"


@pytest.mark.parametrize(("option", "argv", "suffix"), FILE_OPTIONS)
def test_a_parent_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, argv: Argv, suffix: str
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    out = blocker / "sub" / f"out{suffix}"
    err = run_error(argv(tmp_path, out), capsys)
    assert err == f"error: {option} {out}: {blocker} is a file, not a folder"
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize(
    ("argv", "suffix"),
    [
        (_preview, ".png"),
        (_schema, ".json"),
        (_truth, ".csv"),
        (_report, ".html"),
        (_credential("--token-out"), ""),
        (_replay, ".jsonl"),
    ],
)
def test_missing_folders_are_created(tmp_path: Path, argv: Argv, suffix: str) -> None:
    # `count` writes with the model: covered in test_count_cli's model tests.
    out = tmp_path / "new" / "deeper" / f"out{suffix}"
    main_ok(argv(tmp_path, out))
    assert out.is_file() and out.stat().st_size > 0


def main_ok(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


@pytest.mark.parametrize(("option", "argv"), FOLDER_OPTIONS)
def test_a_folder_option_refuses_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, argv: Argv
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    err = run_error(argv(tmp_path, blocker), capsys)
    assert err == f"error: {option} {blocker}: {blocker} is a file, not a folder"
    err = run_error(argv(tmp_path, blocker / "deeper"), capsys)
    assert err == f"error: {option} {blocker / 'deeper'}: {blocker} is a file, not a folder"


def test_provision_creates_missing_folders(tmp_path: Path) -> None:
    out = tmp_path / "not" / "yet"
    main_ok(_provision(tmp_path, out))
    assert (out / "d1" / "device.yaml").is_file()
    main_ok(_provision_tickets(tmp_path, out))
    assert (out / "tickets.b1.qms-1" / "broker-acl.conf").is_file()


def test_count_missing_video_folder_does_not_blame_the_codec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The folder is created; the error is about the missing video, not the codec.
    out = tmp_path / "nonexistent" / "dir" / "a.mp4"
    err = run_error(_count("--out")(tmp_path, out), capsys)
    assert "codec" not in err and "mp4v" not in err
    assert "v.avi does not exist" in err
    assert out.parent.is_dir()


#: Path options that are read, not written (command, option).
INPUT_PATHS = {
    ("count", "--config"), ("zones preview", "--config"), ("config check", "file"),
    ("edge run", "--config"), ("server run", "--config"), ("server check-config", "config"),
    ("server check-config", "--config"),
    ("simulate", "--password-file"), ("demo", "--video"), ("eval", "dataset"),
    ("eval", "--model"), ("model pull", "--calibration"), ("model verify", "--path"),
    ("server replay", "--config"), ("server replay", "--messages"),
    # calibrate reads these; it rewrites the existing --config in place (atomic,
    # schema-validated, tests/test_calibration.py) and --web saves counts.csv
    # into the existing --snapshots folder
    ("calibrate", "--config"), ("calibrate", "--snapshots"), ("calibrate", "--counts"),
    ("report daily", "--config"),
}  # fmt: skip
OUTPUT_PATHS = {
    ("count", "--out"), ("count", "--csv"), ("zones preview", "--out"),
    ("config schema", "--out"), ("simulate", "--truth"), ("device provision", "--out"),
    ("device provision-tickets", "--out"),
    ("demo", "--workdir"), ("model pull", "--dest"), ("server replay", "--out"),
    ("server run", "--record"),
    ("demo", "--workdir"), ("model pull", "--dest"), ("report daily", "--out"),
    ("server add-credential", "--file"), ("server add-credential", "--token-out"),
}  # fmt: skip


def test_every_path_option_is_classified() -> None:
    # A new output option fails here until it is checked and added to the tests above.
    import inspect
    import typing

    import typer

    from lobbywatch.cli import app

    found: set[tuple[str, str]] = set()

    def walk(cmd: typing.Any, prefix: str) -> None:
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, f"{prefix} {name}".strip())
        if cmd.callback is None:
            return
        hints = typing.get_type_hints(inspect.unwrap(cmd.callback))
        for p in cmd.params:
            if Path in (hints.get(p.name), *typing.get_args(hints.get(p.name))):
                opts = [o for o in p.opts if o.startswith("--")]
                found.add((prefix, max(opts, key=len) if opts else str(p.name)))

    walk(typer.main.get_command(app), "")
    assert ("count", "--config") in found  # the walk sees the commands
    assert found - INPUT_PATHS == OUTPUT_PATHS, found - INPUT_PATHS
