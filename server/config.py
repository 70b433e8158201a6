"""SERVER.yaml: the central collector's configuration, schema and loading.

Everything a user can get wrong is validated at load time and reported as one
:class:`~lobbywatch.errors.ConfigError` naming the field path
(``branches[2].zones.W1.counters: ...``), so a bad config fails at start and
never at 9 a.m. when the first alert should fire.

Alert policies are layered: ``alerts`` (global defaults, a whole
:class:`~lobbywatch.server.alerts.AlertPolicy`) <- ``branches[].alerts`` <-
``branches[].zones.<zone>.alerts``. The lower layers are :data:`AlertOverrides`
(every AlertPolicy field, optional); the merged policy of every configured zone
is validated at load, and zones not named in the config get the branch (or
global) policy. ``estimator`` is an
:class:`~lobbywatch.server.estimator.EstimatorSettings` and a branch's
``business_hours`` a :class:`~lobbywatch.server.alerts.BusinessHours` (its time
zone defaults to the branch's), both validated with the rest of the file.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import typing
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from lobbywatch.errors import ConfigError
from lobbywatch.protocol import DEFAULT_ROOT, ID_PATTERN
from lobbywatch.server.alerts import AlertPolicy, BusinessHours
from lobbywatch.server.estimator import EstimatorSettings
from lobbywatch.server.tickets import TicketSettings
from lobbywatch.yaml_lines import Loc, line_map, line_of

_log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _overrides_of(model: type[BaseModel], name: str) -> type[_Strict]:
    """A model with every field of ``model``, optional and unset by default: one
    layer of overrides. Generated, so it cannot drift from ``model``; the value
    ranges are checked on the merged result (:meth:`ServerConfig.policy_for`),
    whose errors name the layer's path."""
    fields: dict[str, Any] = {
        field: (Optional[info.annotation], Field(None, description=info.description))  # noqa: UP045
        for field, info in model.model_fields.items()
    }
    return create_model(name, __base__=_Strict, __doc__=f"partial {model.__name__}", **fields)


if TYPE_CHECKING:  # only model_dump(exclude_unset=True) is read from a layer
    AlertOverrides = _Strict
else:
    AlertOverrides = _overrides_of(AlertPolicy, "AlertOverrides")


# --------------------------------------------------------------------------- MQTT


class TlsSettings(_Strict):
    ca_file: Path | None = Field(None, description="CA bundle; system CAs when omitted")
    cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="client private key (mutual TLS)")
    insecure: bool = Field(False, description="skip hostname verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field(
        "lobbywatch-collector", pattern=ID_PATTERN, description="prefix; a suffix is added"
    )
    username: str | None = None
    password_file: Path | None = Field(
        None,
        description="file holding the MQTT password (env LOBBYWATCH_MQTT_PASSWORD wins)",
    )
    tls: TlsSettings | None = None
    root: str = Field(DEFAULT_ROOT, pattern=ID_PATTERN, description="topic root")
    shared_group: str | None = Field(
        "lobbywatch-collector",
        pattern=ID_PATTERN,
        description="MQTT 5 shared-subscription group; null = plain subscription",
    )
    qos: Literal[0, 1] = Field(
        0,
        description="subscription QoS. 0 by default: with a clean session QoS 1 to the "
        "collector adds no durability (in-flight messages die with the session) but costs a "
        "PUBACK round trip per message; retained state and the edge outbox cover gaps",
    )
    keepalive_s: int = Field(30, ge=5, le=3600)
    bootstrap_s: float = Field(
        3.0,
        ge=0,
        le=300,
        description="how long the plain (non-shared) subscription that loads retained "
        "state stays active after connect; 0 disables it",
    )
    subscribe: Literal["all", "configured_branches"] = Field(
        "all",
        description="'configured_branches' subscribes only to the branches listed in this "
        "config (partitioning collectors by region)",
    )

    def password(self) -> str | None:
        env = os.environ.get("LOBBYWATCH_MQTT_PASSWORD")
        if env is not None:
            return env
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"mqtt.password_file: cannot read {self.password_file}: {exc}"
            ) from None


