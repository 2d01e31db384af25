"""Named crash points for the crash-safety tests (`kill -9` at an exact step).

`SYNCD_CRASH_AT=create.remote:2` makes the process SIGKILL itself the second time it passes
the point named `create.remote`.  Unset (always, in production) this is one dictionary lookup.
The points sit between each remote write and the ledger commit that records it, which is where
a crash could duplicate or lose a change if the outbox logic were wrong.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("SYNCD_CRASH_AT", "")
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    if not _SPEC:
        return None
    name, _, nth = _SPEC.partition(":")
    return name, int(nth or 1)


_TARGET = _target()


def crashpoint(name: str) -> None:
    if _TARGET is None or _TARGET[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
