"""Fast in-process tests of the daemon's supervisor rules, locks and sd_notify helper."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd import sdnotify
from syncd.app import App
from syncd.config import Config, load_config
from syncd.engine.run import StopRequested
from syncd.locks import FileLock, LockHeld, instance_lock, stream_lock
from syncd.sandbox.launch import config_text
from syncd.service import Daemon, StreamState, run_once

from .procs import wait_until


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "clickmaint-api-key").write_text("key")
    (creds / "mantenimiento-password").write_text("secret")
    for name in list(os.environ):
        if name.startswith("SYNCD_") or name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = tmp_path / "config.toml"
    text = config_text("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9", tmp_path / "state")
    text = text.replace(
        "[streams.work_orders]\ninterval_seconds = 15\njitter_seconds = 1",
        "[streams.work_orders]\ninterval_seconds = 0.2\njitter_seconds = 0",
    )
    for stream in ("part_usage", "requests"):
        text = text.replace(f"[streams.{stream}]\n", f"[streams.{stream}]\nenabled = false\n")
    path.write_text(text)
    return path


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


def _running_scheduler() -> Any:
    return SimpleNamespace(running=True)


# -- liveness ---------------------------------------------------------------------------------
def test_liveness_rules(config: Config) -> None:
    daemon = Daemon(config)
    assert daemon.liveness_problem() == "the scheduler is not running"
    daemon.scheduler = _running_scheduler()
    now = time.monotonic()
    daemon.states = {"work_orders": StreamState(fired=now)}
    assert daemon.liveness_problem() is None  # idle, started on time

    stall = config.syncd.stall_seconds
    daemon.states["work_orders"] = StreamState(running_since=now - 2 * stall, heartbeat=now - 1)
    assert daemon.liveness_problem() is None  # a long cycle is fine while it makes progress

    daemon.states["work_orders"].heartbeat = now - stall - 1
    problem = daemon.liveness_problem()
    assert problem is not None and "made no progress" in problem

    # idle, but the scheduler has not started it for far longer than interval + stall
    daemon.states["work_orders"] = StreamState(fired=now - stall - 60)
    problem = daemon.liveness_problem()
    assert problem is not None and "no cycle was started" in problem


def test_liveness_counts_idle_time_from_the_end_of_a_long_cycle(config: Config) -> None:
    """A cycle longer than stall + interval just ended: the next one is due one interval
    after its end, so the daemon is live (measuring from its start withheld the pings)."""
    daemon = Daemon(config)
    daemon.scheduler = _running_scheduler()
    stall = config.syncd.stall_seconds
    interval = config.streams.work_orders.interval_seconds
    now = time.monotonic()
    long_ago = now - stall - interval - 120
    daemon.states = {"work_orders": StreamState(fired=long_ago, last_end=now - 1)}
    assert daemon.liveness_problem() is None
    # still caught when nothing starts long after that end
    daemon.states["work_orders"].last_end = now - stall - interval - 30
    problem = daemon.liveness_problem()
    assert problem is not None and "no cycle was started" in problem


def test_status_line_shows_the_last_error_while_the_next_cycle_runs(config: Config) -> None:
    daemon = Daemon(config)
    daemon.states = {
        "work_orders": StreamState(
            last_status="failed",
            failures=3,
            last_summary="12:00:00 no changes",
            last_error="mantenimiento: cannot connect",
            running_since=time.monotonic(),
        )
    }
    line = daemon.status_line()
    assert "work_orders: running (last: failed x3" in line
    assert "cannot connect" in line


# -- reload --------------------------------------------------------------------------------
def test_reload_refuses_a_different_ledger_and_a_broken_file(
    config: Config, config_path: Path
) -> None:
    daemon = Daemon(config)
    original = config_path.read_text()
    config_path.write_text(original.replace('/state"', '/elsewhere"', 1))
    with capture_logs() as logs:
        daemon._reload()
    assert daemon.config is config
    assert [e["event"] for e in logs] == ["daemon.reload_failed"]
    assert "needs a restart" in logs[0]["detail"]

    config_path.write_text(original.replace("entity_id = 1", "entity_id = 0"))
    with capture_logs() as logs:
        daemon._reload()
    assert daemon.config is config
    assert logs[0]["event"] == "daemon.reload_failed"
    assert "clickmaint.entity_id" in logs[0]["error"]


def _reloadable(config: Config) -> Daemon:
    """A daemon as `_run` leaves it before the scheduler starts: an App and its jobs."""
    daemon = Daemon(config)
    daemon.app = App(config)
    daemon.scheduler = daemon._build_scheduler()
    return daemon


def test_a_reload_keeps_the_click_maint_budget_and_request_counts(
    config: Config, config_path: Path
) -> None:
    """Cycles still running on the old App and new ones on the reloaded App spend one
    budget: a reload must not hand out a fresh window."""
    daemon = _reloadable(config)
    old = daemon.app
    assert old is not None
    try:
        for _ in range(3):
            old.cm_budget.acquire()
        old.mt_reads["1007"] = 1234.5
        calls = old.stats.count()
        assert daemon.app.budget_snapshot()["used_in_window"] == 3
        config_path.write_text(
            config_path.read_text().replace("timeout_seconds = 10", "timeout_seconds = 11", 1)
        )
        with capture_logs() as logs:
            daemon._reload()
        assert [e["event"] for e in logs] == ["daemon.reloaded"]
        new = daemon.app
        assert new is not old and new.config.clickmaint.timeout_seconds == 11
        assert new.budget_snapshot()["used_in_window"] == 3
        assert "clickmaint budget 3/" in daemon.status_line()
        new.cm_budget.acquire()  # the old App's cycles see what the new one spends
        assert old.budget_snapshot()["used_in_window"] == 4
        assert new.mt_reads == {"1007": 1234.5}
        assert new.stats.count() == calls

        # changed rate settings apply to the same budget; what was sent stays counted
        config_path.write_text(
            config_path.read_text().replace(
                "timeout_seconds = 11", "timeout_seconds = 11\nrate_limit = 120", 1
            )
        )
        daemon._reload()
        assert daemon.app is not new
        snapshot = daemon.app.budget_snapshot()
        assert (snapshot["limit"], snapshot["used_in_window"]) == (120, 4)
    finally:
        daemon._close_apps(everything=True)


def test_a_reload_applies_changed_log_settings(config: Config, config_path: Path) -> None:
    applied: list[tuple[str, str]] = []
    daemon = _reloadable(config)
    daemon.setup_logging = lambda c: applied.append((c.syncd.log_level, c.syncd.log_format))
    try:
        original = config_path.read_text()
        config_path.write_text(original.replace("timeout_seconds = 10", "timeout_seconds = 9", 1))
        with capture_logs():
            daemon._reload()
        assert applied == []  # nothing to change
        config_path.write_text(
            original.replace('log_level = "info"', 'log_level = "debug"\nlog_format = "json"')
        )
        with capture_logs() as logs:
            daemon._reload()
        assert logs[-1]["event"] == "daemon.reloaded"
        assert applied == [("debug", "json")]
    finally:
        daemon._close_apps(everything=True)


def test_the_scheduler_jobs_have_the_documented_options(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_STREAMS__WORK_ORDERS__INTERVAL_SECONDS", "45")
    monkeypatch.setenv("SYNCD_STREAMS__WORK_ORDERS__JITTER_SECONDS", "3")
    monkeypatch.setenv("SYNCD_STREAMS__REQUESTS__ENABLED", "true")
    monkeypatch.setenv("SYNCD_STREAMS__REQUESTS__INTERVAL_SECONDS", "90")
    monkeypatch.setenv("SYNCD_STREAMS__REQUESTS__JITTER_SECONDS", "0")
    config = load_config(config_path)
    daemon = Daemon(config)
    daemon.app = App(config)
    scheduler = daemon._build_scheduler()
    scheduler.start(paused=True)  # job defaults are applied when the scheduler starts
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"work_orders", "requests"}
        seen = {
            name: (
                job.max_instances,
                job.coalesce,
                job.misfire_grace_time,
                job.trigger.interval.total_seconds(),
                job.trigger.jitter,
            )
            for name, job in jobs.items()
        }
        assert seen == {
            "work_orders": (1, True, 45, 45.0, 3),
            "requests": (1, True, 90, 90.0, None),
        }
    finally:
        scheduler.shutdown(wait=False)
        daemon._close_apps(everything=True)


# -- waiting for the rate budget ----------------------------------------------------------------
def test_a_cycle_waiting_for_the_budget_beats_and_a_stop_ends_the_wait(config: Config) -> None:
    """The watchdog sees the wait as progress, and SIGTERM does not have to outlast it: the
    request is abandoned before it is sent and the cycle ends as `stopped`."""
    app = App(config)
    ledger = app.open_ledger()
    try:
        stop = threading.Event()
        beats: list[float] = []

        def beat() -> None:
            beats.append(time.monotonic())
            if len(beats) == 3:
                stop.set()  # SIGTERM arrives while the call waits

        app.runtime(ledger, stop=stop, heartbeat=beat)
        app.cm_budget.wait_slice = 0.01
        app.cm_budget.pause(30)  # a 429 told everybody to wait 30 s
        started = time.monotonic()
        with pytest.raises(StopRequested):
            app.cm.entities()
        assert time.monotonic() - started < 5
        assert len(beats) >= 3
        assert app.stats.count() == 0  # nothing was sent
    finally:
        ledger.close()
        app.close()


# -- job exceptions ----------------------------------------------------------------------------
def test_a_job_that_raises_never_stops_the_scheduler(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []

    def broken_stream(self: App, name: str, rt: Any) -> Any:
        calls.append(time.monotonic())
        raise RuntimeError("boom")

    monkeypatch.setattr(App, "stream", broken_stream)
    daemon = Daemon(config)
    result: list[str] = []

    def watch() -> None:
        wait_until(lambda: len(calls) >= 3, 15, "three failing cycles")

        def failure_shown() -> str | None:
            # between cycles, not while the next one runs (that reads "running (last: …)")
            line = daemon.status_line()
            return line if "work_orders: error" in line else None

        result.append(wait_until(failure_shown, 15, "a status line that reports the failure"))
        daemon.request_stop("test")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with capture_logs() as logs:
        code = daemon.run()  # main thread: signals work as in `syncd run`
    watcher.join(timeout=5)
    assert code == 0
    assert len(calls) >= 3
    assert "work_orders: error" in result[0] and "boom" in result[0]
    failures = [e for e in logs if e["event"] == "cycle.job_failed"]
    assert len(failures) >= 3
    assert [e["event"] for e in logs][-1] == "daemon.stopped"


def test_an_unusable_ledger_is_one_line_and_exit_65(config: Config, capsys: Any) -> None:
    config.ledger_path.parent.mkdir(parents=True)
    config.ledger_path.write_bytes(b"this is not sqlite" * 300)
    with capture_logs():
        assert Daemon(config).run() == 65
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("syncd: ledger ") and "not a database" in err[0]


# -- one-shot runs ------------------------------------------------------------------------------
def test_one_shot_rejects_an_unknown_stream_before_locking(config: Config) -> None:
    with pytest.raises(KeyError):
        run_once(config, streams=["no_such_stream"])
    assert not (config.state_dir / "stream-no_such_stream.lock").exists()


# -- locks ------------------------------------------------------------------------------------
def test_lock_wait_ends_when_stop_is_set(tmp_path: Path) -> None:
    holder = stream_lock(tmp_path, "work_orders")
    holder.acquire()
    try:
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with pytest.raises(LockHeld, match=f"held by pid {os.getpid()}"):
            stream_lock(tmp_path, "work_orders").acquire(wait=30, stop=stop)
        assert time.monotonic() - started < 5
        with pytest.raises(RuntimeError):
            holder.acquire()
    finally:
        holder.release()
    with stream_lock(tmp_path, "work_orders").held():
        pass


def test_one_ledger_one_daemon_whatever_the_state_dir(
    config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ledger_file` may be an absolute path outside the state directory: a second daemon
    with another state directory must still find the ledger taken."""
    shared = tmp_path / "shared" / "ledger.db"
    monkeypatch.setenv("SYNCD_SYNCD__LEDGER_FILE", str(shared))
    monkeypatch.setenv("SYNCD_SYNCD__STATE_DIR", str(tmp_path / "state-a"))
    first = load_config(config_path)
    monkeypatch.setenv("SYNCD_SYNCD__STATE_DIR", str(tmp_path / "state-b"))
    second = load_config(config_path)
    assert first.ledger_path == second.ledger_path and first.state_dir != second.state_dir

    held = instance_lock(first.ledger_path)
    assert held.path == tmp_path / "shared" / "ledger.db.lock"
    held.acquire()
    daemon = Daemon(second)

    done = threading.Event()

    def stop_if_it_started() -> None:  # a wrong lock must fail the test, not hang it
        while not done.wait(0.05):
            if daemon.scheduler is not None and daemon.scheduler.running:
                daemon.request_stop("test")
                return

    threading.Thread(target=stop_if_it_started, daemon=True).start()
    try:
        with capture_logs(), pytest.raises(LockHeld, match="another `syncd run`"):
            daemon.run()
    finally:
        done.set()
        held.release()
    assert daemon.scheduler is None


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "instance.lock", "test")
    (tmp_path / "instance.lock").write_text("999999999")  # no such pid
    with capture_logs() as logs:
        lock.acquire()
    lock.release()
    assert [e["event"] for e in logs] == ["lock.stale_taken_over"]
    assert logs[0]["dead_pid"] == "999999999"