# ------------------------------------------------------------------ ingest/storage


class IngestSettings(_Strict):
    queue_max: PositiveInt = Field(
        200_000, description="messages buffered between the MQTT thread and processing"
    )
    batch_max: PositiveInt = Field(5_000, description="messages processed per batch")
    evaluate_interval_s: float = Field(
        0.5,
        ge=0,
        le=10,
        description="a waiting zone is re-estimated and alert-evaluated at most this often; "
        "its raw state (people, ...) is in the metrics at once, its estimate within this",
    )
    dedup_window: PositiveInt = Field(
        1024, description="per-device window of recent sequence numbers kept for de-duplication"
    )
    max_clock_skew_s: PositiveFloat = Field(
        300.0,
        description="messages stamped further in the future than this are rejected "
        "(counted malformed/future_timestamp), not clamped",
    )
    unknown_branches: Literal["accept", "reject"] = Field(
        "accept", description="messages for branches not in this config"
    )
    max_zones_and_devices: PositiveInt = Field(
        100_000,
        description="hard cap applied separately to tracked zones, cameras and edge devices "
        "(bounds memory and metric labels); messages beyond it are rejected/limit",
    )
    max_zones_per_device: PositiveInt = Field(
        64, description="zones one device may create; more are refused (reason zone_limit)"
    )
    max_new_zones_per_minute: PositiveInt = Field(
        30, description="new zones one device may create per minute; more are refused"
    )
    rebind_after_s: PositiveFloat = Field(
        900.0,
        description="a device bound to a branch, or a camera bound to a device, on first "
        "sight may be taken over after the bound device was silent this long",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_max_zones(cls, data: Any) -> Any:
        # ``max_zones`` was the name until the cap was documented as covering devices too;
        # old configs keep working with a warning naming the new key.
        if isinstance(data, dict) and "max_zones" in data:
            if "max_zones_and_devices" in data:
                raise ValueError(
                    "max_zones is the old name of max_zones_and_devices: give only one"
                )
            data = dict(data)
            data["max_zones_and_devices"] = data.pop("max_zones")
            warnings.warn(
                "ingest.max_zones is deprecated: rename it to ingest.max_zones_and_devices",
                DeprecationWarning,
                stacklevel=2,
            )
            _log.warning(
                "ingest.max_zones is deprecated: rename it to ingest.max_zones_and_devices"
            )
        return data


class DatabaseSettings(_Strict):
    url: str = Field(
        "sqlite:///lobbywatch-server.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    retention_days: PositiveInt = Field(
        400,
        description="minute aggregates older than this many days are deleted once a day "
        "(alert history is kept)",
    )
    connect_timeout_s: PositiveFloat = Field(
        5.0, le=300, description="give up connecting after this (start-up fails after it)"
    )
    statement_timeout_s: PositiveFloat = Field(
        10.0, le=300, description="a statement running longer is cancelled (and retried)"
    )
    spool_file: Path | None = Field(
        None,
        description="local file keeping alert events the database has not stored yet "
        "(replayed at start); default: beside a SQLite database, memory only for PostgreSQL",
    )
    spool_max_events: PositiveInt = Field(
        10_000, description="alert events kept while the database fails; beyond: lost, counted"
    )

    def spool_path(self) -> Path | None:
        if self.spool_file is not None:
            return self.spool_file
        if self.url.startswith("sqlite:///") and ":memory:" not in self.url:
            return Path(self.url.removeprefix("sqlite:///") + ".alert-spool.jsonl")
        return None

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return v


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    credentials_file: Path | None = Field(
        None,
        description="API tokens and board users, hashed (server/auth.py; `lobbywatch server "
        "add-credential`); set: everything but /healthz and /login needs credentials",
    )
    allow_anonymous: bool = Field(
        False,
        description="serve without credentials on a non-loopback address (not recommended)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names accepted besides localhost, 127.0.0.1, ::1 and "
        "the bind address (e.g. the collector's DNS name)",
    )
    session_secret_file: Path | None = Field(
        None, description="key signing board sessions; default: random per start"
    )
    cookie_secure: bool = Field(False, description="board cookie only over HTTPS")
    session_max_age_s: PositiveInt = Field(43_200, description="board session lifetime")

    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def host_names(self) -> list[str]:
        names = {"localhost", "127.0.0.1", "::1", "[::1]", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host)
        return sorted(names)

    @model_validator(mode="after")
    def _exposed_needs_auth(self) -> HttpSettings:
        if not self.is_loopback() and self.credentials_file is None and not self.allow_anonymous:
            raise ValueError(
                f"http.host {self.host} is not a loopback address: set http.credentials_file "
                "(docs/operations.md, authentication) or, knowingly, allow_anonymous: true"
            )
        return self


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------- branches


def _locale(v: str | None) -> str | None:
    from lobbywatch.server.i18n import validate_locale

    return None if v is None else validate_locale(v)


_Email = Annotated[str, Field(pattern=r".+@.+")]


class ZoneOverride(_Strict):
    name: str | None = Field(
        None, max_length=80, description='the zone in words for managers ("Main hall queue")'
    )
    counters: PositiveInt | None = None
    mean_service_s: PositiveFloat | None = None
    service_points: list[str] = Field(
        default_factory=list,
        description="waiting zone: the counter/desk zones that serve this queue; their "
        "occupancy while people wait tells how many counters are open (docs/wait-estimation.md)",
    )
    priority_share: float | None = Field(
        None, ge=0, lt=1, description="share of arrivals served first (VIP); branch value if null"
    )

    @field_validator("service_points")
    @classmethod
    def _point_ids(cls, v: list[str]) -> list[str]:
        from lobbywatch.protocol import is_valid_id

        for key in v:
            if not is_valid_id(key):
                raise ValueError(f"zone id {key!r} does not match {ID_PATTERN}")
        if len(set(v)) != len(v):
            raise ValueError("service_points lists a zone twice")
        return v

    alerts: AlertOverrides = Field(
        default_factory=AlertOverrides, description="partial AlertPolicy"
    )


class BranchConfig(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = Field(None, max_length=120, description="branch name for managers")
    region: str = Field("default", pattern=ID_PATTERN)
    timezone: str = "UTC"
    locale: str | None = Field(
        None, description="en | zh-CN for this branch's notifications and reports (region's)"
    )
    managers: list[_Email] = Field(
        default_factory=list, description="e-mail addresses receiving the daily report"
    )
    business_hours: BusinessHours | None = Field(
        None, description="opening hours (time zone: the branch's by default); null = always open"
    )
    counters: PositiveInt = Field(2, description="counters normally open")
    mean_service_s: PositiveFloat = Field(240.0, description="mean service time per customer")
    priority_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of arrivals served before ordinary customers (VIP/priority "
        "class); the estimator then reports both classes' waits",
    )
    alerts: AlertOverrides = Field(
        default_factory=AlertOverrides, description="partial AlertPolicy"
    )
    zones: dict[str, ZoneOverride] = Field(default_factory=dict)
    devices: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        None,
        description="edge devices allowed to publish for this branch (and only for it); "
        "null: bound on first sight",
    )
    allow_unconfigured_zones: bool | None = Field(
        None,
        description="notify managers about zones not listed in `zones`; default: true when "
        "`zones` is empty, false when it lists zones",
    )
    ticket_sources: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        None,
        description="ticket systems allowed to publish ticket events for this branch "
        "({root}/v1/{branch}/_tickets/{source}/events); null: any source the broker lets "
        "publish there",
    )

    def notifies_zone(self, zone: str | None) -> bool:
        """Whether alerts of ``zone`` (None: device alerts) reach managers."""
        if zone is None or zone in self.zones:
            return True
        allow = self.allow_unconfigured_zones
        return not self.zones if allow is None else allow

    @model_validator(mode="before")
    @classmethod
    def _hours_in_branch_zone(cls, data: Any) -> Any:
        """Business hours follow the branch's time zone unless they name their own."""
        if isinstance(data, dict):
            hours = data.get("business_hours")
            if isinstance(hours, dict) and "timezone" not in hours:
                tz = data.get("timezone", cls.model_fields["timezone"].default)
                data = {**data, "business_hours": {**hours, "timezone": tz}}
        return data

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    _check_locale = field_validator("locale")(classmethod(lambda cls, v: _locale(v)))

    @field_validator("zones")
    @classmethod
    def _zone_ids(cls, v: dict[str, ZoneOverride]) -> dict[str, ZoneOverride]:
        from lobbywatch.protocol import is_valid_id

        for key in v:
            if not is_valid_id(key):
                raise ValueError(f"zone id {key!r} does not match {ID_PATTERN}")
        return v


