"""End to end: `syncd sandbox` and `syncd run` as real processes over loopback sockets.

Every wait polls with a deadline (`procs.wait_until`); nothing sleeps a fixed time.  Tests that
need to stop a server or inject a fault into a live simulator start the simulators in this
process (`start_sandbox`, still real sockets) and run only syncd as a subprocess.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.engine.records import strip_marker
from syncd.ledger.store import Ledger
from syncd.sandbox.catalog import PARTS
from syncd.sandbox.launch import Sandbox, config_text, start_sandbox
from syncd.sandbox.server import ServerThread

from .procs import (
    ALL_STREAMS,
    FAST,
    REPO,
    NotifySocket,
    Process,
    SandboxProcess,
    base_env,
    compare,
    duplicates,
    links,
    load,
    run_cli,
    syncd_argv,
    unlinked,
    wait_until,
)

OPEN_ESTADOS = ("ESPERA", "PROGRAMADA", "EJECUCION")
STREAMS = ("work_orders", "part_usage", "requests")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def spawned() -> Iterator[list[Process]]:
    """Every syncd process a test starts; whatever is still running at the end is killed."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    """Both simulators in this process (real sockets), small seeds.

    15 OTs, not fewer: with 12 or fewer (and the default 40 avisos) the seed gives every OT an
    id below 1000, where the generated config's `first_ot_id` never looks.
    """
    sandbox = start_sandbox(directory=tmp_path / "sb", work_orders=8, ots=15)
    assert min(sandbox.mt.ots) >= 1000
    yield sandbox
    sandbox.stop()


def daemon(spawned: list[Process], env: dict[str, str], *args: str, **extra: str) -> Process:
    process = Process(["run", *args], base_env(**{**FAST, **env, **extra}))
    spawned.append(process)
    return process


def assert_no_running_runs(config_path: Path, credentials: Path) -> None:
    config = load(config_path, credentials)
    ledger = Ledger.open(config.ledger_path)  # read-write: migrations, integrity, WAL replay
    try:
        running = [r.run_id for r in ledger.recent_runs(500) if r.status == "running"]
        assert ledger.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        ledger.close()
    assert running == [], f"runs left 'running': {running}"


# ---------------------------------------------------------------------------------------------
def test_sandbox_and_daemon_processes_converge_propagate_and_stop(
    tmp_path: Path, spawned: list[Process], notify: NotifySocket
) -> None:
    sandbox = SandboxProcess(tmp_path / "sb", work_orders=20, ots=20)
    try:
        _converge_propagate_stop(sandbox, spawned, notify)
    finally:
        sandbox.stop()


def _converge_propagate_stop(
    sandbox: SandboxProcess, spawned: list[Process], notify: NotifySocket
) -> None:
    started = time.monotonic()
    syncd = daemon(
        spawned, sandbox.env(), NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000", **ALL_STREAMS
    )
    ready_at = notify.wait_for("READY", "1", timeout=20)
    assert ready_at >= started
    syncd.wait_for("daemon.ready", timeout=5)

    # 1. convergence of both seeded systems, all three streams
    first = syncd.wait_for("cycle.end", timeout=30, where=lambda e: e["stream"] == "work_orders")
    assert first["status"] == "ok", first
    assert first["counts"].get("created_mt", 0) > 0 and first["counts"].get("created_cm", 0) > 0
    syncd.wait_settled(STREAMS, timeout=40)
    config = load(sandbox.config_path, sandbox.credentials_dir)
    cm_dump, mt_dump = sandbox.dumps()
    pairs, problems = compare(config, cm_dump, mt_dump)
    assert problems == []
    assert pairs >= 30
    assert duplicates(config, cm_dump, mt_dump) == []
    assert unlinked(config, cm_dump, mt_dump) == ([], [])

    # 2. live edits on both servers, through the simulators' control routes
    http = sandbox.http
    open_ots = {o["id"] for o in mt_dump["ots"] if o["detail"]["raw_status"] in OPEN_ESTADOS}
    cm_pair, mt_pair = [(c, m) for c, m in links(config) if m in open_ots][:2]
    r = http.patch(
        f"{sandbox.cm_root}/_sim/work_orders/{cm_pair[0]}",
        json={"title": "E2E: edited in Click Maint", "description": "changed by the test"},
    )
    r.raise_for_status()
    r = http.patch(
        f"{sandbox.mt_root}/_sim/ots/{mt_pair[1]}",
        json={"descripcion_corta": "E2E: edited in mantenimiento", "notas": "nota de prueba"},
    )
    r.raise_for_status()
    r = http.post(
        f"{sandbox.cm_root}/_sim/work_orders",
        json={"title": "E2E: new in Click Maint", "description": "fresh", "priority": "high"},
    )
    r.raise_for_status()
    new_wo = r.json()["id"]
    # a technician books a part on the first pair's work order; someone files a request
    bearing = next(p for p in PARTS if p.number == "BRG-6204")
    r = http.post(
        f"{sandbox.cm_root}/_sim/parts/{bearing.cm_part_id}/transactions",
        json={"type": "usage", "quantity": 1.5, "work_order_id": cm_pair[0]},
    )
    r.raise_for_status()
    usage = r.json()["id"]
    r = http.post(
        f"{sandbox.cm_root}/_sim/requests",
        json={"title": "E2E: fuga en la bomba", "description": "se ve agua bajo la bomba"},
    )
    r.raise_for_status()

    def propagated() -> list[str]:
        cm_now, mt_now = sandbox.dumps()
        wos = {w["id"]: w for w in cm_now["work_orders"]}
        ots = {o["id"]: o["detail"] for o in mt_now["ots"]}
        mirror = dict(links(config)).get(new_wo)
        missing = []
        booked = [
            m
            for m in mt_now["materiales_utilizados"]
            if f"tx:{usage} " in (m.get("comentario") or "")
        ]
        if [(m["ot_id"], str(m["cantidad"])) for m in booked] != [(cm_pair[1], "1.50")]:
            missing.append(f"usage transaction -> material on OT (found {booked})")
        if not any("E2E: fuga en la bomba" in a["descripcion"] for a in mt_now["avisos"]):
            missing.append("new request -> aviso")
        if ots[cm_pair[1]]["descripcion"] != "E2E: edited in Click Maint":
            missing.append("Click Maint title -> OT")
        if strip_marker(ots[cm_pair[1]]["notas"]) != "changed by the test":
            missing.append("Click Maint description -> OT")
        if wos[mt_pair[0]]["title"] != "E2E: edited in mantenimiento":
            missing.append("OT title -> work order")
        if strip_marker(wos[mt_pair[0]]["description"] or "").strip() != "nota de prueba":
            missing.append("OT notas -> work order")
        if mirror is None or ots[mirror]["descripcion"] != "E2E: new in Click Maint":
            missing.append("new work order -> OT")
        return missing

    wait_until(lambda: not propagated(), 30, "the edits to propagate", 0.2, propagated)
    syncd.wait_settled(STREAMS, timeout=40, after=syncd.mark())
    cm_dump, mt_dump = sandbox.dumps()
    assert compare(config, cm_dump, mt_dump)[1] == []
    assert duplicates(config, cm_dump, mt_dump) == []
    assert unlinked(config, cm_dump, mt_dump) == ([], [])

    # 3. sd_notify: STATUS lines name the stream, the watchdog is fed about once a second
    statuses = [value for _, value in notify.lines("STATUS")]
    assert any("work_orders" in s for s in statuses), statuses
    pings = notify.pings(since=ready_at)
    assert len(pings) >= 3
    assert max(b - a for a, b in itertools.pairwise(pings)) < 2.0  # WATCHDOG_USEC

    # 4. SIGTERM: STOPPING=1, exit 0 within seconds, a clean ledger, a healthy status
    term = time.monotonic()
    syncd.signal(signal.SIGTERM)
    assert syncd.stop(timeout=10) == 0, syncd.tail()
    assert time.monotonic() - term < 5
    assert notify.wait_for("STOPPING", "1", timeout=2) >= term
    assert syncd.find("daemon.stopped")
    assert syncd.stderr == [] or all(not line.strip() for line in syncd.stderr), syncd.stderr
    assert_no_running_runs(sandbox.config_path, sandbox.credentials_dir)
    status = run_cli("status", "--json", env=base_env(**ALL_STREAMS, **sandbox.env()))
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["healthy"] is True, report["problems"]
    assert list(report["streams"]) == list(STREAMS)


# ---------------------------------------------------------------------------------------------
def test_watchdog_pings_stop_while_a_cycle_hangs_and_resume_after(
    box: Sandbox, spawned: list[Process], notify: NotifySocket
) -> None:
    syncd = daemon(
        spawned,
        box.env(),
        NOTIFY_SOCKET=notify.path,
        WATCHDOG_USEC="1000000",  # a ping every 0.5 s
        SYNCD_SYNCD__STALL_SECONDS="2",
        SYNCD_CLICKMAINT__TIMEOUT_SECONDS="60",  # the client waits; only the watchdog notices
    )
    first = syncd.wait_for("cycle.end", timeout=30)
    assert first["counts"].get("created_cm") and first["counts"].get("created_mt"), first
    syncd.wait_quiet_cycle(timeout=30)
    healthy_from = notify.wait_for("READY", "1", timeout=1)
    wait_until(lambda: len(notify.pings(healthy_from)) >= 3, 5, "watchdog pings")

    # the next cycle's first Click Maint request answers only after 6 s
    box.cm.faults.configure({"timeout_rate": 1.0, "timeout_delay": 6.0})
    mark = syncd.mark()
    stalled = syncd.wait_for("daemon.stalled", timeout=15, after=mark)
    box.cm.faults.clear()  # only the request in flight hangs
    stalled_at = time.monotonic()
    assert "no progress" in stalled["reason"], stalled
    recovered = syncd.wait_for("daemon.recovered", timeout=15, after=mark)
    assert recovered["stalled_for"] >= 1.0
    wait_until(
        lambda: len(notify.pings(stalled_at)) >= 2, 10, "watchdog pings to resume after the hang"
    )
    pings = notify.pings(healthy_from)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # normally 0.5 s apart; withheld from the stall (≥ 2 s without progress) until progress
    assert max(gaps) >= 2.5, gaps
    assert sorted(gaps)[len(gaps) // 2] < 1.0, gaps
    assert any("STALLED" in v for _, v in notify.lines("STATUS"))
    assert syncd.stop() == 0
    assert syncd.find("cycle.end", lambda e: e["status"] == "ok", after=mark)


# ---------------------------------------------------------------------------------------------
def _set_interval(config_path: Path, seconds: float) -> None:
    text = config_path.read_text()
    text, n = re.subn(
        r"(\[streams\.work_orders\]\ninterval_seconds = )[0-9.]+(\njitter_seconds = )[0-9.]+",
        rf"\g<1>{seconds}\g<2>0",
        text,
    )
    assert n == 1
    config_path.write_text(text)


def test_single_instance_stale_lock_once_and_reload(box: Sandbox, spawned: list[Process]) -> None:
    assert box.config_path is not None
    _set_interval(box.config_path, 1)
    env = {**box.env()}
    env_file_interval = {k: v for k, v in FAST.items() if "INTERVAL" not in k and "JITTER" not in k}
    cli_env = base_env(**env_file_interval, **env)

    first = Process(["run"], cli_env)
    spawned.append(first)
    first.wait_for("cycle.end", timeout=30, where=lambda e: e["status"] == "ok")

    # a second daemon on the same ledger: one line, EX_TEMPFAIL
    second = run_cli("run", env=cli_env, timeout=30)
    assert second.returncode == 75, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "another `syncd run`" in lines[0] and str(first.pid) in lines[0]

    # `sync --once` while the daemon runs: it waits for the daemon's cycle, the daemon skips
    # its cycles while the one-shot holds the stream (slow servers make both cycles overlap)
    box.mt.faults.configure({"latency_ms_min": 60, "latency_ms_max": 90})
    mark = first.mark()
    first.wait_for("cycle.start", timeout=10, after=mark)
    once = run_cli("sync", "--once", "--json", env=cli_env, timeout=60)
    assert once.returncode == 0, once.stdout + once.stderr
    reports = json.loads(once.stdout)
    assert [r["status"] for r in reports] == ["ok"]
    waited = "sync.waiting_for_lock" in once.stderr
    skipped = bool(first.find("cycle.skipped", after=mark))
    assert waited or skipped, once.stderr
    box.mt.faults.clear()

    # kill -9: the flock dies with the process; the next daemon takes the lock over
    first.proc.kill()
    first.proc.wait(timeout=10)
    third = Process(["run"], cli_env)
    spawned.append(third)
    third.wait_for("daemon.ready", timeout=20)
    taken = third.wait_for("lock.stale_taken_over", timeout=5)
    assert taken["dead_pid"] == str(first.pid)
    mark = third.mark()
    third.wait_quiet_cycle(timeout=20, after=mark)

    # SIGHUP with a changed interval: reloaded, the new interval is in effect
    _set_interval(box.config_path, 2)
    mark = third.mark()
    third.signal(signal.SIGHUP)
    reloaded = third.wait_for("daemon.reloaded", timeout=10, after=mark)
    assert reloaded["streams"] == {"work_orders": 2.0}
    third.wait_for("cycle.start", timeout=10, after=mark)
    third.wait_for("cycle.start", timeout=10, after=third.mark())
    starts = [e["timestamp"] for e in third.find("cycle.start", after=mark)]
    assert len(starts) >= 2

    # SIGHUP with a broken config: logged, the daemon keeps syncing with the old one
    good = box.config_path.read_text()
    box.config_path.write_text(good + "\n[broken\n")
    mark = third.mark()
    third.signal(signal.SIGHUP)
    failed = third.wait_for("daemon.reload_failed", timeout=10, after=mark)
    assert "invalid TOML" in failed["error"]
    third.wait_for("cycle.end", timeout=10, after=mark, where=lambda e: e["status"] == "ok")
    assert third.proc.poll() is None
    assert third.stop() == 0
    box.config_path.write_text(good)
    assert_no_running_runs(box.config_path, box.credentials_dir)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
BAD_CONFIGS = {
    "missing key": (lambda t: t.replace("entity_id = 1\n", ""), "missing required key"),
    "wrong type": (
        lambda t: t.replace("entity_id = 1\n", 'entity_id = "one"\n'),
        "clickmaint.entity_id",
    ),
    "unknown key": (
        lambda t: t.replace('log_level = "info"\n', 'log_level = "info"\ncolour = "blue"\n'),
        "unknown key syncd.colour",
    ),
    "invalid toml": (lambda t: t + "\n[streams\n", "invalid TOML"),
    "unreadable credential": (lambda t: t, "unreadable"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exits_78_with_one_line(tmp_path: Path, case: str) -> None:
    transform, expected = BAD_CONFIGS[case]
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "clickmaint-api-key").write_text("key\n")
    (creds / "mantenimiento-password").write_text("secret\n")
    if case == "unreadable credential":
        (creds / "mantenimiento-password").unlink()
        if os.geteuid() == 0:  # root reads any file: a directory is unreadable for everybody
            (creds / "mantenimiento-password").mkdir()
        else:
            (creds / "mantenimiento-password").write_text("secret\n")
            (creds / "mantenimiento-password").chmod(0)
    config = tmp_path / "config.toml"
    text = config_text("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9", tmp_path / "state")
    config.write_text(transform(text))
    result = run_cli(
        "run",
        env=base_env(SYNCD_CONFIG=str(config), CREDENTIALS_DIRECTORY=str(creds)),
        timeout=30,
    )
    assert result.returncode == 78, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncd: config error: ") and expected in lines[0], lines[0]
    assert "secret" not in result.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_an_unusable_state_directory_exits_73_with_one_line(tmp_path: Path) -> None:
    """A state directory that cannot be created (here: a file is in the way) is not fixed by
    a restart: exit 73, which the unit's RestartPreventExitStatus= stops on."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "clickmaint-api-key").write_text("key\n")
    (creds / "mantenimiento-password").write_text("secret\n")
    (tmp_path / "state").write_text("not a directory")
    config = tmp_path / "config.toml"
    config.write_text(
        config_text("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9", tmp_path / "state")
    )
    result = run_cli(
        "run",
        env=base_env(SYNCD_CONFIG=str(config), CREDENTIALS_DIRECTORY=str(creds)),
        timeout=30,
    )
    assert result.returncode == 73, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()  # for a person; the JSON log line is for journald
    assert len(lines) == 1 and lines[0].startswith("syncd: state directory"), lines
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "daemon.state_dir_unusable"
    unit = (Path(__file__).parents[2] / "systemd" / "syncd.service").read_text()
    (prevent,) = [x for x in unit.splitlines() if x.startswith("RestartPreventExitStatus=")]
    assert "73" in prevent.partition("=")[2].split()


