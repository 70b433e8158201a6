"""The collector process: ingest -> state -> estimator -> alert engine -> outbox/store.

Threads and what they own:

* paho's network thread: receives, timestamps and enqueues (``MqttIngest``).
* the processing thread (:meth:`Collector._run`): drains the queue in batches;
  per batch it parses and applies every message under the state lock, feeds
  waiting-zone messages to their estimator, re-estimates each touched waiting
  zone once (a zone touched by 50 messages in one batch is evaluated once: the
  same answer as per message, at a fraction of the cost) and evaluates the alert
  engine. Alert events (rare) are spooled (memory + local file) for the
  database writer thread, which stores them in order, retrying while the
  database fails, and only then wakes the sinks: an event is durable before any
  sink can see it, and ingest never waits for the database.
* once a second, :meth:`tick`: alert timeouts/renotify/escalation, device
  heartbeat timeouts, a sweep re-evaluating quiet waiting zones (waits grow
  while nobody reports), minute-aggregate sampling and, at each minute
  boundary, one batched write of the closed minute (on a writer thread).
* one notifier thread per sink (:class:`~lobbywatch.server.notify.Dispatcher`).
* uvicorn's thread serving the API and ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from lobbywatch.errors import ConfigError
from lobbywatch.protocol import StatusMessage
from lobbywatch.server.alert_records import (
    AlertPayload,
    event_payload,
    event_row,
    row_to_alert,
)
from lobbywatch.server.alerts import AlertEvent, AlertPolicy, BusinessHours
from lobbywatch.server.arrivals import ArrivalHistory
from lobbywatch.server.config import ServerConfig
from lobbywatch.server.flows import FlowDelta
from lobbywatch.server.http import HttpServer
from lobbywatch.server.ingest import Ingestor
from lobbywatch.server.leadership import Leadership
from lobbywatch.server.metrics import DbStats, LatencyHistogram, StateCollector, make_registry
from lobbywatch.server.notify import Dispatcher, build_sinks
from lobbywatch.server.retention import RetentionSchedule
from lobbywatch.server.spool import AlertSpool, DbHealth, DbWriter, Spooled
from lobbywatch.server.state import (
    BranchRecord,
    CollectorState,
    DeviceKey,
    NodeKey,
    ZoneKey,
    silence_limit_s,
)
from lobbywatch.server.store import AlertRow, EventRecord, MinuteRow, Store
from lobbywatch.server.tickets import TicketWait
from lobbywatch.server.transport import MessageQueue, MqttIngest
from lobbywatch.zone_state import ZoneKind

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- minute aggregates


@dataclass(slots=True)
class _Acc:
    samples: int = 0
    queue_sum: float = 0.0
    queue_max: int = 0
    predicted_sum: float = 0.0
    predicted_n: int = 0
    forecast_sum: float = 0.0
    forecast_n: int = 0
    dwells: list[float] = field(default_factory=list)
    threshold_s: float | None = None
    arrivals: int = 0
    #: departures by destination; None unless the zone's edge classifies them
    service_starts: int | None = None
    walk_outs: int | None = None
    departures_unseen: int | None = None


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class MinuteAggregator:
    """Accumulates per-zone samples and realised waits for the current UTC minute."""

    def __init__(self) -> None:
        self.minute: int | None = None
        self.acc: dict[ZoneKey, _Acc] = {}

    def _get(self, key: ZoneKey) -> _Acc:
        acc = self.acc.get(key)
        if acc is None:
            acc = self.acc[key] = _Acc()
        return acc

    def add_dwells(self, key: ZoneKey, dwells: list[float]) -> None:
        if dwells:
            self._get(key).dwells.extend(dwells)

    def add_flows(self, key: ZoneKey, delta: FlowDelta, classified: bool) -> None:
        """Count one message's increases of arrivals and departures by destination."""
        acc = self._get(key)
        acc.arrivals += delta.arrivals
        if classified:
            acc.service_starts = (acc.service_starts or 0) + delta.service_starts
            acc.walk_outs = (acc.walk_outs or 0) + delta.walk_outs
            acc.departures_unseen = (acc.departures_unseen or 0) + delta.departures_unseen

    def sample(
        self,
        key: ZoneKey,
        people: int,
        estimate: Any,
        threshold_s: float | None,
        classified: bool = False,
    ) -> None:
        acc = self._get(key)
        if classified:  # a minute without departures has 0 of each, not "unknown"
            acc.service_starts = acc.service_starts or 0
            acc.walk_outs = acc.walk_outs or 0
            acc.departures_unseen = acc.departures_unseen or 0
        acc.samples += 1
        acc.queue_sum += people
        acc.queue_max = max(acc.queue_max, people)
        acc.threshold_s = threshold_s
        if estimate is not None:
            if estimate.predicted_wait_s is not None:
                acc.predicted_sum += estimate.predicted_wait_s
                acc.predicted_n += 1
            if estimate.forecast_wait_s is not None:
                acc.forecast_sum += estimate.forecast_wait_s
                acc.forecast_n += 1

    def roll(self, now: float) -> list[MinuteRow]:
        """Rows of the closed minute if ``now`` is in a new minute, else []."""
        minute = int(now // 60) * 60
        if self.minute is None:
            self.minute = minute
            return []
        if minute == self.minute:
            return []
        rows = []
        for key, a in self.acc.items():
            if a.samples == 0 and not a.dwells:
                continue
            thr = a.threshold_s
            within = sum(1 for d in a.dwells if thr is not None and d <= thr)
            rows.append(
                MinuteRow(
                    branch=key.branch,
                    zone=key.zone,
                    minute=self.minute,
                    samples=a.samples,
                    queue_length_avg=a.queue_sum / a.samples if a.samples else 0.0,
                    queue_length_max=a.queue_max,
                    predicted_wait_s_avg=a.predicted_sum / a.predicted_n if a.predicted_n else None,
                    forecast_wait_s_avg=a.forecast_sum / a.forecast_n if a.forecast_n else None,
                    realised_wait_p50_s=_quantile(a.dwells, 0.5) if a.dwells else None,
                    realised_wait_p90_s=_quantile(a.dwells, 0.9) if a.dwells else None,
                    served=len(a.dwells),
                    served_within_threshold=within,
                    served_within_threshold_ratio=(
                        within / len(a.dwells) if a.dwells and thr is not None else None
                    ),
                    threshold_s=thr,
                    arrivals=a.arrivals,
                    service_starts=a.service_starts,
                    walk_outs=a.walk_outs,
                    departures_unseen=a.departures_unseen,
                )
            )
        self.minute = minute
        self.acc = {}
        return rows


# ----------------------------------------------------------------------- collector


@dataclass
class _ZoneRuntime:
    estimator: Any
    threshold_s: float | None
    evaluated_at: float = 0.0
    #: highest predicted wait since the zone's latest alert fired (the resolve message's
    #: "worst wait"), kept in memory so that no event waits on a database read
    peak_wait_s: float = 0.0
    #: per-minute arrivals by local day: the forecast's weekday x time-of-day profile
    history: ArrivalHistory | None = None
    #: ``estimator.arrivals_seen`` at the last minute boundary
    arrivals_mark: int | None = None
    #: the stored minute history being read on the store-writer thread
    stored_history: Future[list[tuple[float, int]]] | None = None


class Collector:
    """Wires ingest, state, estimation, alerting, storage, notification and the API."""

    def __init__(
        self,
        cfg: ServerConfig,
        *,
        clock: Callable[[], float] = time.time,
        with_mqtt: bool = True,
        with_http: bool = True,
        record_to: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        #: every received message is appended here as a ``server replay`` input line
        self._record: IO[str] | None = None
        if record_to is not None:
            try:
                self._record = record_to.open("a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--record: cannot write {record_to}: {exc.strerror}") from None
        # one knob for liveness: the alert policy's heartbeat timeout also drives device_up
        self.state = CollectorState(heartbeat_timeout_s=cfg.alerts.heartbeat_timeout_s)
        for b in cfg.branches:
            self.state.branches[b.id] = BranchRecord(b.id, b.region, b.timezone)
        db = cfg.database
        self.store = Store(db.url, db.connect_timeout_s, db.statement_timeout_s)
        self.db_health = DbHealth()
        self.spool = AlertSpool(db.spool_path(), db.spool_max_events)
        self.queue = MessageQueue(cfg.ingest.queue_max)
        #: messages processed, by ingest result (ok, duplicate, stale, rejected, malformed...)
        self.results: Counter[str] = Counter()
        self.ingestor = Ingestor(
            self.state,
            cfg.ingest,
            cfg.mqtt.root,
            {b.id: b.region for b in cfg.branches},
            devices={b.id: frozenset(b.devices) for b in cfg.branches if b.devices is not None},
            tickets=cfg.tickets,
            ticket_zones=cfg.ticket_zones(),
            ticket_sources=cfg.ticket_sources(),
        )
        self._est_settings = cfg.estimator
        #: service-point zone -> the waiting zones it serves (counters seen, not configured)
        self._service_links = {
            ZoneKey(branch, point): served
            for (branch, point), served in cfg.service_links().items()
        }
        self._zones: dict[ZoneKey, _ZoneRuntime] = {}
        #: stored-history reads not yet waited for (see settle_history_reads)
        self._history_reads: list[Future[list[tuple[float, int]]]] = []
        #: waiting zones touched by the current batch; those evaluated less than
        #: evaluate_interval_s ago wait in _pending until the next flush
        self._dirty: set[ZoneKey] = set()
        self._pending: set[ZoneKey] = set()
        self._next_flush = math.inf
        self._eval_interval = cfg.ingest.evaluate_interval_s
        self._policies: dict[tuple[str, str | None], AlertPolicy] = {}
        self.engine = self._make_engine()
        self.sinks = build_sinks(cfg.notify)
        self.dispatcher = Dispatcher(
            self.store,
            self.sinks,
            cfg.notify,
            firing_payloads=self.firing_payloads,
            clock=clock,
            health=self.db_health,
            active=self.is_active,
            branches=[b.id for b in cfg.branches] if cfg.partitioned() else None,
        )
        self.leadership: Leadership | None = None
        if cfg.cluster.partition is not None:
            self.leadership = Leadership(
                db.url,
                cfg.cluster.partition,
                on_acquire=self._took_over,
                on_lose=self._stood_down,
                check_interval_s=cfg.cluster.check_interval_s,
                connect_timeout_s=db.connect_timeout_s,
            )
        self.db_writer = DbWriter(
            self.store,
            self.spool,
            self.db_health,
            on_stored=self.dispatcher.wake,
            clock=clock,
            cut_after_s=db.statement_timeout_s + 5,
        )
        #: minute aggregates the database refused, written with the next minute
        self._unwritten_minutes: list[MinuteRow] = []
        #: identity bindings the database has not stored yet: subject -> (owner, at)
        #: (bounded: one entry per device and camera, which the ingest caps)
        self._unsaved_bindings: dict[str, tuple[str, float]] = {}
        self.latency = LatencyHistogram()
        self.metrics = StateCollector(
            self.state,
            self.latency,
            notification_counts=lambda: dict(self.dispatcher.counts),
            queue_stats=lambda: (len(self.queue), self.queue.dropped),
            clock=clock,
            db_stats=self.db_stats,
            record_latency=self.dispatcher.record_latency,
        )
        self.registry = make_registry(self.metrics)
        self.aggregator = MinuteAggregator()
        self.retention = RetentionSchedule(cfg.database.retention_days)
        self.mqtt = (
            MqttIngest(cfg.mqtt, self.queue, [b.id for b in cfg.branches], clock=clock)
            if with_mqtt
            else None
        )
        self.with_http = with_http
        self.http_port: int | None = None
        self._http: HttpServer | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick = 0.0
        self._last_sweep = 0.0
        #: the last minute closed into the arrival histories (:meth:`_fold_minute`)
        self._folded_minute: int | None = None
        self.last_batch_at = 0.0
        self.started_at = clock()
        #: called with the payloads of every batch of alert events, after the outbox
        #: write (``lobbywatch server replay`` writes them to its output)
        self.event_listeners: list[Callable[[list[AlertPayload]], None]] = []

    def is_active(self) -> bool:
        """True unless this collector is a standby of its partition."""
        return self.leadership is None or self.leadership.active.is_set()

    @property
    def role(self) -> Literal["single", "active", "standby"]:
        if self.leadership is None:
            return "single"
        return "active" if self.is_active() else "standby"

    def _took_over(self) -> None:
        """Became the partition's active collector: adopt the alerts in the database.

        The warm engine's own alerts (a standby derives them but stores nothing) are
        replaced by a fresh engine restored from the shared ``alerts`` table, so every
        later event continues the revisions the previous active stored: nothing is
        notified twice, and a condition still holding fires or resolves as usual.
        """
        rows = self._own_active_alerts()  # the query runs before the lock: ingest goes on
        with self.state.lock:
            self.engine = self._make_engine()
            self._adopt(rows)
            for rt in self._zones.values():
                rt.evaluated_at = 0.0  # re-evaluate everything with the adopted alerts
            self._dirty.update(self._zones)
        self.dispatcher.wake()

    def _stood_down(self) -> None:
        log.error("standing down: events are no longer stored or sent by this collector")

    def notifies(self, branch: str, zone: str | None) -> bool:
        """Whether an alert of ``zone`` at ``branch`` reaches managers: zones not in the
        configuration only if the branch allows unconfigured zones (a device inventing
        zone ids must not page anyone); device alerts of configured branches always."""
        b = self.cfg.branch(branch)
        if b is None:
            return zone is None and self.cfg.ingest.unknown_branches == "accept"
        return b.notifies_zone(zone)

    def db_stats(self) -> DbStats:
        h = self.db_health
        ok = h.problem(self.cfg.database.statement_timeout_s + 2) is None
        return DbStats(ok, dict(h.errors), len(self.spool), self.spool.lost)

    # ------------------------------------------------------------- policies
    def policy_for(self, branch: str, zone: str | None) -> AlertPolicy:
        """Merged global <- branch <- zone AlertPolicy (zone "" = branch level), cached."""
        zone = zone or None
        key = (branch, zone)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = self.cfg.policy_for(branch, zone)
        return policy

    def business_hours_for(self, branch: str) -> BusinessHours | None:
        b = self.cfg.branch(branch)
        return None if b is None else b.business_hours

    def threshold_for(self, branch: str, zone: str) -> float:
        return float(self.policy_for(branch, zone).w1_threshold_s)

    def _make_engine(self) -> Any:
        from lobbywatch.server.alerts import AlertEngine

        hours = {b.id: self.business_hours_for(b.id) for b in self.cfg.branches}
        zones = {b.id: b.timezone for b in self.cfg.branches}
        return AlertEngine(self.policy_for, hours.get, self.region_of, zones.get)

    def region_of(self, branch: str) -> str:
        rec = self.state.branches.get(branch)
        return rec.region if rec else self.cfg.region_of(branch)

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.store.migrate()
        # events a previous run could not store: into the outbox before anything else
        # (one attempt each: a database that fails here fails the start, exit 2)
        for item in self.spool.open():
            self.store.record_event(item.record, item.sinks)
            self.spool.pop(item)
        self.restore()
        n = self.ingestor.identities.restore(self.store.load_bindings(), self.clock())
        if n:
            log.info("restored %d device/camera identity bindings", n)
        # Everything allocated so far (config, models, FastAPI, SQLAlchemy...) lives as
        # long as the process: keep it out of the collector's generational scans.
        gc.collect()
        gc.freeze()
        self.db_writer.start()
        self.dispatcher.start()
        if self.leadership is not None:
            self.leadership.start()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.with_http:
            self._start_http()

    def stop(self) -> None:
        self._stop.set()
        if self.leadership is not None:
            self.leadership.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._http is not None:
            self._http.stop()
        self.db_writer.stop()
        self.dispatcher.stop()
        if self._record is not None:
            self._record.close()
        self.spool.close()
        # flush the partial minute so a restart does not lose it
        rows = self.aggregator.roll(self.clock() + 60)
        self._writer.shutdown(wait=True)
        if rows:
            self._write_minutes(rows)
        self.store.close()

    def _start_http(self) -> None:
        from lobbywatch.server.api import create_app

        self._http = HttpServer(
            create_app(self),
            self.cfg.http.host,
            self.cfg.http.port,
            hint="set http.host/http.port in the server config",
        )
        self.http_port = self._http.port
        self._http.start()

    def restore(self) -> None:
        """Reload firing alerts into the engine and state: a restart loses none."""
        self._adopt(self._own_active_alerts())

    def _own_active_alerts(self) -> list[AlertRow]:
        """Firing alerts in the database; a partitioned collector's own branches only."""
        mine = [b.id for b in self.cfg.branches] if self.cfg.partitioned() else None
        return self.store.active_alerts(mine)

    def _adopt(self, rows: list[AlertRow]) -> None:
        if not rows:
            return
        alerts = [row_to_alert(r) for r in rows]
        self.engine.restore(alerts)
        with self.state.lock:
            self.state.alerts = {str(a.alert_id): a for a in self.engine.snapshot()}
        log.info("restored %d open alerts", len(rows))

    # ------------------------------------------------------------- processing
    def _run(self) -> None:
        batch_max = self.cfg.ingest.batch_max
        while not self._stop.is_set():
            try:
                batch = self.queue.get_batch(batch_max, timeout=0.1)
                if batch:
                    if self._record is not None:
                        self._record_batch(batch)
                    self.process_batch(batch)
                self.run_timers(self.clock())
            except Exception:
                log.exception("processing batch failed")
                time.sleep(0.1)

    #: seconds between two :meth:`tick` calls of the processing loop
    TICK_S = 1.0

    def run_timers(self, now: float) -> None:
        """The processing loop's timers, due at ``now``: pending evaluations, then the tick.

        The live loop calls this after every batch (and at least every 0.1 s);
        ``lobbywatch server replay`` calls it at every instant a timer falls due
        in simulated time (:meth:`next_timer_at`), so both run the same schedule.
        """
        if now >= self._next_flush:
            self.flush(now)
        if now - self._last_tick >= self.TICK_S:
            self.tick(now)

    def next_timer_at(self) -> float:
        """Earliest time at which :meth:`run_timers` has work (flush or tick)."""
        return min(self._next_flush, self._last_tick + self.TICK_S)

    def _record_batch(self, batch: list[tuple[str, bytes, float]]) -> None:
        """Append the batch to the recording (``lobbywatch server replay`` input)."""
        from lobbywatch.server.replay import record_line

        assert self._record is not None
        self._record.write("".join(record_line(r, t, p) + "\n" for t, p, r in batch))
        self._record.flush()

    def _runtime(self, key: ZoneKey) -> _ZoneRuntime:
        rt = self._zones.get(key)
        if rt is None:
            from lobbywatch.server.estimator import ZoneEstimator

            counters, mean_s = self.cfg.service_for(key.branch, key.zone)
            points, priority_share = self.cfg.queue_setup(key.branch, key.zone)
            branch = self.cfg.branch(key.branch)
            rt = self._zones[key] = _ZoneRuntime(
                ZoneEstimator(
                    self._est_settings,
                    counters,
                    mean_s,
                    service_points=points,
                    priority_share=priority_share,
                ),
                self.threshold_for(key.branch, key.zone),
                history=ArrivalHistory(
                    branch.timezone if branch else "UTC",
                    open_minutes=(
                        branch.business_hours.open_minutes
                        if branch is not None and branch.business_hours is not None
                        else None
                    ),
                ),
                # read on the store-writer thread: the processing thread never waits
                # on the database
                stored_history=self._writer.submit(self._stored_history_rows, key),
            )
            if rt.stored_history is not None:
                # (done reads dropped: the list only serves the replay's settling)
                self._history_reads = [f for f in self._history_reads if not f.done()]
                self._history_reads.append(rt.stored_history)
        return rt

    #: days of stored minute aggregates the arrival profile is learned from
    HISTORY_DAYS = 56

    def _stored_history_rows(self, key: ZoneKey) -> list[tuple[float, int]]:
        """``(minute, arrivals)`` of the zone's stored minute aggregates, oldest first
        (store-writer thread); [] when the database cannot be read."""
        since = self.clock() - self.HISTORY_DAYS * 86400
        try:
            rows = self.store.minutes(
                key.branch, key.zone, since=since, limit=self.HISTORY_DAYS * 1440
            )
        except Exception:
            log.exception("loading the arrival history of %s/%s failed", *key)
            return []
        return [(float(r.minute), r.arrivals) for r in reversed(rows) if r.arrivals is not None]

    def settle_history_reads(self) -> None:
        """Wait for the stored-history reads started so far (replay: simulated time must
        not outrun them, or the forecast would depend on the machine's speed)."""
        reads, self._history_reads = self._history_reads, []
        for f in reads:
            f.exception()  # waits; a failure is logged when the zone adopts it

    @staticmethod
    def _adopt_stored_history(rt: _ZoneRuntime) -> None:
        """Fold the stored history into the zone's once it has been read."""
        pending = rt.stored_history
        if pending is None or not pending.done() or rt.history is None:
            return
        rt.stored_history = None
        try:
            rows = pending.result()
        except Exception:
            log.exception("loading an arrival history failed")
            return
        for minute, arrivals in rows:
            rt.history.add(minute, arrivals)

    def process_batch(self, batch: list[tuple[str, bytes, float]]) -> None:
        """Apply one batch of ``(topic, payload, received_at)``; returns when metrics show it.

        Zone state (people, ...) and device liveness are in the state, hence in
        ``/metrics`` and the API, when this returns. Waiting zones touched by the batch
        are re-estimated and alert-evaluated at once unless they were evaluated less
        than ``ingest.evaluate_interval_s`` ago; those stay dirty and are evaluated by
        :meth:`flush` once the interval is over (at most one evaluation per zone per
        interval, however many messages it receives).
        """
        now = self.clock()
        dirty = self._dirty
        pending = self._pending
        # devices that sent something valid in this batch -> their newest status message
        touched: dict[NodeKey, StatusMessage | None] = {}
        handle = self.ingestor.handle
        results = self.results
        state = self.state
        zones = self._zones
        aggregator = self.aggregator
        waiting = ZoneKind.WAITING
        links = self._service_links
        with state.lock:
            self._fold_minute(now)
            for topic, payload, received in batch:
                out = handle(topic, payload, received)
                results[out.result] += 1
                msg = out.msg
                if msg is None:
                    if out.ticket is not None:
                        self._apply_ticket(out.zone_key, out.ticket_wait)
                    elif out.refused is not None:
                        self.engine.device_refused(*out.refused[:2], now, out.refused[2])
                    continue
                if out.result == "ok":
                    nkey = out.node_key
                    assert nkey is not None
                    if msg.type == "status":
                        touched[nkey] = msg
                    elif nkey not in touched:
                        touched[nkey] = None
                zkey = out.zone_key
                if zkey is not None and msg.kind is waiting:  # type: ignore[union-attr]
                    if out.flows is not None and out.flows.any:
                        zrec = state.zones[zkey]
                        aggregator.add_flows(zkey, out.flows, zrec.flows.classified)
                    rt = zones.get(zkey) or self._runtime(zkey)
                    # stale messages too: the estimator keeps only their dwells
                    rt.estimator.observe(msg, now)
                    if msg.completed_dwells_s:  # type: ignore[union-attr]
                        aggregator.add_dwells(zkey, list(msg.completed_dwells_s))  # type: ignore[union-attr]
                    if zkey not in pending:
                        dirty.add(zkey)
                elif zkey is not None and out.result == "ok" and zkey in links:
                    for served in links[zkey]:
                        wkey = ZoneKey(zkey.branch, served)
                        (zones.get(wkey) or self._runtime(wkey)).estimator.observe_service_point(
                            msg
                        )
            events = self._evaluate_dirty(now)
            self._apply_liveness(touched, now)
            bindings = self.ingestor.identities.take_changes()
            if bindings:
                # first-sight bindings must survive a restart; written off this thread
                self._writer.submit(self._save_bindings, bindings)
            done = self.clock()
            self.latency.observe_many(done - r for _, _, r in batch)
            self.last_batch_at = done
        if events:
            self._handle_events(events, now)

    def _apply_ticket(self, zkey: ZoneKey | None, wait: TicketWait | None) -> None:
        """An applied ticket event: its zone is re-estimated (learned share, ticket waits),
        and a realised wait it completed calibrates the zone's estimator."""
        assert zkey is not None
        rt = self._zones.get(zkey) or self._runtime(zkey)
        if wait is not None:
            rt.estimator.observe_ticket_wait(wait)
        if zkey not in self._pending:
            self._dirty.add(zkey)

    def _apply_liveness(self, touched: dict[NodeKey, StatusMessage | None], now: float) -> None:
        """Tell the alert engine what the batch said about each device.

        A device that is offline by its device status (its last will, or a clean
        shutdown) stays offline whatever else arrives (retained zone states, a late
        camera status) until a device status says online again. Liveness is judged on
        observation time, so a stale retained "online" of a box that died without a will
        still times out.
        """
        engine = self.engine
        nodes = self.state.nodes
        for nkey, status in touched.items():
            node = nodes.get(nkey)
            if node is None:
                continue
            if node.status == "offline":
                since = node.offline_since if node.offline_since is not None else now
                engine.device_status(nkey.branch, nkey.device, False, since)
            elif (
                node.status == "unknown"
                and status is not None
                and status.camera is not None
                and status.state == "offline"
            ):
                # an edge that publishes no device status: its camera status is all we have
                engine.device_status(nkey.branch, nkey.device, False, min(node.last_ts, now))
            else:
                engine.device_seen(
                    nkey.branch, nkey.device, min(node.last_ts, now), node.heartbeat_s
                )

    def _evaluate_dirty(self, now: float) -> list[Any]:
        """Evaluate the zones touched by this batch that are due; park the others."""
        dirty = self._dirty
        if not dirty:
            return []
        self._dirty = set()
        events: list[AlertEvent] = []
        due_before = now - self._eval_interval
        zones = self._zones
        pending = self._pending
        for key in dirty:
            if zones[key].evaluated_at <= due_before:
                events.extend(self._evaluate(key, now))
            else:
                pending.add(key)
        if pending and self._next_flush == math.inf:
            self._next_flush = now + self._eval_interval / 2
        return events

    def _flush_pending(self, now: float) -> list[Any]:
        """Evaluate parked zones whose interval is over (a few times per interval)."""
        events: list[AlertEvent] = []
        due_before = now - self._eval_interval
        keep: set[ZoneKey] = set()
        zones = self._zones
        for key in self._pending:
            if zones[key].evaluated_at <= due_before:
                events.extend(self._evaluate(key, now))
            else:
                keep.add(key)
        self._pending = keep
        self._next_flush = now + self._eval_interval / 2 if keep else math.inf
        return events

    def flush(self, now: float | None = None) -> None:
        """Evaluate the zones left dirty by :meth:`process_batch` whose interval is over."""
        now = self.clock() if now is None else now
        with self.state.lock:
            events = self._flush_pending(now)
        if events:
            self._handle_events(events, now)

    def estimate_zone(self, key: ZoneKey, now: float) -> Any:
        """The waiting zone's estimate at ``now`` (what the API shows and alerts judge).

        With the arrival forecast of its history, and marked stale when the
        zone's source (device or camera) is offline or down.
        """
        self._fold_minute(now)
        rt = self._runtime(key)
        self._adopt_stored_history(rt)
        est = rt.estimator
        settings = self._est_settings
        lam = None
        method = None
        if rt.history is not None:
            steps = max(1, math.ceil(settings.projection_horizon_s / settings.projection_step_s))
            lam = rt.history.forecast(now, steps, settings.projection_step_s, est.arrival_trend())
            method = "history"
            if lam is None:
                # cold start (no profile yet): a line through today's last minutes
                lam = rt.history.ramp(now, steps, settings.projection_step_s)
                method = "ramp"
        book = self.state.tickets
        tickets = (
            book.summary(key.branch, key.zone, now, est.priority_share)
            if book is not None
            else None
        )
        estimate = est.estimate(
            now, rt.threshold_s, lam, method if lam is not None else None, tickets=tickets
        )
        reason = self.stale_reason(key, now)
        if reason is not None:
            estimate = dataclasses.replace(estimate, stale=True, stale_reason=reason)
        return estimate

    def stale_reason(self, key: ZoneKey, now: float) -> str | None:
        """Why the zone's numbers are not current (its device or camera is offline or
        down, or silent past the heartbeat timeout), or ``None``."""
        zone = self.state.zones.get(key)
        if zone is None:
            return None
        node = self.state.nodes.get(NodeKey(zone.branch, zone.device))
        if node is not None and node.status == "offline":
            return f"device {zone.device} offline" + (" (last will)" if node.will else "")
        dev = self.state.devices.get(DeviceKey(zone.branch, zone.camera, zone.device))
        if dev is not None:
            if dev.status == "offline":
                return f"camera {zone.camera} offline"
            if dev.camera_up is False:
                return f"camera {zone.camera} down" + (f": {dev.error}" if dev.error else "")
        silent = now - max(zone.ts, dev.last_ts if dev is not None else zone.ts)
        heartbeat = node.heartbeat_s if node is not None else None
        if silent >= silence_limit_s(self.state.heartbeat_timeout_s, heartbeat):
            return f"no data from {zone.device}/{zone.camera} for {silent:.0f} s"
        return None

    def zone_estimates(self, now: float) -> list[tuple[ZoneKey, Any]]:
        """Every known waiting zone's estimate at ``now``, sorted by key (for replay output)."""
        with self.state.lock:
            return [(key, self.estimate_zone(key, now)) for key in sorted(self._zones)]

    def close_offline(self) -> None:
        """Release what a collector that was never :meth:`start`-ed holds (replay)."""
        rows = self.aggregator.roll(self.clock() + 60)
        self._writer.shutdown(wait=True)
        if rows:
            self.store.write_minutes(rows)
        self.store_spooled_offline()
        self.spool.close()
        self.store.close()

    def _evaluate(self, key: ZoneKey, now: float) -> list[Any]:
        rt = self._runtime(key)
        est = self.estimate_zone(key, now)
        zone = self.state.zones.get(key)
        if zone is not None:
            zone.estimate = est
            zone.threshold_s = rt.threshold_s
        rt.evaluated_at = now
        if est.predicted_wait_s is not None:
            rt.peak_wait_s = max(rt.peak_wait_s, est.predicted_wait_s)
        return list(self.engine.evaluate(key.branch, key.zone, est, now))

    def tick(self, now: float) -> None:
        """Once a second: timeouts, renotify/escalate, sweeps, minute roll-over, and once a
        day the prune of minute aggregates older than ``database.retention_days``."""
        self._last_tick = now
        events: list[AlertEvent] = []
        with self.state.lock:
            self._fold_minute(now)
            events.extend(self.engine.tick(now) or [])
            if now - self._last_sweep >= 10.0:
                self._last_sweep = now
                if self.state.tickets is not None:
                    self.state.tickets.evict(now)
                for key, rt in self._zones.items():
                    if now - rt.evaluated_at >= 10.0:
                        events.extend(self._evaluate(key, now))
                    zone = self.state.zones.get(key)
                    if zone is not None:
                        self.aggregator.sample(
                            key, zone.people, zone.estimate, rt.threshold_s, zone.flows.classified
                        )
            rows = self.aggregator.roll(now)
        if rows:
            self._writer.submit(self._write_minutes, rows)
            if self._unsaved_bindings:
                self._writer.submit(self._save_bindings, [])  # retry once a minute
            if self.cfg.report.sink is not None:
                # once a minute, after the minute is written: daily reports due now
                self._writer.submit(self._queue_reports, now)
        cutoff = self.retention.due(now)
        if cutoff is not None:
            self._writer.submit(self._prune_minutes, cutoff)
        if events:
            self._handle_events(events, now)

    def _fold_minute(self, now: float) -> None:
        """Close the minute that ended before ``now`` into the zones' arrival histories, once.

        Called before anything is estimated or ingested in a new minute (the tick's sweep,
        a batch, an estimate line): the cold-start ramp needs the last closed minute, and
        an estimate made between the minute's end and the next tick fell back to the flat
        trend, so the forecast shown jumped once a minute.
        """
        closing = self.aggregator.minute
        if closing is None or closing == self._folded_minute or now < closing + 60.0:
            return
        self._folded_minute = closing
        self._close_minute(float(closing))

    def _close_minute(self, minute_start: float) -> None:
        """Each waiting zone's arrivals of the closing minute go into its history."""
        for rt in self._zones.values():
            seen = rt.estimator.arrivals_seen
            mark = rt.arrivals_mark if rt.arrivals_mark is not None else seen
            rt.arrivals_mark = seen
            # a zone not watched in that minute has no data, not zero arrivals
            if rt.history is not None and rt.estimator.updated_recently(minute_start):
                rt.history.add(minute_start, seen - mark)

    def _queue_reports(self, now: float) -> None:
        from lobbywatch.server.report_schedule import enqueue_due

        try:
            if enqueue_due(self.cfg, self.store, now):
                self.dispatcher.wake()
        except Exception:
            log.exception("queueing the daily reports failed")

    def wait_for_store_writes(self) -> None:
        """Block until every minute write and prune submitted so far is done."""
        self._writer.submit(lambda: None).result()

    def _save_bindings(self, rows: list[tuple[str, str, float]]) -> None:
        """Persist identity bindings (writer thread); kept and retried while the database fails."""
        for subject, owner, at in rows:
            self._unsaved_bindings[subject] = (owner, at)
        batch = [(s, o, t) for s, (o, t) in self._unsaved_bindings.items()]
        try:
            with self.db_health.call("save_bindings"):
                self.store.save_bindings(batch)
        except Exception as exc:
            self.db_health.failed("save_bindings", exc, self.clock())
            log.warning("saving %d identity bindings failed; retried later: %s", len(batch), exc)
            return
        for subject, owner, at in batch:
            if self._unsaved_bindings.get(subject) == (owner, at):
                del self._unsaved_bindings[subject]

    def _prune_minutes(self, before: float) -> None:
        try:
            n = self.store.prune_minutes(before)
        except Exception:
            log.exception("pruning minute aggregates older than retention_days failed")
            return
        if n:
            log.info("pruned %d minute aggregates older than retention_days", n)

    def _write_minutes(self, rows: list[MinuteRow]) -> None:
        """One upsert (writer thread); rows the database refuses wait for the next minute.

        Bounded: at most a day of one minute per zone is kept back.
        """
        from sqlalchemy.exc import DataError, IntegrityError

        rows = self._unwritten_minutes + rows
        self._unwritten_minutes = []
        try:
            with self.db_health.call("write_minutes"):
                self.store.write_minutes(rows)
        except (DataError, IntegrityError, OverflowError) as exc:
            # a value the database refuses: one branch's row must never cost the other
            # branches their minute, so write branch by branch and drop only the bad one
            log.warning("minute aggregates refused (%s); writing branch by branch", exc)
            by_branch: dict[str, list[MinuteRow]] = {}
            for r in rows:
                by_branch.setdefault(r.branch, []).append(r)
            for branch, brows in by_branch.items():
                try:
                    self.store.write_minutes(brows)
                except (DataError, IntegrityError, OverflowError) as bexc:
                    self.db_health.refused("write_minutes_refused")
                    log.error("minute aggregates of branch %s dropped: %s", branch, bexc)
        except Exception as exc:
            self.db_health.failed("write_minutes", exc, self.clock())
            keep = max(len(self._zones), 1) * 1440
            self._unwritten_minutes = rows[-keep:]
            log.warning("writing %d minute aggregates failed: %s", len(rows), exc)

    def _handle_events(self, events: list[AlertEvent], now: float) -> None:
        """Spool the events for the outbox (the writer thread stores them, then wakes
        the sinks); update the in-memory active set. Never touches the database.

        A standby stores nothing: the active collector of its partition does."""
        payloads: list[AlertPayload] = []
        for ev in events if self.is_active() else ():
            eid = ev.event_id
            region = ev.region or self.region_of(ev.branch)
            payload = event_payload(ev, region)
            sinks = (
                self.cfg.notify.sinks_for(ev.branch, region, ev.kind, ev.severity)
                if self.notifies(ev.branch, payload["zone"])
                else []  # stored and visible in the API, but no manager is notified
            )
            payload["context"] = self.alert_context(payload, now)
            row = event_row(ev, now, region)
            record = EventRecord(eid, row, ev.event, now, dict(payload))
            self.spool.put(Spooled(record, tuple(sinks)))
            payloads.append(payload)
        with self.state.lock:
            self.state.alerts = {str(a.alert_id): a for a in self.engine.snapshot()}
        for listener in self.event_listeners:
            listener(payloads)
        if events:
            self.db_writer.wake()

    def store_spooled_offline(self) -> None:
        """Write the spooled alert events to the outbox now, in order (what the DB
        writer thread does; for a collector that was never :meth:`start`-ed: replay)."""
        while (item := self.spool.head()) is not None:
            self.store.record_event(item.record, item.sinks)
            self.spool.pop(item)

    def alert_context(self, payload: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Facts a manager acts on, stored with the event (see ``alert_texts``)."""
        from lobbywatch.server.alert_texts import alert_context

        branch, zone = str(payload["branch"]), payload.get("zone")
        cfg_branch = self.cfg.branch(branch)
        estimate = None
        threshold = payload.get("threshold")
        if zone is not None:
            with self.state.lock:
                rec = self.state.zones.get(ZoneKey(branch, zone))
                estimate = rec.estimate if rec is not None else None
        worst = None
        rt = self._zones.get(ZoneKey(branch, zone)) if zone is not None else None
        value = payload.get("value")
        if rt is not None and payload.get("event") == "fire":
            # a new episode: its worst wait starts from what fired it
            rt.peak_wait_s = float(value) if value is not None else 0.0
        if payload.get("state") == "resolved" and zone is not None:
            values = [float(value)] if value is not None else []
            if rt is not None and rt.peak_wait_s > 0:
                values.append(rt.peak_wait_s)
            worst = max(values) if values else None
        base = self.cfg.board.public_url
        return alert_context(
            branch_name=cfg_branch.name if cfg_branch else None,
            zone_name=self.cfg.zone_name(branch, zone) if zone else None,
            timezone=cfg_branch.timezone if cfg_branch else "UTC",
            locale=self.cfg.locale_for(branch),
            estimate=estimate,
            threshold_s=float(threshold) if threshold is not None else None,
            counters_configured=self.cfg.service_for(branch, zone)[0] if zone else None,
            board_url=(
                f"{base.rstrip('/')}/board/branch?id={branch}" if base is not None else None
            ),
            now=now,
            worst_wait_s=worst,
        )

    def firing_payloads(self) -> list[dict[str, Any]]:
        """Payloads of the open alerts (for the Alertmanager re-send loop), as the
        plain dicts the sinks also read back from the outbox."""
        now = self.clock()
        with self.state.lock:
            alerts = list(self.state.alerts.values())
        payloads: list[AlertPayload] = [
            event_payload(AlertEvent.of(a, "renotify", now), a.region or self.region_of(a.branch))
            for a in alerts
            if a.state == "firing"
        ]
        return [dict(p) for p in payloads]
