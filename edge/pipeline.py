"""Per-camera pipeline: detector -> tracker -> zones -> queue state (in progress)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PipelineSettings(BaseModel):
    """Tracking and zone-hysteresis knobs (the ``pipeline`` section of a device config)."""

    model_config = ConfigDict(extra="forbid")

    confirm_hits: int = Field(3, ge=1, description="detections before a track counts")
    max_missed_s: float = Field(2.0, gt=0, description="seconds unseen before a track is deleted")
    zone_entry_s: float = Field(1.0, ge=0, description="seconds in a zone before entry counts")
    zone_exit_s: float = Field(3.0, ge=0, description="seconds out of a zone before exit counts")
