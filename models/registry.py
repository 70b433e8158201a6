"""Model catalogue, weight resolution and fetching.

The catalogue (``models/catalogue.yaml``) says, for every supported model, which
exact bytes we expect (size + sha256), where to get them and how to feed and
decode the network. Weights are never committed; they are looked up in this
order:

1. an explicit path (``DetectorSettings.path`` / ``--model``),
2. ``$LOBBYWATCH_MODEL_DIR``,
3. the project's git-ignored ``models/weights/`` (next to this file),
4. the user cache, ``$XDG_CACHE_HOME/lobbywatch/models`` (``~/.cache/...``).

Every problem (missing, truncated, wrong checksum, wrong graph) is raised as a
:class:`~lobbywatch.errors.ModelError` whose message says how to get the right
file (``lobbywatch model pull``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from lobbywatch import locate
from lobbywatch.errors import ModelError

Variant = Literal["fp32", "int8"]
VARIANTS: tuple[Variant, ...] = ("fp32", "int8")
CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.yaml"
PROJECT_WEIGHTS = Path(__file__).resolve().parent / "weights"
MODEL_DIR_ENV = "LOBBYWATCH_MODEL_DIR"
PULL_HINT = "run `lobbywatch model pull` (or `make model`) to fetch and verify it"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How to feed the network (see the catalogue's field comments)."""

    name: str
    shape: tuple[int, int, int, int]
    layout: str
    colour: str
    pad_value: float
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stride_multiple: int

    @property
    def size(self) -> tuple[int, int]:
        """Exported ``(height, width)``."""
        return self.shape[2], self.shape[3]


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """How to decode the network's output tensor."""

    name: str
    shape: tuple[int, ...]
    decoding: str
    strides: tuple[int, ...]
    #: Output boxes are narrowed about their centre to this fraction of the
    #: decoded width, so every catalogue model boxes a person like COCO's
    #: tight person box (measured without annotations, bench/box_convention.py).
    box_width_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalogue entry."""

    name: str
    file: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    classes: tuple[str, ...]
    licence: str
    description: str = ""

    def file_for(self, variant: Variant) -> str:
        """File name of ``variant``: the published file or the derived INT8 one."""
        if variant == "fp32":
            return self.file
        stem = self.file.removesuffix(".onnx")
        return f"{stem}.{variant}.onnx"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A verified weights file ready to load."""

    name: str
    path: Path
    spec: ModelSpec
    variant: Variant = "fp32"


