""".ci/run: the apt packages it would install, each named once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


def packages_listed(path_dirs: list[Path]) -> list[str]:
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": os.pathsep.join(map(str, path_dirs)), "CI_LIST_PACKAGES": "1"}
    out = subprocess.run([bash, str(RUN)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def tools(tmp_path: Path, names: list[str]) -> Path:
    """A PATH folder with only these commands (and what the script itself needs)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in ["dirname", "sort", *names]:
        real = shutil.which(name)
        (folder / name).symlink_to(real if real else "/bin/true")
    return folder


def test_each_missing_package_once(tmp_path: Path) -> None:
    listed = packages_listed([tools(tmp_path, [])])
    assert sorted(listed) == sorted(set(listed)), listed
    assert set(listed) == {"mosquitto", "prometheus", "prometheus-alertmanager", "chromium",
                           "postgresql-client"}  # fmt: skip


def test_present_binaries_are_not_installed(tmp_path: Path) -> None:
    have = ["mosquitto", "prometheus", "promtool", "prometheus-alertmanager", "amtool", "psql"]
    assert packages_listed([tools(tmp_path, have)]) == ["chromium"]