# ---------------------------------------------------------------------------------------------
def test_cycles_fail_while_mantenimiento_is_down_and_recover(
    box: Sandbox, spawned: list[Process], notify: NotifySocket
) -> None:
    env = {**box.env(), "SYNCD_SYNCD__UNHEALTHY_AFTER_INTERVALS": "1"}
    syncd = daemon(spawned, env, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
    syncd.wait_quiet_cycle(timeout=30)

    port = box.mt_server.port
    box.mt_server.stop()
    mark = syncd.mark()
    failed = syncd.wait_for(
        "cycle.end", timeout=40, after=mark, where=lambda e: e["status"] == "failed"
    )
    assert syncd.proc.poll() is None
    status = run_cli("status", "--json", env=base_env(**FAST, **env))
    report = json.loads(status.stdout)
    assert status.returncode == 2, status.stdout + status.stderr
    error = report["streams"]["work_orders"]["last_error"]["error"]
    assert "mantenimiento" in error.lower() or "connect" in error.lower(), error
    wait_until(
        lambda: any("failed" in v for _, v in notify.lines("STATUS")), 10, "STATUS= with the error"
    )

    box.mt_server = ServerThread(box.mt, port=port).start()
    mark = syncd.mark()
    syncd.wait_for("cycle.end", timeout=40, after=mark, where=lambda e: e["status"] == "ok")
    assert not syncd.find("daemon.stalled")  # an outage is not a hang: the watchdog stayed fed
    status = run_cli("status", "--json", env=base_env(**FAST, **env))
    assert json.loads(status.stdout)["streams"]["work_orders"]["consecutive_failures"] == 0
    assert syncd.stop() == 0
    assert failed["counts"] is not None


def test_the_daemon_logs_on_stdout_and_one_shot_commands_keep_stdout_for_results(
    box: Sandbox,
) -> None:
    """Under systemd the daemon's stdout is the journal: JSON lines there, nothing on stderr.
    `sync --once --json` prints its reports on stdout, so its log goes to stderr."""
    env = base_env(**FAST, **box.env())
    daemon_proc = subprocess.Popen(
        syncd_argv("run"),
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon_proc.stdout is not None
        first = json.loads(daemon_proc.stdout.readline())  # blocks until the first log line
        assert first["level"] and first["event"] and first["timestamp"]
    finally:
        daemon_proc.send_signal(signal.SIGTERM)
        out, err = daemon_proc.communicate(timeout=30)
    assert daemon_proc.returncode == 0, err
    assert err.strip() == ""
    events = [first["event"]] + [json.loads(x)["event"] for x in out.splitlines() if x.strip()]
    assert "daemon.ready" in events and "daemon.stopped" in events

    once = run_cli("sync", "--once", "--json", env=env)
    assert once.returncode == 0, once.stderr
    reports = json.loads(once.stdout)  # nothing but the reports
    assert [r["stream"] for r in reports] == ["work_orders"]
    logged = [json.loads(line) for line in once.stderr.splitlines() if line.strip()]
    assert any(e["event"] == "cycle.end" for e in logged)


# ---------------------------------------------------------------------------------------------
class BothStreams(Process):
    """A one-shot command logs on stderr (its stdout is for results): parse both."""

    def _read(self, pipe: Any, is_stdout: bool) -> None:
        for line in pipe:
            line = line.rstrip("\n")
            with self._lock:
                (self.stdout if is_stdout else self.stderr).append(line)
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line))


