"""Delay predictors compared on the harder simulator (Ibrahim and Whitt's families).

For every served customer of simulated branch-days (replayed through the
collector, as ``bench/alert_quality.py`` does), the wait each predictor announces
at the customer's arrival against the true wait:

* ``QL`` (the collector's ``predicted_wait_s``): queue length, the capacity of
  the open counters, the observed exits beyond service and the calibration from
  realised waits (docs/wait-estimation.md);
* ``QL-plain``: ``(L + 1) / mu`` with the same capacity ``mu``, no walk-outs
  and no calibration (the classic queue-length predictor);
* ``LES``: the wait of the last customer to leave the queue (the newest completed
  dwell reported by the edge; it includes walk-outs' dwells);
* ``HOL``: the elapsed wait of the head of the line (``oldest_wait_s``, the
  edge's ``dwell_max_s`` aged to now), 0 when nobody waits.

Usage: python bench/delay_predictors.py [--seeds 2] [--first-seed 1000]
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
from collections import defaultdict
from typing import Any

from alert_quality import ESTIMATE_EVERY_S, server_config, stream

from lobbywatch.demo.simulator import HARD_SCENARIO_KINDS, scenario, simulate_day
from lobbywatch.server.replay import replay

PREDICTORS = ("QL", "QL-plain", "LES", "HOL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1000)
    args = ap.parse_args(argv)
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind in HARD_SCENARIO_KINDS:
        for k in range(args.seeds):
            sc = scenario(kind, k, args.first_seed + k)
            day = simulate_day(sc)
            records = stream(sc, day.customers)
            out: list[dict[str, Any]] = []
            replay(
                server_config(sc, 600.0, True),
                records,
                out.append,
                estimates_every_s=ESTIMATE_EVERY_S,
            )
            est = [o for o in out if o["type"] == "estimate"]
            times = [o["ts"] for o in est]
            # LES: newest completed dwell of the waiting zone, by receive time
            les_t: list[float] = []
            les_v: list[float] = []
            for r in records:
                if not r.topic.endswith(f"/zones/{sc.waiting_zone}"):
                    continue
                dwells = json.loads(r.payload).get("completed_dwells_s") or []
                if dwells:
                    les_t.append(r.received_at)
                    les_v.append(float(dwells[-1]))
            for cu in day.customers:
                if not cu.served:
                    continue
                i = bisect.bisect_right(times, cu.arrival) - 1
                if i < 0:
                    continue
                o = est[i]
                mu = o["service_rate_per_s"] or 0.0
                queue = o["queue_length"]
                j = bisect.bisect_right(les_t, cu.arrival) - 1
                guesses = {
                    "QL": o["predicted_wait_s"] or 0.0,
                    "QL-plain": (queue + 1) / mu if queue and mu else 0.0,
                    "LES": les_v[j] if j >= 0 else 0.0,
                    "HOL": (o["oldest_wait_s"] or 0.0) if queue else 0.0,
                }
                for name, guess in guesses.items():
                    errors[(kind, name)].append(guess - cu.wait_s)
                    errors[("all", name)].append(guess - cu.wait_s)
    print(f"{'family':<18}" + "".join(f"{p + ' MAE':>14}{'bias':>7}" for p in PREDICTORS))
    for kind in [*HARD_SCENARIO_KINDS, "all"]:
        cells = []
        for p in PREDICTORS:
            e = errors[(kind, p)]
            cells.append(
                f"{statistics.fmean(abs(x) for x in e) / 60:>14.2f}{statistics.fmean(e) / 60:>7.2f}"
            )
        print(f"{kind:<18}" + "".join(cells))
    print(f"(minutes; {args.seeds} branch-days per family from seed {args.first_seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
