"""Device configuration for one edge box: schema, loading and validation.

Owned by the edge agent; the detector, zone and pipeline sections are the
settings models of those modules, so each concept validates its own knobs.

Loading (:func:`load_device_config`) does three things a bare
``model_validate`` does not:

* ``${VAR}`` / ``${VAR:-default}`` in string values are expanded from the
  environment (so secrets such as an RTSP password never sit in the YAML);
* relative file paths are resolved against the config file's folder, so a
  config works from any working directory;
* every error is reported with its field path (``cameras[0].zones[2].polygon``)
  and the YAML line it came from, as one :class:`DeviceConfigError`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lobbywatch.edge.detector import DetectorSettings
from lobbywatch.edge.flows import validate_zone_flows
from lobbywatch.edge.pipeline import PipelineSettings
from lobbywatch.edge.zones import ZoneSpec, validate_zone_geometry
from lobbywatch.errors import ConfigError
from lobbywatch.protocol import DEFAULT_ROOT, ID_PATTERN
from lobbywatch.yaml_lines import line_map, line_of

# --------------------------------------------------------------------------- helpers

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: scheme://user:password@host — the password part, to refuse literal secrets.
_URL_PASSWORD_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:([^/@]*)@")
_URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class PathValueError(ValueError):
    """A validation problem located below the model that found it.

    Cross-field checks run in a model validator, whose errors pydantic reports
    at the model's own location; ``loc`` lets the error name the exact field
    (``cameras[1].id`` rather than just the device).
    """

    def __init__(
        self,
        loc: tuple[str | int, ...],
        message: str,
        more: list[tuple[tuple[str | int, ...], str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.loc = loc
        #: every (loc, message) found, this one first
        self.items = [(loc, message), *(more or [])]


def expand_env(value: str, *, strict: bool = True) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``.

    An unset variable without a default is an error, unless ``strict`` is False
    (checking a config off the device), when the reference is left as it is.
    """

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None and found != "":
            return found
        if default is not None:
            return default
        if not strict:
            return match.group(0)
        raise ValueError(f"environment variable {name} is not set")

    return _ENV_RE.sub(sub, value)