def _slow(box: Sandbox) -> None:
    """Every API request takes 80-120 ms: a first cycle of 23 creates lasts several seconds."""
    for sim in (box.cm, box.mt):
        sim.faults.configure({"latency_ms_min": 80, "latency_ms_max": 120})


def _ledger_after(box: Sandbox) -> tuple[list[str], list[str]]:
    """(live outbox intents, runs left 'running') in the sandbox's ledger."""
    assert box.config_path is not None and box.credentials_dir is not None
    config = load(box.config_path, box.credentials_dir)
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        live = [f"{i.stream}:{i.state}:{i.token}" for i in ledger.live_intents()]
        running = [r.run_id for r in ledger.recent_runs(500) if r.status == "running"]
    finally:
        ledger.close()
    return live, running


def test_sigterm_mid_cycle_finishes_the_record_in_hand_and_exits_0(
    box: Sandbox, spawned: list[Process]
) -> None:
    """SIGTERM while the first cycle is creating records: the record in hand is finished and
    committed, the cycle ends `stopped`, the process exits 0, no create is left in flight."""
    _slow(box)
    syncd = daemon(spawned, box.env())
    first = syncd.wait_for("record.created", timeout=30)
    syncd.signal(signal.SIGTERM)
    term = time.monotonic()
    assert syncd.stop(timeout=30) == 0, syncd.tail()
    assert time.monotonic() - term < 15
    ends = syncd.find("cycle.end")
    assert [e["status"] for e in ends] == ["stopped"], ends
    created = sum(v for k, v in ends[0]["counts"].items() if k.startswith("created_"))
    assert 1 <= created < 23, ends[0]  # stopped part-way, after the record it was on
    assert first["run_id"] == ends[0]["run_id"]
    assert syncd.find("daemon.stopped")
    assert _ledger_after(box) == ([], [])