# ------------------------------------------------------------------ notifications


class LogSink(_Strict):
    type: Literal["log"] = "log"


class WebhookSink(_Strict):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    secret_file: Path | None = Field(None, description="HMAC-SHA256 key")
    secret_env: str | None = Field(None, description="env var holding the HMAC key")
    timeout_s: PositiveFloat = 5.0
    headers: dict[str, str] = Field(default_factory=dict)

    def secret(self) -> bytes | None:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(f"webhook secret_env: ${self.secret_env} is not set")
            return value.encode()
        if self.secret_file:
            try:
                return self.secret_file.read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"webhook secret_file: cannot read {self.secret_file}: {exc}"
                ) from None
        return None


class SmtpSink(_Strict):
    type: Literal["smtp"] = "smtp"
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_file: Path | None = None
    sender: str = Field(alias="from", pattern=r".+@.+")
    to: list[Annotated[str, Field(pattern=r".+@.+")]] = Field(min_length=1)
    timeout_s: PositiveFloat = 10.0
    subject_prefix: str = "[lobbywatch]"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AlertmanagerSink(_Strict):
    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(pattern=r"^https?://", description="base URL, e.g. http://am:9093")
    resend_interval_s: PositiveFloat = Field(
        60.0, description="firing alerts are re-sent this often (Alertmanager is stateless)"
    )
    ends_after_s: PositiveFloat = Field(
        300.0, description="endsAt of a firing alert is now + this (must exceed the resend)"
    )
    resolved_resend_s: NonNegativeInt = Field(
        300, description="resolved alerts are re-sent for this long"
    )
    timeout_s: PositiveFloat = 5.0
    generator_url: str | None = None

    @model_validator(mode="after")
    def _ends(self) -> AlertmanagerSink:
        if self.ends_after_s <= self.resend_interval_s:
            raise ValueError("ends_after_s must be greater than resend_interval_s")
        return self


