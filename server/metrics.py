"""Prometheus exposition of the collector state.

A custom ``prometheus_client`` collector renders every family from
:class:`~lobbywatch.server.state.CollectorState` at scrape time: ingest then
pays nothing per message for metrics (20k msgs/s would otherwise mean 20k
labelled gauge updates per second), and a scrape always sees one consistent
snapshot. Labels are bounded: branch, region, camera, zone, device, kind,
quantile, result, sink, severity; never a person or a message.

Names (dashboards depend on them; change only with a deprecation):

* ``lobbywatch_branch_info{branch,region}`` = 1
* ``lobbywatch_zone_people{branch,camera,zone,kind}``
* ``lobbywatch_zone_predicted_wait_seconds{branch,zone}``
* ``lobbywatch_zone_forecast_wait_seconds{branch,zone}``
* ``lobbywatch_zone_oldest_wait_seconds{branch,zone}``
* ``lobbywatch_zone_wait_threshold_seconds{branch,zone}``
* ``lobbywatch_zone_realised_wait_seconds{branch,zone,quantile}`` (0.5, 0.9)
* ``lobbywatch_zone_service_rate_per_second{branch,zone}``
* ``lobbywatch_zone_served_within_threshold_ratio{branch,zone}``
* ``lobbywatch_zone_last_update_timestamp_seconds{branch,zone}``
* ``lobbywatch_zone_alert_state{branch,zone,kind}`` (0 ok, 1 warning, 2 critical)
* ``lobbywatch_zone_priority_share{branch,zone,method}`` (share of priority arrivals in
  the class-aware waits; method ``tickets`` when learned from a ticket system)
* ``lobbywatch_zone_ticket_realised_wait_seconds{branch,zone,class,quantile}`` (ticket
  issued -> called, 0.5 and 0.9, over ``tickets.wait_window_s``)
* ``lobbywatch_zone_tickets_open{branch,zone,class}``,
  ``lobbywatch_zone_tickets_total{branch,zone,class,event}`` (issued, called,
  cancelled), ``lobbywatch_zone_tickets_expired_total{branch,zone}`` (open tickets
  forgotten without a call)
* ``lobbywatch_zone_wait_calibration_factor{branch,zone,source}`` (kappa; source
  ``tickets`` or ``camera``)
* ``lobbywatch_zone_arrivals_total{branch,zone}`` (waiting zones: confirmed entries
  counted by this collector since it started; ``rate()`` gives the arrival rate)
* ``lobbywatch_zone_service_starts_total{branch,zone}``,
  ``lobbywatch_zone_walk_outs_total{branch,zone}``,
  ``lobbywatch_zone_departures_unseen_total{branch,zone}`` (waiting zones whose edge
  classifies departures by destination; absent otherwise, so a missing walk-out
  counter never reads as "no walk-outs")
* ``lobbywatch_zone_walk_out_ratio{branch,zone}`` (walk-outs / classified departures
  over the last 30 min of observations: the abandonment share)
* ``lobbywatch_device_up{branch,camera,device}`` (per camera; 0 while the device is
  offline by its device status / last will; ``camera=""`` for a device whose cameras
  are not known yet)
* ``lobbywatch_device_online{branch,device}`` (device-level status: 1 online, 0 offline)
* ``lobbywatch_device_last_message_timestamp_seconds{branch,camera,device}``
* ``lobbywatch_device_last_message_age_seconds{branch,camera,device}``
* ``lobbywatch_collector_messages_total{result}``
* ``lobbywatch_collector_invalid_messages_total{result,reason}`` (why a message was refused)
* ``lobbywatch_collector_processing_seconds`` (histogram: receive -> state applied)
* ``lobbywatch_collector_queue_messages`` / ``lobbywatch_collector_queue_dropped_total``
* ``lobbywatch_notifications_total{sink,result}``
* ``lobbywatch_notification_record_seconds`` (histogram: sink reply -> delivery committed)
* ``lobbywatch_alerts_active{severity}``
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from lobbywatch.server.state import RESULTS, CollectorState
from lobbywatch.zone_state import ZoneKind

ALERT_LEVEL = {"warning": 1, "critical": 2}
ZONE_ALERT_KINDS = ("w1_wait", "service_stalled")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A histogram updated once per batch (one lock for many observations)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = self.counts
        total = 0.0
        with self._lock:
            for v in values:
                counts[bisect.bisect_left(bounds, v)] += 1
                total += v
            self.total += total

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        with self._lock:
            counts = list(self.counts)
            total = self.total
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, c in zip(self.bounds, counts, strict=False):
            acc += c
            out.append((repr(float(bound)), acc))
        acc += counts[-1]
        out.append(("+Inf", acc))
        return out, total


class StateCollector(Collector):
    def __init__(
        self,
        state: CollectorState,
        latency: LatencyHistogram,
        notification_counts: Callable[[], dict[tuple[str, str], int]] = dict,
        queue_stats: Callable[[], tuple[int, int]] = lambda: (0, 0),
        clock: Callable[[], float] = time.time,
        db_stats: Callable[[], DbStats] | None = None,
        record_latency: LatencyHistogram | None = None,
    ) -> None:
        self.record_latency = record_latency
        self.state = state
        self.latency = latency
        self.notification_counts = notification_counts
        self.queue_stats = queue_stats
        self.db_stats = db_stats
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # rendered dynamically; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        s = self.state
        branch_info = GaugeMetricFamily(
            "lobbywatch_branch_info", "Branch metadata (value 1).", labels=["branch", "region"]
        )
        people = GaugeMetricFamily(
            "lobbywatch_zone_people",
            "Confirmed people in the zone (newest state).",
            labels=["branch", "camera", "zone", "kind"],
        )
        bz = ["branch", "zone"]
        predicted = GaugeMetricFamily(
            "lobbywatch_zone_predicted_wait_seconds",
            "Predicted wait for a customer joining the waiting zone now.",
            labels=bz,
        )
        forecast = GaugeMetricFamily(
            "lobbywatch_zone_forecast_wait_seconds",
            "Predicted wait for a customer joining at the forecast horizon.",
            labels=bz,
        )
        oldest = GaugeMetricFamily(
            "lobbywatch_zone_oldest_wait_seconds",
            "Current dwell of the longest-waiting person.",
            labels=bz,
        )
        threshold = GaugeMetricFamily(
            "lobbywatch_zone_wait_threshold_seconds", "W1 wait threshold in force.", labels=bz
        )
        realised = GaugeMetricFamily(
            "lobbywatch_zone_realised_wait_seconds",
            "Quantiles of realised waits (completed dwells) over the recent window.",
            labels=["branch", "zone", "quantile"],
        )
        rate = GaugeMetricFamily(
            "lobbywatch_zone_service_rate_per_second",
            "Service rate used for the prediction (customers per second).",
            labels=bz,
        )
        counters_open = GaugeMetricFamily(
            "lobbywatch_zone_counters_open",
            "Counters serving the waiting zone: seen open at its service points while people "
            "waited (method=observed), else configured.",
            labels=[*bz, "method"],
        )
        stale = GaugeMetricFamily(
            "lobbywatch_zone_stale",
            "1 while the zone's source (device or camera) is offline or down: its numbers are "
            "not current and its W1/stalled alerts stand down.",
            labels=bz,
        )
        class_wait = GaugeMetricFamily(
            "lobbywatch_zone_class_predicted_wait_seconds",
            "Predicted wait of a customer joining now, by service class (priority served first).",
            labels=[*bz, "class"],
        )
        breach_at = GaugeMetricFamily(
            "lobbywatch_zone_breach_expected_timestamp_seconds",
            "When the projection expects the W1 threshold to be crossed (absent: not within "
            "the projection horizon).",
            labels=bz,
        )
        served = GaugeMetricFamily(
            "lobbywatch_zone_served_within_threshold_ratio",
            "Share of recent customers whose realised wait was within the threshold.",
            labels=bz,
        )
        updated = GaugeMetricFamily(
            "lobbywatch_zone_last_update_timestamp_seconds",
            "Observation time of the newest zone state.",
            labels=bz,
        )
        arrivals = CounterMetricFamily(
            "lobbywatch_zone_arrivals",
            "Confirmed entries into the waiting zone counted since the collector started.",
            labels=bz,
        )
        starts = CounterMetricFamily(
            "lobbywatch_zone_service_starts",
            "Departures from the waiting zone into one of its service points.",
            labels=bz,
        )
        walk_outs = CounterMetricFamily(
            "lobbywatch_zone_walk_outs",
            "Departures from the waiting zone through an exit without service (abandonment).",
            labels=bz,
        )
        unseen = CounterMetricFamily(
            "lobbywatch_zone_departures_unseen",
            "Departures from the waiting zone whose destination the camera did not see.",
            labels=bz,
        )
        walk_out_ratio = GaugeMetricFamily(
            "lobbywatch_zone_walk_out_ratio",
            "Walk-outs / classified departures over the recent window (abandonment).",
            labels=bz,
        )
        share = GaugeMetricFamily(
            "lobbywatch_zone_priority_share",
            "Share of priority arrivals used for the class-aware waits: learned from the "
            "tickets issued (method=tickets) or configured.",
            labels=[*bz, "method"],
        )
        ticket_wait = GaugeMetricFamily(
            "lobbywatch_zone_ticket_realised_wait_seconds",
            "Quantiles of realised waits from the ticket system (issued -> called) by class.",
            labels=[*bz, "class", "quantile"],
        )
        tickets_open = GaugeMetricFamily(
            "lobbywatch_zone_tickets_open",
            "Tickets issued and not yet called or cancelled, by class.",
            labels=[*bz, "class"],
        )
        tickets_total = CounterMetricFamily(
            "lobbywatch_zone_tickets",
            "Ticket-system events applied since the collector started, by class and event.",
            labels=[*bz, "class", "event"],
        )
        tickets_expired = CounterMetricFamily(
            "lobbywatch_zone_tickets_expired",
            "Open tickets forgotten without a call (tickets.open_max_age_s, max_tickets).",
            labels=bz,
        )
        calibration = GaugeMetricFamily(
            "lobbywatch_zone_wait_calibration_factor",
            "Correction factor kappa from realised waits in the predicted waits, by its "
            "ground truth (tickets or camera).",
            labels=[*bz, "source"],
        )
        alert_state = GaugeMetricFamily(
            "lobbywatch_zone_alert_state",
            "Alert level per zone and kind: 0 ok, 1 warning, 2 critical.",
            labels=["branch", "zone", "kind"],
        )
        dl = ["branch", "camera", "device"]
        up = GaugeMetricFamily("lobbywatch_device_up", "1 if the device is up.", labels=dl)
        last_ts = GaugeMetricFamily(
            "lobbywatch_device_last_message_timestamp_seconds",
            "Observation time of the device's newest message.",
            labels=dl,
        )
        age = GaugeMetricFamily(
            "lobbywatch_device_last_message_age_seconds",
            "Seconds since the device's newest message was observed.",
            labels=dl,
        )
        gaps = CounterMetricFamily(
            "lobbywatch_device_seq_gaps",
            "Sequence numbers of the device never received: messages lost between the edge "
            "and this collector (counts only when one collector receives all of a device's "
            "messages, i.e. without a shared subscription split across replicas).",
            labels=["branch", "device"],
        )
        online = GaugeMetricFamily(
            "lobbywatch_device_online",
            "Device-level status: 1 online, 0 offline (device status topic / last will).",
            labels=["branch", "device"],
        )
        messages = CounterMetricFamily(
            "lobbywatch_collector_messages",
            "MQTT messages by ingest result.",
            labels=["result"],
        )
        invalid = CounterMetricFamily(
            "lobbywatch_collector_invalid_messages",
            "Refused MQTT messages by result and reason.",
            labels=["result", "reason"],
        )
        active = GaugeMetricFamily(
            "lobbywatch_alerts_active", "Firing alerts by severity.", labels=["severity"]
        )

        with s.lock:
            for b in s.branches.values():
                branch_info.add_metric([b.id, b.region], 1)
            levels: dict[tuple[str, str, str], int] = {}
            sev_count = {"warning": 0, "critical": 0}
            for a in s.alerts.values():
                sev = a.severity
                sev_count[sev] = sev_count.get(sev, 0) + 1
                if str(a.kind) not in ZONE_ALERT_KINDS:
                    continue  # device alerts: see lobbywatch_device_up
                key = (str(a.branch), str(a.subject), str(a.kind))
                levels[key] = max(levels.get(key, 0), ALERT_LEVEL.get(sev, 1))
            for z in s.zones.values():
                people.add_metric([z.branch, z.camera, z.zone, str(z.kind)], z.people)
                if z.kind != ZoneKind.WAITING:
                    continue
                lz = [z.branch, z.zone]
                updated.add_metric(lz, z.ts)
                flows = z.flows
                arrivals.add_metric(lz, flows.arrivals)
                if flows.classified:
                    starts.add_metric(lz, flows.service_starts)
                    walk_outs.add_metric(lz, flows.walk_outs)
                    unseen.add_metric(lz, flows.departures_unseen)
                    _add(walk_out_ratio, lz, flows.walk_out_ratio())
                if z.threshold_s is not None:
                    threshold.add_metric(lz, z.threshold_s)
                for kind in ZONE_ALERT_KINDS:
                    level = levels.pop((z.branch, z.zone, kind), 0)
                    alert_state.add_metric([z.branch, z.zone, kind], level)
                e = z.estimate
                if e is None:
                    continue
                _add(predicted, lz, e.predicted_wait_s)
                _add(forecast, lz, e.forecast_wait_s)
                _add(oldest, lz, e.oldest_wait_s)
                _add(rate, lz, e.service_rate_per_s)
                stale.add_metric(lz, 1 if getattr(e, "stale", False) else 0)
                if getattr(e, "counters_open", None) is not None:
                    counters_open.add_metric([*lz, str(e.counters_method)], e.counters_open)
                _add(class_wait, [*lz, "ordinary"], getattr(e, "predicted_wait_ordinary_s", None))
                _add(class_wait, [*lz, "priority"], getattr(e, "predicted_wait_priority_s", None))
                _add(breach_at, lz, getattr(e, "breach_expected_at", None))
                if getattr(e, "priority_share", None) is not None:
                    share.add_metric([*lz, str(e.priority_share_method)], e.priority_share)
                if getattr(e, "calibration_factor", None) is not None:
                    calibration.add_metric([*lz, str(e.calibration_source)], e.calibration_factor)
                if getattr(e, "priority_share_tickets", None) is not None:
                    for klass in ("ordinary", "priority"):
                        lc = [*lz, klass]
                        _add(ticket_wait, [*lc, "0.5"], getattr(e, f"ticket_wait_{klass}_p50_s"))
                        _add(ticket_wait, [*lc, "0.9"], getattr(e, f"ticket_wait_{klass}_p90_s"))
                        _add(tickets_open, lc, getattr(e, f"tickets_open_{klass}"))
                _add(served, lz, e.served_within_threshold_ratio)
                _add(realised, [*lz, "0.5"], e.realised_wait_p50_s)
                _add(realised, [*lz, "0.9"], e.realised_wait_p90_s)
            book = s.tickets
            for (tb, tz), zt in sorted(book.zones.items()) if book is not None else ():
                tickets_expired.add_metric([tb, tz], zt.expired)
                for (event, klass), n in sorted(zt.totals.items()):
                    tickets_total.add_metric([tb, tz, klass, event], n)
            # alerts on zones we hold no state for yet (e.g. right after a restart)
            for (branch, zone, kind), level in levels.items():
                alert_state.add_metric([branch, zone, kind], level)
            timeout = s.heartbeat_timeout_s
            with_cameras: set[tuple[str, str]] = set()
            for d in s.devices.values():
                ld = [d.branch, d.camera, d.device]
                up.add_metric(ld, 1 if d.is_up(now, timeout) else 0)
                last_ts.add_metric(ld, d.last_ts)
                age.add_metric(ld, max(0.0, now - d.last_ts))
                with_cameras.add((d.branch, d.device))
            for node in s.nodes.values():
                if node.status != "unknown":
                    online.add_metric([node.branch, node.device], int(node.status == "online"))
                gaps.add_metric([node.branch, node.device], node.seq_gaps)
                if (node.branch, node.device) in with_cameras:
                    continue
                # only the device status is known (e.g. its retained last will)
                ld = [node.branch, "", node.device]
                is_up = node.status != "offline" and now - node.last_ts < timeout
                up.add_metric(ld, 1 if is_up else 0)
                last_ts.add_metric(ld, node.last_ts)
                age.add_metric(ld, max(0.0, now - node.last_ts))
            for result in RESULTS:
                messages.add_metric([result], s.results.get(result, 0))
            for (result, reason), count in sorted(s.invalid.items()):
                invalid.add_metric([result, reason], count)
        for sev, n in sorted(sev_count.items()):
            active.add_metric([sev], n)

        buckets, total = self.latency.snapshot()
        hist = HistogramMetricFamily(
            "lobbywatch_collector_processing_seconds",
            "Seconds from MQTT receive to the state (and metrics) being updated.",
        )
        hist.add_metric([], buckets, total)

        notif = CounterMetricFamily(
            "lobbywatch_notifications",
            "Notification attempts by sink and result.",
            labels=["sink", "result"],
        )
        for (sink, result), n in sorted(self.notification_counts().items()):
            notif.add_metric([sink, result], n)
        if self.record_latency is not None:
            rb, rtotal = self.record_latency.snapshot()
            rec = HistogramMetricFamily(
                "lobbywatch_notification_record_seconds",
                "Seconds from a sink's reply to the delivery being committed as delivered "
                "(a crash inside this window makes the next sender re-send, marked).",
            )
            rec.add_metric([], rb, rtotal)
            yield rec

        depth, dropped = self.queue_stats()
        qd = GaugeMetricFamily(
            "lobbywatch_collector_queue_messages", "Messages received but not yet processed."
        )
        qd.add_metric([], depth)
        qdrop = CounterMetricFamily(
            "lobbywatch_collector_queue_dropped",
            "Messages dropped because the processing queue was full (overload).",
        )
        qdrop.add_metric([], dropped)

        if self.db_stats is not None:
            yield from self._db_families(self.db_stats())

        yield from (
            branch_info,
            people,
            predicted,
            forecast,
            oldest,
            threshold,
            realised,
            rate,
            counters_open,
            stale,
            class_wait,
            breach_at,
            served,
            updated,
            arrivals,
            starts,
            walk_outs,
            unseen,
            walk_out_ratio,
            share,
            ticket_wait,
            tickets_open,
            tickets_total,
            tickets_expired,
            calibration,
            alert_state,
            up,
            last_ts,
            age,
            online,
            gaps,
            messages,
            invalid,
            hist,
            notif,
            active,
            qd,
            qdrop,
        )

    @staticmethod
    def _db_families(d: DbStats) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "lobbywatch_collector_database_up",
            "1 while database calls succeed, 0 while they fail or hang (see /healthz).",
        )
        up.add_metric([], 1.0 if d.ok else 0.0)
        errors = CounterMetricFamily(
            "lobbywatch_collector_database_errors",
            "Failed database calls by operation.",
            labels=["op"],
        )
        for op, n in sorted(d.errors.items()):
            errors.add_metric([op], n)
        spooled = GaugeMetricFamily(
            "lobbywatch_collector_alert_events_spooled",
            "Alert events waiting for the database (memory + spool file).",
        )
        spooled.add_metric([], d.spooled)
        lost = CounterMetricFamily(
            "lobbywatch_collector_alert_events_lost",
            "Alert events dropped because the spool was full (database down for long).",
        )
        lost.add_metric([], d.lost)
        yield from (up, errors, spooled, lost)


@dataclass(frozen=True, slots=True)
class DbStats:
    """The database's health as the collector sees it (no database call)."""

    ok: bool
    errors: dict[str, int]
    spooled: int
    lost: int


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


def make_registry(collector: StateCollector) -> CollectorRegistry:
    """A private registry (no global state: several collectors can live in one test)."""
    try:
        from prometheus_client import disable_created_metrics

        disable_created_metrics()
    except ImportError:  # pragma: no cover - older prometheus_client
        pass
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