# -- sd_notify ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 1.0),
        ("2000000", "self", 1.0),
        ("2000000", "1", None),  # meant for another process
        ("0", None, None),  # no busy loop on a zero
        ("junk", None, None),
        (None, None, None),
    ],
)
def test_watchdog_period(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_period() == expected


def test_notify_abstract_socket_and_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"syncd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1", "STATUS=ok")
        assert sock.recv(1024) == b"READY=1\nSTATUS=ok"
    monkeypatch.setenv("NOTIFY_SOCKET", "@nobody-listens-here")
    assert sdnotify.notify("WATCHDOG=1") is False
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.notify("WATCHDOG=1") is False


# -- a cycle cut short by the rate budget ------------------------------------------------------
@pytest.mark.parametrize(("budget_wait", "expected"), [(0.0, 1.0), (0.2, 1.0), (42.0, 42.0)])
def test_partial_cycle_resumes_when_the_budget_has_room(
    config: Config, budget_wait: float, expected: float
) -> None:
    """Not one second later: a cycle started into an empty budget would re-read every open OT
    only to stop at its first Click Maint request, over and over until the window refills."""
    moved: dict[str, Any] = {}

    def modify_job(job_id: str, **changes: Any) -> None:
        moved[job_id] = changes["next_run_time"]

    daemon = Daemon(config)
    daemon.scheduler = SimpleNamespace(modify_job=modify_job)  # type: ignore[assignment]
    before = datetime.now(UTC)
    daemon._run_again_soon("work_orders", budget_wait)
    after = datetime.now(UTC)
    delay = moved["work_orders"]
    assert before + timedelta(seconds=expected) <= delay <= after + timedelta(seconds=expected)
