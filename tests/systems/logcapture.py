"""Capture what the log pipeline really writes (rendered and scrubbed, as in production),
without pytest's logging plugin: these tests must also run under `-p no:logging`."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from syncd.logging import configure_logging


@contextmanager
def rendered_logs() -> Iterator[io.StringIO]:
    """Every line logged inside the block, at debug level, rendered as in production.

    The pipeline is configured for the block, not borrowed: a command run by an earlier test
    (the CLI configures logging at the config's level) must not hide the lines looked for.
    """
    buffer = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buffer, journal_prefix=False)
    try:
        yield buffer
    finally:
        # back to what tests/conftest.py set up for the session
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)
