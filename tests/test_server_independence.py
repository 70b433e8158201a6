"""The collector does not depend on the edge package (issue 9: one contract package)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import lobbywatch.server


def _server_modules() -> list[str]:
    path = [str(Path(p)) for p in lobbywatch.server.__path__]
    names = [f"lobbywatch.server.{m.name}" for m in pkgutil.iter_modules(path)]
    return sorted(names)


def test_server_modules_are_listed() -> None:
    names = _server_modules()
    # the production modules that must stay edge-free are really found
    for needed in ("ingest", "state", "api", "collector", "metrics", "store", "config"):
        assert f"lobbywatch.server.{needed}" in names


def test_importing_the_server_does_not_import_the_edge() -> None:
    modules = ["lobbywatch.server", *_server_modules()]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lobbywatch.'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "lobbywatch.server.ingest" in loaded  # the imports really ran
    edge = [m for m in loaded if m == "lobbywatch.edge" or m.startswith("lobbywatch.edge.")]
    assert edge == [], f"server modules import the edge package: {edge}"
