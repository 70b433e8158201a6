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

import logging
import os
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

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return v


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")


# ----------------------------------------------------------------------- branches


class ZoneOverride(_Strict):
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
    region: str = Field("default", pattern=ID_PATTERN)
    timezone: str = "UTC"
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


Sink = Annotated[LogSink | WebhookSink | SmtpSink | AlertmanagerSink, Field(discriminator="type")]


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


# ------------------------------------------------------------------------- root


class ServerConfig(_Strict):
    mqtt: MqttSettings = Field(default_factory=MqttSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)  # type: ignore[arg-type]
    http: HttpSettings = Field(default_factory=HttpSettings)  # type: ignore[arg-type]
    estimator: EstimatorSettings = Field(default_factory=EstimatorSettings)
    alerts: AlertPolicy = Field(
        default_factory=AlertPolicy,
        description="global alert policy defaults",
    )
    branches: list[BranchConfig] = Field(default_factory=list)
    notify: NotifySettings = Field(default_factory=NotifySettings)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _unique_branches(self) -> ServerConfig:
        seen: set[str] = set()
        for i, b in enumerate(self.branches):
            if b.id in seen:
                raise ValueError(f"branches[{i}].id: duplicate branch {b.id!r}")
            seen.add(b.id)
        return self

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


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """``a.b[0].c: message`` lines, one per error, for humans."""
    lines = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += ("." if path else "") + str(part)
        lines.append(f"{path or '<root>'}: {err['msg']}")
    return "; ".join(lines)


def parse_server_config(data: Any, source: str = "SERVER.yaml") -> ServerConfig:
    """Validate a loaded mapping; the nested estimator/alert sections too."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        cfg = ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    _validate_nested(cfg, source)
    return cfg


def _validate_nested(cfg: ServerConfig, source: str) -> None:
    """Merge every configured zone's alert policy once, so errors show at load."""
    for i, b in enumerate(cfg.branches):
        layers: list[tuple[str | None, str]] = [(None, f"branches[{i}].alerts")]
        layers += [(zone, f"branches[{i}].zones.{zone}.alerts") for zone in b.zones]
        for zone, path in layers:
            try:
                cfg.policy_for(b.id, zone)
            except ValidationError as exc:
                raise ConfigError(f"{source}: {format_validation_error(exc, path)}") from None


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
    return parse_server_config(resolve_relative_files(data, path.parent), str(path))


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
