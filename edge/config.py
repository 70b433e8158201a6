"""Device configuration for one edge box: schema, loading and validation.

Owned by the edge agent; the detector, zone and pipeline sections are the
settings models of those modules, so each concept validates its own knobs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lobbywatch.edge.detector import DetectorSettings
from lobbywatch.edge.pipeline import PipelineSettings
from lobbywatch.edge.zones import ZoneSpec
from lobbywatch.protocol import ID_PATTERN


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    source: str = Field(description="RTSP/HTTP URL, device index (e.g. '0') or file path")
    detect_source: str | None = Field(None, description="optional low-resolution detection stream")
    fps: float = Field(2.0, gt=0, le=30, description="frames per second sampled for detection")
    zones: list[ZoneSpec] = Field(min_length=1)


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=ID_PATTERN)
    branch_id: str = Field(pattern=ID_PATTERN)
    cameras: list[CameraConfig] = Field(min_length=1)
    model: DetectorSettings = Field(default_factory=DetectorSettings)  # type: ignore[arg-type]
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)  # type: ignore[arg-type]


def load_device_config(path: Path) -> DeviceConfig:
    """Read and validate a device config (in progress: full errors come with the agent)."""
    import yaml

    return DeviceConfig.model_validate(yaml.safe_load(Path(path).read_text()))
