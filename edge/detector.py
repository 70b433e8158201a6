"""YOLOX person detector on onnxruntime (implementation in progress)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class DetectorSettings(BaseModel):
    """How the edge box runs its person detector (the ``model`` section of a device config)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("yolox_nano", description="model name in models/catalogue.yaml")
    path: Path | None = Field(None, description="explicit weights file; overrides the resolver")
    input_size: int = Field(416, ge=160, le=2048, multiple_of=32, description="network input side")
    score_threshold: float = Field(0.3, gt=0, lt=1, description="person score to keep a box")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="IoU above which NMS suppresses a box")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads")
