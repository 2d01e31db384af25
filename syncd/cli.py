"""Command line: parsing and printing only; every decision lives below this layer."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .config import EX_CONFIG, Config, ConfigError, load_config
from .logging import configure_logging

EX_TEMPFAIL = 75
EX_NOINPUT = 66  # a log file given to `syncd logs` cannot be read
EX_UNAVAILABLE = 69
EX_UNHEALTHY = 2


class Context:
    def __init__(self, config_path: str | None, log_level: str | None, log_format: str | None):
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._config: Config | None = None

    def config(self, *, secrets: bool = True, log_to_stdout: bool = False) -> Config:
        """Load the config and set up logging (see `setup_logging`)."""
        try:
            config = load_config(self.config_path, require_secrets=secrets)
        except ConfigError as exc:
            fail_config(str(exc))
        self._config = config
        self.setup_logging(config, log_to_stdout=log_to_stdout)
        return config

    def setup_logging(self, config: Config, *, log_to_stdout: bool = False) -> None:
        """Logging as the config says, unless a command-line flag says otherwise.

        The daemon prints nothing else, so its log is stdout (journald's stream); one-shot
        commands print their results on stdout and log to stderr, whatever the format, so
        `--json` output stays parseable.  Called again by the daemon on SIGHUP.
        """
        configure_logging(
            self.log_level or config.syncd.log_level,
            self.log_format or config.syncd.log_format,
            stream=sys.stdout if log_to_stdout else sys.stderr,
        )


def fail_config(message: str) -> NoReturn:
    click.echo(f"syncd: config error: {message}", err=True)
    sys.exit(EX_CONFIG)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="SYNCD_CONFIG", help="Config file (TOML).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default=None)
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, log_level: str | None, log_format: str | None
) -> None:
    """syncd keeps Click Maint and mantenimiento work orders in step, both ways."""
    ctx.obj = Context(config_path, log_level, log_format)


# -- daemon and one-shot runs ------------------------------------------------------------------
@cli.command()
@pass_ctx
def run(ctx: Context) -> None:
    """Run the daemon (the systemd service's ExecStart)."""
    from .service import Daemon, LockHeld

    config = ctx.config(log_to_stdout=True)
    try:
        code = Daemon(
            config, setup_logging=lambda new: ctx.setup_logging(new, log_to_stdout=True)
        ).run()
    except LockHeld as exc:
        click.echo(f"syncd: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    sys.exit(code)


@cli.command()
@click.option("--once", is_flag=True, required=True, help="Run every enabled stream once.")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--dry-run", is_flag=True, help="Read both servers, print the plan, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle reports as JSON.")
@pass_ctx
def sync(ctx: Context, once: bool, streams: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Run one sync cycle now (use `syncd run` for the daemon)."""
    from .service import LockHeld, run_once

    config = ctx.config()
    signals: list[str] = []
    try:
        reports = run_once(
            config,
            streams=list(streams),
            dry_run=dry_run,
            progress=_progress(),
            signals=signals,
        )
    except LockHeld as exc:
        click.echo(f"syncd: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except KeyError as exc:
        raise click.BadParameter(f"unknown stream {exc}", param_hint="--stream") from None
    _print_reports(reports, as_json=as_json, dry_run=dry_run)
    sys.exit(_exit_code(reports, signals))


@cli.command()
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--since", help="Re-read Click Maint changes since this ISO date/time.")
@click.option("--full", is_flag=True, help="Re-read everything on both sides.")
@click.option(
    "--prefer",
    type=click.Choice(["clickmaint", "mantenimiento"]),
    help="Resolve both-sides differences found by the resync in favour of this side.",
)
@click.option("--rebaseline", is_flag=True, help="Accept a changed mapping configuration.")
@click.option("--dry-run", is_flag=True, help="Print the plan, write nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def resync(
    ctx: Context,
    streams: tuple[str, ...],
    since: str | None,
    full: bool,
    prefer: str | None,
    rebaseline: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """One-shot manual resync: resumable, never deletes, prints a summary."""
    from .service import LockHeld, run_resync

    config = ctx.config()
    if since and full:
        raise click.UsageError("--since and --full exclude each other")
    if not (yes or dry_run) and sys.stdin.isatty():
        what = "everything on both sides" if full else f"changes since {since or 'the watermark'}"
        click.confirm(f"Resync {what}?", abort=True)
    signals: list[str] = []
    try:
        reports = run_resync(
            config,
            streams=list(streams),
            full=full,
            since=since,
            prefer=prefer,
            rebaseline=rebaseline,
            dry_run=dry_run,
            progress=_progress(),
            signals=signals,
        )
    except LockHeld as exc:
        click.echo(f"syncd: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    _print_reports(reports, as_json=as_json, dry_run=dry_run)
    sys.exit(_exit_code(reports, signals))


def _exit_code(reports: list[Any], signals: list[str]) -> int:
    """0 when every stream did its work (`partial`: the budget ran out, the rest follows) or
    was stopped by SIGTERM (systemd stopping the unit: the run is resumable, not failed)."""
    fine = ("ok", "partial", "stopped") if "SIGTERM" in signals else ("ok", "partial")
    return 0 if all(r.status in fine for r in reports) else 1


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None
    last = {"t": float("-inf")}  # the first report always draws

    def show(what: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last["t"] < 0.2:
            return
        last["t"] = now
        bar = ""
        if total:
            filled = int(30 * done / max(total, 1))
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        click.echo(f"\r{what:<22} {bar}", nl=False, err=True)

    return show


def _print_reports(reports: list[Any], *, as_json: bool, dry_run: bool) -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)
    if as_json:
        out = [r.summary() | {"planned": [p.__dict__ for p in r.planned]} for r in reports]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for report in reports:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(report.counts.items())) or "nothing to do"
        click.echo(
            f"{report.stream}: {report.status} ({counts}); "
            f"Click Maint requests: {report.cm_requests}"
        )
        if report.error:
            click.echo(f"  error: {report.error}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        if dry_run:
            if not report.planned:
                click.echo("  dry run: no writes would be made")
            for planned in report.planned:
                click.echo(f"  would {planned.line()}")


# -- operator views -------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Health per stream; exits 2 when unhealthy (for monitoring)."""
    from .views import status_report

    config = ctx.config(secrets=False)
    report = status_report(config)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from .views import render_status

        click.echo(render_status(report))
    sys.exit(0 if report["healthy"] else EX_UNHEALTHY)


@cli.command()
@click.argument("record")
@click.option("--json", "as_json", is_flag=True)
@click.option("--stream", default=None)
@pass_ctx
def history(ctx: Context, record: str, as_json: bool, stream: str | None) -> None:
    """Every action on one record: `clickmaint:<id>` or `mantenimiento:<id>` (a work order,
    OT, request or aviso), or `clickmaint:tx:<id>` (a part transaction)."""
    from .views import history_rows, render_table, transaction_rows

    side, _, record_id = record.partition(":")
    aliases = {"clickmaint": "cm", "cm": "cm", "mantenimiento": "mt", "mt": "mt"}
    if side not in aliases or not record_id:
        raise click.BadParameter(
            "use clickmaint:<id>, mantenimiento:<id> or clickmaint:tx:<id>", param_hint="RECORD"
        )
    if aliases[side] == "cm" and record_id.startswith("tx:"):
        rows = transaction_rows(ctx.config(secrets=False), record_id[3:])
    else:
        rows = history_rows(ctx.config(secrets=False), aliases[side], record_id, stream=stream)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no history for {record}")
        return
    click.echo(render_table(rows, ["at", "run_id", "stream", "action", "cm_id", "mt_id", "detail"]))


@cli.group()
def ledger() -> None:
    """Look inside the ledger."""


@ledger.command("show")
@click.argument("record")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ledger_show(ctx: Context, record: str, as_json: bool) -> None:
    """Show the link of `clickmaint:<id>` or `mantenimiento:<id>` (base, seen, state)."""
    from .views import link_details

    side, _, record_id = record.partition(":")
    if side not in ("clickmaint", "mantenimiento", "cm", "mt") or not record_id:
        raise click.BadParameter("use clickmaint:<id> or mantenimiento:<id>", param_hint="RECORD")
    details = link_details(
        ctx.config(secrets=False), "cm" if side.startswith("c") else "mt", record_id
    )
    if not details:
        click.echo(f"{record} is not linked")
        sys.exit(1)
    click.echo(json.dumps(details, indent=2, ensure_ascii=False) if as_json else _pretty(details))


@ledger.command("find")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ledger_find(ctx: Context, text: str, as_json: bool) -> None:
    """Find links by id or by text in their snapshots (title, description…)."""
    from .views import find_links, render_table

    rows = find_links(ctx.config(secrets=False), text)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        click.echo(render_table(rows, ["stream", "cm_id", "mt_id", "state", "title", "updated_at"]))
    else:
        click.echo("nothing found")


@cli.group()
def conflicts() -> None:
    """List, inspect and resolve conflicts."""


@conflicts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved and automatic ones.")
@click.option("--stream", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def conflicts_list(ctx: Context, show_all: bool, stream: str | None, as_json: bool) -> None:
    from .views import conflict_rows, render_table

    rows = conflict_rows(
        ctx.config(secrets=False), status=None if show_all else "open", stream=stream
    )
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        click.echo(
            render_table(
                rows,
                [
                    "id",
                    "stream",
                    "cm_id",
                    "mt_id",
                    "field",
                    "cm_value",
                    "mt_value",
                    "policy",
                    "status",
                ],
            )
        )
    else:
        click.echo("no open conflicts" if not show_all else "no conflicts")


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def conflicts_show(ctx: Context, conflict_id: int, as_json: bool) -> None:
    from .views import conflict_details

    details = conflict_details(ctx.config(secrets=False), conflict_id)
    if details is None:
        click.echo(f"no conflict #{conflict_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps(details, indent=2, ensure_ascii=False) if as_json else _pretty(details))


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option(
    "--take",
    type=click.Choice(["clickmaint", "mantenimiento", "value"]),
    required=True,
    help="Whose value wins, or `value` with --value.",
)
@click.option("--value", "value", help="The value to write (Click Maint representation).")
@pass_ctx
def conflicts_resolve(ctx: Context, conflict_id: int, take: str, value: str | None) -> None:
    """Decide a conflict; the next cycle writes the decision to both sides."""
    from .views import resolve_conflict

    if take == "value" and value is None:
        raise click.UsageError("--take value needs --value")
    try:
        message = resolve_conflict(ctx.config(secrets=False), conflict_id, take, value)
    except (KeyError, ValueError) as exc:
        click.echo(f"syncd: {exc.args[0] if exc.args else exc}", err=True)
        sys.exit(1)
    click.echo(message)


@cli.group()
def quarantine() -> None:
    """Records set aside (unreadable, unmappable or refused); retried with back-off."""


@quarantine.command("list")
@click.option("--stream", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def quarantine_list(ctx: Context, stream: str | None, as_json: bool) -> None:
    from .views import quarantine_rows, render_table

    rows = quarantine_rows(ctx.config(secrets=False), stream=stream)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        columns = ["stream", "side", "record_id", "reason", "attempts", "next_retry_at"]
        click.echo(render_table(rows, columns))
    else:
        click.echo("quarantine is empty")


@quarantine.command("retry")
@click.argument("record", required=False)
@click.option("--stream", default=None, help="Only this stream's records.")
@pass_ctx
def quarantine_retry(ctx: Context, record: str | None, stream: str | None) -> None:
    """Retry now instead of after the back-off: one `clickmaint:<id>` / `mantenimiento:<id>`,
    or everything (of --stream). Useful after fixing the cause (a vocabulary, a material)."""
    from .views import retry_quarantined

    side = record_id = None
    if record is not None:
        prefix, _, record_id = record.partition(":")
        aliases = {"clickmaint": "cm", "cm": "cm", "mantenimiento": "mt", "mt": "mt"}
        if prefix not in aliases or not record_id:
            raise click.BadParameter(
                "use clickmaint:<id> or mantenimiento:<id>", param_hint="RECORD"
            )
        side = aliases[prefix]
    try:
        count = retry_quarantined(
            ctx.config(secrets=False), stream=stream, side=side, record_id=record_id
        )
    except KeyError as exc:
        click.echo(f"syncd: {exc.args[0]}", err=True)
        sys.exit(1)
    click.echo(f"{count} quarantined record(s) will be retried by the next cycle")


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--stream", default=None)
@click.option("--record", default=None, help="A record id (either side), or clickmaint:<id>.")
@click.option("--run", "run_id", default=None)
@click.option("--since", default=None, help="ISO time or relative (30m, 2h, 1d).")
@click.option("--until", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print matching lines as JSON.")
def logs(
    files: tuple[str, ...],
    level: str | None,
    stream: str | None,
    record: str | None,
    run_id: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Filter syncd's JSON logs (files, or stdin: `journalctl -u syncd -o cat | syncd logs`)."""
    from .logview import LogFilter, filter_lines, parse_when, render_line

    try:
        flt = LogFilter(
            level=level,
            stream=stream,
            record=record,
            run_id=run_id,
            since=parse_when(since) if since else None,
            until=parse_when(until) if until else None,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    handles: list[Any] = []
    try:
        for source in files or ("-",):  # every file is opened before anything is printed
            try:
                handles.append(
                    sys.stdin if source == "-" else open(source, encoding="utf-8", errors="replace")  # noqa: SIM115
                )
            except OSError as exc:
                click.echo(f"syncd: cannot read {source}: {exc.strerror or exc}", err=True)
                sys.exit(EX_NOINPUT)
        matched = 0
        for handle in handles:
            for event in filter_lines(handle, flt):
                matched += 1
                click.echo(json.dumps(event, ensure_ascii=False) if as_json else render_line(event))
    finally:
        for handle in handles:
            if handle is not sys.stdin:
                handle.close()
    sys.exit(0 if matched else 1)


@cli.command()
@click.option("--offline", is_flag=True, help="Only validate the configuration.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def check(ctx: Context, offline: bool, as_json: bool) -> None:
    """Validate config, reach both servers, authenticate, report vocabularies."""
    from .checks import load_credentials, run_checks

    # a missing or unreadable credential is the credentials line's FAIL, not a config error
    config, problems = load_credentials(ctx.config(secrets=False))
    results = run_checks(config, online=not offline, credential_problems=problems)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            mark = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}[r.status]
            click.echo(f"{mark}  {r.name}: {r.detail}")
    sys.exit(1 if any(r.status == "fail" for r in results) else 0)


# -- sandbox ----------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--cm-port", default=8801, show_default=True, help="Click Maint simulator port (0 = any)."
)
@click.option(
    "--mt-port", default=8802, show_default=True, help="mantenimiento simulator port (0 = any)."
)
@click.option(
    "--work-orders", default=300, show_default=True, help="Seeded Click Maint work orders."
)
@click.option("--ots", default=300, show_default=True, help="Seeded mantenimiento OTs.")
@click.option(
    "--requests", default=40, show_default=True, help="Seeded Click Maint work-order requests."
)
@click.option("--avisos", default=40, show_default=True, help="Seeded mantenimiento avisos.")
@click.option("--seed", default=1, show_default=True, help="Seed of the data generator.")
@click.option(
    "--chaos",
    default="",
    help="Fault injection: 'all' (every fault at its chaos rate) and/or name=value pairs, "
    "e.g. 'all,seed=7' or 'error_rate=0.05,latency_ms_max=50'.  Names: latency_ms_min, "
    "latency_ms_max, error_rate, timeout_rate, timeout_delay, burst_429_rate, "
    "burst_429_length, malformed_json_rate, html_error_rate, page_drift_rate, "
    "session_expiry_rate, malformed_record_rate, seed (rates are per request, 0-1).",
)
@click.option(
    "--variant",
    multiple=True,
    help="Click Maint behaviour, repeatable name=value: per_page_default, per_page_cap, "
    "rate_limit, rate_window (seconds), updated_at_filter, updated_at_sort, "
    "part_touch_on_transaction, approve_creates_work_order (true/false).",
)
@click.option(
    "--dir",
    "directory",
    default=".sandbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the generated config, credentials and ledger go.",
)
def sandbox(
    cm_port: int,
    mt_port: int,
    work_orders: int,
    ots: int,
    requests: int,
    avisos: int,
    seed: int,
    chaos: str,
    variant: tuple[str, ...],
    directory: Path,
) -> None:
    """Start both simulated servers on loopback with seed data (Ctrl-C stops)."""
    from .sandbox.faults import FaultConfig
    from .sandbox.launch import start_sandbox

    configure_logging("warning", "console", stream=sys.stderr)
    try:
        faults = FaultConfig.parse_spec(chaos) if chaos else None
        cm_variant = _variant(variant)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    box = start_sandbox(
        cm_port=cm_port,
        mt_port=mt_port,
        work_orders=work_orders,
        ots=ots,
        requests=requests,
        avisos=avisos,
        seed=seed,
        chaos=faults,
        variant=cm_variant,
        directory=directory.resolve(),
    )
    click.echo(
        f"""syncd sandbox is running (Ctrl-C to stop)
  Click Maint   {box.cm_url}   (API key: cm-sandbox-key, X-Entity-Id: 1)
  mantenimiento {box.mt_url}/mantenimiento/   (login: syncd / syncd-sandbox-pass)
  control API   {box.cm_server.url}/_sim/stats   {box.mt_url}/_sim/stats

Point syncd at it:
  export SYNCD_CONFIG={box.config_path}
  export CREDENTIALS_DIRECTORY={box.credentials_dir}
  syncd check && syncd sync --once && syncd status

Try:  curl -H 'Authorization: Bearer cm-sandbox-key' -H 'X-Entity-Id: 1' \\
           '{box.cm_url}/work_orders?per_page=2'
"""
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    box.stop()


def _variant(items: tuple[str, ...]) -> Any:
    if not items:
        return None
    from .sandbox.clickmaint_sim import ClickMaintVariant

    variant = ClickMaintVariant()
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"bad --variant {item!r}: expected name=value")
        current = getattr(variant, key.strip(), None)
        if current is None:
            raise ValueError(f"unknown variant {key!r}")
        if isinstance(current, bool):
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(f"bad --variant {item!r}: {key.strip()} is true or false")
            values[key.strip()] = word in ("1", "true", "yes", "on")
        elif isinstance(current, int):
            values[key.strip()] = int(raw)
        else:
            values[key.strip()] = float(raw)
    variant.update(values)
    return variant


@cli.command()
@click.option(
    "--duration", default=60.0, show_default=True, help="Seconds to run (0 = until Ctrl-C)."
)
@click.option("--interval", default=5.0, show_default=True, help="Seconds between sync cycles.")
@click.option("--edits-per-cycle", default=3, show_default=True, help="Random edits on each side.")
@click.option(
    "--dir",
    "directory",
    default=".sandbox/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--seed", type=int, help="Replay the driver's edits of an earlier run (printed).")
def demo(
    duration: float, interval: float, edits_per_cycle: int, directory: Path, seed: int | None
) -> None:
    """Sandbox + daemon + a driver editing both sides: watch records sync live."""
    from .demo import run_demo

    sys.exit(
        run_demo(
            duration=duration,
            interval=interval,
            edits=edits_per_cycle,
            directory=directory,
            seed=seed,
        )
    )


def _pretty(data: dict[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        lines.append(f"{key:>16}: {value}")
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:  # pragma: no cover - safety net, commands handle it
        fail_config(str(exc))
