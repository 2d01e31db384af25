"""`syncd check`: is this installation able to sync, and if not, what exactly is wrong?

Each check is one line of verdict.  A remote failure is reported with the exception text (the
error types already carry server, method, path and a scrubbed body excerpt), never a
traceback: the operator running this is looking for the one thing to fix.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from .config import Config, ConfigError, read_credential
from .redact import redact_text, register_secret
from .systems.http import RetryPolicy

Status = Literal["pass", "warn", "fail"]

#: `check` is interactive: one quick retry, so a dead server answers in a second, not a minute
CHECK_RETRY = RetryPolicy(attempts=2, backoff_initial=0.2, backoff_max=1.0, jitter=0.1)

STRATEGY_NOTES = {
    "keyset": "",
    "desc": "no usable updated_at filter: changes are found by reading newest-first pages",
    "filter": "updated_at sort unsupported: offset pages inside the filter (less stable)",
    "full": "neither filter nor sort: every cycle re-reads all work orders (expensive)",
}


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str


def _error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact_text(text)


# -- local checks -----------------------------------------------------------------------------
def _check_config(config: Config) -> CheckResult:
    return CheckResult(
        "config",
        "pass",
        f"{config.source or '(no file)'} is valid; mapping fingerprint "
        f"{config.mapping_fingerprint()}",
    )


def _check_state_dir(config: Config) -> CheckResult:
    """Write a scratch file: permission bits lie (root, read-only mounts, ProtectSystem=)."""
    state = config.state_dir
    if not state.exists():
        parent = state.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if os.access(parent, os.W_OK):
            return CheckResult("state dir", "pass", f"{state} will be created on first run")
        return CheckResult(
            "state dir", "fail", f"{state} does not exist and {parent} is not writable"
        )
    if not state.is_dir():
        return CheckResult("state dir", "fail", f"{state} is not a directory")
    try:
        fd, scratch = tempfile.mkstemp(dir=state, prefix=".syncd-check-")
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        return CheckResult("state dir", "fail", f"{state} is not writable ({exc.strerror})")
    return CheckResult("state dir", "pass", f"{state} is writable")


def _check_ledger(config: Config) -> CheckResult:
    """Read-only, without migrating: a check must not change the ledger under the daemon."""
    from .ledger.db import connect, pending_migrations

    path = config.ledger_path
    if not path.exists():
        return CheckResult("ledger", "pass", f"no ledger yet at {path}; created on first run")
    try:
        db = connect(path, readonly=True)
    except (sqlite3.Error, OSError) as exc:
        return CheckResult("ledger", "fail", f"{path}: {_error(exc)}")
    try:
        pending = pending_migrations(db)
        if pending:
            return CheckResult(
                "ledger",
                "warn",
                f"{path}: {len(pending)} migration(s) pending ({', '.join(pending)}); applied "
                "when the daemon or a writing command next opens it",
            )
        row = db.execute("SELECT value FROM meta WHERE key = 'mapping_fingerprint'").fetchone()
        links = db.execute("SELECT COUNT(*) FROM links").fetchone()[0]
    except sqlite3.Error as exc:
        return CheckResult("ledger", "fail", f"{path}: {_error(exc)}")
    finally:
        db.conn.close()
    stored = None if row is None else json.loads(row[0])
    current = config.mapping_fingerprint()
    if not config.fingerprint_matches(stored):
        return CheckResult(
            "ledger",
            "warn",
            f"{path}: the mapping changed since the ledger's baseline ({stored} -> {current}); "
            "sync refuses to run until `syncd resync --rebaseline`",
        )
    return CheckResult("ledger", "pass", f"{path}: schema up to date, {links} link(s)")


def load_credentials(config: Config, env: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    """Read both secrets the way the daemon does, but keep going when one is missing or
    unreadable: `check` reports that as its credentials line (FAIL) instead of stopping at a
    config error.  Returns the config with the secrets that could be read, and the problems."""
    values: dict[str, SecretStr] = {}
    problems: list[str] = []
    for field, name in (
        ("clickmaint_api_key", config.clickmaint.api_key_credential),
        ("mantenimiento_password", config.mantenimiento.password_credential),
    ):
        try:
            value = read_credential(name, env)
        except ConfigError as exc:  # the message names the credential, never its value
            problems.append(str(exc))
            continue
        register_secret(value)
        values[field] = SecretStr(value)
    return config.model_copy(update=values), problems


def _check_credentials(config: Config, problems: list[str] | None = None) -> CheckResult:
    if problems:
        hint = ""
        if not os.environ.get("CREDENTIALS_DIRECTORY"):
            hint = (
                " (an installed service gets them through LoadCredential=: run the check "
                "with them as systemd/README.md shows)"
            )
        return CheckResult("credentials", "fail", "; ".join(problems) + hint)
    missing = [
        name
        for name, value in (
            (config.clickmaint.api_key_credential, config.clickmaint_api_key),
            (config.mantenimiento.password_credential, config.mantenimiento_password),
        )
        if value is None
    ]
    if missing:
        return CheckResult("credentials", "fail", f"not loaded: {', '.join(missing)}")
    return CheckResult(
        "credentials",
        "pass",
        f"{config.clickmaint.api_key_credential} and "
        f"{config.mantenimiento.password_credential} resolved (values not shown)",
    )


def _check_zones(config: Config) -> CheckResult:
    now = datetime.now(UTC)
    shown = []
    for label, zone in (
        ("mantenimiento server", config.mantenimiento.server_timezone),
        ("display", config.mantenimiento.display_timezone),
    ):
        offset = now.astimezone(ZoneInfo(zone)).strftime("%z")
        shown.append(f"{label} {zone} (UTC{offset[:3]}:{offset[3:]} now)")
    return CheckResult("time zones", "pass", "; ".join(shown))


# -- remote checks ----------------------------------------------------------------------------
def _attempt(name: str, body: Callable[[], CheckResult]) -> CheckResult:
    try:
        return body()
    except Exception as exc:  # every remote failure is one line, never a traceback
        return CheckResult(name, "fail", _error(exc))


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, "warn", f"skipped: {why}")


def _clickmaint_checks(app: Any, config: Config) -> list[CheckResult]:
    from .engine.cursor import choose_strategy

    entity = config.clickmaint.entity_id

    def reach() -> CheckResult:
        entities = app.cm.entities()
        ids = {e.get("id"): e.get("name") for e in entities if isinstance(e, dict)}
        if entity not in ids:
            return CheckResult(
                "clickmaint",
                "fail",
                f"API key accepted, but entity {entity} is not among its entities "
                f"{sorted(i for i in ids if i is not None)}",
            )
        return CheckResult(
            "clickmaint",
            "pass",
            f"{config.clickmaint.base_url} reachable, API key accepted, "
            f"entity {entity} ({ids[entity]})",
        )

    first = _attempt("clickmaint", reach)
    if first.status == "fail":
        why = "Click Maint is not usable"
        return [first, _skipped("capabilities", why), _skipped("vocabulary", why)]

    caps_holder: dict[str, Any] = {}

    def capabilities() -> CheckResult:
        caps = app.cm.detect_capabilities()
        caps_holder["caps"] = caps
        strategy = choose_strategy(caps)

        def yes(flag: bool | None) -> str:
            return "unknown (no work orders yet)" if flag is None else ("yes" if flag else "no")

        detail = (
            f"per_page cap {caps.per_page_cap}, updated_at filter {yes(caps.updated_at_filter)}, "
            f"sort {yes(caps.updated_at_sort)}, rate limit {caps.rate_limit} per "
            f"{config.clickmaint.rate_window_seconds:.0f}s; strategy {strategy}"
        )
        warnings = []
        if STRATEGY_NOTES.get(strategy):
            warnings.append(STRATEGY_NOTES[strategy])
        if caps.per_page_cap < config.clickmaint.per_page:
            warnings.append(
                f"clickmaint.per_page = {config.clickmaint.per_page} is capped to "
                f"{caps.per_page_cap} by the server"
            )
        if warnings:
            return CheckResult("capabilities", "warn", f"{detail}; fallback: {'; '.join(warnings)}")
        return CheckResult("capabilities", "pass", detail)

    def vocabulary() -> CheckResult:
        caps = caps_holder.get("caps")
        per_page = min(config.clickmaint.per_page, caps.per_page_cap if caps else 25)
        page = app.cm.list_page("/work_orders", page=1, per_page=per_page)
        seen: Counter[str] = Counter()
        ids: dict[str, Any] = {}
        for item in page.items:
            status = item.get("status") if isinstance(item, dict) else None
            if isinstance(status, dict) and isinstance(status.get("name"), str):
                seen[status["name"]] += 1
                ids[status["name"]] = status.get("id")
        known = config.vocabularies.status_to_estado
        unknown = sorted(n for n in seen if n not in known)
        wrong_ids = sorted(
            f"{n} is {ids[n]} on the server, {config.clickmaint.statuses[n]} in the config"
            for n in seen
            if n in config.clickmaint.statuses
            and ids.get(n) is not None
            and ids[n] != config.clickmaint.statuses[n]
        )
        summary = ", ".join(f"{n} ({c})" for n, c in sorted(seen.items())) or "none"
        base = f"statuses in the first {len(page.items)} work orders: {summary}"
        if unknown:
            return CheckResult(
                "vocabulary",
                "warn",
                f"{base}; not in vocabularies.status_to_estado: {', '.join(unknown)} "
                "(those work orders will be quarantined)",
            )
        if wrong_ids:
            return CheckResult(
                "vocabulary", "warn", f"{base}; clickmaint.statuses: {'; '.join(wrong_ids)}"
            )
        return CheckResult("vocabulary", "pass", f"{base}; all mapped")

    return [first, _attempt("capabilities", capabilities), _attempt("vocabulary", vocabulary)]


def _mantenimiento_checks(app: Any, config: Config) -> list[CheckResult]:
    def reach() -> CheckResult:
        today = app.mt.ots_today()
        ots = today.get("ots")
        count = f"{len(ots)} OT(s) listed for today" if isinstance(ots, list) else "answered"
        return CheckResult(
            "mantenimiento",
            "pass",
            f"{config.mantenimiento.base_url} reachable, login as "
            f"{config.mantenimiento.username} works ({count})",
        )

    def materials() -> CheckResult:
        first = next(iter(app.mt.iter_materials()), None)  # one page only
        if first is None:
            return CheckResult("materials", "warn", "materials API reachable but empty")
        return CheckResult("materials", "pass", "materials API reachable")

    first = _attempt("mantenimiento", reach)
    if first.status == "fail":
        return [first, _skipped("materials", "mantenimiento is not usable")]
    return [first, _attempt("materials", materials)]


def run_checks(
    config: Config, *, online: bool = True, credential_problems: list[str] | None = None
) -> list[CheckResult]:
    """Local checks always; with `online`, reach and authenticate against both servers
    (a server whose credential is not loaded is skipped, not tried without it).

    `credential_problems`: what `load_credentials` could not read, for the credentials line.
    """
    results = [
        _check_config(config),
        _check_state_dir(config),
        _check_ledger(config),
        _check_credentials(config, credential_problems),
        _check_zones(config),
    ]
    if not online:
        return results
    from .app import App

    try:
        app = App(config, retry=CHECK_RETRY)
    except Exception as exc:
        return [*results, CheckResult("clients", "fail", _error(exc))]
    why = "its credential is not loaded"
    try:
        if config.clickmaint_api_key is None:
            results += [_skipped(n, why) for n in ("clickmaint", "capabilities", "vocabulary")]
        else:
            results += _clickmaint_checks(app, config)
        if config.mantenimiento_password is None:
            results += [_skipped(n, why) for n in ("mantenimiento", "materials")]
        else:
            results += _mantenimiento_checks(app, config)
    finally:
        app.close()
    return results
