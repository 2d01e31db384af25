"""File locks.

`<ledger>.lock` (`ledger.db.lock` next to `ledger.db`) makes `syncd run` single-instance per
ledger: it is keyed on the ledger file itself, not on the state directory, because
`syncd.ledger_file` may be an absolute path outside it (two daemons with different state
directories must not share one ledger).  `stream-<name>.lock` in the state directory is held for
one cycle of one stream, so a manual `sync --once` or `resync` can run while the daemon is up:
the daemon skips its cycle while the lock is taken and continues afterwards.  `flock` locks die
with their process, so a lock left by a killed process is simply taken over (its pid is logged).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

log = structlog.get_logger("syncd.locks")


class LockHeld(Exception):
    """Another live process holds the lock."""


class FileLock:
    def __init__(self, path: Path, purpose: str) -> None:
        self.path = path
        self.purpose = purpose
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self, *, wait: float = 0.0, stop: threading.Event | None = None) -> None:
        """Take the lock, waiting up to `wait` seconds (or until `stop` is set) for it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        previous = self._holder()
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                stopped = stop is not None and stop.is_set()
                if stopped or time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockHeld(
                        f"{self.purpose}: held by pid {self._holder()} ({self.path})"
                    ) from None
                if stop is not None:
                    stop.wait(0.2)
                else:
                    time.sleep(0.2)
        if previous not in ("unknown", str(os.getpid())) and not pid_alive(previous):
            log.warning("lock.stale_taken_over", lock=str(self.path), dead_pid=previous)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @contextlib.contextmanager
    def held(self, *, wait: float = 0.0, stop: threading.Event | None = None) -> Iterator[None]:
        self.acquire(wait=wait, stop=stop)
        try:
            yield
        finally:
            self.release()


def pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def instance_lock(ledger_path: Path) -> FileLock:
    """The lock of `syncd run` on one ledger file: `<ledger>.lock` beside it."""
    path = ledger_path.with_name(ledger_path.name + ".lock")
    return FileLock(path, "another `syncd run` is using this ledger")


def stream_lock(state_dir: Path, stream: str) -> FileLock:
    return FileLock(state_dir / f"stream-{stream}.lock", f"stream {stream} is being synced")