def test_sigterm_stops_a_resync_with_exit_0(box: Sandbox, spawned: list[Process]) -> None:
    """`systemctl stop syncd-resync.service` sends SIGTERM: the resync is resumable, so the
    unit must not end `failed` (exit 1)."""
    _slow(box)
    resync = BothStreams(["resync", "--yes", "--full"], base_env(**FAST, **box.env()))
    spawned.append(resync)
    resync.wait_for("record.created", timeout=30)
    resync.signal(signal.SIGTERM)
    assert resync.stop(timeout=30) == 0, resync.tail()
    assert any(line.startswith("work_orders: stopped") for line in resync.stdout), resync.tail()
    ends = resync.find("cycle.end")
    assert [(e["status"]) for e in ends] == ["stopped"]
    assert _ledger_after(box) == ([], [])


def test_sighup_applies_a_changed_log_level(box: Sandbox, spawned: list[Process]) -> None:
    assert box.config_path is not None
    syncd = daemon(spawned, box.env())
    syncd.wait_quiet_cycle(timeout=30)
    assert not syncd.find("http.request")  # a debug event: not logged at "info"
    text = box.config_path.read_text()
    box.config_path.write_text(text.replace('log_level = "info"', 'log_level = "debug"', 1))
    mark = syncd.mark()
    syncd.signal(signal.SIGHUP)
    syncd.wait_for("daemon.reloaded", timeout=10, after=mark)
    request = syncd.wait_for("http.request", timeout=15, after=mark)
    assert request["level"] == "debug"
    assert syncd.stop() == 0