def _ctx(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = _ctx(info).get("base_dir")
    path = path.expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return Path(os.path.normpath(path))


def _checking_files(info: ValidationInfo) -> bool:
    return bool(_ctx(info).get("check_files", True))


def _env_before(value: Any, info: ValidationInfo) -> Any:
    return expand_env(value, strict=_checking_files(info)) if isinstance(value, str) else value


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if _checking_files(info) and not path.is_file():
        raise ValueError(f"file {path} does not exist")
    return path


def _any_path(value: Path, info: ValidationInfo) -> Path:
    return _resolve(value, info)


#: A file that must exist when the config is loaded (relative to the config's folder).
ExistingFile = Annotated[Path, BeforeValidator(_env_before), AfterValidator(_existing_file)]
#: A path that need not exist yet (created by the agent), relative to the config's folder.
AnyPath = Annotated[Path, BeforeValidator(_env_before), AfterValidator(_any_path)]
EnvStr = Annotated[str, BeforeValidator(_env_before)]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- sections


def _zone_loc(zones: list[ZoneSpec], message: str) -> tuple[str | int, ...]:
    """Point a geometry message at the polygon it names (the last zone named),
    relative to the ``zones`` list."""
    named = re.findall(r"'([^']+)'", message)
    for zone_id in reversed(named):
        for i, zone in enumerate(zones):
            if zone.id == zone_id:
                return (i, "polygon")
    return ()


def _flows_loc(zones: list[ZoneSpec], message: str) -> tuple[str | int, ...]:
    """Point a flows message at the waiting zone it names first, relative to ``zones``."""
    named = re.findall(r"'([^']+)'", message)
    for i, zone in enumerate(zones):
        if named and zone.id == named[0]:
            return (i, "flows")
    return ()


class CameraCalibration(BaseModel):
    """Record of ``lobbywatch calibrate``: what the choice was based on (for audits)."""

    model_config = ConfigDict(extra="forbid")

    snapshots: int = Field(ge=1, description="snapshots with a known count used")
    error_before: float = Field(ge=0, description="mean count error per snapshot, default")
    error_after: float = Field(ge=0, description="mean count error per snapshot, this choice")
    per_zone: bool = Field(False, description="errors summed over zones (per-zone counts)")
    objective: Literal["count", "points"] = Field(
        "count",
        description="count = errors in the number of people; points = clicked people, a box "
        "not on a clicked person counts as an error too (edge/calibration.py, located_error)",
    )
    at: str | None = Field(None, max_length=40, description="UTC time of the calibration")


class CameraModel(BaseModel):
    """Per-camera detector overrides (written by ``lobbywatch calibrate``).

    Unset fields keep the device-wide ``model`` section's values. A camera's
    score threshold also becomes its tracker's ``track_high_score`` (so every
    reported detection can start a track; see edge/calibration.py).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="model name in models/catalogue.yaml")
    input_size: int | None = Field(
        None, ge=160, le=2048, multiple_of=32, description="network input side (long side)"
    )
    max_upscale: float | None = Field(
        None, gt=0, le=4, description="largest magnification of the frame (4 = fixed size)"
    )
    min_input_size: int | None = Field(None, ge=32, le=2048, multiple_of=32)
    score_threshold: float | None = Field(None, gt=0, lt=1, description="person score to keep")
    grey_contrast: Literal["off", "clahe"] | None = Field(
        None, description="CLAHE on a greyscale picture (DetectorSettings.grey_contrast)"
    )
    tta: Literal["off", "flip"] | None = Field(
        None,
        description="test-time augmentation (DetectorSettings.tta): flip also runs the "
        "mirrored frame and fuses the boxes, at twice the inference",
    )
    calibration: CameraCalibration | None = Field(None, description="how this was chosen")

    @field_validator("tta", "grey_contrast", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        from lobbywatch.edge.detector import yaml_off

        return yaml_off(value)

    def apply(self, base: DetectorSettings) -> DetectorSettings:
        """``base`` with this camera's overrides (validated as a whole)."""
        update = self.model_dump(exclude_none=True, exclude={"calibration"})
        if not update:
            return base
        if "name" in update and update["name"] != base.name:
            update["path"] = None  # an explicit file belongs to the device-wide model
        return DetectorSettings.model_validate({**base.model_dump(), **update})


class CameraConfig(BaseModel):
    """One camera: where frames come from, how often to sample them, and its zones."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="camera id, used as an MQTT topic level")
    name: str | None = Field(None, max_length=100, description="human-readable label")
    source: str | int = Field(
        description=(
            "RTSP/HTTP URL, device index (e.g. 0) or video file path (relative to this file). "
            "Put stream passwords in ${ENV} references, never literally."
        )
    )
    detect_source: str | int | None = Field(
        None, description="optional low-resolution stream used for detection instead of source"
    )
    fps: float = Field(2.0, gt=0, le=30, description="frames per second sampled for detection")
    loop: bool = Field(False, description="file sources: restart at the end (demos)")
    zones: list[ZoneSpec] = Field(min_length=1, description="zones of this camera's view")
    model: CameraModel | None = Field(
        None, description="detector overrides for this camera (see `lobbywatch calibrate`)"
    )

    def detector_settings(self, device: DetectorSettings) -> DetectorSettings:
        """The device-wide detector settings with this camera's overrides."""
        return self.model.apply(device) if self.model is not None else device

    def pipeline_settings(self, device: PipelineSettings) -> PipelineSettings:
        """The device-wide pipeline settings; a camera threshold sets its tracker's."""
        if self.model is None or self.model.score_threshold is None:
            return device
        from lobbywatch.edge.calibration import pipeline_for_threshold

        return pipeline_for_threshold(device, self.model.score_threshold)

    @field_validator("source", "detect_source", mode="before")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if value < 0:
                raise ValueError("a device index must be >= 0")
            return value
        if not isinstance(value, str):
            return value  # let the type check report it
        raw = value.strip()
        literal = _URL_PASSWORD_RE.match(raw)
        if literal and not _ENV_RE.fullmatch(literal.group(1)):
            raise ValueError(
                "literal password in the stream URL; use an environment variable, "
                "e.g. rtsp://viewer:${CAM1_PASSWORD}@10.0.0.21/stream1"
            )
        expanded = expand_env(raw, strict=_checking_files(info))
        if expanded.isdigit():
            return int(expanded)
        if "://" in expanded:
            scheme = expanded.split("://", 1)[0].lower()
            if scheme not in _URL_SCHEMES:
                raise ValueError(
                    f"unsupported URL scheme {scheme!r} (use one of {', '.join(_URL_SCHEMES)})"
                )
            return expanded
        path = _resolve(Path(expanded), info)
        if _checking_files(info) and not path.is_file():
            defaulted = [
                m.group(1)
                for m in _ENV_RE.finditer(raw)
                if m.group(2) is not None and not os.environ.get(m.group(1))
            ]
            hint = (
                f" ({', '.join(defaulted)} is not set, so the config's default was used; "
                "set it to the folder that holds the data)"
                if defaulted
                else ""
            )
            raise ValueError(f"video file {path} does not exist{hint}")
        return str(path)

    @field_validator("zones", mode="after")
    @classmethod
    def _zone_rules(cls, zones: list[ZoneSpec]) -> list[ZoneSpec]:
        # A field validator, not a model one: it runs even when another field (a
        # missing video file, say) is invalid, so one check reports both.
        seen: dict[str, int] = {}
        for i, zone in enumerate(zones):
            if zone.id in seen:
                raise PathValueError(
                    (i, "id"), f"duplicate zone id {zone.id!r} (also zones[{seen[zone.id]}])"
                )
            seen[zone.id] = i
        try:  # the zones module's own geometry rules (inside frame, simple, no overlap)
            validate_zone_geometry(zones)
        except ValueError as exc:
            items = [(_zone_loc(zones, part), part) for part in str(exc).split("; ")]
            raise PathValueError(items[0][0], items[0][1], items[1:]) from exc
        try:  # service points and exits name zones of this camera
            validate_zone_flows(zones)
        except ValueError as exc:
            items = [(_flows_loc(zones, part), part) for part in str(exc).split("; ")]
            raise PathValueError(items[0][0], items[0][1], items[1:]) from exc
        return zones

    @model_validator(mode="after")
    def _loop(self) -> CameraConfig:
        if self.model is not None:
            try:
                self.model.apply(DetectorSettings())  # type: ignore[call-arg]
            except ValueError as exc:
                raise PathValueError(("model",), f"invalid detector override: {exc}") from exc
        if self.loop and not self.is_file_source:
            raise PathValueError(("loop",), "loop: true only applies to video file sources")
        return self

    @property
    def is_file_source(self) -> bool:
        return isinstance(self.source, str) and "://" not in self.source

    @property
    def capture_source(self) -> str | int:
        """What the capture thread opens: the detection stream when one is given."""
        return self.detect_source if self.detect_source is not None else self.source


class TlsConfig(BaseModel):
    """TLS towards the broker; certificates are files, never inline."""

    model_config = ConfigDict(extra="forbid")

    ca_file: ExistingFile | None = Field(None, description="CA bundle; default: system CAs")
    cert_file: ExistingFile | None = Field(None, description="client certificate (mutual TLS)")
    key_file: ExistingFile | None = Field(None, description="client private key (mutual TLS)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise PathValueError((missing,), "cert_file and key_file must be given together")
        return self


class MqttConfig(BaseModel):
    """Connection to the branch's MQTT broker (MQTT 5 only)."""

    model_config = ConfigDict(extra="forbid")

    host: EnvStr = Field("127.0.0.1", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 for TLS)")
    root: str = Field(DEFAULT_ROOT, pattern=ID_PATTERN, description="first topic level")
    protocol: Literal[5] = Field(5, description="MQTT protocol version; only 5 is supported")
    client_id: str | None = Field(
        None, pattern=ID_PATTERN, description="MQTT client id; default: the device id"
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of every publish; 1 = at least once")
    tls: TlsConfig | None = Field(
        None, description="enable TLS (give an empty mapping for defaults)"
    )
    username: EnvStr | None = Field(None, min_length=1, description="broker user name")
    password_file: ExistingFile | None = Field(
        None, description="file holding the broker password (mode 0600)"
    )
    password_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="environment variable holding the password"
    )
    will_delay_s: int = Field(
        30, ge=0, le=3600, description="broker waits this long before the offline last will"
    )
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="first reconnect backoff")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="largest reconnect backoff")
    max_inflight: int = Field(20, ge=1, le=1000, description="unacknowledged publishes at once")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise PathValueError(
                ("password",),
                "literal passwords are not allowed in the config; "
                "use password_file or password_env",
            )
        return data

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> MqttConfig:
        if self.password_file is not None and self.password_env is not None:
            raise PathValueError(("password_env",), "give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise PathValueError(("username",), "a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise PathValueError(("reconnect_max_s",), "must be >= reconnect_min_s")
        if _checking_files(info):
            if self.password_env is not None and not os.environ.get(self.password_env):
                raise PathValueError(
                    ("password_env",), f"environment variable {self.password_env} is not set"
                )
            if self.password_file is not None:
                mode = self.password_file.stat().st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise PathValueError(
                        ("password_file",),
                        f"{self.password_file} is readable by other users; chmod 600 it",
                    )
        return self

    def password(self) -> str | None:
        """The broker password, read now from its file or environment variable."""
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class PublishConfig(BaseModel):
    """When zone states and statuses are published."""

    model_config = ConfigDict(extra="forbid")

    min_interval_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="a changed zone is published at most this often (dwells accumulate meanwhile)",
    )
    heartbeat_s: float = Field(
        30.0, ge=1, le=3600, description="every zone and status is republished at least this often"
    )
    message_expiry_s: int = Field(
        300,
        ge=10,
        le=86400,
        description="MQTT 5 message expiry of retained states: a dead device's values age out",
    )

    @model_validator(mode="after")
    def _expiry_after_heartbeat(self) -> PublishConfig:
        if self.message_expiry_s <= 2 * self.heartbeat_s:
            raise PathValueError(
                ("message_expiry_s",),
                f"must exceed twice heartbeat_s ({self.heartbeat_s:g} s) "
                "or live states expire between heartbeats",
            )
        return self


