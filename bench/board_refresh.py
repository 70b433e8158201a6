"""Board refresh at fleet scale: requests and time per refresh, old vs summary endpoint.

A real collector (SQLite store, estimator, alert engine, uvicorn HTTP server) holds
``--branches`` branches (one waiting zone and two counters each, fed as protocol
messages); then one board refresh is timed the way the old board did it
(``/api/v1/branches`` plus one ``/api/v1/branches/{id}`` per branch) and the way
the board does it now (one ``/api/v1/board`` page), from a single HTTP client.

    .venv/bin/python bench/board_refresh.py --branches 5000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from board_support import Clock, Feed, board_config, make_collector

from lobbywatch.zone_state import ZoneKind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--branches", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=20, help="timed refreshes of the new board")
    ap.add_argument("--skip-old", action="store_true", help="do not time the old 1+N refresh")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        now = time.time()
        clock = Clock(now)
        cfg = board_config(f"sqlite:///{tmp}/bench.db", extra_branches=args.branches - 3)
        collector = make_collector(cfg, clock)
        collector.start()
        try:
            feed = Feed()
            ids = [b["id"] for b in cfg["branches"]]
            batch = []
            for i, b in enumerate(ids):
                batch.append(feed.zone(now, b, "W1", i % 9))
                batch.append(feed.zone(now, b, "C1", 1, ZoneKind.CASH_COUNTER))
                batch.append(feed.zone(now, b, "C2", 0, ZoneKind.NON_CASH_COUNTER))
                batch.append(feed.status(now, b))
            t0 = time.perf_counter()
            for k in range(0, len(batch), 5000):
                collector.process_batch(batch[k : k + 5000])
            collector.flush(now)
            print(f"fed {len(batch)} messages in {time.perf_counter() - t0:.1f} s")
            clock.follow_real_time()
            base = f"http://127.0.0.1:{collector.http_port}"
            with httpx.Client(base_url=base, timeout=120) as client:
                # new: one request per refresh
                times, size = [], 0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    r = client.get("/api/v1/board", params={"per_page": 50, "lang": "en"})
                    r.raise_for_status()
                    times.append(time.perf_counter() - t0)
                    size = len(r.content)
                total = r.json()["total"]
                print(
                    f"new board: 1 request per refresh, {total} branches ranked, page of 50, "
                    f"median {statistics.median(times) * 1000:.0f} ms, "
                    f"max {max(times) * 1000:.0f} ms, {size / 1024:.0f} KiB"
                )
                filt = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    client.get("/api/v1/board", params={"region": "r07", "q": "br-0"})
                    filt.append(time.perf_counter() - t0)
                med = statistics.median(filt) * 1000
                print(f"new board, region + search filter: median {med:.0f} ms")
                if not args.skip_old:
                    t0 = time.perf_counter()
                    listing = client.get("/api/v1/branches").json()
                    for b in listing:
                        client.get(f"/api/v1/branches/{b['id']}").raise_for_status()
                    old = time.perf_counter() - t0
                    print(
                        f"old board: {len(listing) + 1} requests per refresh, {old:.1f} s "
                        f"(sequential, one client)"
                    )
                    print(f"ratio old/new time: {old / statistics.median(times):.0f}x")
                print(
                    f"branches={total} requests_per_refresh=1 "
                    f"board_ms={statistics.median(times) * 1000:.0f}"
                )
        finally:
            collector.stop()


if __name__ == "__main__":
    main()
