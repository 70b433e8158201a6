"""CPU cost of the collector's processing thread per message, in-process.

No broker and no HTTP: the simulator's messages (as ``collector_throughput.py``
makes them) go straight through ``Collector.process_batch`` in batches of 5,000,
and the thread's CPU time (``time.thread_time``) is measured, so other tenants of a
shared machine distort the figure far less than a wall-clock throughput. Compare
two trees by running this file against each (``PYTHONPATH`` to the other tree's
package layout, ``--bench-dir`` to its bench folder).

Last line: ``msgs_per_cpu_s=N``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--branches", type=int, default=1000)
    ap.add_argument("--bench-dir", type=Path, default=Path(__file__).parent)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.bench_dir))
    from collector_throughput import make_payloads

    from lobbywatch.server.collector import Collector
    from lobbywatch.server.config import parse_server_config

    tmp = Path(tempfile.mkdtemp(prefix="lw-ingest-cpu-"))
    cfg = parse_server_config(
        {
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": f"sqlite:///{tmp}/c.db"},
            "notify": {},
        }
    )
    c = Collector(cfg, with_mqtt=False, with_http=False)
    c.start()
    try:
        msgs = make_payloads(args.branches, 40_000, args.messages)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for i in range(0, len(msgs), 5000):
            c.process_batch([(t, p, time.time()) for t, p in msgs[i : i + 5000]])
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
        print(
            f"{len(msgs)} messages: {cpu:.1f} s CPU of the processing thread, {wall:.1f} s wall; "
            f"results {dict(c.state.results)}"
        )
        print(f"msgs_per_cpu_s={len(msgs) / cpu:.0f}")
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
