"""``lobbywatch server replay``: the collector over a recorded stream, in simulated time.

The collector's own ingest, estimator, alert engine and timers run over a
recorded message stream as fast as the machine allows. Nothing is re-implemented
here: a :class:`~lobbywatch.server.collector.Collector` (no MQTT, no HTTP, no
notifier threads) gets an injected clock, and this module advances that clock
through the stream, calling :meth:`Collector.process_batch` at each receive
time and :meth:`Collector.run_timers` at every instant a timer of the live
processing loop falls due (the 1 s tick with its 10 s sweep of quiet zones,
minute roll-over and pending evaluations), in the same order as the live loop
(timers due at or before an instant run before the messages received at it).

Input (``IN.jsonl``), one JSON object per line::

    {"received_at": 1795944600.3, "topic": "lobbywatch/v1/b1/cam1/zones/W1",
     "payload": {"v": 1, "type": "zone", ...}}

``received_at`` is the collector's receive time (Unix seconds, non-decreasing
along the file); ``payload`` is the message object (a JSON string is taken as
the raw payload text, so malformed messages replay as malformed). Blank lines
are skipped. A line that is not such an object stops the replay with an error
naming the line.

Output (``OUT.jsonl``): ``{"type": "alert", ...}`` with the notification payload
of every alert event (``collector.event_payload``: what webhooks receive), and,
with ``estimates_every``, one ``{"type": "estimate", "ts", "branch", "zone",
...}`` line per waiting zone every that many seconds of simulated time (the
zone's estimate at ``ts``: the fields of ``WaitEstimate``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lobbywatch.errors import LobbywatchError
from lobbywatch.protocol_bounds import TS_YEARS
from lobbywatch.server.alert_records import AlertPayload
from lobbywatch.server.config import ServerConfig

#: receive times a record may carry (Unix s): the years a payload's ``ts`` may carry
RECEIVED_AT_RANGE = (
    datetime(TS_YEARS[0], 1, 1, tzinfo=UTC).timestamp(),
    datetime(TS_YEARS[1] + 1, 1, 1, tzinfo=UTC).timestamp(),
)


class ReplayInputError(LobbywatchError):
    """A line of the recorded stream is not a valid record."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One received MQTT message: receive time (Unix s), topic, raw payload bytes."""

    received_at: float
    topic: str
    payload: bytes


def parse_record(line: str, where: str) -> Recorded:
    """One ``IN.jsonl`` line as a :class:`Recorded`; :class:`ReplayInputError` naming ``where``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        # the decoder's column: a line of a recorded stream is often thousands long
        raise ReplayInputError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ReplayInputError(f"{where}: expected an object with received_at, topic, payload")
    missing = [k for k in ("received_at", "topic", "payload") if k not in obj]
    if missing:
        raise ReplayInputError(f"{where}: missing {', '.join(missing)}")
    received = obj["received_at"]
    if isinstance(received, bool) or not isinstance(received, int | float):
        raise ReplayInputError(f"{where}: received_at must be a number (Unix seconds)")
    if not math.isfinite(received):
        raise ReplayInputError(f"{where}: received_at must be finite")
    if not RECEIVED_AT_RANGE[0] <= received <= RECEIVED_AT_RANGE[1]:
        # milliseconds, or seconds from the start of a simulation, would otherwise
        # crash on a date, or turn every message into one "from the future"
        raise ReplayInputError(
            f"{where}: received_at {received} is not Unix seconds within "
            f"{TS_YEARS[0]}..{TS_YEARS[1]} (the years a payload's ts may carry); "
            "milliseconds must be divided by 1000, and times relative to a start "
            "need that start's Unix time added"
        )
    topic = obj["topic"]
    if not isinstance(topic, str) or not topic:
        raise ReplayInputError(f"{where}: topic must be a non-empty string")
    payload = obj["payload"]
    if isinstance(payload, dict):
        raw = json.dumps(payload, separators=(",", ":")).encode()
    elif isinstance(payload, str):
        raw = payload.encode()
    else:
        raise ReplayInputError(f"{where}: payload must be an object (or the raw payload string)")
    return Recorded(float(received), topic, raw)


def read_records(path: Path) -> Iterator[Recorded]:
    """The records of ``path`` in order; errors name the file and line number."""
    try:
        f = path.open(encoding="utf-8")
    except OSError as exc:
        raise ReplayInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        last = -math.inf
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = parse_record(line, f"{path}:{n}")
            if rec.received_at < last:
                raise ReplayInputError(
                    f"{path}:{n}: received_at {rec.received_at} is earlier than the previous "
                    f"line's {last} (records must be in receive order)"
                )
            last = rec.received_at
            yield rec


def record_line(received_at: float, topic: str, payload: bytes) -> str:
    """One ``IN.jsonl`` line for a received message (the inverse of :func:`parse_record`)."""
    try:
        body: Any = json.loads(payload)
        if not isinstance(body, dict):
            body = payload.decode("utf-8", errors="replace")
    except (ValueError, UnicodeDecodeError):
        body = payload.decode("utf-8", errors="replace")
    return json.dumps({"received_at": received_at, "topic": topic, "payload": body})


class SimClock:
    """The injected clock: returns whatever time the replay has advanced it to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class ReplaySummary:
    messages: int = 0
    alert_events: int = 0
    estimates: int = 0
    first_at: float | None = None
    last_at: float | None = None
    #: messages the collector did not apply, by ingest result (duplicate, stale,
    #: rejected, malformed, oversized), as live (logged rate-limited on stderr)
    not_applied: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the refused ones (malformed, rejected, oversized, wrong version) by cause
    #: (``"malformed/schema"``, ``"malformed/future_timestamp"``...): the log lines
    #: of one cause are rate-limited, the counts are not
    refused_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    #: what the stream and the config disagree on (a configured zone of a branch that
    #: reported, never seen: a misspelt service point silently falls back to the
    #: configured counters)
    warnings: list[str] = dataclasses.field(default_factory=list)


