"""The package metadata against the source tree: every installed folder is a
listed package, so setuptools installs it without a "not in packages" warning."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _installed_folders() -> set[str]:
    """Dotted names of every folder below a mapped package that holds files."""
    found: set[str] = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        root = REPO / folder
        for sub in [root, *root.rglob("*")]:
            if not sub.is_dir() or "__pycache__" in sub.parts or sub.name == "weights":
                continue
            if any(f.is_file() for f in sub.iterdir()):
                rel = sub.relative_to(root).parts
                found.add(".".join([package, *rel]))
    return found


def test_every_installed_folder_is_a_listed_package() -> None:
    missing = _installed_folders() - set(SETUPTOOLS["packages"])
    assert not missing, f"folders with files but not in [tool.setuptools] packages: {missing}"


def test_package_data_names_only_listed_packages() -> None:
    unknown = set(SETUPTOOLS["package-data"]) - set(SETUPTOOLS["packages"])
    assert not unknown, f"package-data for unlisted packages: {unknown}"


def test_demo_tooling_is_its_own_package_outside_the_collector() -> None:
    assert SETUPTOOLS["package-dir"]["lobbywatch.demo"] == "demo"
    for name in ("demo", "tui", "broker", "simulator", "sim_cli", "demo_cli"):
        assert not (REPO / "server" / f"{name}.py").exists(), f"server/{name}.py is demo tooling"
        assert (REPO / "demo" / f"{name}.py").is_file()


def test_every_data_file_is_package_data() -> None:
    """A non-Python file the code reads must be installed (a wheel has no repository)."""
    import fnmatch

    uncovered = []
    for package, folder in SETUPTOOLS["package-dir"].items():
        root = REPO / folder
        for f in root.rglob("*"):
            if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in f.parts:
                continue
            if "weights" in f.relative_to(root).parts:
                continue  # git-ignored, fetched by `lobbywatch model pull`
            rel = f.relative_to(root)
            owner = ".".join([package, *rel.parent.parts])
            globs = SETUPTOOLS["package-data"].get(owner, [])
            if not any(fnmatch.fnmatch(rel.name, g) for g in globs):
                uncovered.append(str(f.relative_to(REPO)))
    assert not uncovered, f"not installed as package data: {uncovered}"
