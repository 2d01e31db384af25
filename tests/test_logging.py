"""The log pipeline as an operator sees it: JSON lines, one pipeline for every library, and no
secret in any line, whichever route it took (structlog event, key, free text, a library's own
stdlib logger, an exception's traceback)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
import structlog

from syncd.logging import configure_logging
from syncd.redact import register_secret

API_KEY = "cmkey-9f8e7d6c5b4a"
PASSWORD = "contraseña-Secreta-42"
CSRF = "Zq8x" * 16  # Django's 64-character masked token
SESSION = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[io.StringIO, str]]:
    fmt = getattr(request, "param", "json")
    stream = io.StringIO()
    configure_logging(level="debug", fmt=fmt, stream=stream, journal_prefix=False)
    try:
        yield stream, fmt
    finally:
        # back to what tests/conftest.py set up for the session
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)


def emit_everything() -> None:
    register_secret(API_KEY)
    register_secret(PASSWORD)
    log = structlog.get_logger("syncd.test")
    log.info("headers", authorization=f"Bearer {API_KEY}", cookie=f"sessionid={SESSION}")
    log.info("login", form={"username": "sync", "password": PASSWORD}, csrftoken=CSRF)
    log.warning(f"server said: Authorization: Bearer {API_KEY}; csrftoken={CSRF}")
    log.info(
        "html body",
        body=f'<input type="hidden" name="csrfmiddlewaretoken" value="{CSRF}">',
    )
    log.info("nested", attempt={"headers": [("X-Api", API_KEY)], "note": f"pw {PASSWORD}"})
    # libraries log through stdlib logging; their lines must take the same road
    logging.getLogger("httpx").warning("HTTP Request: GET /?api_key=%s", API_KEY)
    logging.getLogger("apscheduler.executors").error("job failed, password=%s", PASSWORD)
    try:
        raise httpx.HTTPStatusError(
            f"401 for Bearer {API_KEY}",
            request=httpx.Request("GET", "http://cm.test"),
            response=httpx.Response(401),
        )
    except httpx.HTTPStatusError:
        log.exception("request failed", sessionid=SESSION)


@pytest.mark.parametrize("captured", ["json", "console"], indirect=True)
def test_no_secret_reaches_the_log_by_any_route(captured: tuple[io.StringIO, str]) -> None:
    stream, fmt = captured
    emit_everything()
    text = stream.getvalue()
    # every event made it out (redaction hides values, never whole lines) ...
    for event in ("headers", "login", "server said", "html body", "nested", "HTTP Request"):
        assert event in text
    assert "job failed" in text and "request failed" in text and "HTTPStatusError" in text
    # ... and no secret in any of them
    for secret in (API_KEY, PASSWORD, CSRF, SESSION):
        assert secret not in text, f"{secret} leaked in {fmt} output"
    assert "***" in text


def test_json_lines_carry_level_logger_and_context(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    structlog.contextvars.bind_contextvars(stream="work_orders", run_id="r-1")
    try:
        structlog.get_logger("syncd.engine").info("record.synced", cm_id="5", mt_id="9")
        logging.getLogger("httpx").warning("from a library")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ours, library = lines
    assert ours["event"] == "record.synced" and ours["level"] == "info"
    assert ours["logger"] == "syncd.engine" and ours["stream"] == "work_orders"
    assert ours["run_id"] == "r-1" and ours["cm_id"] == "5" and ours["mt_id"] == "9"
    assert ours["timestamp"].endswith("Z")
    # the library's line went through the same pipeline: same JSON shape, same context
    assert library["logger"] == "httpx" and library["level"] == "warning"
    assert library["stream"] == "work_orders" and library["run_id"] == "r-1"


def test_level_filter_applies_to_libraries_too() -> None:
    stream = io.StringIO()
    configure_logging(level="warning", fmt="json", stream=stream, journal_prefix=False)
    try:
        structlog.get_logger("syncd.x").info("quiet")
        logging.getLogger("httpx").info("quiet too")
        structlog.get_logger("syncd.x").warning("loud")
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["loud"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_readable_console_on_a_terminal_and_json_in_a_pipe() -> None:
    try:
        terminal = FakeTerminal()
        configure_logging(level="info", fmt="auto", stream=terminal, journal_prefix=False)
        structlog.get_logger("syncd.test").info("cycle.start", stream="work_orders")
        line = terminal.getvalue().strip()
        assert "cycle.start" in line and "stream" in line
        with pytest.raises(ValueError):
            json.loads(line)  # a person reads this, not a program
        pipe = io.StringIO()
        configure_logging(level="info", fmt="auto", stream=pipe, journal_prefix=False)
        structlog.get_logger("syncd.test").info("cycle.start", stream="work_orders")
        assert json.loads(pipe.getvalue())["stream"] == "work_orders"
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)


def test_under_journald_each_line_carries_its_syslog_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`journalctl -p warning` works because each line starts with `<N>`; journald strips it."""
    stream = io.StringIO()
    try:
        configure_logging(level="debug", fmt="json", stream=stream, journal_prefix=True)
        log = structlog.get_logger("syncd.test")
        log.debug("a")
        log.info("b")
        log.warning("c")
        log.error("d")
        prefixes = [line[:3] for line in stream.getvalue().splitlines()]
        assert prefixes == ["<7>", "<6>", "<4>", "<3>"]
        assert json.loads(stream.getvalue().splitlines()[1][3:])["event"] == "b"
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)


@pytest.mark.parametrize(("env", "prefixed"), [({"JOURNAL_STREAM": "8:1234"}, True), ({}, False)])
def test_the_priority_prefix_is_on_only_under_journald(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], prefixed: bool
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stream = io.StringIO()
    try:
        configure_logging(level="info", fmt="json", stream=stream)
        structlog.get_logger("syncd.test").info("x")
        assert stream.getvalue().startswith("<6>") is prefixed
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)
