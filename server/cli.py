"""Subcommands of ``lobbywatch`` owned by this package (see ``lobbywatch/cli.py``)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

server_app = typer.Typer(
    name="server",
    help="Central collector: ingest, estimation, alerts, storage, API.",
    no_args_is_help=True,
)


@server_app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "-c", help="SERVER.yaml"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING..."),
    record: Path | None = typer.Option(
        None,
        "--record",
        help="append every received message to this file (input of `server replay`)",
    ),
) -> None:
    """Run the collector until SIGINT/SIGTERM."""
    from lobbywatch.outputs import output_file
    from lobbywatch.server.collector import Collector
    from lobbywatch.server.config import load_server_config

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = load_server_config(config)
    if record is not None:
        output_file(record, "--record")
    collector = Collector(cfg, record_to=record)
    stop = threading.Event()

    def _signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    collector.start()
    typer.echo(
        f"collector running: MQTT {cfg.mqtt.host}:{cfg.mqtt.port}, "
        f"HTTP http://{cfg.http.host}:{collector.http_port}"
    )
    try:
        stop.wait()
    finally:
        collector.stop()


@server_app.command("check-config")
def check_config(config: Path = typer.Argument(..., help="SERVER.yaml")) -> None:
    """Validate SERVER.yaml and exit (status 2 with the field path on error)."""
    from lobbywatch.server.config import load_server_config

    cfg = load_server_config(config)
    typer.echo(
        f"ok: {len(cfg.branches)} branches, {len(cfg.notify.sinks)} sinks, "
        f"{len(cfg.notify.routes)} routes"
    )


@server_app.command("replay")
def replay(
    config: Path = typer.Option(..., "--config", "-c", help="SERVER.yaml"),
    messages: Path = typer.Option(
        ..., "--messages", help="recorded stream: one {received_at, topic, payload} per line"
    ),
    out: Path = typer.Option(..., "--out", help="output JSON lines (alert events, estimates)"),
    estimates_every: float | None = typer.Option(
        None,
        "--estimates-every",
        help="also write every waiting zone's estimate every S seconds of simulated time",
    ),
) -> None:
    """Run the collector's ingest, estimator, alerts and timers over a recorded stream.

    Same code and scheduling as `server run`, in simulated time, as fast as it can;
    nothing is notified and the configured database is not touched. Formats:
    docs/collector.md ("Replay").
    """
    from lobbywatch.errors import LobbywatchError
    from lobbywatch.outputs import output_file, write_error
    from lobbywatch.server.config import load_server_config
    from lobbywatch.server.replay import replay_files

    cfg = load_server_config(config)
    if estimates_every is not None and estimates_every <= 0:
        raise LobbywatchError("--estimates-every must be > 0 seconds")
    output_file(out, "--out")
    try:
        f = out.open("w", encoding="utf-8")
    except OSError as exc:
        raise write_error(out, "--out", exc) from None
    with f:
        summary = replay_files(cfg, messages, f, estimates_every_s=estimates_every)
    typer.echo(
        f"replayed {summary.messages} messages: {summary.alert_events} alert events, "
        f"{summary.estimates} estimates -> {out}"
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands and groups to the root app."""
    app.add_typer(server_app, name="server")
