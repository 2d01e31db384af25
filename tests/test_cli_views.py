"""The operator commands end to end through click: output, exit codes, config errors."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import Context, cli
from syncd.config import EX_CONFIG, load_config
from syncd.ledger.models import utcnow
from syncd.ledger.store import Ledger
from syncd.logging import configure_logging
from syncd.sandbox.launch import start_sandbox

from .test_views import conflict, make_link, ok_run, write_config_file, write_credentials

LOG_FILE_LINES = [
    '<6>{"event": "cycle.start", "level": "info", "timestamp": "2024-05-01T12:00:00Z", '
    '"stream": "work_orders", "run_id": "r1"}',
    "Started syncd.service - syncd.",
    '<4>{"event": "record.quarantined", "level": "warning", "timestamp": '
    '"2024-05-01T12:00:01Z", "stream": "work_orders", "side": "cm", "record": "5"}',
    '{"event": "wo.updated", "level": "info", "timestamp": "2024-05-01T12:00:02Z", '
    '"stream": "work_orders", "cm_id": 5, "mt_id": "1005"}',
    "{not json",
]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands point logging at CliRunner's stream, which is closed after each test."""
    yield
    configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    creds = write_credentials(tmp_path / "credentials")
    path = write_config_file(tmp_path)
    return {"SYNCD_CONFIG": str(path), "CREDENTIALS_DIRECTORY": str(creds)}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "state" / "ledger.db")
    yield led
    led.close()


