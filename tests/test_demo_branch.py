"""The demo's packaged branch and the documented example describe one branch,
and the demo finds its sample video without a repository checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lobbywatch.demo.demo import DEMO_BRANCH, edge_config, find_video
from lobbywatch.edge.config import load_device_config
from lobbywatch.locate import NotLocatedError

EXAMPLE = Path(__file__).resolve().parents[1] / "firmware_config/examples/branch-demo.yaml"


def test_packaged_demo_branch_matches_the_example() -> None:
    packaged = yaml.safe_load(DEMO_BRANCH.read_text())
    example = yaml.safe_load(EXAMPLE.read_text())
    for key in ("device_id", "branch_id", "region", "timezone", "model"):
        assert packaged[key] == example[key], key
    (cam,) = packaged["cameras"]
    assert cam["zones"] == example["cameras"][0]["zones"]


def test_demo_edge_config_is_a_valid_device_config(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    video.write_bytes(b"")
    path = edge_config(tmp_path, video, "127.0.0.1", 1883, root="lobbywatch", heartbeat_s=5)
    cfg = load_device_config(path, check_files=False)
    assert cfg.branch_id == "demo-branch"
    assert [z.id for z in cfg.cameras[0].zones][:2] == ["W1", "cash-1"]


def test_sample_video_follows_option_then_variable_then_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "elsewhere"
    (shared / "data/video").mkdir(parents=True)
    (shared / "data/video/vtest.avi").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOBBYWATCH_SHARED", str(shared))
    assert find_video() == (shared / "data/video/vtest.avi").resolve()
    own = tmp_path / "own.avi"
    own.write_bytes(b"x")
    assert find_video(own) == own.resolve()
    # ../shared relative to the working directory, as in a checkout
    monkeypatch.delenv("LOBBYWATCH_SHARED")
    checkout = tmp_path / "repo"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(checkout)
    assert find_video() == (shared / "data/video/vtest.avi").resolve()


def test_missing_sample_video_names_option_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOBBYWATCH_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(NotLocatedError) as err:
        find_video()
    msg = str(err.value)
    assert "--video" in msg and "LOBBYWATCH_SHARED" in msg and "\n" not in msg
    with pytest.raises(NotLocatedError, match=r"missing\.avi \(given explicitly by --video\)"):
        find_video(tmp_path / "missing.avi")
