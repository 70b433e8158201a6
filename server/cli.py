"""Subcommands of ``lobbywatch`` owned by this package (see ``lobbywatch/cli.py``)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from lobbywatch.errors import ConfigError

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
    # Alembic announces its plugins at INFO on every start: noise in front of what matters
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    cfg = load_server_config(config)
    if record is not None:
        output_file(record, "--record")
    collector = Collector(cfg, record_to=record)
    stop = threading.Event()
    starting = True

    def _signal(signum: int, _frame: object) -> None:
        stop.set()
        if starting:
            # honoured during start-up too (a database that never answers): the
            # exception unwinds whatever start() is waiting in
            raise _Terminated(signum)

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    try:
        collector.start()
    except _Terminated:
        typer.echo("collector stopped by a signal during start-up", err=True)
        _stop_quietly(collector)
        raise typer.Exit(0) from None
    except Exception as exc:
        typer.echo(f"error: {startup_error(cfg, exc)}", err=True)
        _stop_quietly(collector)
        raise typer.Exit(2) from None
    starting = False
    typer.echo(
        f"collector running: MQTT {cfg.mqtt.host}:{cfg.mqtt.port}, "
        f"HTTP http://{cfg.http.host}:{collector.http_port}"
    )
    try:
        stop.wait()
    finally:
        collector.stop()


class _Terminated(Exception):
    """SIGTERM/SIGINT arrived while the collector was starting."""


def _stop_quietly(collector: object) -> None:
    try:
        collector.stop()  # type: ignore[attr-defined]
    except Exception as exc:  # best effort after a failed start; the cause is printed
        logging.getLogger(__name__).debug("stop after a failed start: %s", exc)


def startup_error(cfg: object, exc: BaseException) -> str:
    """One line: what failed at start, where (password masked), and the fix."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from lobbywatch.errors import ConfigError
    from lobbywatch.server.spool import SpoolError
    from lobbywatch.server.store import mask_url

    db = cfg.database  # type: ignore[attr-defined]
    url = mask_url(db.url)
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, SpoolError | ConfigError):
        return str(exc)
    if isinstance(exc, OperationalError | DBAPIError) or "sqlite" in type(exc).__module__:
        return (
            f"database {url} unusable: {first}. Fix: check database.url and that the "
            f"database server is running and reachable (gave up after "
            f"database.connect_timeout_s={db.connect_timeout_s:g} s)"
        )
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {first}. Fix: check http.host/http.port and file paths"
    return f"start-up failed: {type(exc).__name__}: {first} (database {url})"


@server_app.command("add-credential")
def add_credential_cmd(
    file: Path = typer.Option(..., "--file", help="the http.credentials_file"),
    name: str = typer.Option(..., "--name", help="user / token name"),
    role: str = typer.Option("read", "--role", help="read, metrics or admin"),
    if_missing: bool = typer.Option(False, "--if-missing", help="no-op if NAME exists"),
    token_out: Path | None = typer.Option(
        None, "--token-out", help="write the bearer token here (0600) instead of printing it"
    ),
    owner: str | None = typer.Option(
        None, "--owner", help="UID:GID to own FILE and the token file (container set-up)"
    ),
) -> None:
    """Append a credential (scrypt-hashed) to FILE; its secret is shown (or written) once."""
    import os

    from lobbywatch.errors import LobbywatchError
    from lobbywatch.outputs import output_file
    from lobbywatch.server.auth import add_credential, load_credentials

    try:
        output_file(file, "--file")
        if token_out is not None:
            output_file(token_out, "--token-out")
        if if_missing and file.exists() and name in load_credentials(file):
            typer.echo(f"{name} already in {file}")
            return
        secret = add_credential(file, name, role)
        if token_out is not None:
            token_out.parent.mkdir(parents=True, exist_ok=True)
            token_out.write_text(f"{name}.{secret}\n")
            token_out.chmod(0o600)
        if owner is not None:
            uid, _, gid = owner.partition(":")
            for path in (file, token_out):
                if path is not None:
                    os.chown(path, int(uid), int(gid or uid))
    except (LobbywatchError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if token_out is None:
        typer.echo(f"user {name}, password {secret}")
        typer.echo(f"bearer token: {name}.{secret}")
    else:
        typer.echo(f"{name} ({role}) added to {file}; token in {token_out}")


@server_app.command("check-config")
def check_config(
    config: Path | None = typer.Argument(None, metavar="SERVER.yaml", help="SERVER.yaml"),
    config_opt: Path | None = typer.Option(
        None, "--config", "-c", help="SERVER.yaml (same as the argument, like `server run -c`)"
    ),
) -> None:
    """Validate SERVER.yaml and exit (status 2 with the field path on error)."""
    from lobbywatch.server.config import load_server_config

    if (config is None) == (config_opt is None):
        raise ConfigError("server check-config: give SERVER.yaml once (argument or --config)")
    config = config if config is not None else config_opt
    assert config is not None
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
    from lobbywatch.outputs import output_file, written_whole
    from lobbywatch.server.config import load_server_config
    from lobbywatch.server.replay import replay_files

    cfg = load_server_config(config)
    if estimates_every is not None and estimates_every <= 0:
        raise LobbywatchError("--estimates-every must be > 0 seconds")
    output_file(out, "--out")
    # an input error half way leaves no OUT that looks complete (nor spoils an old one)
    with written_whole(out, "--out") as f:
        summary = replay_files(cfg, messages, f, estimates_every_s=estimates_every)
    skipped = ", ".join(f"{n} {result}" for result, n in summary.not_applied.items())
    typer.echo(
        f"replayed {summary.messages} messages"
        + (f" (not applied: {skipped})" if skipped else "")
        + f": {summary.alert_events} alert events, {summary.estimates} estimates -> {out}"
    )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if summary.refused_by_reason:
        causes = ", ".join(f"{n} {cause}" for cause, n in summary.refused_by_reason.items())
        typer.echo(f"refused by cause: {causes} (docs/collector.md, Ingest)")


def register(app: typer.Typer) -> None:
    """Attach this module's commands and groups to the root app."""
    app.add_typer(server_app, name="server")
