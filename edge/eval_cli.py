"""``lobbywatch eval DATASET_DIR``: counting and detection accuracy vs the plain baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lobbywatch.edge.detector import DetectorSettings
from lobbywatch.edge.evaluation import evaluate


def register(app: typer.Typer) -> None:
    """Attach the ``eval`` command to the root app."""

    @app.command("eval")
    def eval_(
        dataset: Path = typer.Argument(..., help="folder of sequences (frames/*.jpg + gt.csv)"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        model: str | None = typer.Option(
            None, "--model", help="catalogue model name (e.g. bytetrack_nano) or a weights file"
        ),
        variant: str = typer.Option("fp32", help="fp32 or int8"),
        input_size: int | None = typer.Option(None, help="override the network input side"),
        score: float | None = typer.Option(None, help="override the detector score threshold"),
        step: int = typer.Option(1, min=1, help="use every N-th frame"),
        fps: float | None = typer.Option(
            None, help="tracker frame rate for every sequence (default: per sequence)"
        ),
        no_baseline: bool = typer.Option(False, "--no-baseline", help="skip the 416 baseline"),
        max_upscale: float | None = typer.Option(
            None, help="override the largest magnification (4 = a fixed input size)"
        ),
        calibrate: int | None = typer.Option(
            None,
            "--calibrate",
            min=1,
            help="per sequence, calibrate model/input size/threshold on its first K frames "
            "(installer commissioning; K=5 is the target) and score only the rest",
        ),
        tta: str | None = typer.Option(
            None, "--tta", help="test-time augmentation of the detector: off or flip"
        ),
        box_width: str | None = typer.Option(
            None,
            "--box-width",
            help="catalogue (default: the model's box_width_scale) or native (boxes as decoded)",
        ),
        calibrate_tta: str = typer.Option(
            "off",
            "--calibrate-tta",
            help="test-time augmentations --calibrate searches (comma-separated: off, flip)",
        ),
        calibrate_by: str = typer.Option(
            "points",
            "--calibrate-by",
            help="what the K frames' ground truth stands for: points (the foot point of each "
            "person, as the --web clicks give), boxes (IoU 0.5), or count (counts.csv only)",
        ),
    ) -> None:
        """Run detector + tracker on every sequence; report count MAE, P/R@0.5, fps.

        Tracker time axis: each sequence's real frame spacing as its SOURCE.md
        states it (a video's rate after subsampling, a time-lapse's stated
        spacing), unless --fps is given. Each sequence also reports the
        single-frame count MAE (same detections, no history) and an
        identity-switch proxy (docs/accuracy.md).
        """
        if fps is not None and not fps > 0:
            from lobbywatch.errors import ConfigError

            raise ConfigError(f"--fps must be > 0 (frames per second of real time), got {fps}")
        overrides: dict[str, object] = {"variant": variant}
        if model is not None:
            from lobbywatch.models.registry import load_catalogue

            if model in load_catalogue():
                overrides["name"] = model
            elif model.endswith(".onnx") or Path(model).exists():
                overrides["path"] = Path(model)
            else:
                from lobbywatch.errors import ConfigError

                known = ", ".join(sorted(load_catalogue()))
                raise ConfigError(
                    f"--model {model!r} is neither a catalogue model ({known}) nor a .onnx file"
                )
        if max_upscale is not None:
            overrides["max_upscale"] = max_upscale
        if input_size is not None:
            overrides["input_size"] = input_size
        if score is not None:
            overrides["score_threshold"] = score
        if tta is not None:
            overrides["tta"] = tta
        if box_width is not None:
            overrides["box_width"] = box_width
        try:
            settings = DetectorSettings(**overrides)  # type: ignore[arg-type]
        except ValueError as exc:
            from lobbywatch.errors import ConfigError

            raise ConfigError(f"bad detector option: {exc}") from exc

        def progress(msg: str) -> None:
            if not as_json:
                typer.echo(msg, err=True)

        if calibrate is not None:
            from lobbywatch.edge.calibration import calibrated_json, evaluate_calibrated
            from lobbywatch.errors import ConfigError

            if step != 1:
                raise ConfigError(
                    "--calibrate scores consecutive frames; do not combine with --step"
                )
            if calibrate_by not in ("points", "boxes", "count"):
                raise ConfigError(
                    f"--calibrate-by must be points, boxes or count, got {calibrate_by!r}"
                )
            ttas = [t.strip() for t in calibrate_tta.split(",") if t.strip()]
            if not ttas or any(t not in ("off", "flip") for t in ttas):
                raise ConfigError(
                    "--calibrate-tta takes off and/or flip (comma-separated), "
                    f"got {calibrate_tta!r}"
                )
            report, records = evaluate_calibrated(
                dataset, calibrate, settings, with_baseline=not no_baseline, fps=fps,
                progress=progress, objective=calibrate_by, ttas=ttas,  # type: ignore[arg-type]
            )  # fmt: skip
            if as_json:
                sys.stdout.write(json.dumps(calibrated_json(report, records)) + "\n")
                return
        else:
            report = evaluate(
                dataset, settings, with_baseline=not no_baseline, step=step, fps=fps,
                progress=progress,
            )  # fmt: skip
            records = {}
            if as_json:
                out = report.to_json()
                for seq in out["sequences"]:
                    seq["frames_scored"] = seq["frames"]
                    seq["calibration"] = None
                out["overall"]["frames_scored"] = out["overall"]["frames"]
                sys.stdout.write(json.dumps(out) + "\n")
                return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"lobbywatch eval {dataset} (count = {report.counter})")
        for col in ("sequence", "frames", "MAE", "1-frame MAE", "raw MAE", "P@.5", "R@.5",
                    "id sw/links", "fps", "base MAE", "base P", "base R"):  # fmt: skip
            table.add_column(col, justify="left" if col == "sequence" else "right")
        rows = [*report.sequences, report.overall]
        for r in rows:
            b = r.baseline
            table.add_row(
                r.name, str(r.frames), f"{r.mae:.2f}",
                "-" if r.single_frame_mae is None else f"{r.single_frame_mae:.2f}",
                f"{r.raw_mae:.2f}", f"{r.precision:.2f}", f"{r.recall:.2f}",
                "-" if r.id_switches is None else f"{r.id_switches}/{r.id_links}",
                f"{r.fps:.1f}", f"{b.get('mae', float('nan')):.2f}",
                f"{b.get('precision', float('nan')):.2f}", f"{b.get('recall', float('nan')):.2f}",
                end_section=r is report.sequences[-1],
            )  # fmt: skip
        console = Console(width=max(Console().width, 120))  # keep sequence names readable
        console.print(table)
        for name, rec in records.items():
            console.print(
                f"{name}: calibrated on {rec.frames_used} frames -> {rec.model}, input "
                f"{rec.input_size} {rec.input_hw}, threshold {rec.threshold:g}, tta {rec.tta} "
                f"(objective "
                f"{rec.objective}); scored "
                f"{rec.frames_scored} frames ({rec.reason})"
            )
        spacing = ", ".join(
            f"{r.name} {r.frame_spacing_s:g} s ({r.timing})" for r in report.sequences
        )
        console.print(
            f"overall pools frames; mean of per-sequence MAE: {report.mae_sequence_mean:.2f} "
            f"(baseline {report.baseline_mae_sequence_mean:.2f}). Real frame spacing "
            f"(SOURCE.md): {spacing}."
        )
