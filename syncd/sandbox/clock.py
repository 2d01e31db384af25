"""A server clock that tests can skew or freeze.

Each simulator owns one, so two simulated servers can disagree about the time exactly like two
real ones do (syncd must never compare their timestamps).  Freezing the clock makes many writes
share one `updated_at` second, which is how cursor tie-breaking is tested.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SimClock:
    def __init__(self, skew_seconds: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._skew = timedelta(seconds=skew_seconds)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(UTC) + self._skew

    def now_seconds(self) -> datetime:
        """Now, truncated to whole seconds (both real servers store second precision)."""
        return self.now().replace(microsecond=0)

    def set_skew(self, seconds: float) -> None:
        with self._lock:
            self._skew = timedelta(seconds=seconds)

    def freeze(self, at: datetime | None) -> None:
        with self._lock:
            self._frozen = at.astimezone(UTC) if at is not None else None

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._skew += timedelta(seconds=seconds)

    def state(self) -> dict[str, object]:
        with self._lock:
            return {
                "skew_seconds": self._skew.total_seconds(),
                "frozen": self._frozen.isoformat() if self._frozen else None,
            }
