"""``lobbywatch calibrate``: commission one camera from a handful of counted snapshots.

    lobbywatch calibrate --config DEVICE.yaml --camera ID --snapshots DIR --counts counts.csv
    lobbywatch calibrate --config DEVICE.yaml --camera ID --snapshots DIR --web

``counts.csv`` has a header ``file,count`` (file names relative to ``DIR``),
optionally followed by one column per zone, ``zone:<zone id>``; with zone
columns the error is summed over zones (a person counted in the wrong zone is
an error) and ``count`` may be left empty. ``--web`` serves a page on
127.0.0.1 where the installer clicks every person on every snapshot instead;
the clicks are saved as ``counts.csv`` (with per-zone counts from the clicked
foot points) and ``clicks.csv`` (``file,x,y``) in the snapshot folder and used
at once. Clicked positions are scored by position (a box on nobody while a
person is missed is an error, :func:`lobbywatch.edge.calibration.located_error`);
a later run without ``--counts`` reads ``clicks.csv`` back and does the same.

The search and its prior are :func:`lobbywatch.edge.calibration.calibrate`;
the choice is written into the camera's ``model`` section of the device
config (comments and layout kept), validated by the config schema first.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import typer

from lobbywatch.errors import ConfigError, SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ZONE_PREFIX = "zone:"
#: Where ``--web`` keeps the clicked positions (``file,x,y``, one row per person),
#: beside counts.csv: a later run without ``--counts`` scores by position again.
CLICKS_FILE = "clicks.csv"


@dataclass(frozen=True, slots=True)
class CountedSnapshot:
    """One snapshot and its true count (total, and per zone when given)."""

    path: Path
    count: int
    zones: dict[str, int] | None
    #: clicked foot points (``--web``), image pixels; ``None`` from counts.csv
    points: tuple[tuple[float, float], ...] | None = None


def list_snapshots(folder: Path) -> list[Path]:
    """Image files of a snapshot folder, by name."""
    if not folder.is_dir():
        raise SourceError(f"snapshot folder {folder} does not exist")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise SourceError(f"{folder}: no snapshots ({', '.join(IMAGE_SUFFIXES)})")
    return found


def read_counts(path: Path, folder: Path, zone_ids: list[str]) -> list[CountedSnapshot]:
    """Parse ``counts.csv`` (see the module doc); every problem is one clear error."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise SourceError(f"cannot read counts {path}: {exc.strerror or exc}") from None
    if not rows:
        raise SourceError(f"{path}: empty; header must be 'file,count[,zone:<id>...]'")
    header = [c.strip() for c in rows[0]]
    if header[:2] != ["file", "count"]:
        raise SourceError(f"{path}: header must start with 'file,count', got {','.join(header)}")
    zones = [h.removeprefix(ZONE_PREFIX) for h in header[2:]]
    bad = [h for h in header[2:] if not h.startswith(ZONE_PREFIX)]
    if bad:
        raise SourceError(f"{path}: extra columns must be 'zone:<zone id>', got {bad[0]!r}")
    unknown = [z for z in zones if z not in zone_ids]
    if unknown:
        raise SourceError(
            f"{path}: zone {unknown[0]!r} is not a zone of this camera ({', '.join(zone_ids)})"
        )
    out: list[CountedSnapshot] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        if len(row) > len(header):
            raise SourceError(f"{path}:{line}: {len(row)} values for {len(header)} columns")
        image = folder / cells[0]
        if not image.is_file():
            raise SourceError(f"{path}:{line}: snapshot {image} does not exist")
        try:
            per_zone = {z: int(cells[2 + i]) for i, z in enumerate(zones)} if zones else None
            total = int(cells[1]) if cells[1] else sum((per_zone or {}).values())
        except ValueError:
            raise SourceError(f"{path}:{line}: counts must be whole numbers") from None
        if (
            (not cells[1] and not zones)
            or total < 0
            or any(v < 0 for v in (per_zone or {}).values())
        ):
            raise SourceError(f"{path}:{line}: a count must be a whole number >= 0")
        if per_zone is not None and sum(per_zone.values()) > total:
            raise SourceError(f"{path}:{line}: zone counts add up to more than count {total}")
        out.append(CountedSnapshot(image, total, per_zone))
    if not out:
        raise SourceError(f"{path}: no snapshot rows")
    return out


