"""Subcommands of ``lobbywatch`` owned by the edge agent (see ``lobbywatch/cli.py``).

``config check|schema``, ``edge run`` and ``device provision``. The ``edge`` group
may already exist (the pipeline's commands live in ``edge/cli.py``); ``run`` is
added to it rather than registering a second group of the same name.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

config_app = typer.Typer(
    help="Check device configs and print their JSON Schema.", no_args_is_help=True
)
device_app = typer.Typer(
    help="Provision edge devices (credentials, ACL, config).", no_args_is_help=True
)


@config_app.command("check")
def config_check(
    file: Path = typer.Argument(..., help="device config (YAML)"),
    no_files: bool = typer.Option(
        False,
        "--no-files",
        help="skip checks that referenced files and environment variables exist "
        "(check a production config off the device)",
    ),
) -> None:
    """Validate a device config: every error with its field path and YAML line (exit 2)."""
    from lobbywatch.edge.config import DeviceConfigError, load_device_config

    try:
        cfg = load_device_config(file, check_files=not no_files)
    except DeviceConfigError as exc:
        for problem in exc.problems:
            typer.secho(f"{file}: {problem}", err=True, fg=typer.colors.RED)
        n = len(exc.problems)
        typer.secho(f"{file}: {n} error{'s' if n != 1 else ''}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    zones = sum(len(c.zones) for c in cfg.cameras)
    metrics = f"{cfg.metrics.bind}:{cfg.metrics.port}" if cfg.metrics.enabled else "off"
    typer.echo(
        f"{file}: OK — device {cfg.device_id}, branch {cfg.branch_id}, "
        f"{len(cfg.cameras)} camera(s), {zones} zone(s); "
        f"MQTT {cfg.mqtt.host}:{cfg.mqtt.port} root {cfg.mqtt.root!r}"
        f"{' TLS' if cfg.mqtt.tls is not None else ''}"
        f"{' user ' + cfg.mqtt.username if cfg.mqtt.username else ' anonymous'}; "
        f"publish every change ≥{cfg.publish.min_interval_s:g}s, heartbeat "
        f"{cfg.publish.heartbeat_s:g}s, expiry {cfg.publish.message_expiry_s}s; "
        f"metrics {metrics}; "
        f"debug view {'on' if cfg.debug_view.enabled else 'off'}"
    )
    for cam in cfg.cameras:
        kinds = ", ".join(f"{z.id}({z.kind.value})" for z in cam.zones)
        typer.echo(f"  {cam.id}: {cam.fps:g} fps, zones {kinds}")


@config_app.command("schema")
def config_schema(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="write to this file (missing folders are created)"
    ),
) -> None:
    """Print the device config's JSON Schema (for editors)."""
    from lobbywatch.edge.config import device_json_schema

    text = json.dumps(device_json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        from lobbywatch.outputs import output_file, write_error

        output_file(out, "--out")
        try:
            out.write_text(text)
        except OSError as exc:
            raise write_error(out, "--out", exc) from None


def edge_run(
    config: Path = typer.Option(..., "--config", "-c", help="device config (YAML)"),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the edge agent: cameras -> people counts -> MQTT, until SIGTERM/SIGINT."""
    from lobbywatch.edge.agent import run_agent
    from lobbywatch.edge.config import load_device_config

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = load_device_config(config)
    raise typer.Exit(run_agent(cfg))


@device_app.command("provision")
def device_provision(
    branch: str = typer.Option(..., "--branch", help="branch id"),
    device: str = typer.Option(..., "--device", help="device id = MQTT username (unique)"),
    camera: list[str] = typer.Option(..., "--camera", help="camera id (repeat per camera)"),
    out: Path = typer.Option(..., "--out", help="folder; a sub-folder per device is created"),
    root: str = typer.Option("lobbywatch", "--root", help="MQTT topic root"),
    host: str = typer.Option("127.0.0.1", "--host", help="broker host for the config"),
    port: int = typer.Option(1883, "--port", help="broker port for the config"),
    tls: bool = typer.Option(False, "--tls", help="config connects with TLS"),
    force: bool = typer.Option(False, "--force", help="replace existing credentials"),
) -> None:
    """Create a device's broker credentials, its ACL block and a starter config."""
    from lobbywatch.edge.provision import provision_device
    from lobbywatch.outputs import output_folder

    output_folder(out, "--out")
    result = provision_device(
        branch=branch,
        device=device,
        cameras=camera,
        out=out,
        root=root,
        host=host,
        port=port,
        tls=tls,
        force=force,
    )
    typer.echo(f"device folder:   {result.folder}")
    typer.echo(f"  config:        {result.config} (edit camera sources and zones)")
    typer.echo(f"  password:      {result.password_file} (0600; install next to the config)")
    typer.echo(f"broker, append:  {result.passwd_line} -> mosquitto password_file")
    if not result.hashed:
        typer.echo("                 (mosquitto_passwd not found: run `mosquitto_passwd -U` on it)")
    typer.echo(f"                 {result.acl_block} -> mosquitto acl_file")
    typer.echo("then reload the broker: systemctl reload mosquitto (SIGHUP)")


@device_app.command("provision-tickets")
def device_provision_tickets(
    branch: str = typer.Option(..., "--branch", help="branch id"),
    source: str = typer.Option(..., "--source", help="ticket system id (its topic level)"),
    out: Path = typer.Option(..., "--out", help="folder; a sub-folder per MQTT user is created"),
    user: str | None = typer.Option(
        None, "--user", help="MQTT username (default tickets.<branch>.<source>)"
    ),
    root: str = typer.Option("lobbywatch", "--root", help="MQTT topic root"),
    force: bool = typer.Option(False, "--force", help="replace existing credentials"),
) -> None:
    """Create a ticket system's broker credentials and its ACL block (it may write only
    {root}/v1/<branch>/_tickets/<source>/events)."""
    from lobbywatch.edge.provision import provision_ticket_source
    from lobbywatch.outputs import output_folder

    output_folder(out, "--out")
    result = provision_ticket_source(
        branch=branch, source=source, out=out, user=user, root=root, force=force
    )
    typer.echo(f"ticket system:   {result.folder} (MQTT user {result.user})")
    typer.echo(f"  password:      {result.password_file} (0600; for the ticket system)")
    typer.echo(f"broker, append:  {result.passwd_line} -> mosquitto password_file")
    if not result.hashed:
        typer.echo("                 (mosquitto_passwd not found: run `mosquitto_passwd -U` on it)")
    typer.echo(f"                 {result.acl_block} -> mosquitto acl_file")
    typer.echo("then reload the broker: systemctl reload mosquitto (SIGHUP)")
    typer.echo(
        f"ticket system:   publish as {result.user} to {root}/v1/{branch}/_tickets/{source}/events"
    )
    typer.echo(
        f"collector:       optionally list it under branch {branch}: ticket_sources: [{source}]"
        " (then only listed sources are accepted); tickets for a zone it does not know yet"
        " (not in SERVER.yaml, no camera message) are refused"
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands and groups to the root app."""
    app.add_typer(config_app, name="config")
    app.add_typer(device_app, name="device")
    edge_group = next(
        (g.typer_instance for g in app.registered_groups if g.name == "edge" and g.typer_instance),
        None,
    )
    if edge_group is None:
        edge_group = typer.Typer(help="Edge device commands.", no_args_is_help=True)
        app.add_typer(edge_group, name="edge")
    edge_group.command("run")(edge_run)