class MetricsConfig(BaseModel):
    """Prometheus metrics endpoint."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    bind: str = Field(
        "127.0.0.1",
        description="address to listen on; anything but loopback needs credentials_file "
        "(or, knowingly, allow_anonymous)",
    )
    port: int = Field(9108, ge=1, le=65535)
    credentials_file: ExistingFile | None = Field(
        None,
        description="hashed credentials (`lobbywatch server add-credential FILE NAME "
        "--role metrics`); set: /metrics needs Bearer <name>.<secret> or basic auth",
    )
    allow_anonymous: bool = Field(
        False, description="serve /metrics without credentials on a non-loopback address"
    )

    @model_validator(mode="after")
    def _exposed_needs_auth(self) -> MetricsConfig:
        # Queue sizes per zone are a bank's internal operations data: the same rule as
        # the collector's http.host (server/config.py).
        if (
            self.enabled
            and not _is_loopback(self.bind)
            and self.credentials_file is None
            and not self.allow_anonymous
        ):
            raise ValueError(
                f"metrics.bind {self.bind} is not a loopback address: set "
                "metrics.credentials_file (docs/operations.md, edge metrics) or, knowingly, "
                "metrics.allow_anonymous: true"
            )
        if self.credentials_file is not None and self.credentials_file.is_file():
            # a malformed file fails `edge config check`, not the agent's start
            from lobbywatch.credentials import load_credentials

            try:
                load_credentials(self.credentials_file, "metrics.credentials_file")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class BufferConfig(BaseModel):
    """The on-disk outbox: every message waits here until the broker acknowledges it."""

    model_config = ConfigDict(extra="forbid")

    path: AnyPath = Field(
        Path("outbox.sqlite"),
        validate_default=True,  # so the default, too, resolves against the config's folder
        description="SQLite file (relative to this config's folder)",
    )
    max_messages: int = Field(
        100_000, ge=10, le=10_000_000, description="beyond this the oldest are dropped and counted"
    )


class DebugViewConfig(BaseModel):
    """Opt-in annotated MJPEG/snapshot view. Frames never leave the box unless you expose this."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    bind: str = Field("127.0.0.1", description="listen address; loopback unless allow_remote")
    port: int = Field(8089, ge=1, le=65535)
    allow_remote: bool = Field(
        False, description="required to bind a non-loopback address (shows camera images!)"
    )

    @model_validator(mode="after")
    def _loopback(self) -> DebugViewConfig:
        if not _is_loopback(self.bind) and not self.allow_remote:
            raise PathValueError(
                ("bind",),
                f"{self.bind} is not a loopback address; the debug view shows camera images, "
                "set allow_remote: true to really expose it",
            )
        return self


