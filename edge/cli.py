"""Pipeline commands of ``lobbywatch`` (see ``lobbywatch/cli.py``).

* ``lobbywatch count VIDEO_OR_STREAM --config DEVICE.yaml``: run one camera's
  pipeline on a file, image folder or live stream, with a progress bar, an
  optional annotated video and an optional per-frame CSV.
* ``lobbywatch zones preview --config DEVICE.yaml --out preview.png``: one frame
  with the camera's zones and the detector's boxes drawn, to check a zone layout.

Heavy imports (OpenCV, onnxruntime) happen inside the commands so that
``lobbywatch --help`` stays fast.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lobbywatch.errors import ConfigError, LobbywatchError
from lobbywatch.outputs import output_file, write_error

if TYPE_CHECKING:
    from lobbywatch.edge.config import CameraConfig, DeviceConfig

zones_app = typer.Typer(help="Check a camera's zones.", no_args_is_help=True)

#: Annotated-video container -> FourCC. VP8 in WebM is what this OpenCV build can
#: write that browsers play; its FFmpeg has no H.264 encoder, and MPEG-4 Part 2
#: (mp4v) in .mp4 plays in desktop players (VLC, mpv) but not in browsers.
_VIDEO_CODECS = {".webm": "VP80", ".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def _camera(cfg: DeviceConfig, camera_id: str | None) -> CameraConfig:
    """The camera named ``camera_id``, or the only one."""
    ids = [c.id for c in cfg.cameras]
    if camera_id is None:
        if len(cfg.cameras) == 1:
            return cfg.cameras[0]
        raise ConfigError(f"the config has cameras {', '.join(ids)}; choose one with --camera")
    for cam in cfg.cameras:
        if cam.id == camera_id:
            return cam
    raise ConfigError(f"no camera {camera_id!r} in the config (cameras: {', '.join(ids)})")


def _csv_header(zone_ids: tuple[str, ...]) -> list[str]:
    cols = ["frame", "ts", "detections", "tracks_confirmed"]
    for z in zone_ids:
        cols += [f"{z}_people", f"{z}_raw", f"{z}_arrivals", f"{z}_departures"]
    return cols


def count(
    source: str = typer.Argument(
        ...,
        metavar="VIDEO_OR_STREAM",
        help="video file, image folder or glob, rtsp:// or http(s):// URL, or device index",
    ),
    config: Path = typer.Option(..., "--config", "-c", help="device config (YAML)"),
    camera: str | None = typer.Option(
        None, "--camera", help="camera id whose zones to use (required if several)"
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="write an annotated video here: .webm (VP8, plays in browsers), .mp4 (mp4v: "
        "desktop players only, not browsers) or .avi (MJPG). Zones are tinted with their "
        "counts; boxes are tracks labelled #N (track id), #N? (not seen this frame: "
        "predicted box); grey boxes are not yet confirmed. Missing folders are created.",
    ),
    csv_path: Path | None = typer.Option(
        None,
        "--csv",
        help="write per-frame counts here (one row per processed frame); missing folders "
        "are created",
    ),
    fps_sample: float | None = typer.Option(
        None,
        "--fps-sample",
        min=0,
        help="frames per second of source time to process; default: the camera's fps "
        "from the config (what the edge box does); 0: every frame",
    ),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=1, help="stop after this many processed frames"
    ),
    source_fps: float | None = typer.Option(
        None,
        "--source-fps",
        min=0.001,
        help="frame rate of an image sequence (default 1 per second), or override of a "
        "video file's own",
    ),
) -> None:
    """Count people per zone on a video, image sequence or stream.

    Files run as fast as the detector allows; streams run live until they end or
    Ctrl-C. Prints a per-zone summary at the end.
    """
    import cv2
    import numpy as np
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from lobbywatch.edge.annotate import Annotator
    from lobbywatch.edge.config import load_device_config
    from lobbywatch.edge.detector import Detector
    from lobbywatch.edge.pipeline import CameraPipeline, FrameResult
    from lobbywatch.edge.video import open_source

    # The source is given on the command line: the camera streams' passwords, TLS and
    # credential files the config names are not needed to count a video, so they are
    # not required; the zones, pipeline and model settings still are validated.
    cfg = load_device_config(config, check_files=False)
    cam = _camera(cfg, camera)
    codec = None
    if out is not None:
        codec = _VIDEO_CODECS.get(out.suffix.lower())
        if codec is None:
            raise LobbywatchError(f"--out {out}: use a .webm, .mp4 or .avi file name")
        output_file(out, "--out")
    if csv_path is not None:
        output_file(csv_path, "--csv")
    sample = cam.fps if fps_sample is None else fps_sample
    zone_ids = tuple(z.id for z in cam.zones)
    console = Console(stderr=True)

    writer: Any = None
    csv_file = None
    annotator: Annotator | None = None
    last: FrameResult | None = None
    processed = 0
    completed: list[list[float]] = [[] for _ in zone_ids]
    started = time.perf_counter()
    # The source is opened before the model is loaded: a wrong path fails in milliseconds.
    with open_source(source, sample_fps=sample, fps=source_fps) as src:
        pipeline = CameraPipeline(cam.zones, cfg.pipeline, Detector.from_settings(cfg.model))
        total = src.expected_frames(sample or None)
        if max_frames is not None:
            total = max_frames if total is None else min(total, max_frames)
        try:
            if csv_path is not None:
                try:
                    csv_file = csv_path.open("w", newline="")
                except OSError as exc:
                    raise write_error(csv_path, "--csv", exc) from None
                rows = csv.writer(csv_file)
                rows.writerow(_csv_header(zone_ids))
            if out is not None and codec is not None:
                out_fps = min(sample, src.fps) if sample and src.fps else (sample or src.fps or 2.0)
                writer = cv2.VideoWriter(
                    str(out), cv2.VideoWriter.fourcc(*codec), out_fps, src.size
                )
                if not writer.isOpened():
                    # The folder was checked above, so this is the encoder.
                    raise LobbywatchError(
                        f"--out {out}: this OpenCV build cannot encode {codec} video; "
                        "use .avi (MJPG)"
                    )
            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} fps"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            with progress:
                task = progress.add_task(f"{cam.id}", total=total, rate=0.0)
                try:
                    for frame in src:
                        result = pipeline.process(frame.image, frame.ts)
                        last = result
                        processed += 1
                        for k, state in enumerate(result.zones):
                            completed[k].extend(state.completed_dwells_s)
                        if csv_file is not None:
                            row: list[object] = [
                                frame.index,
                                f"{frame.ts:.3f}",
                                len(result.detections),
                                int(result.tracks.confirmed.sum()),
                            ]
                            for s in result.zones:
                                row += [s.people, s.raw_count, s.arrivals_total, s.departures_total]
                            rows.writerow(row)
                        if writer is not None:
                            zm = pipeline.zone_map
                            if annotator is None or annotator.zone_map is not zm:
                                assert zm is not None
                                annotator = Annotator(zm)
                            image = annotator.draw_result(frame.image, result)
                            if frame.size != src.size:  # image folders may mix sizes
                                image = np.asarray(cv2.resize(image, src.size), np.uint8)
                            writer.write(image)
                        rate = processed / max(time.perf_counter() - started, 1e-9)
                        progress.update(task, advance=1, rate=rate)
                        if max_frames is not None and processed >= max_frames:
                            break
                except KeyboardInterrupt:
                    console.print("interrupted; writing what was processed")
        finally:
            if csv_file is not None:
                csv_file.close()
            if writer is not None:
                writer.release()

    elapsed = time.perf_counter() - started
    typer.echo(
        f"{processed} frame(s) of {src.description} in {elapsed:.1f} s "
        f"({processed / max(elapsed, 1e-9):.1f} fps), camera {cam.id}"
    )
    if last is not None:
        for k, s in enumerate(last.zones):
            done = completed[k]
            mean = f", mean completed dwell {sum(done) / len(done):.1f} s" if done else ""
            flows = (
                f" ({s.service_starts_total} service starts, {s.walk_outs_total} walk-outs, "
                f"{s.departures_unseen_total} unseen)"
                if s.service_starts_total is not None
                else ""
            )
            typer.echo(
                f"  {s.zone} ({s.kind.value}): {s.people} now, {s.arrivals_total} arrivals, "
                f"{s.departures_total} departures{flows}{mean}"
            )
    if csv_path is not None:
        typer.echo(f"counts: {csv_path}")
    if out is not None:
        typer.echo(f"annotated video: {out}")


@zones_app.command("preview")
def preview(
    config: Path = typer.Option(..., "--config", "-c", help="device config (YAML)"),
    out: Path = typer.Option(
        ..., "--out", help="image to write (.png or .jpg); missing folders are created"
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        metavar="VIDEO_OR_IMAGE",
        help="video, image, folder, URL or device; default: the camera's source",
    ),
    camera: str | None = typer.Option(
        None, "--camera", help="camera id whose zones to draw (required if several)"
    ),
    frame: int = typer.Option(0, "--frame", min=0, help="index of the frame to use"),
    detect: bool = typer.Option(
        True, "--detect/--no-detect", help="run the detector and draw its boxes"
    ),
) -> None:
    """Draw a camera's zones (and detected people) on one frame of its view."""
    import cv2

    from lobbywatch.edge.annotate import Annotator
    from lobbywatch.edge.config import load_device_config
    from lobbywatch.edge.detections import Detections
    from lobbywatch.edge.video import open_source
    from lobbywatch.edge.zones import ZoneMap

    # With --source, like `count`: the camera's stream secrets and broker files are not needed.
    cfg = load_device_config(config, check_files=source is None)
    cam = _camera(cfg, camera)
    if out.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
        raise LobbywatchError(f"--out {out}: use a .png or .jpg file name")
    output_file(out, "--out")
    spec = source if source is not None else cam.source
    picked = None
    with open_source(spec) as src:
        for f in src:
            if f.index >= frame:
                picked = f
                break
        described = src.description
    if picked is None:
        raise LobbywatchError(f"{described} has no frame {frame}")
    image = picked.image.copy()
    zm = ZoneMap.from_specs(cam.zones, *picked.size)
    ann = Annotator(zm)
    dets = Detections.empty()
    if detect:
        from lobbywatch.edge.detector import Detector

        dets = Detector.from_settings(cfg.model).detect(image)
    raw = zm.counts(zm.zone_of(dets.foot_points()))
    texts = [
        f"{z.id}: {int(n)} detected" if detect else z.id
        for z, n in zip(cam.zones, raw, strict=True)
    ]
    ann.draw_zones(image, texts=texts)
    ann.draw_detections(image, dets)
    if not cv2.imwrite(str(out), image):
        raise LobbywatchError(f"--out {out}: cannot write image")
    summary = ", ".join(t for t in texts)
    typer.echo(f"{out}: frame {picked.index} of {described}, {picked.size[0]}x{picked.size[1]}")
    typer.echo(f"  {summary}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands and groups to the root app."""
    app.command("count")(count)
    app.add_typer(zones_app, name="zones")
