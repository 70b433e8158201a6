"""``lobbywatch simulate``: publish simulated branches' zone states over MQTT."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import typer

from lobbywatch.errors import LobbywatchError
from lobbywatch.protocol import DEFAULT_ROOT, AnyMessage


def rebase_to(messages: Iterable[AnyMessage], start: float) -> Iterator[AnyMessage]:
    """Shift every timestamp so the stream's first message is observed at ``start``.

    A collector judges liveness and waits by the observation time in each
    message, so a simulated day dated in the past would show every device down;
    a live simulation must look as if it were happening now.
    """
    shift: float | None = None
    for msg in messages:
        ts = msg.ts.timestamp()
        if shift is None:
            shift = start - ts
        yield msg.model_copy(update={"ts": datetime.fromtimestamp(ts + shift, UTC)})


def simulate(
    branches: int = typer.Option(1, "--branches", min=1, help="branches simulated at once"),
    scenario_kind: str = typer.Option(
        "normal",
        "--scenario",
        help="scenario family: normal, lunch_break, understaffed, vip, restart (classic) or "
        "hard_normal, hard_lunch, hard_absent, hard_understaffed, hard_priority, hard_restart "
        "(walk-outs, balking, staff breaks, occlusions, publish on change + heartbeat)",
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the whole run (deterministic)"),
    host: str = typer.Option("127.0.0.1", "--host", help="MQTT broker host"),
    port: int = typer.Option(1883, "--port", help="MQTT broker port"),
    qos: int = typer.Option(0, "--qos", min=0, max=1, help="MQTT QoS of the publications"),
    speed: float = typer.Option(
        1.0, "--speed", min=0, help="simulated seconds per real second; 0 = as fast as possible"
    ),
    interval: float = typer.Option(
        5.0,
        "--interval",
        min=0.1,
        help="seconds between reports (classic families; hard_* publish on change + heartbeat)",
    ),
    counters_zones: bool = typer.Option(
        True, "--counter-zones/--no-counter-zones", help="also publish one zone per counter"
    ),
    root: str = typer.Option(DEFAULT_ROOT, "--root", help="topic root"),
    username: str | None = typer.Option(
        None, "--username", envvar="LOBBYWATCH_MQTT_USERNAME", help="MQTT user name"
    ),
    password: str | None = typer.Option(
        None,
        "--password",
        envvar="LOBBYWATCH_MQTT_PASSWORD",
        help="MQTT password (visible in the process list: prefer the variable or the file)",
    ),
    password_file: Path | None = typer.Option(
        None,
        "--password-file",
        help="read the MQTT password from this file (keeps it out of the process list)",
    ),
    live: bool = typer.Option(
        False,
        "--live",
        help="date the simulated day from now and publish in real time (for a running "
        "collector); implies --speed 1",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="print the messages instead of publishing, one per line: the topic, a space, "
        "the JSON payload",
    ),
    tickets: bool = typer.Option(
        False,
        "--tickets/--no-tickets",
        help="also publish each branch's ticket system: a ticket issued per customer who "
        "joins the queue, called at service start, cancelled at a walk-out "
        "(…/{branch}/_tickets/qms-1/events, not retained)",
    ),
    truth: Path | None = typer.Option(
        None,
        "--truth",
        help="write every simulated customer's true wait to this CSV (missing folders are created)",
    ),
) -> None:
    """Simulate bank branches and publish their zone states as edge devices would.

    Arrivals with morning and lunch peaks, several counters, FCFS or VIP
    priority, and detection noise (missed and extra people); the hard_* families
    add walk-outs, balking, staff breaks and absent counters, high-variance
    service times, occlusion spells, phantom and lost tracks, and publish on
    change plus heartbeat.
    """
    from lobbywatch.demo import simulator

    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise LobbywatchError(f"cannot read --password-file {password_file}: {exc}") from exc
    if live:
        speed = 1.0
    try:
        scenarios = [
            simulator.scenario(
                scenario_kind,
                i,
                seed,
                report_interval_s=interval,
                counter_zones=counters_zones,
            )
            for i in range(branches)
        ]
    except ValueError as exc:
        raise LobbywatchError(str(exc)) from exc
    if truth is not None:
        from lobbywatch.outputs import output_file, write_error

        output_file(truth, "--truth")
        try:
            f = truth.open("w", newline="")
        except OSError as exc:
            raise write_error(truth, "--truth", exc) from None
        with f:
            out = csv.writer(f)
            # columns after "counter" were added with the harder simulator (append only)
            out.writerow(
                [
                    "branch",
                    "customer",
                    "arrival",
                    "vip",
                    "wait_s",
                    "service_s",
                    "counter",
                    "outcome",
                    "class",
                    "left_queue",
                    "service_start",
                ]
            )
            for sc in scenarios:
                for cu in simulator.simulate_customers(sc):
                    out.writerow(
                        [
                            sc.branch,
                            cu.id,
                            f"{cu.arrival:.3f}",
                            int(cu.vip),
                            f"{cu.wait_s:.3f}",
                            f"{cu.service_s:.3f}",
                            cu.counter + 1 if cu.served else "",
                            cu.outcome,
                            cu.klass,
                            f"{cu.left_queue:.3f}",
                            f"{cu.service_start:.3f}" if cu.served else "",
                        ]
                    )
    messages: Iterable[AnyMessage] = simulator.merged_messages(
        scenarios, status=True, tickets=tickets
    )
    if live:
        messages = rebase_to(messages, time.time())
    if dry_run:
        for msg in messages:
            sys.stdout.write(f"{simulator.topic_for(msg, root)} {msg.model_dump_json()}\n")
        return
    try:
        sent = simulator.publish(
            messages,
            host=host,
            port=port,
            qos=qos,
            speed=speed,
            root=root,
            username=username,
            password=password,
            on_progress=lambda n: typer.echo(f"{n} messages published", err=True),
        )
    except OSError as exc:
        raise LobbywatchError(f"cannot publish to {host}:{port}: {exc}") from exc
    typer.echo(f"published {sent} messages from {branches} branch(es)")


def register(app: typer.Typer) -> None:
    """Attach ``simulate`` to the root app."""
    app.command("simulate")(simulate)