class DeviceConfig(BaseModel):
    """The complete configuration of one branch edge device."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=ID_PATTERN, description="this edge device's id")
    branch_id: str = Field(pattern=ID_PATTERN, description="the branch it watches")
    region: str | None = Field(None, max_length=64, description="optional region or cluster")
    timezone: str | None = Field(
        None, description="IANA time zone of the branch, e.g. Asia/Jakarta"
    )
    cameras: list[CameraConfig] = Field(min_length=1, max_length=16)
    model: DetectorSettings = Field(default_factory=DetectorSettings)  # type: ignore[arg-type]
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # type: ignore[arg-type]
    publish: PublishConfig = Field(default_factory=PublishConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]
    buffer: BufferConfig = Field(default_factory=BufferConfig)  # type: ignore[arg-type]
    debug_view: DebugViewConfig = Field(default_factory=DebugViewConfig)  # type: ignore[arg-type]

    @field_validator("model", mode="after")
    @classmethod
    def _model_path(cls, value: DetectorSettings, info: ValidationInfo) -> DetectorSettings:
        # Like every path in the config, a relative weights file is relative to the config.
        if value.path is None:
            return value
        path = _resolve(value.path, info)
        if _checking_files(info) and not path.is_file():
            # an explicit file: `model pull` would not help, so say what to fix
            raise ValueError(
                f"model file {path} does not exist (fix model.path, or remove it to use "
                "the catalogue model that `lobbywatch model pull` fetches)"
            )
        return value.model_copy(update={"path": path})

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> DeviceConfig:
        if not self.buffer.path.is_absolute():  # a default section skips field validation
            self.buffer.path = _resolve(self.buffer.path, info)
        seen: dict[str, int] = {}
        for i, cam in enumerate(self.cameras):
            if cam.id in seen:
                raise PathValueError(
                    ("cameras", i, "id"),
                    f"duplicate camera id {cam.id!r} (also cameras[{seen[cam.id]}])",
                )
            seen[cam.id] = i
            if cam.model is not None:
                # The override must also hold with this device's model section
                # (e.g. tta: flip on a device that tiles its frames).
                try:
                    cam.detector_settings(self.model)
                except ValueError as exc:
                    msg = str(exc).splitlines()
                    why = next((m.strip() for m in msg if "tta" in m or "tiles" in m), msg[-1])
                    raise PathValueError(
                        ("cameras", i, "model"), f"invalid detector override: {why}"
                    ) from exc
        if self.metrics.enabled and self.debug_view.enabled:
            if self.metrics.port == self.debug_view.port:
                raise PathValueError(("debug_view", "port"), "same port as metrics.port")
        return self

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.device_id


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One validation problem: where (field path, YAML line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class DeviceConfigError(ConfigError):
    """Invalid device config; ``problems`` lists every error found."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        detail = "; ".join(str(p) for p in problems)
        plural = "s" if len(problems) != 1 else ""
        super().__init__(f"{source}: {len(problems)} error{plural}: {detail}")


