"""The counters' mean service time after the opening: completed services only against
the total time on test (``server/counters.py``, ``service_time_censored``).

Four counters start serving at once (the opening) and stay busy; services are
lognormal. Every 10 s each counter publishes its occupancy, its occupant's dwell
and the services completed since its last message, into the product's
``CounterObserver`` in both modes. Prints, for each true mean and cv, the median
(and 10-90 % range) over runs of the estimated mean / the true mean at 10, 30, 60
and 240 minutes. The configured mean (the prior) is 300 s; it stands in for the
completed-only mean until 5 services are in (the product then uses the queue's
own rate instead).

    python bench/service_mean_opening.py [--runs 150]
"""

from __future__ import annotations

import argparse

import numpy as np

from lobbywatch.server.counters import CounterObserver

POINTS = ("c1", "c2", "c3", "c4")
PRIOR_S = 300.0
STEP_S = 10.0
AT_MIN = (10, 30, 60, 240)


def one_run(mean_s: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """(2, len(AT_MIN)) estimates / truth: row 0 completed only, row 1 time on test."""
    sigma2 = np.log1p(cv * cv)
    nu = np.log(mean_s) - sigma2 / 2
    horizon = max(AT_MIN) * 60.0
    observers = (
        CounterObserver(POINTS, PRIOR_S),
        CounterObserver(POINTS, PRIOR_S, censored_max_age_s=90.0),
    )
    # per counter: the current service's start and end (back to back, 5 s apart)
    start = np.zeros(len(POINTS))
    end = rng.lognormal(nu, np.sqrt(sigma2), len(POINTS))
    out = np.full((2, len(AT_MIN)), np.nan)
    marks = [m * 60.0 for m in AT_MIN]
    t = 0.0
    while t < horizon:
        t += STEP_S
        for k, zone in enumerate(POINTS):  # four counters, a simulation step
            done: list[float] = []
            while end[k] <= t:
                done.append(float(end[k] - start[k]))
                start[k] = end[k] + 5.0
                end[k] = start[k] + rng.lognormal(nu, np.sqrt(sigma2))
            busy = start[k] <= t
            for obs in observers:
                obs.observe(zone, int(busy), done, t, t - start[k] if busy else None)
        for j, mark in enumerate(marks):
            if abs(t - mark) < STEP_S / 2:
                for row, obs in enumerate(observers):
                    m = obs.reading(t, None).mean_service_s
                    out[row, j] = (m if m is not None else PRIOR_S) / mean_s
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"estimated / true mean service, median (10-90 %) of {args.runs} runs; prior 300 s")
    print(f"{'true mean, cv':<16}{'mode':<16}" + "".join(f"{m:>20} min" for m in AT_MIN))
    for mean_s, cv in ((480.0, 1.2), (480.0, 0.6), (300.0, 1.2), (180.0, 0.6)):
        runs = np.stack([one_run(mean_s, cv, rng) for _ in range(args.runs)])
        for row, mode in enumerate(("completed only", "time on test")):
            col = runs[:, row, :]
            lo, mid, hi = (np.nanquantile(col, q, axis=0) for q in (0.1, 0.5, 0.9))
            cells = "".join(
                f"{mid[j]:>10.2f} ({lo[j]:.2f}-{hi[j]:.2f})" for j in range(len(AT_MIN))
            )
            print(f"{f'{mean_s:.0f} s, {cv}':<16}{mode:<16}{cells}")


if __name__ == "__main__":
    main()
