"""Which W1 rule held before each fire, and how often each combination was true.

Replays branch-days of the harder simulator through the collector (as
``bench/alert_quality.py`` does, same definitions of a true fire) and, for every
``w1_wait`` fire, re-evaluates the four W1 conditions (queue, head, forecast, risk)
on the estimates of the 3 minutes before it. Prints each false fire and, per
combination of conditions, fires / true fires / precision. Used to choose
``risk_level_alone`` (docs/wait-estimation.md, "Session 20").

    python bench/fire_rules.py --first-seed 1000 --seeds 6 [--alerts JSON]

The conditions are evaluated with the policy given here (defaults plus
``--alerts``), on the estimate lines of the replay: the combination shows what
held, not which rule's clock ran out first.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json

import alert_quality as aq

from lobbywatch.server import alerts as al
from lobbywatch.server.estimator import WaitEstimate

LOOKBACK_S = 180.0
FIELDS = {f.name for f in dataclasses.fields(WaitEstimate)}


def conditions(estimates: list[dict], policy: al.AlertPolicy) -> set[str]:
    held: set[str] = set()
    for o in estimates:
        w = WaitEstimate(**{k: v for k, v in o.items() if k in FIELDS})
        queue, head = al.w1_queue_condition(w, policy), al.w1_head_condition(w, policy)
        held |= {"queue"} if queue else set()
        held |= {"head"} if head else set()
        held |= {"forecast"} if al.w1_forecast_condition(w, policy) else set()
        held |= {"risk"} if al.w1_risk_condition(w, policy, queue or head) else set()
    return held


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--alerts", default="{}", metavar="JSON")
    args = ap.parse_args(argv)
    overrides = json.loads(args.alerts)
    policy = al.AlertPolicy().merged(overrides)
    threshold = 600.0
    stats: dict[str, list[int]] = {}
    for kind in aq.HARD_SCENARIO_KINDS:
        for k in range(args.seeds):
            sc = aq.scenario(kind, k, args.first_seed + k, counter_zones=True)
            day = aq.simulate_day(sc)
            outs: list[dict] = []
            aq.replay(
                aq.server_config(sc, threshold, True, False, overrides, None),
                aq.history(sc, 0, False, True) + aq.stream(sc, day.customers, False, True),
                outs.append,
                estimates_every_s=aq.ESTIMATE_EVERY_S,
            )
            est = [o for o in outs if o["type"] == "estimate" and o["zone"] == sc.waiting_zone]
            times = [o["ts"] for o in est]
            fires = aq.w1_alerts(outs)
            joined = [c for c in day.customers if c.outcome != "balked"]
            breaches = sorted(c.arrival + threshold for c in joined if c.wait_s > threshold)
            for start, end in fires.values():
                assert start is not None
                until = start + threshold + aq.PRECISION_SLACK_S
                if end is None or end > until:
                    until = end if end is not None else float("inf")
                j = bisect.bisect_left(breaches, start)
                true = j < len(breaches) and breaches[j] <= until
                i = bisect.bisect_right(times, start) - 1
                lo = bisect.bisect_left(times, start - LOOKBACK_S)
                key = "+".join(sorted(conditions(est[lo : i + 1], policy))) or "none"
                counts = stats.setdefault(key, [0, 0])
                counts[0] += 1
                counts[1] += true
                if not true and i >= 0:
                    o = est[i]
                    near = [
                        c.wait_s
                        for c in joined
                        if c.arrival <= start + 60 and c.left_queue >= start - 60
                    ]
                    print(
                        f"false {kind} seed {args.first_seed + k} "
                        f"{(start - sc.midnight()) / 3600:5.2f} h: {key}, "
                        f"{o['queue_length']} waiting, predicted {o['predicted_wait_s'] / 60:.1f} "
                        f"min, oldest {(o.get('oldest_wait_s') or 0) / 60:.1f} min, longest true "
                        f"wait around {max(near or [0]) / 60:.1f} min"
                    )
    print(f"{'conditions held':<28}{'fires':>6}{'true':>6}{'precision':>10}")
    for key, (n, t) in sorted(stats.items()):
        print(f"{key:<28}{n:>6}{t:>6}{t / n:>10.2f}")


if __name__ == "__main__":
    main()
