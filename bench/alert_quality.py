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

The alert defaults were chosen on training seeds 1000-1039 (40 branch-days per
family); the default run reports on the held-out seeds 2000-2029.

Usage: python bench/alert_quality.py [--seeds 30] [--first-seed 2000] [--threshold-min 10]
[--alerts JSON] [--estimator JSON]
Last line: ``wait_mae_min=X recall=X precision=X lead_min=X warned_3min=X``.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from lobbywatch.demo.simulator import (
    HARD_SCENARIO_KINDS,
    SCENARIO_KINDS,
    BranchScenario,
    Customer,
    SimulatedDay,
    branch_messages,
    scenario,
    simulate_day,
    ticket_messages,
)
from lobbywatch.errors import ConfigError
from lobbywatch.protocol import (
    DEFAULT_ROOT,
    AnyMessage,
    ZoneMessage,
    encode_message,
    topic_for,
)
from lobbywatch.server.config import ServerConfig, parse_server_config
from lobbywatch.server.replay import Recorded, replay

EPISODE_GAP_S = 1800.0
PRECISION_SLACK_S = 300.0
#: what the collector is configured with: a nominal mean service time, not the
#: (randomised, unknown) true one of each simulated branch
CONFIGURED_MEAN_SERVICE_S = 300.0
#: estimate lines asked of the replay (the MAE uses the latest one before each arrival)
ESTIMATE_EVERY_S = 5.0
#: the collector receives a message this long after the edge observed it
RECEIVE_LATENCY_S = 0.2
#: warned_3min: an alert already firing this long before the episode's first breach
WARNED_AHEAD_S = 180.0


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
    warned_ahead: int = 0
    errors_ordinary: list[float] = field(default_factory=list)
    errors_priority: list[float] = field(default_factory=list)
    rate_ratios: list[float] = field(default_factory=list)


#: the optional departures-by-destination fields an older edge (or one without
#: ``flows``) leaves out
CLASSIFIED_FIELDS = ("service_starts_total", "walk_outs_total", "departures_unseen_total")


def unclassified(message: AnyMessage) -> AnyMessage:
    """``message`` as an edge without departures by destination would send it."""
    if not isinstance(message, ZoneMessage):
        return message
    return message.model_copy(update=dict.fromkeys(CLASSIFIED_FIELDS))


def stream(
    sc: BranchScenario,
    customers: list[Customer],
    tickets: bool = False,
    classified: bool = True,
) -> list[Recorded]:
    """What the collector would receive from the branch's edge (status messages too) and,
    with ``tickets``, from its ticket system, in observation order. Without ``classified``
    the edge sends no departures by destination (protocol v1's basic fields only)."""
    edge: Iterable[AnyMessage] = branch_messages(sc, customers, status=True)
    if not classified:
        edge = map(unclassified, edge)
    messages = (
        heapq.merge(edge, ticket_messages(sc, customers), key=lambda m: m.ts) if tickets else edge
    )
    return [
        Recorded(
            m.ts.timestamp() + RECEIVE_LATENCY_S, topic_for(m, DEFAULT_ROOT), encode_message(m)
        )
        for m in messages
    ]


def server_config(
    sc: BranchScenario,
    threshold_s: float,
    counter_zones: bool,
    tickets: bool = False,
    alert_overrides: dict[str, Any] | None = None,
    estimator_overrides: dict[str, Any] | None = None,
) -> ServerConfig:
    """The collector's config for one simulated branch: the counters its configuration
    lists (absent ones included), a nominal 5 min service (not the true, unknown one),
    the branch's priority share (0 with ``tickets``: the collector learns it from the
    ticket system), and (with counter zones) the counters as the waiting zone's service
    points."""
    zone: dict[str, Any] = {}
    if counter_zones:
        zone["service_points"] = [f"counter{c + 1}" for c in range(sc.configured_counters)]
    return parse_server_config(
        {
            "branches": [
                {
                    "id": sc.branch,
                    "timezone": sc.timezone,
                    "counters": sc.configured_counters,
                    "mean_service_s": CONFIGURED_MEAN_SERVICE_S,
                    "priority_share": (
                        sc.vip_share if sc.discipline == "vip" and not tickets else 0.0
                    ),
                    "zones": {sc.waiting_zone: zone},
                }
            ],
            "alerts": {**(alert_overrides or {}), "w1_threshold_s": threshold_s},
            "estimator": {**(estimator_overrides or {}), "wait_threshold_s": threshold_s},
        }
    )