def _read_secret(what: str, env: str | None, file: Path | None) -> str | None:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}_env: ${env} is not set")
        return value.strip()
    if file:
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}_file: cannot read {file}: {exc.strerror or exc}") from None
    return None


class _RobotSink(_Strict):
    """A chat group robot: its webhook URL carries the access key, so it is a secret."""

    url_env: str | None = Field(None, description="env var holding the robot's webhook URL")
    url_file: Path | None = Field(None, description="file holding the robot's webhook URL")
    locale: str | None = Field(None, description="en | zh-CN; default: the branch's locale")
    per_minute: PositiveInt = Field(20, description="the service's documented rate limit")
    timeout_s: PositiveFloat = 5.0

    _check_locale = field_validator("locale")(classmethod(lambda cls, v: _locale(v)))

    @model_validator(mode="after")
    def _one_url(self) -> _RobotSink:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of url_env and url_file")
        return self

    def url(self) -> str:
        url = _read_secret(f"{self.__class__.__name__} url", self.url_env, self.url_file) or ""
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"{type(self).__name__}: the webhook URL must start with https://")
        return url


class WeComSink(_RobotSink):
    """WeCom (企业微信) group robot: ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...``."""

    type: Literal["wecom"] = "wecom"


class DingTalkSink(_RobotSink):
    """DingTalk robot: ``https://oapi.dingtalk.com/robot/send?access_token=...``, signed."""

    type: Literal["dingtalk"] = "dingtalk"
    secret_env: str | None = Field(None, description="env var holding the robot's SEC... secret")
    secret_file: Path | None = Field(None, description="file holding the robot's secret")

    def secret(self) -> str | None:
        return _read_secret("dingtalk secret", self.secret_env, self.secret_file)


