"""Helpers shared by the benchmarks: import path, config overrides, RSS, logging, tables.

The benchmarks are plain scripts (`python bench/<name>.py`), not a package, so this module also
makes `syncd` importable from a checkout that was not `pip install -e`'d.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import sys
from collections.abc import Sequence
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