def history(
    sc: BranchScenario, weeks: int, tickets: bool = False, classified: bool = True
) -> list[Recorded]:
    """The same branch's previous ``weeks`` same-weekday days (same parameters, other
    random draws), oldest first: the history the arrival forecast learns from."""
    records: list[Recorded] = []
    for w in range(weeks, 0, -1):
        past = sc.model_copy(
            update={"day": sc.day - timedelta(weeks=w), "seed": sc.seed + 7919 * w}
        )
        records += stream(past, simulate_day(past).customers, tickets, classified)
    return records


def run_day(
    sc: BranchScenario,
    kind: str,
    threshold_s: float,
    counter_zones: bool = True,
    history_weeks: int = 0,
    tickets: bool = False,
    alert_overrides: dict[str, Any] | None = None,
    estimator_overrides: dict[str, Any] | None = None,
    classified: bool = True,
) -> DayResult:
    """Replay one simulated branch-day through the collector and score it against the truth.

    With ``history_weeks``, the branch's previous same-weekday days are replayed first in
    the same run (the collector learns their arrival profile); only the last day is scored.
    With ``tickets``, the branch's ticket system publishes too (the priority share is then
    learned, not configured, and ticket waits calibrate the estimate).
    """
    day: SimulatedDay = simulate_day(sc)
    customers = day.customers
    outputs: list[dict[str, Any]] = []
    replay(
        server_config(
            sc, threshold_s, counter_zones, tickets, alert_overrides, estimator_overrides
        ),
        history(sc, history_weeks, tickets, classified)
        + stream(sc, customers, tickets, classified),
        outputs.append,
        estimates_every_s=ESTIMATE_EVERY_S,
    )
    start = sc.midnight()
    outputs = [
        o for o in outputs if (o["ts"] if o["type"] == "estimate" else o["started_at_ts"]) >= start
    ]
    estimates = [o for o in outputs if o["type"] == "estimate" and o["zone"] == sc.waiting_zone]
    times = [o["ts"] for o in estimates]
    alerts = w1_alerts(outputs)

    # balkers never joined: they count nowhere; walk-outs count in breaches (they
    # waited) but not in the MAE (their wait to service is censored)
    joined = [cu for cu in customers if cu.outcome != "balked"]
    result = DayResult(kind=kind, customers=len(joined))
    result.observed_share = sum(o["method"] != "fallback" for o in estimates) / max(
        1, len(estimates)
    )
    # true queue (people waiting, by the simulation) at each estimate: service-rate check
    entered = sorted(cu.arrival for cu in joined)
    left = sorted(cu.left_queue for cu in joined)
    for o in estimates:
        waiting = bisect.bisect_right(entered, o["ts"]) - bisect.bisect_right(left, o["ts"])
        capacity = day.capacity_per_s(o["ts"])
        if waiting > 0 and o["service_rate_per_s"] and capacity > 0:
            result.rate_ratios.append(o["service_rate_per_s"] / capacity)
    for cu in joined:
        if not cu.served:
            continue
        i = bisect.bisect_right(times, cu.arrival) - 1
        predicted = predicted_for(estimates[i], cu.vip) if i >= 0 else 0.0
        err = predicted - cu.wait_s
        result.errors.append(err)
        result.abs_errors.append(abs(err))
        (result.errors_priority if cu.vip else result.errors_ordinary).append(err)

    intervals = sorted((s, e) for s, e in alerts.values() if s is not None)
    return score_alerts(customers, intervals, threshold_s, result)


