"""``lobbywatch report daily``: the daily service report as an HTML file."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer

from lobbywatch.errors import ConfigError
from lobbywatch.outputs import output_file

report_app = typer.Typer(
    name="report", help="Service reports for branch and region managers.", no_args_is_help=True
)


@report_app.command("daily")
def daily(
    day: str = typer.Option(..., "--date", help="local calendar day, YYYY-MM-DD"),
    config: Path = typer.Option(..., "--config", "-c", help="SERVER.yaml (database, branches)"),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
    branch: str | None = typer.Option(None, "--branch", help="one branch id"),
    region: str | None = typer.Option(None, "--region", help="every branch of a region"),
    lang: str | None = typer.Option(
        None, "--lang", help="en | zh-CN (default: the branch's or region's locale)"
    ),
) -> None:
    """Write one day's service report (self-contained HTML with PNG charts)."""
    from lobbywatch.server.config import load_server_config
    from lobbywatch.server.i18n import Translator, validate_locale
    from lobbywatch.server.report import branch_day, branches_for, render_report
    from lobbywatch.server.store import Store

    try:
        d = date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"--date: {day!r} is not a date (YYYY-MM-DD)") from None
    if branch is not None and region is not None:
        raise ConfigError("--branch and --region: give at most one")
    cfg = load_server_config(config)
    try:
        ids = branches_for(cfg, branch, region)
        locale = validate_locale(lang) if lang else None
    except ValueError as exc:
        raise ConfigError(
            f"{'--lang' if lang and 'locale' in str(exc) else 'report'}: {exc}"
        ) from None
    output_file(out, "--out")
    if locale is None:
        rc = cfg.regions.get(region or "")
        locale = (rc.locale if rc and rc.locale else None) or cfg.locale_for(ids[0])
    _existing_database(cfg.database.url)
    store = Store(cfg.database.url)
    try:
        store.migrate()
        days = [branch_day(cfg, store, b, d) for b in ids]
    finally:
        store.close()
    page, images = render_report(days, Translator(locale), time.time())
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out}: {len(ids)} branch(es), {len(images)} charts, {len(page)} bytes")


def _existing_database(url: str) -> None:
    """A report only reads: refuse a SQLite file that does not exist instead of creating
    an empty database (and its lock file) wherever the command happens to run."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    if parsed.database == ":memory:" or not Path(parsed.database).is_file():
        raise ConfigError(
            f"database.url: no collector database at {parsed.database!r} "
            f"(relative to {Path.cwd()}): run the report where the collector keeps its "
            "database, or point --config at the collector's own config"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
