"""Helpers shared by the benchmarks: import path, config overrides, RSS, logging, tables.

The benchmarks are plain scripts (`python bench/<name>.py`), not a package, so this module also
makes `syncd` importable from a checkout that was not `pip install -e`'d.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: a rate limit high enough that neither the simulator nor the client budget ever throttles
UNTHROTTLED = 1_000_000


def peak_rss_kib() -> int:
    """Peak resident set of this process so far (Linux reports `ru_maxrss` in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def machine() -> str:
    """One line naming the box, because every number here depends on it."""
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (the core count alone says little)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    """What a reader needs to compare our numbers with theirs (see docs/performance.md)."""
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": _memory_total(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
        "commit": git_commit(),
    }


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


#: what the benchmarks themselves write: changes there do not make a measurement "+wip"
GENERATED = ("bench/results/", "docs/performance.md", "docs/img/")


def git_commit() -> str:
    """Short commit of the checkout, with `+wip` when code or docs other than the benchmarks'
    own outputs have uncommitted changes (a report run rewrites its results as it goes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    dirty = [line for line in status if not line[3:].startswith(GENERATED)]
    return (head or "unknown") + ("+wip" if dirty else "")


def bench_config_text(original: str, *, rate_limit: int, window: float) -> str:
    """The sandbox config with the Click Maint budget replaced.

    TOML forbids re-opening a table, so the keys go right under the `[clickmaint]` header
    instead of into the config's `extra` tail.
    """
    header = "[clickmaint]\n"
    if original.count(header) != 1:
        raise ValueError("sandbox config without exactly one [clickmaint] table")
    keys = f"rate_limit = {rate_limit}\nrate_window_seconds = {window}\n"
    return original.replace(header, header + keys, 1)


def write_bench_config(directory: Path, name: str, *, rate_limit: int, window: float) -> Path:
    """Write `<name>.toml` next to the sandbox's config.toml, with the given budget."""
    original = (directory / "config.toml").read_text()
    path = directory / f"{name}.toml"
    path.write_text(bench_config_text(original, rate_limit=rate_limit, window=window))
    return path


def load_bench_config(path: Path) -> Any:
    """Load a config written by `write_bench_config` with the sandbox's credentials."""
    from syncd.config import load_config

    env = dict(os.environ)
    env["CREDENTIALS_DIRECTORY"] = str(path.parent / "credentials")
    return load_config(path, env=env)


def bench_env(config_path: Path) -> dict[str, str]:
    """Environment for a `syncd` subprocess using a config written by `write_bench_config`."""
    from syncd.sandbox.launch import child_env

    env = child_env()
    env["SYNCD_CONFIG"] = str(config_path)
    env["CREDENTIALS_DIRECTORY"] = str(config_path.parent / "credentials")
    return env


def log_to_file(path: Path) -> None:
    """syncd's own JSON logging at info, into a file: the cost of logging is part of a cycle,
    but the benchmark's output must stay readable."""
    from syncd.logging import configure_logging

    stream = path.open("a", encoding="utf-8")  # closed at process exit
    configure_logging("info", "json", stream=stream, journal_prefix=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/performance.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def in_fresh_process(target: Any, *args: Any) -> dict[str, Any]:
    """Run `target(conn, *args)` in a spawned interpreter and return what it sends back."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(child, *args))
    process.start()
    child.close()
    try:
        if not parent.poll(900):
            raise TimeoutError("the measured process did not finish within 15 minutes")
        try:
            ok, value = parent.recv()
        except EOFError:
            process.join(timeout=30)
            raise RuntimeError(
                f"the measured process died (exit code {process.exitcode})"
            ) from None
    finally:
        process.join(timeout=30)
        if process.is_alive():  # timed out: do not leave it running
            process.terminate()
            process.join(timeout=5)
    if not ok:
        raise RuntimeError(f"measured process failed:\n{value}")
    return value


# -- request counts ---------------------------------------------------------------------------
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def split_requests(by_route: dict[str, int]) -> dict[str, int]:
    """`{"clickmaint GET /work_orders": n, ...}` (RequestStats.snapshot) -> reads and writes per
    server: cm_get, cm_write, mt_get, mt_write."""
    out = {"cm_get": 0, "cm_write": 0, "mt_get": 0, "mt_write": 0}
    for key, n in by_route.items():
        server, method, _route = key.split(" ", 2)
        side = "cm" if server == "clickmaint" else "mt"
        out[f"{side}_{'get' if method == 'GET' else 'write'}"] += n
    return out


def server_requests(logs: dict[str, Any]) -> dict[str, int]:
    """The simulators' request logs (SimHost `logs`) -> the same four counts, server side."""
    out = {"cm_get": 0, "cm_write": 0, "mt_get": 0, "mt_write": 0}
    for side in ("cm", "mt"):
        for route, n in logs[side]["by_route"].items():
            method = route.split(" ", 1)[0]
            out[f"{side}_{'get' if method == 'GET' else 'write'}"] += n
    return out


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


# -- a syncd process driven cycle by cycle ------------------------------------------------------
class PipeProcess:
    """A spawned interpreter that answers commands over a pipe: `call(command, **args)`.

    The child answers every command with `(ok, value)`; the first answer (its start-up) is
    kept in `info`.  Shared by the simulator process and the syncd worker.
    """

    #: what the child is, for error messages
    label = "child process"
    #: seconds to wait for one answer / for a clean stop
    reply_timeout = 600.0
    stop_timeout = 10.0

    def __init__(self, target: Any, *args: Any, name: str) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from the parent
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=target, args=(child, *args), name=name)
        self.info: Any = None

    def __enter__(self) -> Any:
        self._process.start()
        self.info = self._reply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, command: str, **args: Any) -> Any:
        self._conn.send((command, args))
        return self._reply()

    def _reply(self) -> Any:
        if not self._conn.poll(self.reply_timeout):
            raise TimeoutError(
                f"the {self.label} did not answer within {self.reply_timeout / 60:g} minutes"
            )
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.label} died (see its traceback above)") from None
        if not ok:
            raise RuntimeError(f"{self.label} failed:\n{value}")
        return value

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("stop", {}))
                self._conn.poll(self.stop_timeout)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=self.stop_timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)


