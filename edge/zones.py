"""Zones: named polygons of a camera's view, and vectorised membership (in progress)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lobbywatch.edge.state import ZoneKind
from lobbywatch.protocol import ID_PATTERN


class ZoneSpec(BaseModel):
    """One zone as written in a device config.

    Polygon vertices are relative to the frame (0..1 on each axis), so the same
    config survives a change of stream resolution.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="zone id, used as an MQTT topic level")
    kind: ZoneKind
    blueprint: str | None = Field(None, max_length=16, description="service blueprint tag, e.g. W1")
    polygon: list[tuple[float, float]] = Field(min_length=3, description="vertices, relative 0..1")
    wait_threshold_s: float | None = Field(None, gt=0, description="per-zone W1 threshold")