Sink = Annotated[
    LogSink | WebhookSink | SmtpSink | AlertmanagerSink | WeComSink | DingTalkSink,
    Field(discriminator="type"),
]


class Route(_Strict):
    """Sends matching alert events to ``sinks``; all non-empty filters must match."""

    sinks: list[str] = Field(min_length=1)
    branches: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    kinds: list[Literal["w1_wait", "service_stalled", "device_offline", "closing_backlog"]] = Field(
        default_factory=list
    )
    min_severity: Literal["warning", "critical"] = "warning"
    continue_: bool = Field(True, alias="continue", description="false: later routes are not tried")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def matches(self, branch: str, region: str, kind: str, severity: str) -> bool:
        if self.branches and branch not in self.branches:
            return False
        if self.regions and region not in self.regions:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        return not (self.min_severity == "critical" and severity != "critical")


def _default_log_sink() -> Sink:
    return LogSink()


class NotifySettings(_Strict):
    sinks: dict[str, Sink] = Field(default_factory=lambda: {"log": _default_log_sink()})
    routes: list[Route] = Field(
        default_factory=list, description="empty: every event goes to every sink"
    )
    retry_initial_s: PositiveFloat = 2.0
    retry_max_s: PositiveFloat = 300.0
    give_up_after_s: PositiveFloat = Field(
        86_400.0, description="undelivered events older than this are marked expired"
    )

    @model_validator(mode="after")
    def _known_sinks(self) -> NotifySettings:
        for i, route in enumerate(self.routes):
            for name in route.sinks:
                if name not in self.sinks:
                    raise ValueError(f"routes[{i}]: unknown sink {name!r}")
        return self

    def sinks_for(self, branch: str, region: str, kind: str, severity: str) -> list[str]:
        if not self.routes:
            return list(self.sinks)
        out: list[str] = []
        for route in self.routes:
            if route.matches(branch, region, kind, severity):
                out.extend(s for s in route.sinks if s not in out)
                if not route.continue_:
                    break
        return out


# ------------------------------------------------------------------ managers


class RegionConfig(_Strict):
    locale: str | None = Field(None, description="en | zh-CN for the region's branches")
    managers: list[_Email] = Field(
        default_factory=list, description="e-mail addresses receiving the region's daily report"
    )

    _check_locale = field_validator("locale")(classmethod(lambda cls, v: _locale(v)))


class BoardSettings(_Strict):
    public_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="the board's address as managers reach it (links in notifications)",
    )


class ReportSettings(_Strict):
    sink: str | None = Field(
        None, description="smtp sink that mails the daily report; null: no report e-mail"
    )
    send_at: str = Field(
        "19:30",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="local time, HH:MM, for branches without business_hours",
    )
    after_closing_min: NonNegativeInt = Field(
        30, description="branches with business_hours: minutes after the day's last closing"
    )


# ------------------------------------------------------------------------- root


class ClusterSettings(_Strict):
    partition: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="active/standby: collectors with the same partition share one "
        "PostgreSQL advisory lock; the holder notifies, the others stay warm (null: alone)",
    )
    check_interval_s: PositiveFloat = Field(
        1.0, le=30, description="how often the standby tries the lock and the active checks it"
    )