def invoke(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


# -- status -----------------------------------------------------------------------------------
def test_status_unhealthy_exits_2(env: dict[str, str]) -> None:
    result = invoke(env, "status")
    assert result.exit_code == 2
    assert "UNHEALTHY" in result.stdout and "no ledger" in result.stdout


def test_status_healthy_exits_0(env: dict[str, str], ledger: Ledger) -> None:
    for stream in ("work_orders", "part_usage", "requests"):
        ok_run(ledger, stream, cm_requests=3)
    result = invoke(env, "status")
    assert result.exit_code == 0, result.stdout
    assert "syncd status: healthy" in result.stdout
    assert "WORK_ORDERS" not in result.stdout and "work_orders" in result.stdout
    data = json.loads(invoke(env, "status", "--json").stdout)
    assert data["healthy"] is True and data["budget"]["cm_requests_in_window"] == 9


def test_status_with_disabled_streams(env: dict[str, str], ledger: Ledger) -> None:
    ok_run(ledger, "work_orders")
    env = {
        **env,
        "SYNCD_STREAMS__PART_USAGE__ENABLED": "false",
        "SYNCD_STREAMS__REQUESTS__ENABLED": "false",
    }
    result = invoke(env, "status", "--json")
    assert result.exit_code == 0
    assert list(json.loads(result.stdout)["streams"]) == ["work_orders"]


def test_status_needs_no_credentials(env: dict[str, str]) -> None:
    result = invoke({"SYNCD_CONFIG": env["SYNCD_CONFIG"], "CREDENTIALS_DIRECTORY": ""}, "status")
    assert result.exit_code == 2 and "no ledger" in result.stdout


# -- history, ledger --------------------------------------------------------------------------
def test_history(env: dict[str, str], ledger: Ledger) -> None:
    make_link(ledger)
    ledger.record("work_orders", "created_mt", cm_id="5", mt_id="1005", run_id="r1")
    ledger.record("work_orders", "mt_changed", mt_id="1005", run_id="r2", fields=["status"])
    result = invoke(env, "history", "clickmaint:5")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["AT", "RUN_ID", "STREAM", "ACTION", "CM_ID", "MT_ID", "DETAIL"]
    assert "created_mt" in lines[1] and "mt_changed" in lines[2]
    assert '{"fields": ["status"]}' in lines[2]
    rows = json.loads(invoke(env, "history", "mantenimiento:1005", "--json").stdout)
    assert [r["action"] for r in rows] == ["created_mt", "mt_changed"]
    assert invoke(env, "history", "cm:99").stdout == "no history for cm:99\n"
    bad = invoke(env, "history", "jira:5")
    assert bad.exit_code == 2 and "clickmaint:<id>" in bad.stderr


def test_ledger_show_and_find(env: dict[str, str], ledger: Ledger) -> None:
    make_link(ledger)
    conflict(ledger)
    shown = invoke(env, "ledger", "show", "clickmaint:5")
    assert shown.exit_code == 0
    assert "mt_id: 1005" in shown.stdout and '"title": "Bomba P-3"' in shown.stdout
    as_json = json.loads(invoke(env, "ledger", "show", "mantenimiento:1005", "--json").stdout)
    assert as_json["cm_id"] == "5" and as_json["conflicts"][0]["field"] == "title"
    missing = invoke(env, "ledger", "show", "clickmaint:6")
    assert missing.exit_code == 1 and "clickmaint:6 is not linked" in missing.stdout
    found = invoke(env, "ledger", "find", "Bomba")
    assert found.exit_code == 0
    assert found.stdout.splitlines()[1].split()[:4] == ["work_orders", "5", "1005", "active"]
    assert invoke(env, "ledger", "find", "nothing-like-this").stdout == "nothing found\n"


# -- conflicts --------------------------------------------------------------------------------
def test_conflicts_round_trip(env: dict[str, str], ledger: Ledger) -> None:
    make_link(ledger)
    item = conflict(ledger)
    listed = invoke(env, "conflicts", "list")
    assert listed.exit_code == 0
    assert "Bomba P-3 (CM)" in listed.stdout and "open" in listed.stdout
    shown = invoke(env, "conflicts", "show", str(item.id))
    assert shown.exit_code == 0 and "Bomba P-3 (MT)" in shown.stdout

    resolved = invoke(env, "conflicts", "resolve", str(item.id), "--take", "value", "--value", "7")
    assert resolved.exit_code == 0
    # a title is text: --value 7 is the string "7" (321a59c checks values against the field)
    assert f'conflict #{item.id} resolved (value "7")' in resolved.stdout
    after = ledger.get_conflict(item.id)
    assert after is not None and (after.status, after.resolved_value) == ("resolved", "7")

    assert invoke(env, "conflicts", "list").stdout == "no open conflicts\n"
    everything = json.loads(invoke(env, "conflicts", "list", "--all", "--json").stdout)
    assert [c["status"] for c in everything] == ["resolved"]
    again = invoke(env, "conflicts", "resolve", str(item.id), "--take", "clickmaint")
    assert again.exit_code == 1 and "is resolved, not open" in again.stderr
    unknown = invoke(env, "conflicts", "resolve", "999", "--take", "clickmaint")
    assert unknown.exit_code == 1 and "no conflict #999" in unknown.stderr
    assert invoke(env, "conflicts", "show", "999").exit_code == 1


# -- logs -------------------------------------------------------------------------------------
def test_quarantine_list_and_retry(env: dict[str, str], ledger: Ledger) -> None:
    assert "quarantine is empty" in invoke(env, "quarantine", "list").output
    ledger.quarantine("part_usage", "cm", "9094", "no mantenimiento Material with sku 'X'")
    ledger.quarantine("requests", "cm", "315", "request status None is unknown")
    later = ledger.list_quarantine()
    assert all(q.next_retry_at > utcnow() for q in later)  # retried later, not at once
    listing = invoke(env, "quarantine", "list")
    assert "9094" in listing.output and "315" in listing.output
    rows = json.loads(invoke(env, "quarantine", "list", "--stream", "requests", "--json").output)
    assert [r["record_id"] for r in rows] == ["315"]

    one = invoke(env, "quarantine", "retry", "clickmaint:315")
    assert one.exit_code == 0 and one.output.startswith("1 quarantined record")
    assert [q.record_id for q in ledger.due_quarantine("requests")] == ["315"]
    assert ledger.due_quarantine("part_usage") == []
    assert ledger.get_quarantined("requests", "cm", "315").attempts == 1  # back-off kept

    everything = invoke(env, "quarantine", "retry", "--stream", "part_usage")
    assert everything.output.startswith("1 quarantined record")
    assert [q.record_id for q in ledger.due_quarantine("part_usage")] == ["9094"]
    assert invoke(env, "quarantine", "retry", "nonsense").exit_code == 2


def test_logs_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "syncd.log"
    log.write_text("\n".join(LOG_FILE_LINES) + "\n")
    result = invoke(env, "logs", str(log), "--level", "warning")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "2024-05-01 12:00:01 WARNING work_orders  record.quarantined  side=cm record=5"
    ]
    none = invoke(env, "logs", str(log), "--stream", "requests")
    assert none.exit_code == 1 and none.stdout == ""


