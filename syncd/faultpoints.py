"""Named crash points for the crash-safety tests (`kill -9` at an exact step).

`SYNCD_CRASH_AT=create.remote:2` makes the process SIGKILL itself the second time it passes
the point named `create.remote`.  `SYNCD_CRASH_AT=close.before>pair.written_mt` arms the
second point when the first is passed: the process dies at the first `pair.written_mt` after
a `close.before`, i.e. once the close has been applied remotely and read back, before the
ledger commit that records it (a point that exists only in that combination).

`SYNCD_CRASH_TRACE=FILE` appends one line per point passed (`<unix time> <name> <run id>`, the
run id of the cycle passing it) to FILE, so a test can tell whether a kill at a random instant
hit a cycle that had already written something.

Unset (always, in production) `crashpoint` is two comparisons.  The points sit between each
remote write and the ledger commit that records it, which is where a crash could duplicate or
lose a change if the outbox logic were wrong.
"""

from __future__ import annotations

import os
import signal
import time

_SPEC = os.environ.get("SYNCD_CRASH_AT", "")
_TRACE = os.environ.get("SYNCD_CRASH_TRACE", "")
_counts: dict[str, int] = {}


def _target() -> tuple[str | None, str, int] | None:
    """(point that arms the target or None, target point, n-th pass)."""
    if not _SPEC:
        return None
    arm, _, rest = _SPEC.rpartition(">")
    name, _, nth = rest.partition(":")
    return arm or None, name, int(nth or 1)


_TARGET = _target()
_armed = _TARGET is not None and _TARGET[0] is None


def crashpoint(name: str) -> None:
    global _armed
    if _TRACE:
        _trace(name)
    if _TARGET is None:
        return
    arm, target, nth = _TARGET
    if not _armed:
        _armed = name == arm
        return
    if name != target:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= nth:
        os.kill(os.getpid(), signal.SIGKILL)


def _trace(name: str) -> None:
    # one write(2) on an O_APPEND descriptor: lines from threads do not interleave, and a
    # SIGKILL right after cannot lose a line already written
    import structlog.contextvars  # only when tracing: the cycle's run id is bound there

    run_id = structlog.contextvars.get_contextvars().get("run_id") or "-"
    fd = os.open(_TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{time.time():.6f} {name} {run_id}\n".encode())
    finally:
        os.close(fd)
