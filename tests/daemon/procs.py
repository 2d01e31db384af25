"""Helpers for tests that run syncd as real processes: subprocess wrappers that parse the JSON
log as it is written, a fake systemd notify socket, polling with a deadline, and a comparison
of both servers read through their `/_sim/dump` control routes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from syncd.config import Config, load_config
from syncd.engine.mapping import WorkOrderMapping
from syncd.ledger.store import Ledger
from syncd.sandbox.launch import child_env

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: fields both servers can write after creation: every linked pair must agree on them
COMPARED = ("title", "description", "status")

#: environment of every syncd process: a 1 s work_orders cycle, streams that do not exist yet
#: switched off (the config written by the sandbox enables them)
#: work orders only: the daemon tests about signals, locks and the watchdog need one stream
FAST = {
    "SYNCD_STREAMS__WORK_ORDERS__INTERVAL_SECONDS": "1",
    "SYNCD_STREAMS__WORK_ORDERS__JITTER_SECONDS": "0",
    "SYNCD_STREAMS__PART_USAGE__ENABLED": "false",
    "SYNCD_STREAMS__REQUESTS__ENABLED": "false",
}
#: every stream, every second: what a production daemon runs, faster
ALL_STREAMS = {
    **{
        f"SYNCD_STREAMS__{name}__{key}": value
        for name in ("WORK_ORDERS", "PART_USAGE", "REQUESTS")
        for key, value in (("INTERVAL_SECONDS", "1"), ("JITTER_SECONDS", "0"))
    },
    "SYNCD_STREAMS__PART_USAGE__ENABLED": "true",
    "SYNCD_STREAMS__REQUESTS__ENABLED": "true",
}


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    detail: Callable[[], Any] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds
    (with `detail()` in the message, to say what was still missing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for a syncd process (nothing from a surrounding systemd/syncd)."""
    env = child_env(keep_syncd=False)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


def syncd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncd", *args]


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        syncd_argv(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


class Process:
    """A syncd subprocess whose JSON log lines (stdout) are parsed as they arrive."""

    def __init__(self, args: Iterable[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            syncd_argv("--log-format", "json", *args),
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.events: list[dict[str, Any]] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, pipe: Any, is_stdout: bool) -> None:
        for line in pipe:
            line = line.rstrip("\n")
            with self._lock:
                (self.stdout if is_stdout else self.stderr).append(line)
                if is_stdout and line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line))

    def mark(self) -> int:
        """Position in the event list; pass as `after=` to wait for something newer."""
        with self._lock:
            return len(self.events)

    def find(
        self, event: str, where: Callable[[dict[str, Any]], bool] = lambda _e: True, after: int = 0
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events[after:] if e.get("event") == event and where(e)]

    def wait_for(
        self,
        event: str,
        timeout: float,
        where: Callable[[dict[str, Any]], bool] = lambda _e: True,
        after: int = 0,
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = self.find(event, where, after)
            if hits:
                return hits[0]
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"syncd exited ({self.proc.returncode}) before {event!r}:\n" + self.tail()
                )
            return None

        try:
            return wait_until(found, timeout, f"{event!r} in the daemon log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def wait_quiet_cycle(self, timeout: float, after: int = 0) -> dict[str, Any]:
        """A finished cycle that wrote nothing (both servers agree as far as syncd can see)."""
        return self.wait_for(
            "cycle.end",
            timeout,
            where=lambda e: e.get("status") == "ok" and not _writes(e.get("counts") or {}),
            after=after,
        )

    def wait_settled(self, streams: tuple[str, ...], timeout: float, after: int = 0) -> None:
        """Two quiet cycles of every stream after the last cycle (of any stream) that wrote or
        failed.  One is not enough when streams run side by side: a quiet cycle may have
        started before another stream's write landed (e.g. requests approving a request that
        makes a work order); the second one began after it."""

        def settled() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"syncd exited ({self.proc.returncode}):\n" + self.tail())
            ends = self.find("cycle.end", after=after)
            busy = [
                i
                for i, e in enumerate(ends)
                if e.get("status") != "ok" or _writes(e.get("counts") or {})
            ]
            since = ends[busy[-1] + 1 :] if busy else ends
            quiet = Counter(e.get("stream") for e in since)
            return all(quiet[s] >= 2 for s in streams)

        try:
            wait_until(settled, timeout, "two quiet cycles of every stream")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 25) -> str:
        with self._lock:
            out = self.stdout[-lines:]
            err = self.stderr[-lines:]
        return "--- stdout ---\n" + "\n".join(out) + "\n--- stderr ---\n" + "\n".join(err)


def _writes(counts: dict[str, int]) -> int:
    prefixes = ("created_", "updated_", "cancelled_", "mirrored")
    return sum(v for k, v in counts.items() if k.startswith(prefixes))


