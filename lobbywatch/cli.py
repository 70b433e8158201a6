"""The ``lobbywatch`` command.

Each concept owns its subcommands in its own module; this file only assembles
them and turns :class:`~lobbywatch.errors.LobbywatchError` into a one-line
message and exit status 2 (no stack trace for a mistake a user can fix).
"""

from __future__ import annotations

import sys

import typer

from lobbywatch import __version__
from lobbywatch.demo import demo_cli, sim_cli
from lobbywatch.edge import agent_cli, calibrate_cli, eval_cli
from lobbywatch.edge import cli as edge_cli
from lobbywatch.errors import LobbywatchError
from lobbywatch.models import cli as models_cli
from lobbywatch.server import cli as server_cli
from lobbywatch.server import report_cli

app = typer.Typer(
    name="lobbywatch",
    help="Camera-based queue monitoring for bank branches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lobbywatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Camera-based queue monitoring for bank branches."""


models_cli.register(app)
edge_cli.register(app)
agent_cli.register(app)
eval_cli.register(app)
calibrate_cli.register(app)
server_cli.register(app)
sim_cli.register(app)
demo_cli.register(app)
report_cli.register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except LobbywatchError as exc:
        for line in error_lines(exc):
            typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
        sys.exit(2)


def error_lines(exc: LobbywatchError) -> list[str]:
    """The user-facing lines of an error: one per problem of an invalid config, so
    six problems are six readable lines rather than one long one."""
    problems = getattr(exc, "problems", None)
    source = getattr(exc, "source", None)
    if isinstance(problems, list) and problems and isinstance(source, str):
        return [f"{source}: {p}" for p in problems]
    return [str(exc)]


if __name__ == "__main__":  # pragma: no cover
    main()
