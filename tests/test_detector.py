"""Letterbox geometry, decoding, NMS, tiling merge and bad inputs (hand-computed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lobbywatch.edge.detections import iou_matrix
from lobbywatch.edge.detector import (
    Detector,
    DetectorSettings,
    decode_person,
    fit_input_shape,
    fuse_flip,
    letterbox_ratio,
    make_grids,
    make_session,
    merge_regions,
    nms,
    plan_tiles,
    rewrite_input_shape,
    suppress_partials,
    unmirror,
)
from lobbywatch.errors import ModelError, SourceError


def test_letterbox_full_hd_into_960x544() -> None:
    # r = min(544/1080, 960/1920) = 0.5 -> 960x540 pasted top-left, 4 pad rows.
    assert letterbox_ratio((1080, 1920), (544, 960)) == (0.5, 540, 960)


def test_letterbox_square_416_truncates_like_yolox() -> None:
    r, h, w = letterbox_ratio((576, 768), (416, 416))
    assert r == pytest.approx(416 / 768)
    assert (h, w) == (312, 416)  # 576 * 0.54166 = 312.0


def test_fit_input_shape() -> None:
    assert fit_input_shape((1080, 1920), 960, True) == (544, 960)  # ceil(540/32)*32
    assert fit_input_shape((1080, 1920), 416, False) == (416, 416)
    assert fit_input_shape((1920, 1080), 960, True) == (960, 544)  # portrait
    # max_upscale 1: a 640x480 frame is not enlarged to 960
    assert fit_input_shape((480, 640), 960, True, max_upscale=1.0) == (480, 640)
    assert fit_input_shape((576, 768), 960, True, max_upscale=1.0) == (576, 768)
    # the default rule: half the camera's resolution, never below 416 nor above 960
    half = {"max_upscale": 0.5, "min_size": 416}
    assert fit_input_shape((1080, 1920), 960, True, **half) == (544, 960)
    assert fit_input_shape((2160, 3840), 960, True, **half) == (544, 960)
    # 384 -> floor; at the training size the canvas stays square, as in training
    assert fit_input_shape((576, 768), 960, True, **half) == (416, 416)
    assert fit_input_shape((480, 640), 960, True, **half) == (416, 416)
    assert fit_input_shape((1440, 2560), 960, True, **half) == (544, 960)
    assert fit_input_shape((720, 1280), 960, True, **half) == (384, 640)
    assert fit_input_shape((480, 640), 320, True, **half) == (320, 320)  # floor <= input_size
    # without a floor the fitted canvas applies at any size
    assert fit_input_shape((480, 640), 416, True) == (320, 416)
    s = DetectorSettings()
    # The shipped default (measured, docs/accuracy.md): a fixed 512 long side.
    assert (s.name, s.input_size, s.max_upscale, s.min_input_size) == (
        "bytetrack_nano",
        512,
        4.0,
        416,
    )
    assert fit_input_shape((1080, 1920), 512, True, max_upscale=4.0, min_size=416) == (288, 512)
    assert fit_input_shape((576, 768), 512, True, max_upscale=4.0, min_size=416) == (384, 512)


def test_preprocess_pastes_top_left_and_pads_114(model_path: Path) -> None:
    det = Detector.from_settings(
        DetectorSettings(name="yolox_nano", input_size=416, fit_aspect=False, max_upscale=4.0)
    )
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 0], frame[..., 2] = 10, 200  # B=10, R=200
    batch = det.preprocess(frame).batch
    # The letterboxed uint8 frame itself (NHWC); the graph transposes and casts.
    assert batch.shape == (1, 416, 416, 3) and batch.dtype == np.uint8
    # r = 416/200 = 2.08 -> 208 rows of image, the rest padding
    assert batch[0, :208, :, 0].min() == 10 and batch[0, :208, :, 2].max() == 200  # BGR kept
    assert (batch[0, 208:] == 114).all()
    # bytetrack_nano gets the same raw buffer: its RGB order, /255 and ImageNet
    # mean/std are inside its graph (first nodes + first convolution).
    try:
        bt = Detector.from_settings(
            DetectorSettings(input_size=416, fit_aspect=False, max_upscale=4.0)
        )
    except ModelError as exc:
        pytest.skip(f"bytetrack_nano not pulled: {exc}")
    np.testing.assert_array_equal(bt.preprocess(frame).batch, batch)


def test_make_grids_order() -> None:
    grid, stride = make_grids((32, 64), (8, 16, 32))
    assert grid.shape == (4 * 8 + 2 * 4 + 1 * 2, 2)
    assert grid[:3].tolist() == [[0, 0], [1, 0], [2, 0]]  # row-major, x first
    assert grid[8].tolist() == [0, 1]
    assert stride[32, 0] == 16 and stride[-1, 0] == 32 and grid[-1].tolist() == [1, 0]


def test_decode_person_hand_computed() -> None:
    grid, stride = make_grids((32, 32), (8, 16, 32))  # 16 + 4 + 1 cells
    raw = np.zeros((1, 21, 85), np.float32)
    # stride-8 cell (gx=1, gy=1) is index 5
    raw[0, 5, :6] = [0.5, 0.5, math.log(2), math.log(4), 0.9, 0.5]
    # a confident *car* in cell 6 must not appear (only class 0 is read)
    raw[0, 6, 4], raw[0, 6, 5], raw[0, 6, 7] = 0.99, 0.05, 0.99
    # stride-32 cell (0, 0) is index 20
    raw[0, 20, 4:6] = [1.0, 0.8]
    xyxy, scores, img = decode_person(raw, grid, stride, 0.3)
    order = np.argsort(-scores)
    # centre (0.5+1)*8 = 12, w = 2*8 = 16, h = 4*8 = 32
    np.testing.assert_allclose(xyxy[order], [[-16, -16, 16, 16], [4, -4, 20, 28]], atol=1e-4)
    np.testing.assert_allclose(scores[order], [0.8, 0.45], atol=1e-6)
    assert img.tolist() == [0, 0]


def test_iou_matrix_hand_values() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1.0, 0.0]], atol=1e-6)


def test_nms_suppresses_duplicate() -> None:
    boxes = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]  # IoU(0,1) = 90/110


def test_nms_chain_is_exact_greedy() -> None:
    # A-B and B-C overlap (IoU 1/3), A-C do not. Greedy keeps A, drops B, and
    # then keeps C because its only suppressor B is gone. (Fast NMS drops C.)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms(boxes, scores, 0.4).tolist() == [0, 1, 2]
    assert nms(boxes[:0], scores[:0], 0.3).tolist() == []


def test_tiles_plan_and_partial_suppression() -> None:
    s = DetectorSettings(input_size=416, tiles=(2, 1), tile_overlap=0.25, max_upscale=4.0)
    plan = plan_tiles((500, 1000), s)
    # whole frame + two tiles of ceil(1000 / 1.75) = 572 px: [0, 572) and [428, 1000)
    assert plan.boxes.tolist() == [[0, 0, 1000, 500], [0, 0, 572, 500], [428, 0, 1000, 500]]
    assert plan.inner_edges.tolist() == [
        [False, False, False, False],
        [False, False, True, False],
        [True, False, False, False],
    ]
    # A person cut at x=572 by tile 1, seen whole by the full-frame pass (region 0).
    xyxy = np.array([[540, 100, 572, 300], [540, 100, 620, 300]], np.float32)
    keep = suppress_partials(xyxy, np.array([True, False]), np.array([1, 0]), 0.6)
    assert keep.tolist() == [False, True]
    # Same boxes from the same region are left to NMS.
    keep = suppress_partials(xyxy, np.array([True, False]), np.array([1, 1]), 0.6)
    assert keep.tolist() == [True, True]


def test_merge_regions_one_person_seen_by_frame_and_tile() -> None:
    # Region 0 (whole frame) sees the person whole; region 1 (a tile) at another
    # scale gives a tighter box: IoU 0.6 * 0.8 = 0.48... here 0.4 < NMS 0.45, but the
    # tile box lies entirely inside the frame box (IoS 1): one person, one box.
    xyxy = np.array([[100, 100, 200, 400], [110, 100, 190, 250]], np.float32)
    assert iou_matrix(xyxy[:1], xyxy[1:])[0, 0] < 0.45
    scores = np.array([0.5, 0.8], np.float32)
    src = np.array([0, 1])
    kept = merge_regions(xyxy, scores, src, np.array([False, False]), 0.45, 0.6, 0.6)
    assert kept.tolist() == [1]  # both whole: the higher score wins
    # The tile box touches an inner tile border: the whole frame's box wins.
    kept = merge_regions(xyxy, scores, src, np.array([False, True]), 0.45, 0.6, 0.6)
    assert kept.tolist() == [0]


def test_merge_regions_keeps_two_overlapping_people() -> None:
    # A seated person (small box) mostly hidden behind a standing one: IoS 1 between
    # them, yet both regions report both. One-to-one matching pairs each box with its
    # own twin, so two people remain; a containment "NMS" would drop one.
    front, back = [100, 100, 200, 400], [120, 150, 180, 300]
    xyxy = np.array([front, back, [102, 98, 203, 404], [118, 152, 181, 298]], np.float32)
    scores = np.array([0.9, 0.5, 0.8, 0.6], np.float32)
    src = np.array([0, 0, 1, 1])
    kept = merge_regions(xyxy, scores, src, np.zeros(4, bool), 0.45, 0.6, 0.6)
    assert sorted(kept.tolist()) == [0, 3]


def test_merge_regions_drops_unmatched_border_fragment() -> None:
    # Tiles 1 and 2 both cut one person at their shared border; the whole frame (0)
    # sees them whole: each cut half pairs with the whole box, which wins.
    xyxy = np.array([[540, 100, 620, 300], [540, 100, 572, 300], [560, 100, 620, 300]], np.float32)
    scores = np.array([0.6, 0.7, 0.7], np.float32)
    cut = np.array([False, True, True])
    kept = merge_regions(xyxy, scores, np.array([0, 1, 2]), cut, 0.45, 0.6, 0.6)
    assert kept.tolist() == [0]
    # A tile reporting the person whole *and* a cut fragment of them: the whole box
    # takes the one-to-one match, the fragment is left over but lies inside a kept
    # box and touches the tile border: dropped.
    xyxy = np.array([[100, 100, 200, 400], [101, 100, 200, 401], [150, 100, 200, 200]], np.float32)
    cut = np.array([False, False, True])
    kept = merge_regions(xyxy, scores, np.array([0, 1, 1]), cut, 0.45, 0.6, 0.6)
    assert len(kept) == 1 and kept[0] in (0, 1)
    # The same leftover box *not* at a border is a person of its own (kept).
    kept = merge_regions(xyxy, scores, np.array([0, 1, 1]), np.zeros(3, bool), 0.45, 0.6, 0.6)
    assert len(kept) == 2


def test_tiles_run_at_native_scale_by_default() -> None:
    # Full-HD, 2x2 tiles, overlap 0.25: tiles of 1098x618 run at 960x544 (scale
    # 0.87, tile_max_upscale=1), not at half resolution like the whole-frame rule.
    plan = plan_tiles((1080, 1920), DetectorSettings(tiles=(2, 2), input_size=960))
    assert plan.input_hw == (544, 960) and len(plan.boxes) == 5
    assert plan.ratios[1] == pytest.approx(960 / 1098, abs=1e-3)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="multiple"):
        DetectorSettings(input_size=500)
    with pytest.raises(ValueError, match="tiles"):
        DetectorSettings(tiles=(0, 1))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (None, "shape"),
        (np.zeros((10, 10), np.uint8), "shape"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 3), np.uint8), "too small"),
    ],
)
def test_bad_frames_raise_source_error(model_path: Path, frame: object, message: str) -> None:
    det = Detector.from_settings(DetectorSettings(input_size=416))
    with pytest.raises(SourceError, match=message):
        det.detect(frame)  # type: ignore[arg-type]


def test_wrong_model_file_is_a_model_error(tmp_path: Path) -> None:
    from test_models import tiny_onnx  # tests/ is on sys.path (no __init__.py)

    bad = tiny_onnx(tmp_path / "yolox_nano.onnx", out_width=6)
    with pytest.raises(ModelError, match="lobbywatch model pull"):
        Detector.from_settings(DetectorSettings(path=bad))


def test_detects_people_on_a_real_frame(model_path: Path, people_dir: Path) -> None:
    import cv2

    frame = cv2.imread(str(people_dir / "tud_campus" / "frames" / "000001.jpg"))
    det = Detector.from_settings(DetectorSettings())
    out = det.detect(frame)
    gt = np.loadtxt(people_dir / "tud_campus" / "gt.csv", delimiter=",", skiprows=1)
    gt = gt[gt[:, 0] == 1, 1:]
    gt_xyxy = np.concatenate((gt[:, :2], gt[:, :2] + gt[:, 2:]), axis=1).astype(np.float32)
    assert (out.xyxy[:, [0, 2]] >= 0).all() and (out.xyxy[:, 2] <= 640).all()
    assert (out.xyxy[:, 3] <= 480).all() and np.all(np.diff(out.scores) <= 0)
    # at least 4 of the 6 annotated people found at IoU 0.5
    assert (iou_matrix(gt_xyxy, out.xyxy).max(axis=1) >= 0.5).sum() >= 4


def test_tiles_detect_people_on_a_real_frame(model_path: Path, people_dir: Path) -> None:
    """Regression: the exported graph hard-codes batch 1 in its head, so a batched
    (whole frame + tiles) run used to return one scrambled tensor and no boxes."""
    import cv2

    frame = cv2.imread(
        str(people_dir / "cctv_cam11_waitingroom_20231014" / "frames" / "000001.jpg")
    )
    whole = Detector.from_settings(DetectorSettings()).detect(frame)
    tiled_det = Detector.from_settings(DetectorSettings(tiles=(2, 2), max_upscale=1.0))
    prepared = tiled_det.preprocess(frame)
    raw = tiled_det.infer(prepared)
    assert raw.shape[0] == 5  # whole frame + 4 tiles, one output per region
    tiled = tiled_det.postprocess(raw, prepared)
    assert len(whole) >= 10 and len(tiled) >= 0.8 * len(whole)


def test_nms_equals_textbook_greedy_on_random_clusters() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        c = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(5, 80, (n, 2))
        boxes = np.concatenate((c, c + wh), 1).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        iou = iou_matrix(boxes, boxes)
        keep: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            if all(iou[i, j] <= 0.45 for j in keep):
                keep.append(int(i))
        assert nms(boxes, scores, 0.45).tolist() == keep


def test_person_only_graph_returns_the_published_person_columns(
    model_path: Path, vtest_video: Path
) -> None:
    import cv2

    det = Detector.from_settings(DetectorSettings(name="yolox_nano", path=model_path))
    full = make_session(rewrite_input_shape(model_path.read_bytes(), det.model.spec), 1, 1)
    cap = cv2.VideoCapture(str(vtest_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    prepared = det.preprocess(frame)
    ours = det.infer(prepared)
    nchw = prepared.batch.transpose(0, 3, 1, 2).astype(np.float32)
    published = full.run(None, {det.model.spec.input.name: nchw})[0]
    assert published.shape[2] == 85 and ours.shape == (*published.shape[:2], 6)
    np.testing.assert_array_equal(ours, published[:, :, :6])
    assert len(det.postprocess(ours, prepared)) == len(det.postprocess(published, prepared)) > 0


def test_person_columns_are_cut_after_any_graph_tail(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from lobbywatch.models import registry

    # A graph whose output is not produced by the exporter's final Transpose.
    value = np.random.default_rng(1).random((1, 21, 85)).astype(np.float32)
    node = helper.make_node("Constant", [], ["output"], value=numpy_helper.from_array(value))
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 21, 85])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    spec = registry.get_spec("yolox_nano")
    cut = rewrite_input_shape(model.SerializeToString(), spec, person_only=True)
    assert [
        d.dim_value for d in onnx.load_from_string(cut).graph.output[0].type.tensor_type.shape.dim
    ][2] == 6
    session = make_session(cut, 1, 1)
    out = session.run(None, {"images": np.zeros((1, 3, 32, 32), np.float32)})[0]
    np.testing.assert_array_equal(out, value[:, :, :6])


def test_folded_normalisation_equals_published_graph_on_normalised_input(
    people_dir: Path,
) -> None:
    """bytetrack_nano: channel swap, /255 and ImageNet mean/std folded at load time
    give the same output as the published graph fed the normalised frame."""
    import cv2

    from lobbywatch.models.registry import resolve_model

    try:
        model = resolve_model("bytetrack_nano")
    except ModelError as exc:
        pytest.skip(f"bytetrack_nano not pulled: {exc}")
    det = Detector(model, DetectorSettings(name="bytetrack_nano", input_size=736, max_upscale=4))
    frame = cv2.imread(str(sorted((people_dir / "pets09_s2l1" / "frames").glob("*.jpg"))[0]))
    prepared = det.preprocess(frame)
    folded = det.infer(prepared)
    # Reference: the textbook pre-processing on the published (unfolded) graph.
    h, w = prepared.batch.shape[1:3]
    r = min(h / frame.shape[0], w / frame.shape[1])
    canvas = np.full((h, w, 3), 114, np.uint8)
    rh, rw = int(frame.shape[0] * r), int(frame.shape[1] * r)
    canvas[:rh, :rw] = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_LINEAR)
    rgb = canvas[:, :, ::-1].astype(np.float32) / 255.0
    norm = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
        [0.229, 0.224, 0.225], np.float32
    )
    published = make_session(rewrite_input_shape(model.path.read_bytes(), model.spec), 1, 1)
    ref = published.run(None, {"images": norm.transpose(2, 0, 1)[None].copy()})[0]
    assert ref.shape == folded.shape == (1, (h * w) // 64 + (h * w) // 256 + (h * w) // 1024, 6)
    # Box columns are in grid units (up to ~5), scores 0..1: float32 rounding only.
    np.testing.assert_allclose(folded, ref, rtol=1e-3, atol=2e-3)
    assert np.abs(folded[0, :, 4] - ref[0, :, 4]).max() < 1e-3
    # ... and the unnormalised frame on the published graph is far off (the test can fail).
    raw = published.run(None, {"images": canvas.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    assert np.abs(raw[0, :, 4] - ref[0, :, 4]).max() > 0.1
    people = det.postprocess(folded, prepared)
    assert len(people) == len(det.postprocess(ref, prepared)) > 3


def test_fold_refuses_a_graph_without_a_conv_stem(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from lobbywatch.edge.detector import fold_input_normalisation
    from lobbywatch.models.registry import get_spec

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["output"])], "g", [x], [y])
    with pytest.raises(ModelError, match="neither one Conv nor a Focus stem"):
        fold_input_normalisation(onnx.helper.make_model(graph).graph, get_spec("bytetrack_nano"))


# --------------------------------------------------------------------------- greyscale cameras


def test_is_grey_tells_a_monochrome_picture_from_a_colour_one() -> None:
    from lobbywatch.edge.detector import is_grey

    grey = np.tile(np.arange(64, dtype=np.uint8)[:, None, None], (1, 48, 3))
    assert is_grey(grey)
    # +/-1 level of codec noise on one channel: still grey (mean 1 < 2)
    noisy = grey.copy()
    noisy[..., 0] += 1
    assert is_grey(noisy)
    # a faintly tinted picture: B and G differ by 3 levels on average
    tinted = grey.copy()
    tinted[..., 0] += 3
    assert not is_grey(tinted)


def test_clahe_equalises_a_grey_picture_and_leaves_colour_untouched(model_path: Path) -> None:
    base = {"name": "yolox_nano", "input_size": 416, "fit_aspect": False, "max_upscale": 4.0}
    off = Detector.from_settings(DetectorSettings(**base))  # type: ignore[arg-type]
    on = Detector.from_settings(DetectorSettings(**base, grey_contrast="clahe"))  # type: ignore[arg-type]
    # A low-contrast grey ramp (levels 100..131): CLAHE stretches it.
    ramp = np.tile((100 + np.arange(416) // 13).astype(np.uint8)[None, :, None], (416, 1, 3))
    b_off = off.preprocess(ramp).batch.copy()
    b_on = on.preprocess(ramp).batch
    assert int(np.ptp(b_off[0])) == 31
    assert int(np.ptp(b_on[0])) > 31  # contrast widened
    # the three channels stay equal (one plane broadcast)
    assert (b_on[0, ..., 0] == b_on[0, ..., 2]).all() and (b_on[0, ..., 1] == b_on[0, ..., 2]).all()
    # a colour picture goes through unchanged (a fresh detector: the check is per camera)
    on2 = Detector.from_settings(DetectorSettings(**base, grey_contrast="clahe"))  # type: ignore[arg-type]
    colour = ramp.copy()
    colour[..., 2] = 200
    np.testing.assert_array_equal(on2.preprocess(colour).batch, off.preprocess(colour).batch)


# --------------------------------------------------------------------------- flip TTA (round 8)


def test_unmirror_reflects_about_the_mirrored_span() -> None:
    # A 100-px-wide frame: axis = 0 + 100; x 10..30 on the mirror is 70..90 here.
    out = unmirror(np.array([[10, 5, 30, 50], [0, 0, 100, 10]], np.float32), 100.0)
    assert out.tolist() == [[70.0, 5.0, 90.0, 50.0], [0.0, 0.0, 100.0, 10.0]]


def test_fuse_flip_hand_computed() -> None:
    """Two people seen in both views, one only in the mirror, one duplicate per view."""
    xyxy = np.array(
        [
            [0, 0, 10, 20],  # view 0, person A, 0.9
            [0, 0, 10, 19],  # view 0, duplicate of A (IoU 0.95): NMS removes it
            [50, 0, 60, 20],  # view 0, person B, 0.6
            [2, 0, 12, 20],  # view 1, person A, 0.3 (IoU with A = 160/240 = 0.667)
            [52, 0, 62, 20],  # view 1, person B, 0.2
            [100, 0, 110, 20],  # view 1 only, person C, 0.8
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.85, 0.6, 0.3, 0.2, 0.8], np.float32)
    view = np.array([0, 0, 0, 1, 1, 1])
    boxes, fused = fuse_flip(xyxy, scores, view, nms_iou=0.45)
    # A: x = (0.9 * 0 + 0.3 * 2) / 1.2 = 0.5; score (0.9 + 0.3) / 2 = 0.6
    # B: x = (0.6 * 50 + 0.2 * 52) / 0.8 = 50.5; score 0.4
    # C: unmatched, 0.8 / 2 = 0.4 (WBF: the frame view gave it 0)
    assert fused.tolist() == pytest.approx([0.6, 0.4, 0.4])
    np.testing.assert_allclose(
        boxes, [[0.5, 0, 10.5, 20], [50.5, 0, 60.5, 20], [100, 0, 110, 20]], atol=1e-5
    )
    # "max": pair scores are the larger one, lone boxes keep theirs.
    _, fmax = fuse_flip(xyxy, scores, view, nms_iou=0.45, score="max")
    assert sorted(fmax.tolist(), reverse=True) == pytest.approx([0.9, 0.8, 0.6])


def test_fuse_flip_does_not_pair_below_match_iou_and_nms_resolves_leftovers() -> None:
    # IoU of the two = 5*20 / (2*200 - 100) = 1/3 < 0.55: not one person.
    xyxy = np.array([[0, 0, 10, 20], [5, 0, 15, 20]], np.float32)
    scores = np.array([0.8, 0.6], np.float32)
    boxes, fused = fuse_flip(xyxy, scores, np.array([0, 1]), nms_iou=0.45)
    assert fused.tolist() == pytest.approx([0.4, 0.3])
    assert boxes.tolist() == xyxy.tolist()
    # With a looser pairing both become one box; with a strict NMS after an
    # unpaired fusion the weaker overlapping box goes.
    _, paired = fuse_flip(xyxy, scores, np.array([0, 1]), nms_iou=0.45, match_iou=0.3)
    assert paired.tolist() == pytest.approx([0.7])
    _, strict = fuse_flip(xyxy, scores, np.array([0, 1]), nms_iou=0.3)
    assert strict.tolist() == pytest.approx([0.4])
    # Empty views.
    b, s = fuse_flip(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 0.45)
    assert b.shape == (0, 4) and s.shape == (0,)


def test_tta_settings_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="tta"):
        DetectorSettings(tta="rotate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tta: flip needs tiles \(1, 1\)"):
        DetectorSettings(tta="flip", tiles=(2, 1))


def test_flip_view_equals_the_detector_on_the_mirrored_frame(
    model_path: Path, people_dir: Path
) -> None:
    """The in-batch mirror (resized region flipped) sees exactly the mirrored frame."""
    import cv2

    frame = cv2.imread(str(people_dir / "tud_campus" / "frames" / "000001.jpg"))
    tta = Detector.from_settings(DetectorSettings(tta="flip"))
    prep = tta.preprocess(frame)
    xyxy, scores, view = tta.view_candidates(tta.infer(prep), prep)
    assert set(view.tolist()) == {0, 1}
    plain = Detector.from_settings(DetectorSettings(score_threshold=0.1, box_width="native"))
    mirrored = plain.detect(np.ascontiguousarray(frame[:, ::-1]))
    w = frame.shape[1]
    want = unmirror(mirrored.xyxy, float(w))
    m = view == 1
    keep = nms(xyxy[m], scores[m], 0.45)
    np.testing.assert_allclose(scores[m][keep], mirrored.scores, atol=1e-4)
    np.testing.assert_allclose(xyxy[m][keep], want, atol=0.01)
    # View 0 is the plain detector on the frame itself.
    unflipped = plain.detect(frame)
    keep0 = nms(xyxy[~m], scores[~m], 0.45)
    np.testing.assert_allclose(scores[~m][keep0], unflipped.scores, atol=1e-6)
    # detect() returns the fused boxes above the threshold, highest first.
    out = tta.detect(frame)
    want_boxes, want_scores = fuse_flip(xyxy, scores, view, 0.45)
    np.testing.assert_allclose(out.scores, want_scores[want_scores > 0.4])
    kept = want_boxes[want_scores > 0.4]  # drawn 0.87 as wide (catalogue box convention)
    np.testing.assert_allclose(out.xyxy[:, [1, 3]], kept[:, [1, 3]])
    np.testing.assert_allclose(
        out.xyxy[:, 2] - out.xyxy[:, 0], 0.87 * (kept[:, 2] - kept[:, 0]), rtol=1e-5
    )
    assert len(out) >= 4 and np.all(np.diff(out.scores) <= 0)


def test_catalogue_box_width_narrows_kept_boxes_about_their_centre(
    model_path: Path, people_dir: Path
) -> None:
    """bytetrack_nano's boxes are drawn 0.87 as wide; the same boxes, scores and foot points."""
    import cv2

    frame = cv2.imread(str(people_dir / "tud_campus" / "frames" / "000001.jpg"))
    native = Detector.from_settings(DetectorSettings(box_width="native")).detect(frame)
    drawn = Detector.from_settings(DetectorSettings()).detect(frame)
    assert len(native) >= 4
    np.testing.assert_array_equal(drawn.scores, native.scores)
    w_native = native.xyxy[:, 2] - native.xyxy[:, 0]
    np.testing.assert_allclose(drawn.xyxy[:, 2] - drawn.xyxy[:, 0], 0.87 * w_native, rtol=1e-5)
    np.testing.assert_allclose(drawn.foot_points(), native.foot_points(), atol=1e-3)
    np.testing.assert_array_equal(drawn.xyxy[:, [1, 3]], native.xyxy[:, [1, 3]])
    # yolox_nano is the reference convention: unchanged.
    y = DetectorSettings(name="yolox_nano", input_size=416)
    a = Detector.from_settings(y).detect(frame)
    b = Detector.from_settings(y.model_copy(update={"box_width": "native"})).detect(frame)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
