"""The daemon and the one-shot runs.

`syncd run`: an APScheduler `BackgroundScheduler` runs one job per stream (interval from the
config, jitter, `max_instances=1`, coalescing, misfire grace = one interval).  The main thread
owns signals and systemd: READY=1 once the local health check passes (config valid, ledger open
and migrated, scheduler running — deliberately *not* the remote servers, so an outage is logged
and retried instead of becoming a start failure and a restart loop), STATUS= after every cycle,
and WATCHDOG=1 only while the scheduler loop shows progress, so a hung loop gets restarted.
SIGTERM/SIGINT finish the record in hand, commit, and exit 0; SIGHUP reloads the config.
"""

from __future__ import annotations

import os
import signal
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
from .app import App
from .config import Config, ConfigError, load_config
from .engine.run import CycleReport
from .locks import LockHeld, instance_lock, stream_lock

log = structlog.get_logger("syncd.service")

__all__ = ["Daemon", "LockHeld", "run_once", "run_resync"]

WAIT_FOR_DAEMON_CYCLE = 900.0  # seconds a one-shot run waits for a daemon cycle to finish


@dataclass
class StreamState:
    last_status: str = "never run"
    last_end: float | None = None
    last_summary: str = ""
    running_since: float | None = None
    heartbeat: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, config: Config, *, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path or config.source or None
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.states: dict[str, StreamState] = {}
        self._lock = threading.Lock()
        self.app: App | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.loop_beat = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        state_dir = self.config.state_dir
        lock = instance_lock(state_dir)
        lock.acquire()
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> int:
        self._install_signals()
        self.app = App(self.config)
        ledger = self.app.open_ledger()  # migrations happen here, before READY
        try:
            interrupted = ledger.interrupt_stale_runs()
            if interrupted:
                log.warning("daemon.previous_runs_interrupted", count=interrupted)
        finally:
            ledger.close()
        self.scheduler = self._build_scheduler()
        self.scheduler.start()
        if not self.scheduler.running:
            log.error("daemon.scheduler_failed")
            return 1
        streams = self.app.enabled_streams()
        sdnotify.notify("READY=1", f"STATUS=started; streams: {', '.join(streams) or 'none'}")
        log.info(
            "daemon.ready", streams=streams, ledger=str(self.config.ledger_path), pid=os.getpid()
        )
        try:
            self._supervise()
        finally:
            sdnotify.notify("STOPPING=1", "STATUS=stopping: finishing the record in hand")
            log.info("daemon.stopping")
            self.scheduler.shutdown(wait=True)
            self.app.close()
            log.info("daemon.stopped")
        return 0

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: Any) -> None:
            log.info("daemon.signal", signal=signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _build_scheduler(self) -> BackgroundScheduler:
        assert self.app is not None
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
        assert self.app is not None
        now = datetime.now(UTC)
        for index, name in enumerate(self.app.enabled_streams()):
            settings = getattr(self.config.streams, name)
            self.states.setdefault(name, StreamState())
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
        period = sdnotify.watchdog_period() or 5.0
        period = min(period, 5.0)
        while not self.stop.wait(period):
            self.loop_beat = time.monotonic()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            if self._healthy():
                sdnotify.notify("WATCHDOG=1")
            else:
                log.error("daemon.stalled", detail="no progress; withholding the watchdog ping")
            sdnotify.notify(f"STATUS={self.status_line()}")

    def _healthy(self) -> bool:
        """Liveness: the scheduler runs and every running cycle has made recent progress."""
        if self.scheduler is None or not self.scheduler.running:
            return False
        stall = self.config.syncd.stall_seconds
        now = time.monotonic()
        with self._lock:
            return all(
                state.running_since is None or now - state.heartbeat < stall
                for state in self.states.values()
            )

    def status_line(self) -> str:
        parts = []
        with self._lock:
            for name, state in self.states.items():
                if state.running_since is not None:
                    parts.append(f"{name}: running")
                else:
                    parts.append(f"{name}: {state.last_status} {state.last_summary}".strip())
        if self.app is not None:
            budget = self.app.budget_snapshot()
            parts.append(f"clickmaint budget {budget['used_in_window']}/{budget['limit']}")
        return " | ".join(parts)

    def _reload(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("daemon.reload_failed", error=str(exc), detail="keeping the running config")
            return
        assert self.scheduler is not None
        self.scheduler.pause()
        while any(s.running_since is not None for s in self.states.values()):
            if self.stop.wait(0.5):
                return
        old_app = self.app
        self.config = config
        self.app = App(config)
        for job in self.scheduler.get_jobs():
            job.remove()
        self._schedule(self.scheduler)
        self.scheduler.resume()
        if old_app is not None:
            old_app.close()
        log.info("daemon.reloaded", source=config.source)

    # -- jobs -------------------------------------------------------------------------------
    def _job(self, name: str) -> None:
        assert self.app is not None
        if self.stop.is_set():
            return
        app = self.app
        state = self.states.setdefault(name, StreamState())
        lock = stream_lock(self.config.state_dir, name)
        try:
            lock.acquire()
        except LockHeld as exc:
            log.info("cycle.skipped", stream=name, reason=str(exc))
            return
        ledger = app.open_ledger()
        with self._lock:
            state.running_since = time.monotonic()
            state.heartbeat = time.monotonic()

        def beat() -> None:
            state.heartbeat = time.monotonic()

        try:
            rt = app.runtime(ledger, stop=self.stop, heartbeat=beat)
            report = app.stream(name, rt).run()
            with self._lock:
                state.last_status = report.status
                state.last_end = time.monotonic()
                state.last_summary = _short(report)
        finally:
            with self._lock:
                state.running_since = None
            ledger.close()
            lock.release()

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR and isinstance(event, JobExecutionEvent):
            log.error("job.error", job=event.job_id, error=repr(event.exception))
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job.missed", job=event.job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("job.still_running", job=event.job_id, detail="previous cycle not finished")


def _short(report: CycleReport) -> str:
    interesting = {
        k: v
        for k, v in report.counts.items()
        if not k.startswith(("unchanged", "echo", "cm_pages"))
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
) -> list[CycleReport]:
    app = App(config)
    names = streams or app.enabled_streams()
    for name in names:
        if name not in {"work_orders", "part_usage", "requests"}:
            raise KeyError(name)
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
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
            with lock.held(wait=WAIT_FOR_DAEMON_CYCLE):
                ledger = app.open_ledger()
                try:
                    rt = app.runtime(ledger, stop=stop, progress=progress)
                    reports.append(app.stream(name, rt).run(kind=kind, **options))
                finally:
                    ledger.close()
            if stop.is_set():
                break
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
        app.close()
    return reports


def run_once(
    config: Config,
    *,
    streams: list[str],
    dry_run: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[CycleReport]:
    return _one_shot(config, streams, dry_run=dry_run, kind="once", progress=progress, options={})


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
) -> list[CycleReport]:
    options = {"full": full, "since": since, "prefer": prefer, "rebaseline": rebaseline}
    return _one_shot(
        config, streams, dry_run=dry_run, kind="resync", progress=progress, options=options
    )