def estimate_record(branch: str, zone: str, ts: float, estimate: Any) -> dict[str, Any]:
    """The ``{"type": "estimate", ...}`` output line of one zone's estimate."""
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(estimate) and not isinstance(estimate, type):
        # a shallow copy: asdict() deep-copies every value (10x slower, same result)
        for f in dataclasses.fields(estimate):
            value = getattr(estimate, f.name)
            fields[f.name] = list(value) if isinstance(value, tuple) else value
    return {"type": "estimate", "ts": ts, "branch": branch, "zone": zone, **fields}


def replay(
    cfg: ServerConfig,
    records: Iterable[Recorded],
    emit: Callable[[dict[str, Any]], None],
    *,
    estimates_every_s: float | None = None,
    database_url: str | None = None,
    until: float | None = None,
) -> ReplaySummary:
    """Run the collector over ``records`` (in receive order) and ``emit`` what it produces.

    Args:
        cfg: the server configuration (MQTT, HTTP and notification sinks unused).
        records: the stream; ``received_at`` non-decreasing; at least one.
        emit: receives each output object (alert events as they happen, estimates
            every ``estimates_every_s`` of simulated time).
        estimates_every_s: period of the estimate lines; ``None`` = none.
        database_url: store for the outbox and minute aggregates; default a
            temporary SQLite file (deleted afterwards), so a replay never writes
            into a live collector's database.
        until: keep running the timers up to this time after the last record
            (default: stop at the last record).

    Raises:
        ReplayInputError: records out of order.
    """
    from lobbywatch.server.collector import Collector

    if estimates_every_s is not None and not estimates_every_s > 0:
        raise ReplayInputError("--estimates-every must be > 0")
    summary = ReplaySummary()
    with tempfile.TemporaryDirectory(prefix="lobbywatch-replay-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'replay.db'}"
        # the replay's own store (and spool beside it), no active/standby partition
        run_cfg = cfg.model_copy(
            update={
                "database": cfg.database.model_copy(update={"url": url, "spool_file": None}),
                "cluster": cfg.cluster.model_copy(update={"partition": None}),
                # nothing is notified: no sink is built, so a live config whose
                # secret files exist only on the collector's host replays anywhere
                "notify": cfg.notify.model_copy(update={"sinks": {}, "routes": []}),
            }
        )
        collector: Collector | None = None
        clock = SimClock(0.0)
        next_estimate = math.inf

        def alerts(payloads: list[AlertPayload]) -> None:
            for p in payloads:
                summary.alert_events += 1
                emit({"type": "alert", **p})

        def advance(to: float) -> None:
            """Run every timer and estimate line due at or before ``to``, in time order."""
            nonlocal next_estimate
            assert collector is not None
            while True:
                timer = collector.next_timer_at()
                due = min(timer, next_estimate)
                if due > to:
                    break
                clock.now = max(clock.now, due)
                if timer <= next_estimate:
                    collector.run_timers(clock.now)
                    collector.store_spooled_offline()
                else:
                    for key, est in collector.zone_estimates(clock.now):
                        summary.estimates += 1
                        emit(estimate_record(key.branch, key.zone, clock.now, est))
                    assert estimates_every_s is not None
                    next_estimate += estimates_every_s
            clock.now = max(clock.now, to)

        batch: list[tuple[str, bytes, float]] = []
        try:
            last = -math.inf
            for rec in records:
                if rec.received_at < last:
                    raise ReplayInputError(
                        f"record {summary.messages + 1}: received_at {rec.received_at} is "
                        f"earlier than the previous {last}"
                    )
                last = rec.received_at
                if collector is None:
                    clock.now = rec.received_at
                    collector = Collector(run_cfg, clock=clock, with_mqtt=False, with_http=False)
                    collector.store.migrate()
                    collector.event_listeners.append(alerts)
                    summary.first_at = rec.received_at
                    if estimates_every_s is not None:
                        next_estimate = math.ceil(rec.received_at / estimates_every_s) * (
                            estimates_every_s
                        )
                if batch and rec.received_at != batch[0][2]:
                    collector.process_batch(batch)
                    collector.settle_history_reads()
                    collector.store_spooled_offline()
                    batch = []
                if not batch:
                    advance(rec.received_at)
                batch.append((rec.topic, rec.payload, rec.received_at))
                summary.messages += 1
            if collector is None:
                raise ReplayInputError("no records: the stream is empty")
            if collector is not None:
                if batch:
                    collector.process_batch(batch)
                    collector.settle_history_reads()
                    collector.store_spooled_offline()
                advance(max(clock.now, until if until is not None else clock.now))
                summary.last_at = clock.now
                summary.not_applied = {
                    r: n for r, n in sorted(collector.results.items()) if r != "ok" and n
                }
                summary.warnings = unseen_zones(
                    run_cfg, {(k.branch, k.zone) for k in collector.state.zones}
                )
                summary.refused_by_reason = {
                    f"{result}/{reason}": n
                    for (result, reason), n in sorted(collector.state.invalid.items())
                }
                if not collector.results.get("ok"):
                    # an output with no estimate and no alert reads as "a quiet day";
                    # a stream the collector refused entirely is a wrong stream
                    results = ", ".join(f"{n} {r}" for r, n in summary.not_applied.items())
                    causes = ", ".join(
                        f"{n} {cause}" for cause, n in summary.refused_by_reason.items()
                    )
                    raise ReplayInputError(
                        f"none of the {summary.messages} messages was applied ({results}"
                        + (f"; by cause: {causes}" if causes else "")
                        + "); the log above names the fields (docs/collector.md, Ingest)"
                    )
        finally:
            if collector is not None:
                collector.close_offline()
    return summary


def unseen_zones(cfg: ServerConfig, seen: set[tuple[str, str]]) -> list[str]:
    """Warnings for the zones ``cfg`` names (service points, zone settings) that never
    reported, in branches whose other zones did (``seen``: ``(branch, zone)``)."""
    reporting = {branch for branch, _ in seen}
    warnings = []
    for b in cfg.branches:
        if b.id not in reporting:
            continue
        for zone, z in sorted(b.zones.items()):
            if (b.id, zone) not in seen:
                warnings.append(
                    f"branch {b.id}: zone {zone!r} is configured but never reported "
                    f"(reported: {', '.join(sorted(zn for br, zn in seen if br == b.id))})"
                )
            for point in z.service_points:
                if (b.id, point) not in seen and point not in b.zones:
                    warnings.append(
                        f"branch {b.id}: service point {point!r} of {zone!r} never reported: "
                        "its counters are the configured ones"
                    )
    return warnings


def replay_files(
    cfg: ServerConfig,
    messages: Path,
    out: IO[str],
    *,
    estimates_every_s: float | None = None,
) -> ReplaySummary:
    """:func:`replay` from an ``IN.jsonl`` file to a text stream of JSON lines."""

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, separators=(",", ":")) + "\n")

    return replay(cfg, read_records(messages), emit, estimates_every_s=estimates_every_s)