class NotifySocket:
    """A fake systemd: an AF_UNIX datagram socket collecting sd_notify(3) messages."""

    def __init__(self) -> None:
        # sun_path is limited to 107 bytes: keep the path short, whatever pytest's tmp is
        self._dir = Path(tempfile.mkdtemp(prefix="sdn-"))
        self.path = str(self._dir / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def lines(self, key: str) -> list[tuple[float, str]]:
        """(arrival time, value) of every `KEY=value` line received so far."""
        out = []
        with self._lock:
            for at, message in self.messages:
                for line in message.split("\n"):
                    name, _, value = line.partition("=")
                    if name == key:
                        out.append((at, value))
        return out

    def pings(self, since: float = 0.0) -> list[float]:
        return [at for at, _ in self.lines("WATCHDOG") if at >= since]

    def wait_for(self, key: str, value: str | None, timeout: float) -> float:
        def arrived() -> float | None:
            for at, got in self.lines(key):
                if value is None or got == value:
                    return at
            return None

        return wait_until(arrived, timeout, f"{key}={value or '…'} on the notify socket")

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        self._thread.join(timeout=2)
        shutil.rmtree(self._dir, ignore_errors=True)


class SandboxProcess:
    """`syncd sandbox` as a subprocess (both simulators on free loopback ports)."""

    def __init__(self, directory: Path, *, work_orders: int, ots: int) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            syncd_argv(
                "sandbox",
                "--cm-port",
                "0",
                "--mt-port",
                "0",
                "--work-orders",
                str(work_orders),
                "--ots",
                str(ots),
                "--dir",
                str(directory),
            ),
            env=base_env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.config_path = directory / "config.toml"
        self.credentials_dir = directory / "credentials"
        raw = wait_until(self._config, 30, "the sandbox's config.toml")
        self.cm_api = raw["clickmaint"]["base_url"]
        self.cm_root = self.cm_api.removesuffix("/api/v1")
        self.mt_root = raw["mantenimiento"]["base_url"]
        self.http = httpx.Client(timeout=10)
        for root in (self.cm_root, self.mt_root):
            wait_until(lambda r=root: self._healthy(r), 30, f"{root}/_sim/health")

    def _config(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"syncd sandbox exited: {self.proc.stderr.read()}")
        try:
            raw = tomllib.loads(self.config_path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return None  # not written yet, or half written
        if "mapping" not in raw or "base_url" not in raw.get("mantenimiento", {}):
            return None
        return raw

    def _healthy(self, root: str) -> bool:
        try:
            return self.http.get(f"{root}/_sim/health").json().get("ok") is True
        except (httpx.HTTPError, ValueError):
            return False

    def env(self) -> dict[str, str]:
        return {
            "SYNCD_CONFIG": str(self.config_path),
            "CREDENTIALS_DIRECTORY": str(self.credentials_dir),
        }

    def dumps(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cm = self.http.get(f"{self.cm_root}/_sim/dump")
        mt = self.http.get(f"{self.mt_root}/_sim/dump")
        cm.raise_for_status()
        mt.raise_for_status()
        return cm.json(), mt.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


# -- verifying both servers -----------------------------------------------------------------------
def load(config_path: Path, credentials_dir: Path, **env: str) -> Config:
    return load_config(
        config_path, env={"CREDENTIALS_DIRECTORY": str(credentials_dir), **FAST, **env}
    )


def links(config: Config) -> list[tuple[int, int]]:
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        return [(int(k.cm_id), int(k.mt_id)) for k in ledger.iter_links("work_orders")]
    finally:
        ledger.close()


def compare(
    config: Config, cm_dump: dict[str, Any], mt_dump: dict[str, Any]
) -> tuple[int, list[str]]:
    """Field-by-field comparison of every linked pair; returns (pairs, differences)."""
    mapping = WorkOrderMapping(config)
    wos = {w["id"]: w for w in cm_dump["work_orders"]}
    ots = {o["id"]: o["detail"] for o in mt_dump["ots"]}
    pairs = links(config)
    problems = []
    for cm_id, mt_id in pairs:
        if cm_id not in wos or mt_id not in ots:
            problems.append(f"wo {cm_id} / ot {mt_id}: a side is missing")
            continue
        cm, mt = mapping.from_cm(wos[cm_id]), mapping.from_mt(ots[mt_id])
        for name in COMPARED:
            if not mapping.agree(name, cm[name], mt[name]):
                problems.append(f"wo {cm_id} / ot {mt_id}: {name}: {cm[name]!r} vs {mt[name]!r}")
    return len(pairs), problems


def duplicates(config: Config, cm_dump: dict[str, Any], mt_dump: dict[str, Any]) -> list[str]:
    """Records that exist more often on one side than on the other.

    Outbox markers are removed once a pair is linked, so mirrors are recognised by content:
    every title (as mantenimiento can hold it) must occur as often on one side as on the other,
    and each side must hold exactly one record per link.
    """
    mapping = WorkOrderMapping(config)
    cm_titles = Counter(mapping.to_mt("title", w["title"]) for w in cm_dump["work_orders"])
    mt_titles = Counter(mapping.from_mt(o["detail"])["title"] for o in mt_dump["ots"])
    problems = [
        f"title {t!r}: {cm_titles[t]} in Click Maint, {mt_titles[t]} in mantenimiento"
        for t in sorted(set(cm_titles) | set(mt_titles))
        if cm_titles[t] != mt_titles[t]
    ]
    pairs = links(config)
    if len({c for c, _ in pairs}) != len(pairs) or len({m for _, m in pairs}) != len(pairs):
        problems.append("a record is linked twice")
    return problems


def unlinked(
    config: Config, cm_dump: dict[str, Any], mt_dump: dict[str, Any]
) -> tuple[list[int], list[int]]:
    pairs = links(config)
    cm_linked = {c for c, _ in pairs}
    mt_linked = {m for _, m in pairs}
    return (
        [w["id"] for w in cm_dump["work_orders"] if w["id"] not in cm_linked],
        [o["id"] for o in mt_dump["ots"] if o["id"] not in mt_linked],
    )