def format_loc(loc: tuple[str | int, ...]) -> str:
    """``('cameras', 0, 'zones', 2, 'polygon')`` -> ``cameras[0].zones[2].polygon``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (check the spelling; see `lobbywatch config schema`)",
}


def _problems(exc: ValidationError, lines: dict[tuple[str | int, ...], int]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for err in exc.errors():
        # pydantic inserts union-member and validator tags into loc; keep real fields only
        loc: tuple[str | int, ...] = tuple(
            p for p in err["loc"] if isinstance(p, int) or not _is_tag(str(p))
        )
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, PathValueError):
            for sub_loc, sub_message in cause.items:
                full = (*loc, *sub_loc)
                _add(problems, ConfigProblem(format_loc(full), sub_message, line_of(lines, full)))
            continue
        else:
            message = _MESSAGES.get(err["type"], err["msg"])
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            # Echo short offending values for type/range errors only: a custom check's
            # input may be a stream URL with credentials in it.
            if err["type"] not in {*_MESSAGES, "value_error"} and _short(err.get("input")):
                message += f" (got {err['input']!r})"
        _add(problems, ConfigProblem(format_loc(loc), message, line_of(lines, loc)))
    return problems


def _add(problems: list[ConfigProblem], problem: ConfigProblem) -> None:
    if problem not in problems:
        problems.append(problem)


def _is_tag(part: str) -> bool:
    return part in {"str", "int", "bool", "float", "function-after[_existing_file(), Path]"} or (
        part.startswith(("function-", "tagged-union[", "constrained-", "lax-or-strict"))
    )


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def parse_device_config(
    text: str, *, base_dir: Path | None = None, source: str = "<config>", check_files: bool = True
) -> DeviceConfig:
    """Validate YAML text; raise :class:`DeviceConfigError` listing every problem."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DeviceConfigError(
            source, [ConfigProblem("", f"invalid YAML: {problem}", line)]
        ) from None
    if not isinstance(data, dict):
        raise DeviceConfigError(
            source,
            [ConfigProblem("", "the config must be a YAML mapping (device_id: ..., ...)", 1)],
        )
    context = {"base_dir": base_dir, "check_files": check_files}
    try:
        return DeviceConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise DeviceConfigError(source, _problems(exc, line_map(text))) from None


def load_device_config(path: Path, *, check_files: bool = True) -> DeviceConfig:
    """Read and validate a device config file.

    Relative paths inside resolve against the file's folder. ``check_files=False``
    skips checks that referenced files and environment variables exist (for
    checking a production config off the device).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    return parse_device_config(
        text, base_dir=path.resolve().parent, source=str(path), check_files=check_files
    )


def device_json_schema() -> dict[str, Any]:
    """JSON Schema of the device config, for editors (``firmware_config/device.schema.json``)."""
    schema = DeviceConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lobbywatch.example/firmware_config/device.schema.json",
        **schema,
    }
