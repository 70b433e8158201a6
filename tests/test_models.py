"""Model catalogue, resolver order, checksum/shape failures and pulling."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from lobbywatch.errors import ModelError
from lobbywatch.models import registry


def tiny_onnx(path: Path, out_width: int = 85, input_name: str = "images") -> Path:
    """A real, loadable ONNX with the YOLOX tensor names (constant output)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.zeros((1, 21, out_width), np.float32), "value")
    node = helper.make_node("Constant", [], ["output"], value=value)
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 21, out_width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> registry.ModelSpec:
    """The real catalogue entry re-pointed at a tiny ONNX's bytes; isolated search dirs."""
    src = tiny_onnx(tmp_path / "src.onnx")
    data = src.read_bytes()
    spec = dataclasses.replace(
        registry.get_spec("yolox_nano"),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        urls=(src.as_uri(),),
    )
    monkeypatch.setattr(registry, "get_spec", lambda name: spec)
    monkeypatch.setattr(registry, "PROJECT_WEIGHTS", tmp_path / "project")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LOBBYWATCH_MODEL_DIR", raising=False)
    return spec


def put(folder: Path, spec: registry.ModelSpec, src: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.file
    target.write_bytes(src.read_bytes())
    return target


def test_catalogue_describes_yolox_nano() -> None:
    spec = registry.get_spec("yolox_nano")
    assert spec.sha256.startswith("695e750a")
    assert spec.size == 3_660_092
    assert spec.input.name == "images" and spec.input.shape == (1, 3, 416, 416)
    assert spec.input.colour == "BGR" and spec.input.pad_value == 114
    assert spec.output.strides == (8, 16, 32)
    assert len(spec.classes) == 80 and spec.classes[0] == "person"
    assert spec.classes[-1] == "toothbrush"
    assert spec.file_for("int8") == "yolox_nano.int8.onnx"


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*yolox_nano"):
        registry.get_spec("nope")


def test_resolver_search_order(tmp_path: Path, fake_spec: registry.ModelSpec, monkeypatch) -> None:
    src = tmp_path / "src.onnx"
    cache = put(tmp_path / "xdg" / "lobbywatch" / "models", fake_spec, src)
    assert registry.resolve_model("yolox_nano").path == cache
    project = put(tmp_path / "project", fake_spec, src)
    assert registry.resolve_model("yolox_nano").path == project
    env = put(tmp_path / "env", fake_spec, src)
    monkeypatch.setenv("LOBBYWATCH_MODEL_DIR", str(tmp_path / "env"))
    assert registry.resolve_model("yolox_nano").path == env
    explicit = put(tmp_path / "explicit", fake_spec, src)
    assert registry.resolve_model("yolox_nano", explicit).path == explicit


def test_missing_model_says_how_to_pull(fake_spec: registry.ModelSpec) -> None:
    with pytest.raises(ModelError, match=r"not found.*lobbywatch model pull"):
        registry.resolve_model("yolox_nano")


def test_missing_explicit_path_does_not_fall_back(tmp_path: Path, fake_spec) -> None:
    put(tmp_path / "project", fake_spec, tmp_path / "src.onnx")
    with pytest.raises(ModelError, match="given explicitly"):
        registry.resolve_model("yolox_nano", tmp_path / "nothing.onnx")


def test_truncated_model_is_rejected(tmp_path: Path, fake_spec) -> None:
    target = put(tmp_path / "project", fake_spec, tmp_path / "src.onnx")
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"truncated.*lobbywatch model pull"):
        registry.resolve_model("yolox_nano")


def test_wrong_checksum_is_rejected(tmp_path: Path, fake_spec) -> None:
    target = put(tmp_path / "project", fake_spec, tmp_path / "src.onnx")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256.*lobbywatch model pull"):
        registry.resolve_model("yolox_nano")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"out_width": 6}, r"output shape \[1, 21, 6\]"), ({"input_name": "x"}, "expected one input")],
)
def test_wrong_shape_onnx_is_rejected(tmp_path: Path, kwargs: dict, problem: str) -> None:
    bad = tiny_onnx(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelError, match=problem):
        registry.check_graph(bad, registry.get_spec("yolox_nano"))


def test_not_an_onnx_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        registry.check_graph(bad, registry.get_spec("yolox_nano"))


def test_pull_from_mirror_dir_and_url(tmp_path: Path, fake_spec) -> None:
    mirror = tmp_path / "mirror"
    put(mirror, fake_spec, tmp_path / "src.onnx")
    got = registry.pull("yolox_nano", source=str(mirror), dest=tmp_path / "d1")
    assert got == tmp_path / "d1" / fake_spec.file
    assert registry.sha256_of(got) == fake_spec.sha256
    got2 = registry.pull("yolox_nano", dest=tmp_path / "d2")  # catalogue URL (file://)
    assert got2.read_bytes() == got.read_bytes()
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == [fake_spec.file]


def test_pull_of_bad_mirror_leaves_nothing(tmp_path: Path, fake_spec) -> None:
    mirror = tmp_path / "mirror"
    target = put(mirror, fake_spec, tmp_path / "src.onnx")
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(ModelError, match=r"could not get a valid.*truncated"):
        registry.pull("yolox_nano", source=str(mirror), dest=tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_cli_reports_bad_model_in_one_line(tmp_path: Path, capsys) -> None:
    from lobbywatch.cli import main

    bad = tmp_path / "yolox_nano.onnx"
    bad.write_bytes(b"short")
    with pytest.raises(SystemExit) as exc:
        main(["model", "verify", "--path", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and "Traceback" not in err


def test_box_width_scale_is_read_from_the_catalogue_and_checked(tmp_path: Path) -> None:
    import yaml

    assert registry.get_spec("yolox_nano").output.box_width_scale == 1.0  # the reference
    assert registry.get_spec("bytetrack_nano").output.box_width_scale == 0.87
    raw = yaml.safe_load(registry.CATALOGUE_PATH.read_text())
    raw["bytetrack_nano"]["output"]["box_width_scale"] = 0.2
    bad = tmp_path / "catalogue.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelError, match=r"'bytetrack_nano': output.box_width_scale"):
        registry.load_catalogue(bad)