def w1_alerts(outputs: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """``alert_id -> [fired at, resolved at or None]`` of the ``w1_wait`` alerts in a
    replay's output lines."""
    alerts: dict[str, list[float | None]] = {}
    for o in outputs:
        if o["type"] != "alert" or o["kind"] != "w1_wait":
            continue
        if o["event"] == "fire":
            alerts[o["alert_id"]] = [o["started_at_ts"], None]
        elif o["event"] == "resolve" and o["alert_id"] in alerts:
            alerts[o["alert_id"]][1] = o["ended_at_ts"]
    return alerts


def score_alerts(
    customers: list[Customer],
    intervals: list[tuple[float, float | None]],
    threshold: float,
    result: DayResult | None = None,
) -> DayResult:
    """Score W1 alert intervals ``(fired, resolved or None)`` against the true waits,
    into ``result`` (a new one if ``None``).

    Episodes, recall, lead, ``warned_3min``, precision and strict precision as defined
    in the module docstring (balkers never joined and count nowhere). Used by
    :func:`run_day` and by ``bench/wait_oracle.py`` (the same definitions for the bound).
    """
    joined = [cu for cu in customers if cu.outcome != "balked"]
    if result is None:
        result = DayResult(kind="", customers=len(joined))
    breaches = sorted(cu.arrival + threshold for cu in joined if cu.wait_s > threshold)
    result.breaching = len(breaches)
    firsts = [b for k, b in enumerate(breaches) if k == 0 or b - breaches[k - 1] > EPISODE_GAP_S]
    result.episodes = len(firsts)
    for first in firsts:
        active = [s for s, e in intervals if s <= first and (e is None or e >= first)]
        if active:
            result.detected += 1
            result.leads.append(first - min(active))
        ahead = first - WARNED_AHEAD_S
        if any(s <= ahead and (e is None or e >= ahead) for s, e in intervals):
            result.warned_ahead += 1
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


def predicted_for(estimate: dict[str, Any], priority: bool) -> float:
    """The wait the collector shows a customer of this class (class-aware when it reports one)."""
    key = "predicted_wait_priority_s" if priority else "predicted_wait_ordinary_s"
    value = estimate.get(key)
    if value is None:
        value = estimate.get("predicted_wait_s")
    return float(value or 0.0)


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


def warned_share(results: list[DayResult]) -> float:
    """warned_3min: share of episodes with a W1 alert firing 3 min before the first breach."""
    episodes = sum(r.episodes for r in results)
    return sum(r.warned_ahead for r in results) / episodes if episodes else float("nan")


def _mean_min(values: list[float]) -> float:
    return statistics.fmean(values) / 60 if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=30, help="branch-days per scenario family")
    # 1000-1039 were used to choose the alert defaults (training); the default
    # report is on held-out seeds. --first-seed 1000 --seeds 40 shows training.
    ap.add_argument("--first-seed", type=int, default=2000)
    ap.add_argument("--threshold-min", type=float, default=10.0, help="W1 threshold, minutes")
    ap.add_argument(
        "--families",
        default="hard",
        help="'hard' (the harder simulator's families), 'classic', or a comma-separated list",
    )
    ap.add_argument(
        "--no-counter-zones",
        action="store_true",
        help="the edge publishes no counter zones (no service points configured)",
    )
    ap.add_argument(
        "--basic-edge",
        action="store_true",
        help="an edge without departures by destination or counter zones (protocol v1's "
        "basic fields only, as an older edge sends): implies --no-counter-zones",
    )
    ap.add_argument(
        "--history-weeks",
        type=int,
        default=0,
        help="replay the branch's previous N same-weekday days first (arrival profile); "
        "default 0: every day is a cold start, as a single-day stream would be",
    )
    ap.add_argument(
        "--tickets",
        action="store_true",
        help="each branch also has a ticket system (issued/called/cancelled events): the "
        "priority share is learned from it instead of configured, its waits calibrate",
    )
    ap.add_argument(
        "--alerts",
        default="{}",
        metavar="JSON",
        help="alert policy settings over the defaults, e.g. '{\"risk_gate\": 0}' "
        "(the server config's alerts section)",
    )
    ap.add_argument(
        "--estimator",
        default="{}",
        metavar="JSON",
        help="estimator settings over the defaults, e.g. '{\"service_progress\": true}' "
        "(the server config's estimator section)",
    )
    args = ap.parse_args(argv)
    overrides: list[dict[str, Any]] = []
    for option, text in (("--alerts", args.alerts), ("--estimator", args.estimator)):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            ap.error(f"{option}: not JSON ({exc.msg} at column {exc.colno}): {text}")
        if not isinstance(value, dict):
            ap.error(f"{option}: a JSON object of settings is needed, not {text}")
        overrides.append(value)
    alert_overrides, estimator_overrides = overrides
    try:  # a bad setting is named once, before any day runs
        server_config(
            scenario("hard_normal", 0, args.first_seed),
            600.0,
            True,
            False,
            alert_overrides,
            estimator_overrides,
        )
    except ConfigError as exc:
        ap.error(str(exc).replace("SERVER.yaml: ", "--alerts/--estimator: ", 1))

    threshold = args.threshold_min * 60
    families = {"hard": list(HARD_SCENARIO_KINDS), "classic": list(SCENARIO_KINDS)}.get(
        args.families, [f for f in args.families.split(",") if f]
    )
    t0 = time.monotonic()
    results: list[DayResult] = []
    for kind in families:
        for k in range(args.seeds):
            counter_zones = not (args.no_counter_zones or args.basic_edge)
            sc = scenario(kind, k, args.first_seed + k, counter_zones=counter_zones)
            results.append(
                run_day(
                    sc,
                    kind,
                    threshold,
                    counter_zones,
                    args.history_weeks,
                    args.tickets,
                    alert_overrides,
                    estimator_overrides,
                    classified=not args.basic_edge,
                )
            )
    by_kind: dict[str, list[DayResult]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)

    print(
        f"{len(results)} branch-days ({args.seeds} per family, seeds {args.first_seed}.."
        f"{args.first_seed + args.seeds - 1}), W1 threshold {args.threshold_min:g} min, "
        f"replayed through the collector in {time.monotonic() - t0:.1f} s"
        + (f", alerts {json.dumps(alert_overrides)}" if alert_overrides else "")
        + (f", estimator {json.dumps(estimator_overrides)}" if estimator_overrides else "")
    )
    header = (
        f"{'family':<18}{'customers':>10}{'breach%':>8}{'MAE':>6}{'bias':>6}{'b.ord':>6}"
        f"{'b.prio':>7}{'mu/true':>8}{'episodes':>9}{'recall':>7}{'>=1min':>7}{'warn3':>6}"
        f"{'fires':>6}{'prec':>6}{'strict':>7}{'lead':>6}{'obs':>5}"
    )
    print(header)
    for kind, rs in [*by_kind.items(), ("all", results)]:
        mae, recall, precision, lead = summarise(rs)
        customers = sum(r.customers for r in rs)
        ahead1, _ = lead_shares(rs)
        ratios = [x for r in rs for x in r.rate_ratios]
        print(
            f"{kind:<18}{customers:>10}{100 * sum(r.breaching for r in rs) / customers:>8.1f}"
            f"{mae:>6.2f}{_mean_min([e for r in rs for e in r.errors]):>6.2f}"
            f"{_mean_min([e for r in rs for e in r.errors_ordinary]):>6.2f}"
            f"{_mean_min([e for r in rs for e in r.errors_priority]):>7.2f}"
            f"{statistics.median(ratios) if ratios else float('nan'):>8.2f}"
            f"{sum(r.episodes for r in rs):>9}{recall:>7.3f}"
            f"{ahead1:>7.3f}{warned_share(rs):>6.3f}{sum(r.fires for r in rs):>6}"
            f"{precision:>6.3f}{strict_precision(rs):>7.3f}{lead:>6.1f}"
            f"{statistics.fmean(r.observed_share for r in rs):>5.2f}"
        )
    mae, recall, precision, lead = summarise(results)
    print(
        f"wait_mae_min={mae:.2f} recall={recall:.3f} precision={precision:.3f} "
        f"lead_min={lead:.1f} warned_3min={warned_share(results):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