class Worker(PipeProcess):
    """A fresh syncd process that runs one stream cycle per command, over a pipe.

    Why not `in_fresh_process`: some measurements need something to happen *between* two cycles
    of the same process (the Click Maint clock jumps, a user adds transactions), and syncd keeps
    state across cycles in memory (the server clock offset learnt from `Date` headers), exactly
    as the daemon does.  One `App` lives for the worker's whole life; every cycle opens its own
    ledger connection, as `Daemon._cycle` does.
    """

    label = "syncd worker"
    reply_timeout = 1800.0
    stop_timeout = 30.0

    def __init__(self, config_path: Path) -> None:
        super().__init__(_worker_main, config_path, name="syncd")

    def cycle(self, stream: str, kind: str = "once") -> dict[str, Any]:
        """One cycle; returns its status, counts, wall time and requests (client side)."""
        return self.call("cycle", stream=stream, kind=kind)

    def until_quiet(self, stream: str, max_cycles: int = 8) -> list[dict[str, Any]]:
        """Cycles until one writes nothing on either server (or fails, or `max_cycles`)."""
        cycles: list[dict[str, Any]] = []
        for _ in range(max_cycles):
            cycles.append(self.cycle(stream))
            last = cycles[-1]
            if last["status"] != "ok" or not (last["req"]["cm_write"] + last["req"]["mt_write"]):
                break
        return cycles

    def peak_rss_kib(self) -> int:
        return int(self.call("rss"))


def _worker_main(conn: Connection, config_path: Path) -> None:
    try:
        from syncd.app import App

        log_to_file(config_path.parent / "syncd.log")
        app = App(load_bench_config(config_path))
    except Exception:
        conn.send((False, traceback.format_exc()))
        return
    conn.send((True, None))
    try:
        while True:
            command, args = conn.recv()
            if command == "stop":
                conn.send((True, None))
                return
            try:
                if command == "cycle":
                    conn.send((True, _worker_cycle(app, **args)))
                elif command == "rss":
                    conn.send((True, peak_rss_kib()))
                else:
                    raise ValueError(f"unknown worker command {command!r}")
            except Exception:
                conn.send((False, traceback.format_exc()))
    except EOFError:
        return
    finally:
        app.close()


def _worker_cycle(app: Any, stream: str, kind: str) -> dict[str, Any]:
    before = app.stats.snapshot()["by_route"]
    started = time.perf_counter()
    ledger = app.open_ledger()
    try:
        report = app.stream(stream, app.runtime(ledger)).run(kind=kind)
    finally:
        ledger.close()
    seconds = time.perf_counter() - started
    after = app.stats.snapshot()["by_route"]
    routes = Counter(after)
    routes.subtract(before)
    return {
        "status": report.status,
        "error": report.error,
        "counts": dict(report.counts),
        "notes": report.notes[:5],
        "seconds": seconds,
        "req": diff(split_requests(after), split_requests(before)),
        "routes": {k: v for k, v in routes.items() if v},
    }
