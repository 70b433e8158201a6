"""Quality of the wait estimate and of the W1 warning, on simulated branch-days.

Runs the estimator and the alert engine in process on the simulator's message
stream (no MQTT, simulated time) and compares them with each simulated
customer's true wait. Definitions (also in docs/wait-estimation.md):

* MAE: for every customer, the predicted wait shown at the moment they arrive
  (the estimate after the latest message at or before their arrival) against
  their true wait; mean absolute error in minutes over all customers.
* breach: a customer whose true wait exceeds the W1 threshold T; the breach
  moment is ``arrival + T`` (when the threshold is actually crossed).
* episode: breach moments of one zone less than ``EPISODE_GAP_S`` apart.
* recall: share of episodes for which a W1 alert (warning or critical) was
  already firing at the episode's first breach moment.
* lead time: first breach moment minus the start (fire time) of that alert.
* precision: share of W1 alert fires that are followed by a breach moment
  while the alert is open or within ``T + PRECISION_SLACK_S`` of the fire
  (i.e. a customer already waiting, or joining at most ``PRECISION_SLACK_S``
  after the alert, ends up waiting more than T). A fire with no breach in that
  window is a false alarm; each re-fire after a resolve counts separately, so
  flapping is penalised.
* strict precision (reported alongside): a fire is true only if a customer
  who is waiting at the fire, or joins at most ``PRECISION_SLACK_S`` after it,
  ends up waiting more than T (one already past T counts). No credit for a
  breach that happens much later while a long alert is still open.

Customers who walked out count in breaches (they waited more than T before
giving up) but not in the MAE (their wait to service is unknown: censored);
customers who balked never joined and count nowhere.

The alert defaults were chosen on training seeds 1000-1039 (40 branch-days per
family); the default run reports on the held-out seeds 2000-2029.
``--families hard`` runs the harder simulator's families (walk-outs, balking,
staff breaks and absent counters, high-variance service, occlusions, phantom and
lost tracks, publishing on change plus heartbeat).

Usage: python bench/alert_quality.py [--seeds 30] [--first-seed 2000] [--threshold-min 10]
                                     [--families classic|hard]
Last line: ``wait_mae_min=X recall=X precision=X lead_min=X``.
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from lobbywatch.demo.simulator import (
    HARD_SCENARIO_KINDS,
    SCENARIO_KINDS,
    BranchScenario,
    branch_messages,
    scenario,
    simulate_customers,
)
from lobbywatch.server.alerts import AlertEngine, AlertPolicy
from lobbywatch.server.estimator import EstimatorSettings, ZoneEstimator

EPISODE_GAP_S = 1800.0
PRECISION_SLACK_S = 300.0
#: what the collector is configured with: a nominal mean service time, not the
#: (randomised, unknown) true one of each simulated branch
CONFIGURED_MEAN_SERVICE_S = 300.0


@dataclass
class DayResult:
    kind: str
    abs_errors: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    episodes: int = 0
    detected: int = 0
    leads: list[float] = field(default_factory=list)
    fires: int = 0
    true_fires: int = 0
    strict_true_fires: int = 0
    customers: int = 0
    breaching: int = 0
    observed_share: float = 0.0


def run_day(
    sc: BranchScenario, kind: str, policy: AlertPolicy, settings: EstimatorSettings
) -> DayResult:
    customers = simulate_customers(sc)
    estimator = ZoneEstimator(
        settings, counters=sc.configured_counters, mean_service_s=CONFIGURED_MEAN_SERVICE_S
    )
    engine = AlertEngine(lambda b, z: policy, lambda b: None, lambda b: None)
    times: list[float] = []
    predictions: list[float] = []
    observed = 0
    alerts: dict[str, list[float | None]] = {}  # alert_id -> [start, end]
    for msg in branch_messages(sc, customers):
        if msg.zone != sc.waiting_zone:
            continue
        now = msg.ts.timestamp()
        estimator.observe(msg, now)
        est = estimator.estimate(now)
        times.append(now)
        predictions.append(est.predicted_wait_s or 0.0)
        observed += est.method == "observed"
        for ev in engine.evaluate(sc.branch, sc.waiting_zone, est, now):
            if ev.kind != "w1_wait":
                continue
            if ev.event == "fire":
                alerts[ev.alert_id] = [ev.started_at, None]
            elif ev.event == "resolve":
                alerts[ev.alert_id][1] = ev.ended_at

    joined = [cu for cu in customers if cu.outcome != "balked"]
    result = DayResult(kind=kind, customers=len(joined))
    result.observed_share = observed / max(1, len(times))
    for cu in joined:
        if not cu.served:
            continue  # a walk-out's wait to service is censored
        i = bisect.bisect_right(times, cu.arrival) - 1
        predicted = predictions[i] if i >= 0 else 0.0
        result.errors.append(predicted - cu.wait_s)
        result.abs_errors.append(abs(predicted - cu.wait_s))

    threshold = policy.w1_threshold_s
    breaches = sorted(cu.arrival + threshold for cu in joined if cu.wait_s > threshold)
    result.breaching = len(breaches)
    firsts = [b for k, b in enumerate(breaches) if k == 0 or b - breaches[k - 1] > EPISODE_GAP_S]
    intervals = sorted((s, e) for s, e in alerts.values() if s is not None)
    result.episodes = len(firsts)
    for first in firsts:
        active = [s for s, e in intervals if s <= first and (e is None or e >= first)]
        if active:
            result.detected += 1
            result.leads.append(first - min(active))
    late = [cu for cu in joined if cu.wait_s > threshold]
    for start, end in intervals:
        result.fires += 1
        until = start + threshold + PRECISION_SLACK_S
        if end is None or end > until:
            until = end if end is not None else math.inf
        k = bisect.bisect_left(breaches, start)
        if k < len(breaches) and breaches[k] <= until:
            result.true_fires += 1
        if any(cu.arrival <= start + PRECISION_SLACK_S and cu.left_queue >= start for cu in late):
            result.strict_true_fires += 1
    return result


def strict_precision(results: list[DayResult]) -> float:
    fires = sum(r.fires for r in results)
    return sum(r.strict_true_fires for r in results) / fires if fires else float("nan")


def lead_shares(results: list[DayResult]) -> tuple[float, float]:
    """Share of episodes warned at least 1 min and at least 3 min before the breach."""
    episodes = sum(r.episodes for r in results)
    leads = [x for r in results for x in r.leads]
    if not episodes:
        return float("nan"), float("nan")
    return (
        sum(x >= 60 for x in leads) / episodes,
        sum(x >= 180 for x in leads) / episodes,
    )


def summarise(results: list[DayResult]) -> tuple[float, float, float, float]:
    abs_errors = [e for r in results for e in r.abs_errors]
    mae = statistics.fmean(abs_errors) / 60 if abs_errors else float("nan")
    episodes = sum(r.episodes for r in results)
    recall = sum(r.detected for r in results) / episodes if episodes else float("nan")
    fires = sum(r.fires for r in results)
    precision = sum(r.true_fires for r in results) / fires if fires else float("nan")
    leads = [x for r in results for x in r.leads]
    lead = statistics.median(leads) / 60 if leads else float("nan")
    return mae, recall, precision, lead


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=30, help="branch-days per scenario family")
    # 1000-1039 were used to choose the alert defaults (training); the default
    # report is on held-out seeds. --first-seed 1000 --seeds 40 shows training.
    ap.add_argument("--first-seed", type=int, default=2000)
    ap.add_argument("--threshold-min", type=float, default=10.0, help="W1 threshold, minutes")
    ap.add_argument(
        "--families",
        choices=("classic", "hard"),
        default="classic",
        help="scenario families: the classic ones or the harder simulator's",
    )
    args = ap.parse_args(argv)
    kinds = HARD_SCENARIO_KINDS if args.families == "hard" else SCENARIO_KINDS

    threshold = args.threshold_min * 60
    policy = AlertPolicy(w1_threshold_s=threshold)
    settings = EstimatorSettings(wait_threshold_s=threshold)
    t0 = time.monotonic()
    results: list[DayResult] = []
    for kind in kinds:
        for k in range(args.seeds):
            sc = scenario(kind, k, args.first_seed + k, counter_zones=False)
            results.append(run_day(sc, kind, policy, settings))
    by_kind: dict[str, list[DayResult]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)

    print(
        f"{len(results)} branch-days ({args.seeds} per family, seeds {args.first_seed}.."
        f"{args.first_seed + args.seeds - 1}), W1 threshold {args.threshold_min:g} min, "
        f"{time.monotonic() - t0:.1f} s"
    )
    header = (
        f"{'family':<19}{'customers':>10}{'breach%':>9}{'MAE min':>9}{'bias min':>9}"
        f"{'episodes':>9}{'recall':>8}{'>=1min':>7}{'>=3min':>7}{'fires':>7}{'precision':>10}"
        f"{'strict':>7}{'lead min':>9}{'observed':>9}"
    )
    print(header)
    for kind, rs in [*by_kind.items(), ("all", results)]:
        mae, recall, precision, lead = summarise(rs)
        customers = sum(r.customers for r in rs)
        bias = statistics.fmean(e for r in rs for e in r.errors) / 60
        ahead1, ahead3 = lead_shares(rs)
        print(
            f"{kind:<19}{customers:>10}{100 * sum(r.breaching for r in rs) / customers:>9.1f}"
            f"{mae:>9.2f}{bias:>9.2f}{sum(r.episodes for r in rs):>9}{recall:>8.3f}"
            f"{ahead1:>7.3f}{ahead3:>7.3f}{sum(r.fires for r in rs):>7}{precision:>10.3f}"
            f"{strict_precision(rs):>7.3f}{lead:>9.1f}"
            f"{statistics.fmean(r.observed_share for r in rs):>9.2f}"
        )
    mae, recall, precision, lead = summarise(results)
    print(
        f"wait_mae_min={mae:.2f} recall={recall:.3f} precision={precision:.3f} lead_min={lead:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