class ServerConfig(_Strict):
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)  # type: ignore[arg-type]
    mqtt: MqttSettings = Field(default_factory=MqttSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)  # type: ignore[arg-type]
    http: HttpSettings = Field(default_factory=HttpSettings)  # type: ignore[arg-type]
    estimator: EstimatorSettings = Field(default_factory=EstimatorSettings)
    tickets: TicketSettings = Field(
        default_factory=TicketSettings,
        description="ticket-system events: retention, the learned priority share",
    )
    alerts: AlertPolicy = Field(
        default_factory=AlertPolicy,
        description="global alert policy defaults",
    )
    branches: list[BranchConfig] = Field(default_factory=list)
    notify: NotifySettings = Field(default_factory=NotifySettings)  # type: ignore[arg-type]
    locale: str = Field("en", description="en | zh-CN: default for branches and regions")
    regions: dict[str, RegionConfig] = Field(default_factory=dict)
    board: BoardSettings = Field(default_factory=BoardSettings)  # type: ignore[arg-type]
    report: ReportSettings = Field(default_factory=ReportSettings)  # type: ignore[arg-type]

    _check_locale = field_validator("locale")(classmethod(lambda cls, v: _locale(v)))

    @model_validator(mode="after")
    def _cluster_needs_postgres(self) -> ServerConfig:
        if self.cluster.partition is not None and not self.database.url.startswith("postgresql"):
            raise ValueError("cluster.partition needs a PostgreSQL database.url (shared lock)")
        return self

    def partitioned(self) -> bool:
        """Whether this collector owns only its configured branches' alerts."""
        return self.mqtt.subscribe == "configured_branches" or self.cluster.partition is not None

    @model_validator(mode="after")
    def _unique_branches(self) -> ServerConfig:
        seen: set[str] = set()
        for i, b in enumerate(self.branches):
            if b.id in seen:
                raise ValueError(f"branches[{i}].id: duplicate branch {b.id!r}")
            seen.add(b.id)
        if self.report.sink is not None and not isinstance(
            self.notify.sinks.get(self.report.sink), SmtpSink
        ):
            raise ValueError(f"report.sink: {self.report.sink!r} is not an smtp sink")
        return self

    def locale_for(self, branch_id: str) -> str:
        """Locale of a branch's texts: the branch's, else its region's, else the default."""
        b = self.branch(branch_id)
        if b is not None and b.locale:
            return b.locale
        region = self.regions.get(b.region if b else "")
        return (region.locale if region and region.locale else None) or self.locale

    def zone_name(self, branch_id: str, zone: str) -> str | None:
        b = self.branch(branch_id)
        z = b.zones.get(zone) if b else None
        return z.name if z else None

    def branch(self, branch_id: str) -> BranchConfig | None:
        return self._by_id().get(branch_id)

    def _by_id(self) -> dict[str, BranchConfig]:
        cache: dict[str, BranchConfig] | None = self.__dict__.get("_branch_cache")
        if cache is None:
            cache = {b.id: b for b in self.branches}
            self.__dict__["_branch_cache"] = cache
        return cache

    def region_of(self, branch_id: str) -> str:
        b = self.branch(branch_id)
        return b.region if b else "unknown"

    def service_for(self, branch_id: str, zone: str) -> tuple[int, float]:
        """(counters, mean service seconds) for a zone: zone override, branch, defaults."""
        b = self.branch(branch_id)
        if b is None:
            return BranchConfig.model_fields["counters"].default, BranchConfig.model_fields[
                "mean_service_s"
            ].default
        z = b.zones.get(zone)
        counters = z.counters if z and z.counters else b.counters
        mean = z.mean_service_s if z and z.mean_service_s else b.mean_service_s
        return counters, mean

    def queue_setup(self, branch_id: str, zone: str) -> tuple[tuple[str, ...], float]:
        """(service-point zones, priority share) of a waiting zone."""
        b = self.branch(branch_id)
        if b is None:
            return (), 0.0
        z = b.zones.get(zone)
        points = tuple(z.service_points) if z else ()
        share = z.priority_share if z and z.priority_share is not None else b.priority_share
        return points, share

    def ticket_zones(self) -> dict[str, frozenset[str]]:
        """branch -> the zones its config lists (ticket events may name them before any
        camera reported them)."""
        return {b.id: frozenset(b.zones) for b in self.branches}

    def ticket_sources(self) -> dict[str, frozenset[str]]:
        """branch -> the ticket systems allowed to publish for it (branches that list them)."""
        return {
            b.id: frozenset(b.ticket_sources) for b in self.branches if b.ticket_sources is not None
        }

    def service_links(self) -> dict[tuple[str, str], list[str]]:
        """(branch, service-point zone) -> the waiting zones it serves."""
        out: dict[tuple[str, str], list[str]] = {}
        for b in self.branches:
            for zone, z in b.zones.items():
                for point in z.service_points:
                    out.setdefault((b.id, point), []).append(zone)
        return out

    def policy_for(self, branch_id: str, zone: str | None) -> AlertPolicy:
        """The merged (global <- branch <- zone) alert policy of one zone.

        Raises:
            ValidationError: the merged policy is invalid (checked for every
                configured zone at load, see :func:`parse_server_config`).
        """
        policy = self.alerts
        b = self.branch(branch_id)
        if b is not None:
            policy = policy.merged(b.alerts.model_dump(exclude_unset=True))
            if zone is not None and zone in b.zones:
                policy = policy.merged(b.zones[zone].alerts.model_dump(exclude_unset=True))
        return policy


