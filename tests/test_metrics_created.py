"""Edge and collector make the same choice about ``*_created`` series: none.

prometheus_client's switch is process-wide, so the edge's exposition is rendered in a
fresh interpreter that imports nothing of the collector (which would flip it).
"""

from __future__ import annotations

import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

EDGE = """
from prometheus_client import generate_latest
from lobbywatch.edge.metrics import EdgeMetrics
m = EdgeMetrics()
m.add_camera("c1", ["W1"])
m.frames_processed.labels(camera="c1").inc()
print(generate_latest(m.registry).decode())
"""


def sample_names(text: str) -> set[str]:
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_edge_exposes_no_created_series() -> None:
    out = subprocess.run(
        [sys.executable, "-c", EDGE], capture_output=True, text=True, timeout=60, check=True
    )
    names = sample_names(out.stdout)
    assert "lobbywatch_edge_frames_processed_total" in names
    created = sorted(n for n in names if n.endswith("_created"))
    assert created == [], created
