"""The daemon and the one-shot runs.

`syncd run`: an APScheduler `BackgroundScheduler` runs one job per implemented, enabled stream
(interval from the config, jitter, `max_instances=1`, coalescing, misfire grace = one interval).
The main thread is the supervisor and owns signals and systemd:

* READY=1 once the local health check passes (config valid, ledger open and migrated, scheduler
  running) -- deliberately *not* the remote servers, so an outage is logged and retried instead
  of becoming a start failure and a restart loop;
* STATUS= on every supervisor tick (last result per stream, the error of a failing stream);
* WATCHDOG=1 only while the daemon is live: the scheduler runs, every running cycle has shown
  progress (a heartbeat per record / page) within `syncd.stall_seconds`, and every idle stream
  was started by the scheduler when due.  A cycle stuck in one call stops the pings, so systemd
  (`WatchdogSec=`) kills and restarts a hung process; a failing *server* does not (cycles fail
  fast and keep beating);
* SIGTERM/SIGINT: STOPPING=1, the record in hand is finished and committed, exit 0.  A second
  Ctrl-C exits at once (the ledger is crash-safe; the outbox covers the write in flight);
* SIGHUP: reload the config without blocking the supervisor (the watchdog keeps being fed while
  a long cycle finishes with the old settings); a broken new config is logged and the running
  one kept.

Job exceptions never reach APScheduler's thread: they are logged, recorded as the stream's last
result (visible in STATUS=) and the next cycle runs as scheduled.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from . import sdnotify
from .app import STREAMS, App
from .config import Config, ConfigError, load_config
from .engine.run import CycleReport
from .ledger.db import LedgerError
from .locks import FileLock, LockHeld, instance_lock, stream_lock

log = structlog.get_logger("syncd.service")

__all__ = ["Daemon", "LockHeld", "run_once", "run_resync"]

WAIT_FOR_DAEMON_CYCLE = 900.0  # seconds a one-shot run waits for a daemon cycle to finish
EX_DATAERR = 65  # the ledger is corrupt or of an unknown schema
EX_CANTCREAT = 73  # the state directory cannot be created or written
MAX_TICK = 5.0  # the supervisor wakes at least this often (STATUS=, liveness check)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class StreamState:
    """What the supervisor knows about one stream (guarded by `Daemon._lock`)."""

    last_status: str = "never run"
    last_summary: str = ""
    last_error: str | None = None
    #: monotonic time the last cycle (or skipped / failed job) of this stream ended
    last_end: float | None = None
    failures: int = 0  # consecutive failed cycles
    cycles: int = 0
    running_since: float | None = None
    #: monotonic time of the last sign of progress of the running cycle
    heartbeat: float = field(default_factory=time.monotonic)
    #: monotonic time the scheduler last started (or is due to start) this stream's job
    fired: float = field(default_factory=time.monotonic)


def configured_streams(config: Config) -> list[str]:
    """Every stream enabled in the config, implemented or not."""
    return [n for n in type(config.streams).model_fields if getattr(config.streams, n).enabled]


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        setup_logging: Callable[[Config], None] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path or config.source or None
        #: applies a reloaded config's log_level / log_format (the CLI's flags still win)
        self.setup_logging = setup_logging
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.states: dict[str, StreamState] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._signals: list[str] = []
        self._previous_handlers: dict[int, Any] = {}
        self.app: App | None = None
        self._app_users: dict[int, int] = {}
        self._retired: list[App] = []
        self.scheduler: BackgroundScheduler | None = None
        self._stalled: str | None = None
        self._stalled_since = 0.0
        self._stale_runs_pending = True

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped; raises `LockHeld` when another `syncd run` owns the ledger.

        A state directory or ledger that cannot be used is reported in one line with an exit
        code a restart will not change (73 / 65), instead of a traceback and a restart loop.
        """
        # the state directory holds the stream locks; the instance lock is keyed on the
        # ledger file, which may live outside it
        try:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fatal(
                EX_CANTCREAT,
                "daemon.state_dir_unusable",
                f"state directory {self.config.state_dir}: {exc.strerror or exc}",
            )
        lock = instance_lock(self.config.ledger_path)
        try:
            lock.acquire()
        except OSError as exc:
            return _fatal(
                EX_CANTCREAT,
                "daemon.state_dir_unusable",
                f"lock file {lock.path}: {exc.strerror or exc}",
            )
        try:
            return self._run()
        finally:
            lock.release()

    def request_stop(self, reason: str = "requested") -> None:
        """Stop from another thread (tests, `syncd demo`): same path as SIGTERM."""
        with self._lock:
            self._signals.append(reason)
        self.stop.set()
        self._wake.set()

    def _run(self) -> int:
        self._install_signals()
        try:
            self.app = App(self.config)
            try:
                ledger = self.app.open_ledger()  # migrations happen here, before READY
                ledger.close()
            except (LedgerError, sqlite3.DatabaseError, OSError) as exc:
                self.app.close()
                return _fatal(
                    EX_DATAERR, "daemon.ledger_unusable", f"ledger {self.config.ledger_path}: {exc}"
                )
            try:
                self._interrupt_stale_runs()
            except sqlite3.Error as exc:  # retried on the supervisor's ticks
                log.warning("daemon.stale_runs_deferred", error=str(exc))
            missing = [n for n in configured_streams(self.config) if n not in STREAMS]
            if missing:
                log.warning(
                    "daemon.streams_not_implemented",
                    streams=missing,
                    detail="enabled in the config but not available in this version; "
                    "not scheduled (set enabled = false to silence this)",
                )
            self.scheduler = self._build_scheduler()
            self.scheduler.start()
            if not self.scheduler.running:
                log.error("daemon.scheduler_failed")
                return 1
            streams = self.app.enabled_streams()
            if not streams:
                log.warning("daemon.no_streams", detail="no enabled stream; the daemon idles")
            sdnotify.notify("READY=1", f"STATUS=started; streams: {', '.join(streams) or 'none'}")
            log.info(
                "daemon.ready",
                streams=streams,
                ledger=str(self.config.ledger_path),
                pid=os.getpid(),
                watchdog_seconds=sdnotify.watchdog_period(),
            )
            try:
                self._supervise()
            finally:
                sdnotify.notify("STOPPING=1", "STATUS=stopping: finishing the record in hand")
                log.info("daemon.stopping")
                self.scheduler.shutdown(wait=True)
                self._close_apps(everything=True)
                log.info("daemon.stopped")
            return 0
        finally:
            self._restore_signals()

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self.stop.is_set() and signum == signal.SIGINT:
                # a second Ctrl-C: leave now (the ledger is crash-safe, the outbox covers the
                # write in flight); a repeated SIGTERM just keeps the graceful stop going
                os.write(2, b"syncd: second Ctrl-C, exiting without waiting\n")
                os._exit(130)
            self._signals.append(name)
            self.stop.set()
            self._wake.set()

        def on_hup(_signum: int, _frame: Any) -> None:
            self.reload_requested.set()
            self._wake.set()

        for sig, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop)):
            self._previous_handlers[sig] = signal.signal(sig, handler)
        self._previous_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def _build_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        scheduler.add_listener(
            self._on_event,
            EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED,
        )
        self._schedule(scheduler)
        return scheduler

    def _schedule(self, scheduler: BackgroundScheduler) -> None:
        """(Re)create one job per enabled stream; jobs of streams no longer enabled go away."""
        assert self.app is not None
        wanted = self.app.enabled_streams()
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        now = datetime.now(UTC)
        mono = time.monotonic()
        with self._lock:
            self.states = {name: self.states.get(name) or StreamState() for name in wanted}
            for index, name in enumerate(wanted):
                self.states[name].fired = mono + index * 2
        for index, name in enumerate(wanted):
            settings = getattr(self.config.streams, name)
            scheduler.add_job(
                self._job,
                "interval",
                seconds=settings.interval_seconds,
                jitter=settings.jitter_seconds or None,
                id=name,
                name=f"sync {name}",
                args=[name],
                replace_existing=True,
                misfire_grace_time=max(1, int(settings.interval_seconds)),
                next_run_time=now + timedelta(seconds=index * 2),  # first cycles staggered
            )

    # -- the supervisor loop (main thread) ---------------------------------------------------
    def _supervise(self) -> None:
        period = min(sdnotify.watchdog_period() or MAX_TICK, MAX_TICK)
        next_tick = time.monotonic()  # first ping right after READY
        while True:
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            self._log_signals()
            if self.stop.is_set():
                return
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                try:
                    self._reload()
                except Exception as exc:  # the supervisor must outlive any reload problem
                    log.exception("daemon.reload_failed", error=repr(exc))
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + period
                self._tick()

    def _log_signals(self) -> None:
        with self._lock:
            pending, self._signals = self._signals, []
        for name in pending:
            if name.startswith("SIG"):
                log.info("daemon.signal", signal=name)
            else:
                log.info("daemon.stop_requested", reason=name)

    def _tick(self) -> None:
        problem = self.liveness_problem()
        if problem is None:
            sdnotify.notify("WATCHDOG=1")
            if self._stalled is not None:
                log.warning(
                    "daemon.recovered",
                    was=self._stalled,
                    stalled_for=round(time.monotonic() - self._stalled_since, 1),
                )
                self._stalled = None
        elif self._stalled is None:
            self._stalled = problem
            self._stalled_since = time.monotonic()
            log.error("daemon.stalled", reason=problem, detail="withholding the watchdog ping")
        # the rest is housekeeping: a failure there is logged, never fatal to the supervisor
        for step in (self._publish_status, self._close_apps, self._interrupt_stale_runs):
            try:
                step()
            except Exception as exc:
                log.exception("daemon.tick_step_failed", step=step.__name__, error=repr(exc))

    def _publish_status(self) -> None:
        sdnotify.notify(f"STATUS={self.status_line()}")

    def liveness_problem(self) -> str | None:
        """None when live; else why not (the scheduler is gone, a cycle or the timer hangs)."""
        if self.scheduler is None or not self.scheduler.running:
            return "the scheduler is not running"
        stall = self.config.syncd.stall_seconds
        now = time.monotonic()
        with self._lock:
            for name, state in self.states.items():
                if state.running_since is not None:
                    quiet = now - state.heartbeat
                    if quiet > stall:
                        return f"{name}: the running cycle made no progress for {quiet:.0f}s"
                    continue
                # idle since the later of the last start and the last end: a cycle longer
                # than the interval is followed by the next one within one interval of its
                # end (not of its start, which may be long past)
                idle_since = max(state.fired, state.last_end or state.fired)
                settings = getattr(self.config.streams, name)
                overdue = now - idle_since - settings.interval_seconds - settings.jitter_seconds
                if overdue > stall:
                    return f"{name}: no cycle was started for {now - idle_since:.0f}s"
        return None

    def status_line(self) -> str:
        parts = []
        if self._stalled is not None:
            parts.append(f"STALLED: {self._stalled}")
        with self._lock:
            for name, state in self.states.items():
                last = state.last_status
                if state.failures > 1:
                    last += f" x{state.failures}"
                if state.last_summary:
                    last += f" {state.last_summary}"
                if state.last_error and state.last_status != "ok":
                    last += f" ({state.last_error[:120]})"
                if state.running_since is not None:
                    parts.append(f"{name}: running (last: {last})")
                else:
                    parts.append(f"{name}: {last}")
        if self.app is not None:
            budget = self.app.budget_snapshot()
            parts.append(f"clickmaint budget {budget['used_in_window']}/{budget['limit']}")
        return " | ".join(parts) or "idle"

    def _reload(self) -> None:
        """Swap in a new config; never waits for running cycles (they finish on the old one)."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("daemon.reload_failed", error=str(exc), detail="keeping the running config")
            return
        if (config.state_dir, config.ledger_path) != (
            self.config.state_dir,
            self.config.ledger_path,
        ):
            log.error(
                "daemon.reload_failed",
                error=f"state_dir/ledger_file changed to {config.ledger_path}",
                detail="a different ledger needs a restart; keeping the running config",
            )
            return
        try:
            app = App(config, succeeds=self.app)  # one rate budget across the reload
        except Exception as exc:  # pragma: no cover - App() only builds clients
            log.error("daemon.reload_failed", error=repr(exc), detail="keeping the running config")
            return
        assert self.scheduler is not None
        logging_changed = (config.syncd.log_level, config.syncd.log_format) != (
            self.config.syncd.log_level,
            self.config.syncd.log_format,
        )
        with self._lock:
            old, self.app, self.config = self.app, app, config
            if old is not None:
                self._retired.append(old)
        if logging_changed and self.setup_logging is not None:
            self.setup_logging(config)
        self._schedule(self.scheduler)
        self._close_apps()
        missing = [n for n in configured_streams(config) if n not in STREAMS]
        log.info(
            "daemon.reloaded",
            source=config.source,
            streams={n: getattr(config.streams, n).interval_seconds for n in app.enabled_streams()},
            not_implemented=missing or None,
        )

    def _close_apps(self, *, everything: bool = False) -> None:
        """Close the HTTP clients of replaced Apps once no cycle uses them any more."""
        with self._lock:
            done = [a for a in self._retired if everything or not self._app_users.get(id(a))]
            self._retired = [a for a in self._retired if a not in done]
            if everything and self.app is not None:
                done.append(self.app)
        for app in done:
            try:
                app.close()
            except Exception as exc:  # pragma: no cover - closing sockets
                log.warning("daemon.close_failed", error=repr(exc))

    def _interrupt_stale_runs(self) -> None:
        """Mark runs left 'running' by dead processes as interrupted.

        Only while no other process holds a stream lock: a live `sync --once`/`resync` owns
        its stream's lock for its whole run, and its run row must stay 'running'.
        """
        if not self._stale_runs_pending or self.app is None:
            return
        held: list[FileLock] = []
        try:
            for name in STREAMS:
                lock = stream_lock(self.config.state_dir, name)
                try:
                    lock.acquire()
                except LockHeld:
                    return  # retried on a later tick
                held.append(lock)
            ledger = self.app.open_ledger()
            try:
                interrupted = ledger.interrupt_stale_runs()
            finally:
                ledger.close()
            self._stale_runs_pending = False
            if interrupted:
                log.warning("daemon.previous_runs_interrupted", count=interrupted)
        finally:
            for lock in held:
                lock.release()

    # -- jobs (scheduler threads) -------------------------------------------------------------
    def _job(self, name: str) -> None:
        if self.stop.is_set():
            return
        with self._lock:
            state = self.states.get(name)
            app = self.app
            if state is None or app is None:
                return  # the stream was disabled by a reload
            state.fired = time.monotonic()
            self._app_users[id(app)] = self._app_users.get(id(app), 0) + 1
        try:
            self._cycle(name, app, state)
        except Exception as exc:
            log.exception("cycle.job_failed", stream=name)
            with self._lock:
                state.last_status = "error"
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.last_summary = datetime.now(UTC).strftime("%H:%M:%S")
                state.failures += 1
        finally:
            with self._lock:
                state.running_since = None
                state.last_end = time.monotonic()
                self._app_users[id(app)] -= 1
                if not self._app_users[id(app)]:
                    del self._app_users[id(app)]

    def _cycle(self, name: str, app: App, state: StreamState) -> None:
        lock = stream_lock(app.config.state_dir, name)
        try:
            lock.acquire()
        except LockHeld as exc:
            log.info("cycle.skipped", stream=name, reason=str(exc))
            return
        try:
            with self._lock:
                state.running_since = state.heartbeat = time.monotonic()

            def beat() -> None:
                state.heartbeat = time.monotonic()

            ledger = app.open_ledger()
            try:
                rt = app.runtime(ledger, stop=self.stop, heartbeat=beat)
                report = app.stream(name, rt).run()
            finally:
                ledger.close()
            with self._lock:
                state.cycles += 1
                state.last_status = report.status
                state.last_error = report.error
                state.last_summary = _short(report)
                state.failures = state.failures + 1 if report.status == "failed" else 0
            if report.status == "partial" and not self.stop.is_set():
                self._run_again_soon(name, report.budget_wait)
        finally:
            lock.release()

    def _run_again_soon(self, name: str, budget_wait: float) -> None:
        """A cycle cut short by the rate budget has a backlog: continue when the budget has
        room again instead of idling until the next interval (an idle budget is wasted
        budget). Not earlier: a cycle started into an empty budget would re-read every open
        OT from mantenimiento only to stop at its first Click Maint request, once a second
        for the rest of the window."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        delay = max(1.0, budget_wait)
        try:
            scheduler.modify_job(name, next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        except Exception:  # the job may have been removed by a reload meanwhile
            log.debug("cycle.reschedule_failed", stream=name)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR and isinstance(event, JobExecutionEvent):
            log.error("job.error", job=event.job_id, error=repr(event.exception))
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job.missed", job=event.job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("job.still_running", job=event.job_id, detail="previous cycle not finished")


def _fatal(code: int, event: str, message: str) -> int:
    """A start-up problem a restart cannot fix: one log event, one stderr line."""
    log.error(event, error=message)
    sdnotify.notify(f"STATUS=failed: {message}")
    print(f"syncd: {message}", file=sys.stderr, flush=True)
    return code


def _short(report: CycleReport) -> str:
    interesting = {
        k: v
        for k, v in report.counts.items()
        if v and not k.startswith(("unchanged", "echo", "cm_pages"))
    }
    at = datetime.now(UTC).strftime("%H:%M:%S")
    return f"{at} " + (
        ", ".join(f"{k}={v}" for k, v in sorted(interesting.items())) or "no changes"
    )


# -- one-shot runs --------------------------------------------------------------------------
def _one_shot(
    config: Config,
    streams: list[str],
    *,
    dry_run: bool,
    kind: str,
    progress: Callable[[str, int, int | None], None] | None,
    options: dict[str, Any],
    signals: list[str] | None = None,
) -> list[CycleReport]:
    for name in streams:
        if name not in STREAMS:
            raise KeyError(name)
    app = App(config)
    names = streams or app.enabled_streams()
    stop = threading.Event()
    restore = _cooperative_signals(stop, signals if signals is not None else [])
    reports: list[CycleReport] = []
    try:
        for name in names:
            if dry_run:
                ledger = app.scratch_ledger()
                try:
                    rt = app.runtime(ledger, stop=stop, dry_run=True, progress=progress)
                    reports.append(app.stream(name, rt).run(kind="dry-run", **options))
                finally:
                    ledger.close()
                continue
            lock = stream_lock(config.state_dir, name)
            try:
                lock.acquire()
            except LockHeld as exc:
                # the daemon is in the middle of a cycle of this stream: wait for it
                log.info("sync.waiting_for_lock", stream=name, holder=str(exc))
                try:
                    lock.acquire(wait=WAIT_FOR_DAEMON_CYCLE, stop=stop)
                except LockHeld:
                    if stop.is_set():
                        break
                    raise
            try:
                ledger = app.open_ledger()
                try:
                    rt = app.runtime(ledger, stop=stop, progress=progress)
                    reports.append(app.stream(name, rt).run(kind=kind, **options))
                finally:
                    ledger.close()
            finally:
                lock.release()
            if stop.is_set():
                break
    except KeyboardInterrupt:
        stop.set()
    finally:
        restore()
        app.close()
    return reports


def _cooperative_signals(stop: threading.Event, received: list[str]) -> Callable[[], None]:
    """SIGTERM and a first Ctrl-C end the run after the record in hand (a second Ctrl-C
    interrupts at once); their names are appended to `received`.  Only the main thread can
    install handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    return restore


def run_once(
    config: Config,
    *,
    streams: list[str],
    dry_run: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
    signals: list[str] | None = None,
) -> list[CycleReport]:
    """One cycle of each stream.  `signals` receives the names of the stop signals that
    ended the run early (its reports then say `stopped`)."""
    return _one_shot(
        config,
        streams,
        dry_run=dry_run,
        kind="once",
        progress=progress,
        options={},
        signals=signals,
    )


def run_resync(
    config: Config,
    *,
    streams: list[str],
    full: bool = False,
    since: str | None = None,
    prefer: str | None = None,
    rebaseline: bool = False,
    dry_run: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
    signals: list[str] | None = None,
) -> list[CycleReport]:
    """A manual resync (resumable: a stopped one continues where it was next time);
    `signals` as for `run_once`."""
    options = {
        "full": full,
        "since": since,
        "prefer": prefer,
        "rebaseline": rebaseline,
        "include_closed": True,  # a resync also re-reads closed OTs
    }
    return _one_shot(
        config,
        streams,
        dry_run=dry_run,
        kind="resync",
        progress=progress,
        options=options,
        signals=signals,
    )
