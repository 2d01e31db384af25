"""Log pipeline: structlog in front, stdlib logging underneath so httpx/APScheduler join in.

On a TTY the console renderer is for people; otherwise every line is one JSON object with an
sd-daemon `<N>` priority prefix, so journald gets the right PRIORITY (`journalctl -p warning`
works) and `syncd logs` / `jq` can filter the rest.  Secrets are scrubbed twice: before
rendering (structured values) and after (the rendered text, including tracebacks, which are
rendered without local variables).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from .redact import redact, redact_text

_PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}


def redact_processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return redact(event)  # type: ignore[no-any-return]


class JournalJSON:
    """JSON renderer with an sd-daemon(3) priority prefix, scrubbed after rendering."""

    def __init__(self, prefix: bool = True) -> None:
        self._render = structlog.processors.JSONRenderer(ensure_ascii=False)
        self._prefix = prefix

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> str:
        line = redact_text(str(self._render(logger, name, event)))
        if not self._prefix:
            return line
        return f"<{_PRIORITY.get(str(event.get('level')), 6)}>{line}"


class _ScrubbedConsole:
    def __init__(self, colors: bool) -> None:
        self._render = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> str:
        return redact_text(str(self._render(logger, name, event)))


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    journal_prefix: bool | None = None,
) -> None:
    """Idempotent; call once per process (CLI entry) before anything logs."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    if journal_prefix is None:
        # journald strips the prefix; anywhere else (files, pipes in tests) it is noise
        journal_prefix = bool(_under_journald())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    structlog.configure(
        # drop disabled levels before any other processor runs (redaction is not free)
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    tail: list[Any]
    if fmt == "json":
        tail = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_processor,
            JournalJSON(prefix=journal_prefix),
        ]
    else:
        tail = [_ScrubbedConsole(colors=stream.isatty())]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(
        logging.INFO if level.lower() == "debug" else logging.WARNING
    )
    # "maximum number of running instances reached" is reported by the daemon itself
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def _under_journald() -> bool:
    import os

    return bool(os.environ.get("JOURNAL_STREAM")) or bool(os.environ.get("INVOCATION_ID"))