def write_counts(path: Path, snaps: list[CountedSnapshot], zone_ids: list[str]) -> None:
    """Write ``counts.csv`` (per-zone columns when every snapshot has them)."""
    with_zones = all(s.zones is not None for s in snaps) and bool(zone_ids)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["file", "count", *([f"{ZONE_PREFIX}{z}" for z in zone_ids] if with_zones else [])]
        )
        for s in snaps:
            extra = [(s.zones or {}).get(z, 0) for z in zone_ids] if with_zones else []
            w.writerow([s.path.name, s.count, *extra])


def write_clicks(path: Path, snaps: list[CountedSnapshot]) -> None:
    """Write the clicked foot points of every snapshot (``file,x,y``)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "x", "y"])
        for s in snaps:
            for x, y in s.points or ():
                w.writerow([s.path.name, f"{x:.1f}", f"{y:.1f}"])


def read_clicks(path: Path, snaps: list[CountedSnapshot]) -> list[CountedSnapshot]:
    """``snaps`` with their clicked points from ``clicks.csv`` (see :func:`write_clicks`).

    Every snapshot's number of clicks must equal its count, or the two files
    disagree about who is in the picture: that is an error, not a guess.
    """
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise SourceError(f"cannot read clicks {path}: {exc.strerror or exc}") from None
    if not rows or [c.strip() for c in rows[0]] != ["file", "x", "y"]:
        raise SourceError(f"{path}: header must be 'file,x,y'")
    points: dict[str, list[tuple[float, float]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, x, y = row[0].strip(), float(row[1]), float(row[2])
        except (IndexError, ValueError):
            raise SourceError(f"{path}:{line}: expected file,x,y with numbers") from None
        points.setdefault(name, []).append((x, y))
    out = []
    for s in snaps:
        pts = points.get(s.path.name, [])
        if len(pts) != s.count:
            raise SourceError(
                f"{path}: {s.path.name} has {len(pts)} clicks but a count of {s.count}"
            )
        out.append(CountedSnapshot(s.path, s.count, s.zones, tuple(pts)))
    return out


def write_camera_model(config_path: Path, camera_id: str, fields: dict[str, Any]) -> None:
    """Set ``cameras[camera_id].model`` in the YAML file, keeping comments and layout.

    The edited text is validated as a device config (the same schema
    ``lobbywatch config check`` uses) before it replaces the file atomically,
    so a failed write leaves the old file as it was.
    """
    from io import StringIO

    from ruamel.yaml import YAML

    from lobbywatch.edge.config import parse_device_config

    yaml = YAML()  # round-trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    text = config_path.read_text()
    data = yaml.load(text)
    cams = data.get("cameras") or []
    target = next((c for c in cams if str(c.get("id")) == camera_id), None)
    if target is None:
        raise ConfigError(f"{config_path}: no camera {camera_id!r}")
    target["model"] = fields
    buf = StringIO()
    yaml.dump(data, buf)
    new_text = buf.getvalue()
    parse_device_config(
        new_text, base_dir=config_path.resolve().parent, source=str(config_path), check_files=False
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{config_path.name}.", dir=config_path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new_text)
        os.chmod(tmp, config_path.stat().st_mode & 0o777)
        os.replace(tmp, config_path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def run_calibration(
    config_path: Path,
    camera_id: str,
    snaps: list[CountedSnapshot],
    models: list[str] | None = None,
    sizes: list[str] | None = None,
    write: bool = True,
    echo: Any = typer.echo,
    ttas: list[str] | None = None,
) -> Any:
    """Search, print the decision with before/after error, and write it into the config."""
    from lobbywatch.edge.calibration import (
        SIZES,
        THRESHOLDS,
        Setting,
        calibrate,
        located_error,
    )
    from lobbywatch.edge.config import load_device_config
    from lobbywatch.edge.detector import Detector
    from lobbywatch.edge.evaluation import read_frame
    from lobbywatch.edge.zones import ZoneMap
    from lobbywatch.models.registry import load_catalogue

    cfg = load_device_config(config_path, check_files=False)
    cam = next((c for c in cfg.cameras if c.id == camera_id), None)
    if cam is None:
        known = ", ".join(c.id for c in cfg.cameras)
        raise ConfigError(f"{config_path}: no camera {camera_id!r} (cameras: {known})")
    device = cfg.model
    # The default is the device-wide setting, not a previous calibration.
    default = Setting.of(device)
    models = models or list(load_catalogue())
    sizes = sizes or list(SIZES)
    low = min(THRESHOLDS)
    frames = [read_frame(s.path) for s in snaps]
    detectors: dict[tuple[str, str, str], Detector] = {}
    cache: dict[tuple[str, str, str, int], Any] = {}

    def detect(model: str, size: str, i: int, tta: str = "off") -> Any:
        if (model, size, tta, i) not in cache:
            if (model, size, tta) not in detectors:
                settings = Setting(model, size, low, tta).detector_settings(device)
                if model == device.name and device.path is not None:
                    settings = settings.model_copy(update={"path": device.path})
                detectors[(model, size, tta)] = Detector.from_settings(settings)
            cache[(model, size, tta, i)] = detectors[(model, size, tta)].detect(frames[i])
        return cache[(model, size, tta, i)]

    per_zone = all(s.zones is not None for s in snaps)
    # Clicked positions say more than counts: a setting whose false boxes
    # offset its misses counts right but is wrong, and scores so here.
    located = all(s.points is not None for s in snaps)
    error = (
        located_error([np.asarray(s.points, np.float64) for s in snaps], by="points")
        if located
        else None
    )
    zone_ids = [z.id for z in cam.zones]
    if per_zone:
        maps: dict[tuple[int, int], ZoneMap] = {}

        def count(det: Any, i: int) -> npt.NDArray[np.int64]:
            h, w = frames[i].shape[:2]
            zm = maps.setdefault((w, h), ZoneMap.from_specs(cam.zones, w, h))
            return zm.counts(zm.zone_of(det.foot_points()))

        truth = [[(s.zones or {}).get(z, 0) for z in zone_ids] for s in snaps]
    else:

        def count(det: Any, i: int) -> npt.NDArray[np.int64]:
            return np.array([len(det)], np.int64)

        truth = [[s.count] for s in snaps]
    res = calibrate(
        detect, truth, default, models, sizes, THRESHOLDS, count=count, error=error,
        ttas=ttas or ["off"],
    )  # fmt: skip
    if located:
        unit = "people per snapshot (missed or boxed off a clicked person)"
    else:
        unit = "people per snapshot" + (", summed over zones" if per_zone else "")
    echo(f"camera {camera_id}: {len(snaps)} snapshots, {sum(s.count for s in snaps)} people")
    echo(
        f"default : {default.model} size {default.size} threshold {default.threshold:g}"
        f" tta {default.tta}  error {res.error_before:.2f} {unit}"
    )
    echo(
        f"chosen  : {res.chosen.model} size {res.chosen.size} threshold {res.chosen.threshold:g}"
        f" tta {res.chosen.tta}  error {res.error_after:.2f} {unit}"
    )
    echo(f"why     : {res.reason}")
    for c, err, j in res.table[:3]:
        echo(f"  ranked: {c.model} size {c.size} threshold {c.threshold:g} tta {c.tta}  "
             f"error {err:.2f}, "
             f"with prior {j:.2f}")  # fmt: skip
    if write:
        fields: dict[str, Any] = {}
        if res.chosen != default:
            chosen = res.chosen.detector_settings(device)
            fields = {
                "name": chosen.name,
                "input_size": chosen.input_size,
                "max_upscale": chosen.max_upscale,
                "min_input_size": chosen.min_input_size,
                "score_threshold": chosen.score_threshold,
                "tta": chosen.tta,
            }
        fields["calibration"] = {
            "snapshots": len(snaps),
            "error_before": round(res.error_before, 4),
            "error_after": round(res.error_after, 4),
            "per_zone": per_zone and not located,
            "objective": "points" if located else "count",
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_camera_model(config_path, camera_id, fields)
        echo(f"written : cameras[{camera_id}].model in {config_path}")
    return res


def register(app: typer.Typer) -> None:
    """Attach the ``calibrate`` command to the root app."""

    @app.command("calibrate")
    def calibrate_(
        config: Path = typer.Option(..., "--config", "-c", help="device config (YAML) to update"),
        camera: str = typer.Option(..., "--camera", help="camera id in that config"),
        snapshots: Path = typer.Option(..., "--snapshots", help="folder of snapshots (jpg/png)"),
        counts: Path | None = typer.Option(
            None, "--counts", help="counts.csv: file,count[,zone:<id>...] (default: DIR/counts.csv)"
        ),
        web: bool = typer.Option(
            False, "--web", help="count by clicking people on a local page (127.0.0.1)"
        ),
        port: int = typer.Option(8095, "--port", help="port of the --web page"),
        model: list[str] | None = typer.Option(
            None, "--model", help="models to try (repeatable; default: every catalogue model)"
        ),
        size: list[str] | None = typer.Option(
            None, "--size", help="input sizes to try (repeatable; default: all, see docs)"
        ),
        tta: list[str] | None = typer.Option(
            None,
            "--tta",
            help="test-time augmentations to try (repeatable: off, flip; default off only: "
            "flip doubles inference and measured no robust gain, docs/accuracy.md round 8)",
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the choice, do not write"),
    ) -> None:
        """Choose model, input size and score threshold for one camera from counted snapshots.

        Prints the choice with the count error before (device default) and after, and
        writes it into the camera's `model` section of the config (schema-validated).
        """
        from lobbywatch.edge.calibration import TTAS, size_fields
        from lobbywatch.edge.config import load_device_config
        from lobbywatch.models.registry import load_catalogue

        cfg = load_device_config(config, check_files=False)
        cam = next((c for c in cfg.cameras if c.id == camera), None)
        if cam is None:
            known = ", ".join(c.id for c in cfg.cameras)
            raise ConfigError(f"{config}: no camera {camera!r} (cameras: {known})")
        for m in model or []:
            if m not in load_catalogue():
                known = ", ".join(sorted(load_catalogue()))
                raise ConfigError(f"--model {m!r} is not a catalogue model ({known})")
        for t in tta or []:
            if t not in TTAS:
                raise ConfigError(f"--tta {t!r} is not one of {', '.join(TTAS)}")
        for s in size or []:
            try:
                size_fields(s)
            except ValueError as exc:
                raise ConfigError(f"--size: {exc}") from None
        images = list_snapshots(snapshots)
        zone_ids = [z.id for z in cam.zones]
        if web:
            from lobbywatch.edge.calibrate_web import collect_counts

            snaps = collect_counts(images, cam.zones, port=port, echo=typer.echo)
            write_counts(snapshots / "counts.csv", snaps, zone_ids)
            write_clicks(snapshots / CLICKS_FILE, snaps)
            typer.echo(f"counts  : saved to {snapshots / 'counts.csv'} and {CLICKS_FILE}")
        else:
            snaps = read_counts(counts or snapshots / "counts.csv", snapshots, zone_ids)
            if counts is None and (snapshots / CLICKS_FILE).is_file():
                snaps = read_clicks(snapshots / CLICKS_FILE, snaps)
                typer.echo(f"clicks  : positions from {snapshots / CLICKS_FILE}")
        run_calibration(
            config, camera, snaps, model or None, size or None, write=not dry_run, ttas=tta or None
        )
