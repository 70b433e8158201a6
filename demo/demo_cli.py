"""``lobbywatch demo``: the whole system on one machine (see ``server/demo.py``)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    broker: str | None = typer.Option(
        None,
        "--broker",
        metavar="HOST:PORT",
        help="use this MQTT 5 broker instead of starting a private Mosquitto",
    ),
    branches: int = typer.Option(3, "--branches", min=1, max=200, help="simulated branches"),
    speed: float = typer.Option(
        1.0,
        "--speed",
        min=0.1,
        max=600,
        help="demo seconds per real second (1 = real time; 30 = a branch-day in ~16 min)",
    ),
    http_port: int = typer.Option(
        8080, "--http-port", min=0, max=65535, help="API, /metrics and board; 0 = any free port"
    ),
    http_host: str = typer.Option("127.0.0.1", "--http-host", help="address to serve HTTP on"),
    no_edge: bool = typer.Option(
        False, "--no-edge", help="skip the real edge pipeline on the sample video"
    ),
    video: Path | None = typer.Option(
        None, "--video", help="video for the edge pipeline (default: shared vtest.avi)"
    ),
    duration: float | None = typer.Option(
        None, "--duration", min=0.1, help="stop after this many seconds (default: until Ctrl-C)"
    ),
    workdir: Path | None = typer.Option(
        None,
        "--workdir",
        help="keep the database, configs and logs here (default: a temporary folder, removed)",
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the simulated fleet"),
) -> None:
    """Run the whole system on this machine; Ctrl-C stops it.

    A private Mosquitto, the collector on SQLite, simulated branches, one real
    edge pipeline on the sample video, a live terminal view and the lobby board.
    """
    from lobbywatch.demo.demo import DemoOptions, run_demo

    if workdir is not None:
        from lobbywatch.outputs import output_folder

        output_folder(workdir, "--workdir")

    code = run_demo(
        DemoOptions(
            broker=broker,
            branches=branches,
            speed=speed,
            http_host=http_host,
            http_port=http_port,
            edge=not no_edge,
            duration=duration,
            workdir=workdir,
            seed=seed,
            video=video,
        )
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Attach ``demo`` to the root app."""
    app.command("demo")(demo)
