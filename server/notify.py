"""Notification sinks and the outbox dispatcher.

Flow: the collector stores every alert event with one pending delivery per routed
sink (:meth:`Store.record_event`); :class:`Dispatcher` runs one thread per sink
that sends due deliveries and marks each ``(event_id, sink)`` delivered, or
reschedules it with exponential backoff. A slow or dead sink therefore delays
only itself, a restart resumes exactly the undelivered ones, and the event id
travels with every notification as an idempotency key.

Sinks:

* ``log``: one log line per event.
* ``webhook``: JSON POST, signed ``X-Lobbywatch-Signature: t=<unix>,sha256=<hex>``
  where hex = HMAC-SHA256(secret, ``"<t>." + body``) (the timestamp in the MAC
  lets receivers reject replays); ``Idempotency-Key`` = event id.
* ``smtp``: plain-text e-mail through smtplib; ``Message-ID`` derives from the
  event id so mail systems can drop duplicates.
* ``wecom``: WeCom (企业微信) group robot, ``{"msgtype": "markdown"}`` with the
  manager text (:mod:`lobbywatch.server.alert_texts`) in the branch's language.
* ``dingtalk``: DingTalk robot, markdown message; with a secret the URL gets
  ``timestamp`` (ms) and ``sign`` = urlencode(base64(HMAC-SHA256(secret,
  "<timestamp>\\n<secret>"))), DingTalk's documented signing scheme.
  Both robots refuse more than 20 messages a minute: each sink holds a sliding
  window (:class:`RateLimit`) and the dispatcher leaves deliveries pending until
  the window has room, and an ``errcode`` in the reply (the services answer
  HTTP 200 with an error code) is a failed delivery retried with backoff.
* ``alertmanager``: ``POST /api/v2/alerts``. Alertmanager keeps no state of
  pushed alerts, so besides the event itself every firing alert is re-sent each
  ``resend_interval_s`` with ``endsAt = now + ends_after_s`` and resolved ones are
  re-sent with their end time for ``resolved_resend_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import smtplib
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from lobbywatch.errors import ConfigError
from lobbywatch.server.alert_texts import notice
from lobbywatch.server.config import (
    AlertmanagerSink,
    DingTalkSink,
    LogSink,
    NotifySettings,
    SmtpSink,
    WebhookSink,
    WeComSink,
)
from lobbywatch.server.i18n import Translator
from lobbywatch.server.metrics import LatencyHistogram
from lobbywatch.server.spool import DbHealth
from lobbywatch.server.store import Delivery, Store

log = logging.getLogger(__name__)
alert_log = logging.getLogger("lobbywatch.alerts")

SIGNATURE_HEADER = "X-Lobbywatch-Signature"
RECORD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


REDELIVERY_HEADER = "X-Lobbywatch-Redelivery"


class SinkError(Exception):
    """A delivery failed; the outbox retries it later.

    ``in_doubt``: the request may have reached the receiver (a timeout or a dropped
    connection after it was sent), so the retry is marked as a redelivery.
    """

    def __init__(self, message: str, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.in_doubt = in_doubt


def http_error(exc: httpx.HTTPError) -> SinkError:
    """SinkError of a failed request; in doubt unless it never got connected."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return SinkError(f"{type(exc).__name__}: {exc}", in_doubt=not never_sent)


class Sink(Protocol):
    name: str

    def send(self, payload: dict[str, Any]) -> None: ...


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """Value of the signature header for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={mac}"


def verify(secret: bytes, body: bytes, header: str, tolerance_s: float = 300.0) -> bool:
    """Receiver-side check of :func:`sign` (used by tests; documented for integrators)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        expected = sign(secret, body, ts)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header) and abs(time.time() - ts) <= tolerance_s


class LogNotifier:
    def __init__(self, name: str, cfg: LogSink) -> None:
        self.name = name

    def send(self, payload: dict[str, Any]) -> None:
        alert_log.warning(
            "[%s] %s %s %s/%s: %s",
            payload.get("event"),
            payload.get("severity"),
            payload.get("kind"),
            payload.get("branch"),
            payload.get("zone"),
            payload.get("summary"),
        )


