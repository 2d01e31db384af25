"""Capture what the log pipeline really writes (rendered and scrubbed, as in production),
without pytest's logging plugin: these tests must also run under `-p no:logging`."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def rendered_logs() -> Iterator[io.StringIO]:
    """Every line logged inside the block, rendered by the configured formatter."""
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    formatter = next((h.formatter for h in root.handlers if h.formatter is not None), None)
    handler.setFormatter(formatter)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
