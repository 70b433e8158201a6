"""``lobbywatch model ...``: fetch, list and verify detector weights."""

from __future__ import annotations

from pathlib import Path

import typer

from lobbywatch.models import registry


def register(app: typer.Typer) -> None:
    """Attach the ``model`` group to the root app."""
    group = typer.Typer(help="Fetch, list and verify detector weights.", no_args_is_help=True)

    @group.command("pull")
    def pull(
        name: str | None = typer.Argument(
            None, help="model name in models/catalogue.yaml (default: every catalogue model)"
        ),
        source: str | None = typer.Option(
            None, "--from", help="mirror folder, file or base URL (default: catalogue URLs)"
        ),
        dest: Path | None = typer.Option(
            None, "--dest", help="target folder (default: the user cache)"
        ),
        int8: bool = typer.Option(
            False, "--int8", help="also derive the INT8 variant (static QDQ, vtest.avi frames)"
        ),
        calibration: Path | None = typer.Option(
            None, "--calibration", help="video for INT8 calibration (default: shared vtest.avi)"
        ),
    ) -> None:
        """Fetch a model (default: all), check its size and sha256, store it atomically."""
        if dest is not None:
            from lobbywatch.outputs import output_folder

            output_folder(dest, "--dest")
        names = [name] if name is not None else list(registry.load_catalogue())
        for each in names:
            path = registry.pull(each, source=source, dest=dest)
            typer.echo(f"{each}: {path} (sha256 verified)")
            if int8:
                from lobbywatch.edge.quantize import derive_int8

                out = derive_int8(
                    registry.resolve_model(each, explicit_path=path), path.parent, calibration
                )
                typer.echo(f"{each} int8: {out} (derived)")

    @group.command("list")
    def list_() -> None:
        """Show catalogue models, where each resolves, and whether it verifies."""
        for spec, variant, path, status in registry.list_models():
            if path is None:
                typer.echo(f"{spec.name:12s} {variant:5s} missing  {status}")
            else:
                typer.echo(f"{spec.name:12s} {variant:5s} ok       {path}")

    @group.command("verify")
    def verify(
        name: str = typer.Argument("bytetrack_nano", help="catalogue model name"),
        path: Path | None = typer.Option(None, "--path", help="check this file instead"),
        variant: str = typer.Option("fp32", help="fp32 or int8"),
    ) -> None:
        """Resolve a model and check its checksum (or provenance) and graph."""
        if variant not in registry.VARIANTS:
            from lobbywatch.errors import ModelError

            raise ModelError(f"unknown variant {variant!r}; use fp32 or int8")
        resolved = registry.resolve_model(name, explicit_path=path, variant=variant)
        typer.echo(f"{resolved.name} {resolved.variant}: {resolved.path} ok")

    app.add_typer(group, name="model")