def test_logs_from_stdin(env: dict[str, str]) -> None:
    stdin = "\n".join(LOG_FILE_LINES) + "\n"
    result = invoke(env, "logs", "--record", "clickmaint:5", "--json", stdin=stdin)
    assert result.exit_code == 0
    assert [json.loads(x)["event"] for x in result.stdout.splitlines()] == ["wo.updated"]
    at = "2024-05-01T12:00:01Z"
    window = invoke(env, "logs", "--since", at, "--until", at, stdin=stdin)
    assert "record.quarantined" in window.stdout and len(window.stdout.splitlines()) == 1
    bad = invoke(env, "logs", "--since", "last tuesday", stdin=stdin)
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr


# -- check ------------------------------------------------------------------------------------
def test_check_offline(env: dict[str, str]) -> None:
    result = invoke(env, "check", "--offline")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "PASS  config",
        "PASS  state dir",
        "PASS  ledger",
        "PASS  credentials",
        "PASS  time zones",
    ]
    assert "cm-sandbox-key" not in result.stdout
    data = json.loads(invoke(env, "check", "--offline", "--json").stdout)
    assert {d["status"] for d in data} == {"pass"}


def test_check_online_against_a_stopped_server_fails(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    write_config_file(tmp_path, cm_url=f"{url}/api/v1", mt_url=url)
    result = invoke(env, "check")
    assert result.exit_code == 1
    assert "FAIL  clickmaint: clickmaint GET /entities: cannot connect" in result.stdout
    assert "FAIL  mantenimiento:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# -- bad config: exit 78, one line on stderr ---------------------------------------------------
def config_error(env: dict[str, str], *args: str) -> str:
    result = invoke(env, *args)
    assert result.exit_code == EX_CONFIG
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("[syncd]\n", "[syncd]\ncolour = 1\n"), "unknown key syncd.colour"),
        (lambda t: t.replace("entity_id = 1\n", ""), "missing required key clickmaint.entity_id"),
        (lambda t: t.replace("entity_id = 1", 'entity_id = "one"'), "clickmaint.entity_id"),
        (lambda t: t.replace("[syncd]", "[syncd"), "invalid TOML"),
    ],
)
def test_bad_config_exits_78(env: dict[str, str], edit: object, message: str) -> None:
    path = Path(env["SYNCD_CONFIG"])
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    for command in (("status",), ("check", "--offline"), ("conflicts", "list")):
        line = config_error(env, *command)
        assert line.startswith("syncd: config error: ") and message in line


def test_missing_config_file_exits_78(env: dict[str, str], tmp_path: Path) -> None:
    line = config_error({**env, "SYNCD_CONFIG": str(tmp_path / "nope.toml")}, "status")
    assert "nope.toml: file not found" in line


def test_unreadable_credential_is_a_check_failure_and_a_config_error_elsewhere(
    env: dict[str, str],
) -> None:
    creds = Path(env["CREDENTIALS_DIRECTORY"])
    key = creds / "clickmaint-api-key"
    key.unlink()
    key.mkdir()  # unreadable for everybody, root included (chmod 000 is not, for root)
    result = invoke(env, "check", "--offline")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "PASS  config",
        "PASS  state dir",
        "PASS  ledger",
        "FAIL  credentials",
        "PASS  time zones",
    ]
    assert "credential 'clickmaint-api-key'" in lines[3] and "unreadable" in lines[3]
    assert "syncd-sandbox-pass" not in result.output
    # the commands that talk to the servers refuse to start: one line, exit 78
    line = config_error(env, "sync", "--once")
    assert "credential 'clickmaint-api-key'" in line and "unreadable" in line
    assert invoke(env, "status").exit_code == 2  # views do not need the secrets