def _spec_from_dict(name: str, raw: dict[str, Any]) -> ModelSpec:
    try:
        inp, out = raw["input"], raw["output"]
        spec = ModelSpec(
            name=name,
            file=str(raw["file"]),
            sha256=str(raw["sha256"]).lower(),
            size=int(raw["size"]),
            urls=tuple(str(u) for u in raw.get("urls", ())),
            input=InputSpec(
                name=str(inp["name"]),
                shape=tuple(int(v) for v in inp["shape"]),  # type: ignore[arg-type]
                layout=str(inp["layout"]),
                colour=str(inp["colour"]),
                pad_value=float(inp["pad_value"]),
                scale=float(inp.get("scale", 1.0)),
                mean=tuple(float(v) for v in inp.get("mean", (0, 0, 0))),  # type: ignore[arg-type]
                std=tuple(float(v) for v in inp.get("std", (1, 1, 1))),  # type: ignore[arg-type]
                stride_multiple=int(inp.get("stride_multiple", 32)),
            ),
            output=OutputSpec(
                name=str(out["name"]),
                shape=tuple(int(v) for v in out["shape"]),
                decoding=str(out["decoding"]),
                strides=tuple(int(v) for v in out["strides"]),
                box_width_scale=float(out.get("box_width_scale", 1.0)),
            ),
            classes=tuple(str(c) for c in raw["classes"]),
            licence=str(raw.get("licence", "unknown")),
            description=str(raw.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"catalogue entry {name!r} is malformed: {exc!r}") from exc
    if len(spec.input.shape) != 4 or spec.input.layout != "NCHW":
        raise ModelError(f"catalogue entry {name!r}: only NCHW 4-D inputs are supported")
    if spec.input.colour not in {"BGR", "RGB"}:
        raise ModelError(f"catalogue entry {name!r}: colour must be BGR or RGB")
    if spec.input.scale <= 0 or any(s <= 0 for s in spec.input.std):
        raise ModelError(f"catalogue entry {name!r}: scale and std must be positive")
    if not 0.5 <= spec.output.box_width_scale <= 1.5:
        raise ModelError(f"catalogue entry {name!r}: output.box_width_scale must be in 0.5..1.5")
    if not spec.classes or spec.classes[0] != "person":
        raise ModelError(f"catalogue entry {name!r}: class 0 must be 'person'")
    return spec


@cache
def _catalogue_cached(path: Path) -> dict[str, ModelSpec]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read model catalogue {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"model catalogue {path} must be a mapping of model names")
    return {str(k): _spec_from_dict(str(k), v) for k, v in raw.items()}


def load_catalogue(path: Path | None = None) -> dict[str, ModelSpec]:
    """All catalogue entries by name."""
    return _catalogue_cached(Path(path or CATALOGUE_PATH).resolve())


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry ``name`` or a :class:`ModelError` listing the known ones."""
    catalogue = load_catalogue()
    if name not in catalogue:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(catalogue))}")
    return catalogue[name]


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lobbywatch/models`` (default ``~/.cache/lobbywatch/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lobbywatch" / "models"


def search_dirs() -> list[Path]:
    """Folders searched for weights, in priority order (explicit paths come first):
    ``$LOBBYWATCH_MODEL_DIR``, the package's ``weights/``, the user cache."""
    return locate.search_dirs(MODEL_DIR_ENV, [PROJECT_WEIGHTS, user_cache_dir()])


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_bytes(path: Path, spec: ModelSpec) -> None:
    """Check size then sha256 of the published file; raise :class:`ModelError` if off."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}; {PULL_HINT}") from exc
    if size != spec.size:
        what = "truncated" if size < spec.size else "too large"
        raise ModelError(
            f"model file {path} is {what}: {size:,} bytes, expected {spec.size:,} for "
            f"{spec.name}; {PULL_HINT}"
        )
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise ModelError(
            f"model file {path} has sha256 {digest[:12]}..., expected {spec.sha256[:12]}... "
            f"for {spec.name} (corrupt or a different export); {PULL_HINT}"
        )


def check_graph(path: Path, spec: ModelSpec) -> None:
    """Check the ONNX graph's input/output names and shapes against the catalogue.

    Spatial input dims may differ (or be symbolic) because the network is fully
    convolutional; batch, channels, tensor names and the per-cell width
    (4 box + objectness + classes) must match.
    """
    import onnx  # local: onnx is only needed when loading or deriving models

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path} is not a readable ONNX model ({exc}); {PULL_HINT}") from exc
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]

    def dims(value_info: Any) -> list[int | str]:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim
        ]

    problems: list[str] = []
    if len(inputs) != 1 or inputs[0].name != spec.input.name:
        problems.append(
            f"inputs {[i.name for i in inputs]}, expected one input {spec.input.name!r}"
        )
    else:
        in_dims = dims(inputs[0])
        if len(in_dims) != 4 or in_dims[1] != spec.input.shape[1]:
            problems.append(f"input shape {in_dims}, expected [N, 3, H, W]")
    outputs = list(graph.output)
    if len(outputs) != 1 or outputs[0].name != spec.output.name:
        problems.append(
            f"outputs {[o.name for o in outputs]}, expected one output {spec.output.name!r}"
        )
    else:
        out_dims = dims(outputs[0])
        width = 5 + len(spec.classes)
        if len(out_dims) != 3 or out_dims[2] != width:
            problems.append(f"output shape {out_dims}, expected [N, cells, {width}]")
    if problems:
        raise ModelError(
            f"{path} does not look like {spec.name}: {'; '.join(problems)}; {PULL_HINT}"
        )


def _provenance_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_derived(path: Path, spec: ModelSpec, variant: Variant) -> None:
    """A derived file must carry a sidecar naming the published file it came from."""
    side = _provenance_path(path)
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"derived model {path} has no readable provenance file {side.name}; "
            f"re-derive it with `lobbywatch model pull --{variant}`"
        ) from exc
    if meta.get("source_sha256") != spec.sha256 or meta.get("variant") != variant:
        raise ModelError(
            f"derived model {path} was not made from {spec.name} ({spec.sha256[:12]}...); "
            f"re-derive it with `lobbywatch model pull --{variant}`"
        )
    if meta.get("sha256") != sha256_of(path):
        raise ModelError(
            f"derived model {path} changed since it was derived (checksum mismatch); "
            f"re-derive it with `lobbywatch model pull --{variant}`"
        )


def verify_model(path: Path, spec: ModelSpec, variant: Variant = "fp32") -> None:
    """Full check of one file: bytes (or derived-file provenance), then graph."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; {PULL_HINT}")
    if variant == "fp32":
        verify_bytes(path, spec)
    else:
        _check_derived(path, spec, variant)
    check_graph(path, spec)


