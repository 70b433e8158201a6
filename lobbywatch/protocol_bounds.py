"""Physical bounds of every number in MQTT protocol v1: one table, used by the models.

A payload is validated strictly: integers must be JSON integers (no ``"99"``, no
``true``, no ``3.0``), floats JSON numbers (no strings, no booleans), every number
finite (no ``Infinity``/``NaN``) and inside the bound of its quantity below. The
pydantic models in ``lobbywatch/protocol.py`` take their field types from the
aliases at the bottom, so the bounds also reach the generated JSON Schema
(``minimum``/``maximum``) and docs/protocol.md quotes this table.

Why bounds at all: a value of ``10**30`` people was applied, broke every minute
aggregate write for all branches (integer overflow in the database) and showed a
predicted wait of 1.2e32 s. The bounds are generous physical limits, far above
anything real, so that no real message is ever refused by them.

A new numeric field (for example a cumulative counter) picks the alias of its
quantity; a new cumulative counter is also listed in :data:`CUMULATIVE_COUNTERS`
so the collector checks it grows plausibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, Strict


@dataclass(frozen=True, slots=True)
class Bound:
    """Inclusive range of one quantity, with its unit and the reason for the limit."""

    lo: float
    hi: float
    unit: str
    why: str


#: quantity -> bound. Integers are JSON-safe (at most 2**53 - 1).
BOUNDS: dict[str, Bound] = {
    "seq": Bound(0, 2**53 - 1, "", "largest integer every JSON parser keeps exactly"),
    "people": Bound(0, 500, "people", "people in one zone of one camera's view"),
    "raw_count": Bound(0, 1000, "detections", "detections per frame the detector keeps"),
    "dwell_s": Bound(0, 86_400, "s", "a wait or dwell longer than a day is a tracker fault"),
    "counter": Bound(
        0, 10**9, "events", "cumulative since the pipeline started; ~30 years at 1 per second"
    ),
    "threshold_s": Bound(0, 86_400, "s", "a W1 threshold longer than a day"),
    "interval_s": Bound(0, 86_400, "s", "heartbeat interval"),
    "fps": Bound(0, 1000, "frames/s", "frames processed per second"),
    "age_s": Bound(0, 31_622_400, "s", "age of the last frame: at most a year"),
}

#: cumulative counters of a zone message. Between two messages of a zone from the
#: same device they may restart from a lower value (the pipeline restarted) but not
#: grow faster than :data:`MAX_COUNTER_RATE_PER_S` (plus one zone's worth of people).
CUMULATIVE_COUNTERS: tuple[str, ...] = (
    "arrivals_total",
    "departures_total",
    "service_starts_total",
    "walk_outs_total",
    "departures_unseen_total",
)
MAX_COUNTER_RATE_PER_S = 10.0

#: oldest and newest acceptable ``ts`` year (the future is bounded by the
#: collector's ``ingest.max_clock_skew_s``)
TS_YEARS = (2020, 2100)
#: the only ``ts`` text form: RFC 3339 with ``T``, seconds, optional fraction, and
#: ``Z`` or an offset (no date-only, no space separator, no naive local time); the year
#: part repeats :data:`TS_YEARS` for JSON Schema users
TS_PATTERN = r"^(20[2-9]\d|2100)-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"


def _hi(q: str) -> int:
    return int(BOUNDS[q].hi)


Seq = Annotated[int, Strict(), Field(ge=0, le=_hi("seq"))]
People = Annotated[int, Strict(), Field(ge=0, le=_hi("people"))]
RawCount = Annotated[int, Strict(), Field(ge=0, le=_hi("raw_count"))]
Counter = Annotated[int, Strict(), Field(ge=0, le=_hi("counter"))]
DwellS = Annotated[float, Strict(), Field(ge=0, le=BOUNDS["dwell_s"].hi, allow_inf_nan=False)]
ThresholdS = Annotated[
    float, Strict(), Field(ge=0, le=BOUNDS["threshold_s"].hi, allow_inf_nan=False)
]
IntervalS = Annotated[float, Strict(), Field(ge=0, le=BOUNDS["interval_s"].hi, allow_inf_nan=False)]
Fps = Annotated[float, Strict(), Field(ge=0, le=BOUNDS["fps"].hi, allow_inf_nan=False)]
AgeS = Annotated[float, Strict(), Field(ge=0, le=BOUNDS["age_s"].hi, allow_inf_nan=False)]