def test_missing_credential_is_a_check_failure(env: dict[str, str]) -> None:
    (Path(env["CREDENTIALS_DIRECTORY"]) / "mantenimiento-password").unlink()
    result = invoke(env, "check", "--json")
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["credentials"]["status"] == "fail"
    assert "credential 'mantenimiento-password' not found" in checks["credentials"]["detail"]
    # the server without its credential is not tried; the other one is (and is down here)
    assert checks["mantenimiento"]["status"] == "warn"
    assert "credential is not loaded" in checks["mantenimiento"]["detail"]
    assert checks["clickmaint"]["status"] == "fail"
    assert "cm-sandbox-key" not in result.output
    line = config_error(env, "sync", "--once")
    assert "credential 'mantenimiento-password' not found" in line


# -- logs ---------------------------------------------------------------------------------------
def test_logs_from_a_missing_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    present = tmp_path / "syncd.log"
    present.write_text("\n".join(LOG_FILE_LINES) + "\n")
    result = invoke(env, "logs", str(present), str(tmp_path / "nope.log"))
    assert result.exit_code == 66
    assert result.stdout == ""  # nothing printed before the unreadable file was found
    assert result.stderr.splitlines() == [
        f"syncd: cannot read {tmp_path / 'nope.log'}: No such file or directory"
    ]


# -- logging -------------------------------------------------------------------------------------
def test_json_logs_of_a_one_shot_command_stay_off_stdout(tmp_path: Path) -> None:
    """`--log-format json` asks for JSON logs, not for logs on stdout: `--json` output of a
    one-shot command must parse as it is."""
    box = start_sandbox(directory=tmp_path / "sb", work_orders=3, ots=15, avisos=0, requests=0)
    try:
        env = {
            **box.env(),
            "SYNCD_STREAMS__PART_USAGE__ENABLED": "false",
            "SYNCD_STREAMS__REQUESTS__ENABLED": "false",
        }
        result = invoke(env, "--log-format", "json", "sync", "--once", "--json")
        assert result.exit_code == 0, result.output
        reports = json.loads(result.stdout)  # nothing but the reports
        assert [(r["stream"], r["status"]) for r in reports] == [("work_orders", "ok")]
        logged = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
        assert "cycle.end" in [e["event"] for e in logged]
    finally:
        box.stop()


def test_command_line_log_flags_win_over_the_config(env: dict[str, str]) -> None:
    """What the daemon applies at start and again on SIGHUP (`Context.setup_logging`)."""
    root = logging.getLogger()
    config = load_config(env["SYNCD_CONFIG"], require_secrets=False, env=env)
    debug = config.model_copy(
        update={"syncd": config.syncd.model_copy(update={"log_level": "debug"})}
    )
    Context(None, None, None).setup_logging(debug)
    assert root.level == logging.DEBUG
    Context(None, "warning", "json").setup_logging(debug)
    assert root.level == logging.WARNING
    Context(None, "error", None).setup_logging(config)
    assert root.level == logging.ERROR


@pytest.mark.parametrize(
    ("item", "expected"),
    [("updated_at_filter=false", False), ("updated_at_filter=On", True), ("per_page_cap=50", 50)],
)
def test_sandbox_variant_values_are_parsed(item: str, expected: object) -> None:
    from syncd.cli import _variant

    key = item.partition("=")[0]
    assert getattr(_variant((item,)), key) == expected


@pytest.mark.parametrize("item", ["updated_at_filter=flase", "no_such_thing=1", "per_page_cap"])
def test_a_mistyped_sandbox_variant_is_refused_not_guessed(item: str) -> None:
    from syncd.cli import _variant

    with pytest.raises(ValueError):
        _variant((item,))


def test_sandbox_help_names_every_fault_and_variant_option() -> None:
    from dataclasses import fields

    from syncd.sandbox.clickmaint_sim import ClickMaintVariant
    from syncd.sandbox.faults import FaultConfig

    text = " ".join(CliRunner().invoke(cli, ["sandbox", "--help"]).output.split())
    for name in [f.name for f in fields(FaultConfig)] + [f.name for f in fields(ClickMaintVariant)]:
        assert name in text.replace("- ", "-"), name