def resolve_model(
    name: str, explicit_path: Path | str | None = None, variant: Variant = "fp32"
) -> ResolvedModel:
    """Find and verify the weights of catalogue model ``name``.

    Args:
        name: catalogue name, e.g. ``"yolox_nano"``.
        explicit_path: a file to use instead of searching; it must pass the same
            checks (a missing explicit file is an error, not a fallback).
        variant: ``"fp32"`` (the published file) or ``"int8"`` (derived at set-up).

    Returns:
        The verified :class:`ResolvedModel`.

    Raises:
        ModelError: unknown name, not found, or the first file found fails a check.
    """
    spec = get_spec(name)
    if variant not in VARIANTS:
        raise ModelError(f"unknown model variant {variant!r}; use one of {', '.join(VARIANTS)}")
    how = PULL_HINT if variant == "fp32" else "run `lobbywatch model pull --int8` to derive it"
    try:
        path = locate.locate(
            spec.file_for(variant),
            what=f"model {name} ({variant})",
            explicit=explicit_path,
            option="model.path",
            env_var=MODEL_DIR_ENV,
            defaults=[PROJECT_WEIGHTS, user_cache_dir()],
            shared=None,
            hint=how,
        )
    except locate.NotLocatedError as exc:
        raise ModelError(str(exc)) from None
    # The first file found wins and must be good: silently skipping a corrupt
    # copy would hide it until the next machine picks it up.
    verify_model(path, spec, variant)
    return ResolvedModel(name, path, spec, variant)


def _fetch_to(src: str, tmp: Path) -> None:
    """Copy a local path or download a URL to ``tmp``."""
    if "://" not in src:
        try:
            shutil.copyfile(src, tmp)
        except OSError as exc:
            raise ModelError(f"cannot copy model from {src}: {exc}") from exc
        return
    scheme = urllib.parse.urlparse(src).scheme
    if scheme not in {"http", "https", "file"}:
        raise ModelError(f"unsupported URL scheme {scheme!r} in {src}")
    try:
        with urllib.request.urlopen(src, timeout=60) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except OSError as exc:
        raise ModelError(f"cannot download model from {src}: {exc}") from exc


def _candidates(spec: ModelSpec, source: str | None) -> list[str]:
    if source is None:
        if not spec.urls:
            raise ModelError(f"{spec.name} has no download URL; use --from DIR_OR_URL")
        return list(spec.urls)
    if "://" in source:
        if source.rstrip("/").endswith(spec.file):
            return [source]
        return [source.rstrip("/") + "/" + spec.file]
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / spec.file
    if not path.is_file():
        raise ModelError(f"no {spec.file} at {path} (the --from mirror)")
    return [str(path)]


def pull(name: str, source: str | None = None, dest: Path | None = None) -> Path:
    """Fetch ``name`` into ``dest`` (default: the user cache) and verify it.

    The file is written to a temporary name in ``dest``, checked, then renamed,
    so a crash or a bad download never leaves a half file under the real name.

    Args:
        name: catalogue name.
        source: a mirror folder, a file, or a base/complete URL; ``None`` uses
            the catalogue's URLs in order.
        dest: target folder (created if needed).

    Returns:
        Path of the verified file.
    """
    spec = get_spec(name)
    dest = Path(dest) if dest is not None else user_cache_dir()
    target = dest / spec.file
    if target.is_file():
        try:
            verify_model(target, spec)
            return target
        except ModelError:
            pass  # replace a bad copy below
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create model folder {dest}: {exc}") from exc
    errors: list[str] = []
    for src in _candidates(spec, source):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".part", dir=dest)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch_to(src, tmp)
            verify_model(tmp, spec)
            tmp.chmod(0o644)  # mkstemp makes 0600; weights are not secret
            os.replace(tmp, target)
            return target
        except ModelError as exc:
            errors.append(f"{src}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ModelError(f"could not get a valid {spec.file}: " + " | ".join(errors))


def write_provenance(path: Path, spec: ModelSpec, variant: Variant, extra: dict[str, Any]) -> None:
    """Record what a derived file was made from (checked by the resolver)."""
    meta = {
        "model": spec.name,
        "variant": variant,
        "source_sha256": spec.sha256,
        "sha256": sha256_of(path),
        **extra,
    }
    _provenance_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def list_models() -> Sequence[tuple[ModelSpec, Variant, Path | None, str]]:
    """Every catalogue model and variant with where it resolves and its status."""
    rows: list[tuple[ModelSpec, Variant, Path | None, str]] = []
    for spec in load_catalogue().values():
        for variant in VARIANTS:
            try:
                resolved = resolve_model(spec.name, variant=variant)
                rows.append((spec, variant, resolved.path, "ok"))
            except ModelError as exc:
                rows.append((spec, variant, None, str(exc)))
    return rows