class WebhookNotifier:
    def __init__(self, name: str, cfg: WebhookSink) -> None:
        self.name = name
        self.cfg = cfg
        self.secret = cfg.secret()
        self.client = httpx.Client(timeout=cfg.timeout_s)

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(payload["event_id"]),
            "X-Lobbywatch-Event-Id": str(payload["event_id"]),
            **self.cfg.headers,
        }
        if payload.get("redelivery"):
            # a previous send may have arrived (its sender died before recording it):
            # receivers that keep Idempotency-Keys drop it, others can flag it
            headers[REDELIVERY_HEADER] = "1"
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        try:
            resp = self.client.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise http_error(exc) from exc
        if resp.status_code >= 300:
            raise SinkError(f"HTTP {resp.status_code}: {resp.text[:200]}")


class SmtpNotifier:
    def __init__(self, name: str, cfg: SmtpSink) -> None:
        self.name = name
        self.cfg = cfg
        self.password: str | None = None
        if cfg.password_file is not None:
            self.password = cfg.password_file.read_text().strip()

    def message(self, payload: dict[str, Any]) -> EmailMessage:
        cfg = self.cfg
        msg = EmailMessage()
        tr = Translator.of((payload.get("context") or {}).get("locale"))
        text = notice(payload, tr, time.time())
        if payload.get("context"):
            # the manager's title in the branch's language ("W1 warning: Harbour, Hall")
            msg["Subject"] = f"{cfg.subject_prefix} {text.title}"
        else:
            sev = str(payload.get("severity", "")).upper()
            what = "RESOLVED" if payload.get("state") == "resolved" else sev
            msg["Subject"] = f"{cfg.subject_prefix} {what}: {payload.get('summary')}"
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        digest = hashlib.sha256(str(payload["event_id"]).encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@lobbywatch>"
        msg["X-Lobbywatch-Event-Id"] = str(payload["event_id"])
        if payload.get("redelivery"):
            msg[REDELIVERY_HEADER] = "1"
        lines = [
            text.plain(),
            str(payload.get("summary")),
            "",
            *(
                f"{k}: {payload.get(k)}"
                for k in (
                    "event",
                    "kind",
                    "severity",
                    "state",
                    "branch",
                    "region",
                    "zone",
                    "value",
                    "threshold",
                    "started_at",
                    "ended_at",
                    "alert_id",
                )
            ),
        ]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def report_message(self, payload: dict[str, Any]) -> EmailMessage:
        """The daily report e-mail: HTML with its PNG charts as inline (cid) parts."""
        from lobbywatch.server.report import report_email

        digest = hashlib.sha256(str(payload["event_id"]).encode()).hexdigest()[:32]
        images = {k: base64.b64decode(v) for k, v in (payload.get("images") or {}).items()}
        msg = report_email(
            str(payload["html"]),
            images,
            f"{self.cfg.subject_prefix} {payload.get('subject')}",
            self.cfg.sender,
            list(payload.get("to") or self.cfg.to),
            f"<{digest}@lobbywatch>",
        )
        msg["X-Lobbywatch-Event-Id"] = str(payload["event_id"])
        return msg

    def send(self, payload: dict[str, Any]) -> None:
        cfg = self.cfg
        message = (
            self.report_message(payload)
            if payload.get("event") == "report"
            else self.message(payload)
        )
        cls = smtplib.SMTP_SSL if cfg.ssl else smtplib.SMTP
        try:
            with cls(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls()
                if cfg.username:
                    smtp.login(cfg.username, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # a timeout may strike after DATA was accepted: the mail may be on its way
            in_doubt = isinstance(exc, TimeoutError | smtplib.SMTPServerDisconnected)
            raise SinkError(f"{type(exc).__name__}: {exc}", in_doubt=in_doubt) from exc


class RateLimit:
    """Sliding-window limit: at most ``n`` sends in any ``window_s`` seconds.

    Args:
        n: sends allowed per window (WeCom and DingTalk robots: 20 per minute).
        window_s: window length, seconds.
        clock: time source (injected in tests).
    """

    def __init__(self, n: int, window_s: float = 60.0, clock: Callable[[], float] = time.time):
        self.n = n
        self.window_s = window_s
        self.clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Seconds until one more send is allowed (0: now)."""
        now = self.clock()
        with self._lock:
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            if len(self._sent) < self.n:
                return 0.0
            return self.window_s - (now - self._sent[0])

    def record(self) -> None:
        with self._lock:
            self._sent.append(self.clock())


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` query value: urlencode(base64(HMAC-SHA256(secret, "ts\\nsecret")))."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    mac = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


class _RobotNotifier:
    """Shared part of the chat-robot sinks: locale, rate limit, errcode check."""

    cfg: WeComSink | DingTalkSink

    def __init__(self, name: str, cfg: WeComSink | DingTalkSink) -> None:
        self.name = name
        self.cfg = cfg
        self.url = cfg.url()
        self.client = httpx.Client(timeout=cfg.timeout_s)
        self.limit = RateLimit(cfg.per_minute, 60.0)

    def ready_in(self) -> float:
        """Seconds before this sink may send again (the dispatcher waits, nothing is lost)."""
        return self.limit.wait_s()

    def text(self, payload: dict[str, Any]) -> tuple[str, str]:
        locale = self.cfg.locale or (payload.get("context") or {}).get("locale")
        n = notice(payload, Translator.of(locale), time.time())
        return n.title, n.markdown()

    def _post(self, url: str, body: dict[str, Any]) -> None:
        self.limit.record()  # a refused send still counts against the service's window
        try:
            resp = self.client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise http_error(exc) from exc
        if resp.status_code >= 300:
            raise SinkError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            reply = resp.json()
        except ValueError:
            raise SinkError(f"{self.name}: reply is not JSON: {resp.text[:200]}") from None
        if reply.get("errcode", 0) != 0:
            raise SinkError(f"{self.name}: errcode {reply.get('errcode')}: {reply.get('errmsg')}")


class WeComNotifier(_RobotNotifier):
    """WeCom group robot, markdown message (content at most 4096 bytes)."""

    def send(self, payload: dict[str, Any]) -> None:
        _, content = self.text(payload)
        content = content.encode()[:4096].decode(errors="ignore")
        self._post(self.url, {"msgtype": "markdown", "markdown": {"content": content}})


class DingTalkNotifier(_RobotNotifier):
    """DingTalk robot, markdown message, signed URL when a secret is configured."""

    cfg: DingTalkSink

    def __init__(self, name: str, cfg: DingTalkSink) -> None:
        super().__init__(name, cfg)
        self.secret = cfg.secret()

    def signed_url(self, timestamp_ms: int) -> str:
        if not self.secret:
            return self.url
        sep = "&" if "?" in self.url else "?"
        sign = dingtalk_sign(self.secret, timestamp_ms)
        return f"{self.url}{sep}timestamp={timestamp_ms}&sign={sign}"

    def send(self, payload: dict[str, Any]) -> None:
        title, text = self.text(payload)
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        self._post(self.signed_url(int(time.time() * 1000)), body)


ALERTNAMES = {
    "w1_wait": "LobbywatchW1Wait",
    "service_stalled": "LobbywatchServiceStalled",
    "device_offline": "LobbywatchDeviceOffline",
}


class AlertmanagerNotifier:
    def __init__(self, name: str, cfg: AlertmanagerSink) -> None:
        self.name = name
        self.cfg = cfg
        self.client = httpx.Client(timeout=cfg.timeout_s)
        self.url = cfg.url.rstrip("/") + "/api/v2/alerts"
        #: alert_id -> (payload, resolved_at): resolved alerts still being re-sent
        self._resolved: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def to_am(self, p: dict[str, Any], now: float, severity: str | None = None) -> dict[str, Any]:
        labels = {
            "alertname": ALERTNAMES.get(str(p.get("kind")), "LobbywatchAlert"),
            "kind": str(p.get("kind")),
            "severity": severity or str(p.get("severity")),
            "branch": str(p.get("branch")),
            "region": str(p.get("region") or ""),
            "zone": str(p.get("zone") or ""),
        }
        started = p.get("started_at_ts")
        ended = p.get("ended_at_ts")
        resolved = p.get("state") == "resolved"
        ends = ended if resolved and ended is not None else now + self.cfg.ends_after_s
        out: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {
                "summary": str(p.get("summary") or ""),
                "value": str(p.get("value")),
                "threshold": str(p.get("threshold")),
                "alert_id": str(p.get("alert_id")),
            },
            "startsAt": iso(started) if started is not None else iso(now),
            "endsAt": iso(ends),
        }
        if self.cfg.generator_url:
            out["generatorURL"] = self.cfg.generator_url
        return out

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        try:
            resp = self.client.post(self.url, json=alerts)
        except httpx.HTTPError as exc:
            raise http_error(exc) from exc
        if resp.status_code >= 300:
            raise SinkError(f"HTTP {resp.status_code}: {resp.text[:200]}")

    def send(self, payload: dict[str, Any]) -> None:
        now = time.time()
        batch = [self.to_am(payload, now)]
        prev_severity = payload.get("previous_severity")
        if (
            payload.get("event") == "escalate"
            and prev_severity
            and prev_severity != payload.get("severity")
        ):
            # severity is a label, so the escalated alert is a new Alertmanager alert;
            # end the lower-severity one or it lingers until its endsAt.
            prev = self.to_am(payload, now, severity=str(payload["previous_severity"]))
            prev["endsAt"] = iso(now)
            batch.append(prev)
        self._post(batch)
        if payload.get("state") == "resolved":
            with self._lock:
                self._resolved[str(payload.get("alert_id"))] = (payload, now)

    def resend(self, firing: list[dict[str, Any]], now: float) -> None:
        """Re-push the firing alerts and recently resolved ones (Alertmanager is stateless)."""
        with self._lock:
            for aid, (_, at) in list(self._resolved.items()):
                if now - at > self.cfg.resolved_resend_s:
                    del self._resolved[aid]
            resolved = [p for p, _ in self._resolved.values()]
        batch = [self.to_am(p, now) for p in firing] + [self.to_am(p, now) for p in resolved]
        if batch:
            self._post(batch)


def build_sinks(settings: NotifySettings) -> dict[str, Sink]:
    """One notifier per configured sink.

    Raises:
        ConfigError: a sink's secret cannot be read; the message starts with the sink's
            path in SERVER.yaml (``notify.sinks.NAME: webhook secret_file: ...``), so a
            config with several sinks says which one.
    """
    out: dict[str, Sink] = {}
    for name in settings.sinks:
        try:
            out[name] = _build_sink(name, settings)
        except ConfigError as exc:
            raise ConfigError(f"notify.sinks.{name}: {exc}") from None
    return out


def _build_sink(name: str, settings: NotifySettings) -> Sink:
    cfg = settings.sinks[name]
    notifiers: dict[type, Callable[[str, Any], Sink]] = {
        LogSink: LogNotifier,
        WebhookSink: WebhookNotifier,
        SmtpSink: SmtpNotifier,
        AlertmanagerSink: AlertmanagerNotifier,
        WeComSink: WeComNotifier,
        DingTalkSink: DingTalkNotifier,
    }
    make = notifiers.get(type(cfg))
    if make is None:
        raise ConfigError(f"unknown sink type {type(cfg).__name__}")
    return make(name, cfg)


class Dispatcher:
    """Delivers the outbox: one thread per sink.

    Args:
        store: the outbox.
        sinks: name -> sink.
        settings: retry/backoff knobs.
        firing_payloads: returns the payloads of currently firing alerts (for the
            Alertmanager re-send loop).
    """

    def __init__(
        self,
        store: Store,
        sinks: dict[str, Sink],
        settings: NotifySettings,
        firing_payloads: Callable[[], list[dict[str, Any]]] = list,
        clock: Callable[[], float] = time.time,
        health: DbHealth | None = None,
        active: Callable[[], bool] = lambda: True,
        branches: list[str] | None = None,
    ) -> None:
        self.store = store
        #: False on a standby collector: it delivers nothing (the active one does)
        self.active = active
        #: a partitioned collector delivers only its own branches' events
        self.branches = branches
        self.health = health or DbHealth()
        #: (event_id, sink) -> delivered_at: sent, but the database did not record it.
        #: They are never sent again by this process (the database is told later), so a
        #: database that cannot record a delivery does not make a sink get it again and
        #: again; across a crash at most one more send, with the same idempotency key.
        self._unrecorded: dict[tuple[str, str], float] = {}
        self.sinks = sinks
        self.settings = settings
        self.firing_payloads = firing_payloads
        self.clock = clock
        #: seconds from a sink's reply to the delivery's commit (a crash in between
        #: makes the next sender re-send it, marked as a redelivery)
        self.record_latency = LatencyHistogram(RECORD_BUCKETS)
        #: (sink, result) -> count; result in delivered, error, expired, unrecorded,
        #: redelivered (sent again because a previous send was in doubt)
        self.counts: dict[tuple[str, str], int] = {}
        for name in sinks:
            for result in ("delivered", "error", "expired", "unrecorded", "redelivered"):
                self.counts[(name, result)] = 0
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in sinks}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _count(self, sink: str, result: str) -> None:
        with self._lock:
            self.counts[(sink, result)] = self.counts.get((sink, result), 0) + 1

    def start(self) -> None:
        for name in self.sinks:
            t = threading.Thread(target=self._run, args=(name,), name=f"notify-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        for ev in self._wake.values():
            ev.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout=10)

    def backoff(self, attempts: int) -> float:
        base = min(self.settings.retry_initial_s * 2**attempts, self.settings.retry_max_s)
        return base * random.uniform(0.8, 1.2)  # jitter: many collectors do not retry in step

    def deliver_due(self, name: str) -> int:
        """One pass over the due deliveries of one sink; returns how many succeeded."""
        sink = self.sinks[name]
        now = self.clock()
        ok = 0
        blocked: set[str] = set()
        self._record_unrecorded(name)
        try:
            with self.health.call("due_deliveries"):
                due = self.store.due_deliveries(now, sink=name, branches=self.branches)
        except Exception as exc:
            self.health.failed("due_deliveries", exc, now)
            raise
        for d in due:
            aid = str(d.payload.get("alert_id"))
            if aid in blocked:
                continue  # keep per-alert order: no resolve before its fire went out
            if (d.event_id, name) in self._unrecorded:
                continue  # delivered; only the database does not know yet
            ready_in = getattr(sink, "ready_in", None)
            if ready_in is not None and ready_in() > 0:
                break  # rate limit reached: the rest stays pending for the next pass
            if self._send_one(sink, d, now):
                ok += 1
            else:
                blocked.add(aid)
            if self._stop.is_set():
                break
        return ok

    def _record_unrecorded(self, name: str) -> None:
        """Tell the database about deliveries it could not record before."""
        for (eid, sink), at in list(self._unrecorded.items()):
            if sink != name:
                continue
            try:
                with self.health.call("mark_delivered"):
                    self.store.mark_delivered(eid, sink, at)
            except Exception as exc:
                self.health.failed("mark_delivered", exc, self.clock())
                return
            del self._unrecorded[(eid, sink)]

    def _send_one(self, sink: Sink, d: Delivery, now: float) -> bool:
        # The claim is committed before the send: a collector that dies between the
        # sink receiving the request and the delivery being recorded leaves it on the
        # row, and whoever sends next knows the sink may have it already ("in doubt").
        # Without the claim that case looked like "never attempted".
        try:
            with self.health.call("claim_delivery"):
                claimed = self.store.claim(d.event_id, sink.name, now)
        except Exception as exc:
            self.health.failed("claim_delivery", exc, now)
            return False  # nothing sent whose outcome could not be recorded
        if not claimed:
            return True  # recorded meanwhile (by the previous active): nothing to do
        payload = d.payload
        if d.in_doubt:
            # same event id and Idempotency-Key, marked so receivers can drop it
            payload = {**payload, "redelivery": True}
            self._count(sink.name, "redelivered")
        try:
            sink.send(payload)
        except Exception as exc:
            expire = now - d.created_at > self.settings.give_up_after_s
            try:
                self.store.mark_failed(
                    d.event_id,
                    sink.name,
                    str(exc),
                    now + self.backoff(d.attempts),
                    expire=expire,
                    in_doubt=bool(getattr(exc, "in_doubt", False)),
                )
            except Exception as db_exc:
                self.health.failed("mark_failed", db_exc, now)
            self._count(sink.name, "expired" if expire else "error")
            log.warning(
                "notification %s via %s failed (attempt %d): %s",
                d.event_id,
                sink.name,
                d.attempts + 1,
                exc,
            )
            return False
        self._count(sink.name, "delivered")
        replied = time.monotonic()
        at = self.clock()
        try:
            with self.health.call("mark_delivered"):
                self.store.mark_delivered(d.event_id, sink.name, at)
        except Exception as exc:
            self.health.failed("mark_delivered", exc, at)
            self._unrecorded[(d.event_id, sink.name)] = at
            self._count(sink.name, "unrecorded")
            log.warning("notification %s via %s sent, not recorded: %s", d.event_id, sink.name, exc)
        else:
            # the tail of the in-doubt window: sink replied .. delivery committed
            self.record_latency.observe_many([time.monotonic() - replied])
        return True

    def _run(self, name: str) -> None:
        sink = self.sinks[name]
        wake = self._wake[name]
        last_resend = 0.0
        while not self._stop.is_set():
            if not self.active():
                wake.wait(1.0)
                wake.clear()
                continue
            try:
                self.deliver_due(name)
                if isinstance(sink, AlertmanagerNotifier):
                    now = self.clock()
                    if now - last_resend >= sink.cfg.resend_interval_s:
                        last_resend = now
                        try:
                            sink.resend(self.firing_payloads(), now)
                        except SinkError as exc:
                            self._count(name, "error")
                            log.warning("Alertmanager re-send failed: %s", exc)
            except Exception as exc:
                # the database is down (counted in DbHealth) or a bug: one line, retry
                log.warning("notification loop of %s failed; retrying: %s", name, exc)
            wake.wait(1.0)
            wake.clear()