def format_validation_error(
    exc: ValidationError,
    *,
    yaml_lines: dict[Loc, int] | None = None,
    prefix: Loc = (),
) -> str:
    """``a.b[0].c (line 12): message``, one per error, for humans: on the same line for
    one error, else each on its own indented line. ``prefix`` is the field path of the
    section validated (its errors' paths are relative to it); the line is the YAML
    document's (``yaml_lines`` from :func:`~lobbywatch.yaml_lines.line_map`), none
    without it. An unknown setting names the known one it is closest to (a typo in a
    key otherwise reads only "Extra inputs are not permitted")."""
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        path = ""
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += ("." if path else "") + str(part)
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and err["loc"]:
            name = str(err["loc"][-1])
            close = difflib.get_close_matches(name, _setting_names(), n=1, cutoff=0.75)
            msg = "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
        line = line_of(yaml_lines, loc) if yaml_lines else None
        where = f" (line {line})" if line is not None else ""
        lines.append(f"{path or '<root>'}{where}: {msg}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:" + "".join(f"\n  {line}" for line in lines)


@functools.cache
def _setting_names() -> tuple[str, ...]:
    """Every setting name of the server config, nested sections included."""
    names: set[str] = set()
    todo: list[Any] = [ServerConfig]
    seen: set[Any] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            names.add(name)
            if field.alias:
                names.add(field.alias)
            todo += _models_in(field.annotation)
    return tuple(sorted(names))


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation holds (``list[X]``, ``dict[str, X]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def parse_server_config(
    data: Any, source: str = "SERVER.yaml", yaml_lines: dict[Loc, int] | None = None
) -> ServerConfig:
    """Validate a loaded mapping; the nested estimator/alert sections too. ``yaml_lines``
    (field path -> line of the document it was loaded from) puts the line in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        cfg = ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{source}: {format_validation_error(exc, yaml_lines=yaml_lines)}"
        ) from None
    _validate_nested(cfg, source, yaml_lines)
    return cfg


def _validate_nested(
    cfg: ServerConfig, source: str, yaml_lines: dict[Loc, int] | None = None
) -> None:
    """Merge every configured zone's alert policy once, so errors show at load."""
    for i, b in enumerate(cfg.branches):
        layers: list[tuple[str | None, Loc]] = [(None, ("branches", i, "alerts"))]
        layers += [(zone, ("branches", i, "zones", zone, "alerts")) for zone in b.zones]
        for zone, loc in layers:
            try:
                cfg.policy_for(b.id, zone)
            except ValidationError as exc:
                text = format_validation_error(exc, yaml_lines=yaml_lines, prefix=loc)
                raise ConfigError(f"{source}: {text}") from None


def load_server_config(path: Path) -> ServerConfig:
    """Read and validate SERVER.yaml; every problem is a ConfigError naming the field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_server_config(resolve_relative_files(data, path.parent), str(path), line_map(text))


def resolve_relative_files(data: Any, base: Path) -> Any:
    """Make every relative ``*_file`` path relative to the config file's folder.

    As on the edge: a config and the files it names (CA, certificates, password
    and secret files) travel together, whatever the working directory of the
    process that reads them.
    """
    if isinstance(data, dict):
        return {
            key: (
                str(base / value)
                if isinstance(key, str)
                and key.endswith("_file")
                and isinstance(value, str)
                and value
                and not Path(value).is_absolute()
                else resolve_relative_files(value, base)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [resolve_relative_files(item, base) for item in data]
    return data
