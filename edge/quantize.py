"""Derive the INT8 variant of a detector at set-up time (never committed).

Static QDQ quantisation (onnxruntime.quantization) calibrated on frames of a
video that is *not* part of the evaluation set (``vtest.avi`` by default), so
the INT8 model is not fitted to the frames it is scored on. Activations are
calibrated at the network input shape the product uses for 16:9 frames
(960x544) and the graph is then made shape-agnostic like the fp32 one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lobbywatch.edge.detector import DetectorSettings, letterbox_ratio, rewrite_input_shape
from lobbywatch.errors import ModelError, SourceError
from lobbywatch.locate import SHARED_ENV, NotLocatedError, locate
from lobbywatch.models.registry import ResolvedModel, write_provenance

#: default calibration clip below the shared data folder (found by :func:`locate`)
DEFAULT_CALIBRATION = "data/video/vtest.avi"
CALIBRATION_FRAMES = 24
CALIBRATION_HW = (544, 960)


def calibration_batches(
    video: Path, input_hw: tuple[int, int], n_frames: int, pad: float
) -> Iterator[np.ndarray]:
    """Letterboxed NCHW float32 frames spread evenly over ``video``."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SourceError(f"cannot open calibration video {video}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or n_frames
        wanted = set(np.linspace(0, total - 1, n_frames).astype(int).tolist())
        idx = 0
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if idx in wanted:
                wanted.discard(idx)
                _, nh, nw = letterbox_ratio(frame.shape[:2], input_hw)
                canvas = np.full((*input_hw, 3), pad, np.float32)
                canvas[:nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
                yield np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
            idx += 1
    finally:
        cap.release()


def derive_int8(model: ResolvedModel, dest: Path, calibration: Path | None = None) -> Path:
    """Write ``<name>.int8.onnx`` (+ provenance sidecar) into ``dest``.

    Args:
        model: the verified fp32 model.
        dest: output folder.
        calibration: calibration video (default: shared ``vtest.avi``).

    Returns:
        Path of the derived file.

    Raises:
        ModelError: the model needs input normalisation (INT8 derivation feeds
            raw BGR calibration frames; only raw-input models are supported).
    """
    inp = model.spec.input
    if inp.colour != "BGR" or inp.scale != 1.0 or any(inp.mean) or any(v != 1 for v in inp.std):
        raise ModelError(
            f"{model.spec.name}: INT8 derivation supports raw-BGR-input models only "
            "(this one normalises its input); use the fp32 variant"
        )
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    env_video = os.environ.get("LOBBYWATCH_CALIBRATION_VIDEO")
    try:
        video = locate(
            DEFAULT_CALIBRATION,
            what="INT8 calibration video",
            explicit=calibration or env_video or None,
            option="--calibration",
            env_var=SHARED_ENV,
            hint="any footage of people that is not in the evaluation set",
        )
    except NotLocatedError as exc:
        raise ModelError(str(exc)) from None
    spec = model.spec
    batches = list(
        calibration_batches(video, CALIBRATION_HW, CALIBRATION_FRAMES, spec.input.pad_value)
    )
    if not batches:
        raise SourceError(f"no frames could be read from {video}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._it, None)
            return None if batch is None else {spec.input.name: batch}

    target = dest / spec.file_for("int8")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        fixed = Path(tmp) / "fp32.onnx"
        fixed.write_bytes(_with_input_hw(model.path.read_bytes(), model, CALIBRATION_HW))
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(fixed),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=head_nodes(fixed.read_bytes()),
        )
        out.write_bytes(rewrite_input_shape(out.read_bytes(), spec))
        os.replace(out, target)
    import onnxruntime

    meta = {
        "method": "quantize_static QDQ u8/s8 per-channel MinMax, head fp32",
        "calibration": video.name,
        "calibration_frames": len(batches),
        "onnxruntime": onnxruntime.__version__,
    }
    write_provenance(target, spec, "int8", meta)
    return target


def head_nodes(raw: bytes) -> list[str]:
    """Names of the prediction-head nodes between the last SiLU and the output.

    The output tensor concatenates unbounded box regressions (offsets, log
    sizes) with 0..1 probabilities; one uint8 scale for both wipes out the
    scores, so the head's final convs, sigmoids, concats and reshapes stay fp32.
    """
    import onnx

    g = onnx.load_from_string(raw).graph
    producer = {o: n for n in g.node for o in n.output}
    names: list[str] = []
    stack = [o.name for o in g.output]
    seen: set[str] = set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or node.op_type == "Mul":
            continue
        seen.add(node.name)
        names.append(node.name)
        stack.extend(node.input)
    return names


def _with_input_hw(raw: bytes, model: ResolvedModel, hw: tuple[int, int]) -> bytes:
    """Fix the input to ``(1, 3, *hw)`` (concrete calibration shapes) at opset 13."""
    import onnx

    m = onnx.load_from_string(rewrite_input_shape(raw, model.spec))
    dims = next(
        i for i in m.graph.input if i.name == model.spec.input.name
    ).type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, *hw), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    # Per-channel DequantizeLinear (an ``axis`` attribute) needs opset >= 13;
    # the export is opset 11.
    m = onnx.version_converter.convert_version(m, 13)
    return bytes(m.SerializeToString())


__all__ = ["DetectorSettings", "derive_int8"]
