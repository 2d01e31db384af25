"""Crash safety with real `kill -9` (short version; `bench/crash_matrix.py` is the long one).

`syncd sync --once` (all three streams) is killed at each named step between a remote write
and the ledger commit that records it, and at random instants inside its measured work, and
the daemon (`syncd run`, a user editing meanwhile) at random instants; every random kill must
land (leave a cycle unfinished).  After restarts nothing is duplicated or lost, both sides
agree, every usage transaction in Click Maint's data is on its OT once and no record was set
aside by the crash.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.sandbox.crashlab import (
    NAMED_POINTS,
    RANDOM_LATENCY_MS,
    Window,
    describe,
    measure,
    trial,
)
from syncd.sandbox.verify import verify

from .harness import Harness, make_harness
from .test_part_usage import add_parts, linked_work_order, usage_sync

PASSES = "import sys; from syncd.faultpoints import crashpoint\n" + (
    "for name in sys.argv[1:]:\n    crashpoint(name)\n    print(name, flush=True)\n"
)


def passes(tmp_path: Path, spec: str, *names: str) -> tuple[int, list[str], list[str]]:
    """Pass the named points in a fresh interpreter: (exit code, points survived, trace)."""
    trace = tmp_path / "trace"
    env = {**os.environ, "SYNCD_CRASH_AT": spec, "SYNCD_CRASH_TRACE": str(trace)}
    done = subprocess.run(
        [sys.executable, "-c", PASSES, *names], env=env, capture_output=True, text=True
    )
    traced = [line.split()[1] for line in trace.read_text().splitlines()] if trace.exists() else []
    return done.returncode, done.stdout.split(), traced


def test_a_crash_point_kills_at_its_nth_pass_and_traces_every_point(tmp_path: Path) -> None:
    code, survived, traced = passes(tmp_path, "b:2", "a", "b", "a", "b", "b")
    assert code == -9 and survived == ["a", "b", "a"]
    assert traced == ["a", "b", "a", "b"]  # the fatal pass is traced before the kill


def test_an_armed_crash_point_kills_only_after_its_arming_point(tmp_path: Path) -> None:
    """`close.before>pair.written_mt`: the first pair write after a close, nothing earlier."""
    code, survived, _ = passes(tmp_path, "x>b", "b", "b", "x", "a", "b", "b")
    assert code == -9 and survived == ["b", "b", "x", "a"]
    code, survived, _ = passes(tmp_path, "x>b", "b", "a")
    assert code == 0 and survived == ["b", "a"]


def test_the_verifier_checks_transactions_in_click_maints_data(tmp_path: Path) -> None:
    """A usage transaction syncd never discovered has no fact in the ledger: the ledger's view
    passes it, the verifier must not."""
    h: Harness = make_harness(tmp_path)
    parts = add_parts(h)
    wo, ot = linked_work_order(h)
    h.cm.add_transaction(parts["BRG-6204"], "usage", 2, work_order_id=wo)
    usage_sync(h)
    clean = verify(h.config, h.cm, h.mt)
    assert clean.ok and clean.transactions_expected == 1, clean.summary()

    unseen = h.cm.add_transaction(parts["OIL-ISO68"], "usage", 1, work_order_id=wo)["id"]
    verdict = verify(h.config, h.cm, h.mt)
    assert not (verdict.missing_transactions or verdict.duplicated_transactions)  # ledger: fine
    assert verdict.transaction_problems == [f"tx {unseen} (wo {wo}, part OIL-ISO68) missing"]
    assert not verdict.ok

    usage_sync(h)
    assert verify(h.config, h.cm, h.mt).ok
    copy = next(m for m in h.mt.materiales_utilizados.values() if m["ot_id"] == ot)
    h.mt.materiales_utilizados[max(h.mt.materiales_utilizados) + 1] = {**copy, "ot_id": ot}
    problems = verify(h.config, h.cm, h.mt).transaction_problems
    assert len(problems) == 1 and "written 2 times" in problems[0], problems


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("phase", "point"), NAMED_POINTS, ids=[f"{p}-{c}" for p, c in NAMED_POINTS]
)
def test_kill_9_at_each_step(phase: str, point: str) -> None:
    result = trial(f"{phase}/{point}", crash_at=point, phase=phase)
    assert result.crashed, f"crash point {point} never reached: {result.notes}"
    assert result.ok, describe(result)


@pytest.mark.e2e
def test_the_closes_phase_writes_exactly_one_close_each_way() -> None:
    """So `closes/pair.written_cm:1` is the mantenimiento close written to Click Maint, and
    `closes/close.before>pair.written_mt:1` the Click Maint close applied in mantenimiento."""
    window = measure("closes", latency_ms=None)
    writes = {k: v for k, v in window.points.items() if k != "scan.batch"}
    assert writes == {"close.before": 1, "pair.written_mt": 1, "pair.written_cm": 1}


@pytest.fixture(scope="module")
def edits_window() -> Window:
    """How long an uncrashed `sync --once` of the edits phase works, under the same latency."""
    return measure("edits")


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_random_instants(seed: int, edits_window: Window) -> None:
    delay = edits_window.draw(random.Random(seed), margin=0.2)
    result = trial(
        f"random-{seed}", kill_after=delay, phase="edits", seed=seed, latency_ms=RANDOM_LATENCY_MS
    )
    assert result.crashed, f"the run had ended before the kill at +{delay:.2f} s"
    assert result.in_flight, describe(result)  # a cycle was left unfinished
    assert result.ok, describe(result)


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [4, 5])
def test_kill_9_of_the_daemon(seed: int) -> None:
    """Killed inside its first work_orders cycle, which has the phase's edits to write (and a
    Click Maint user keeps adding more)."""
    delay = random.Random(seed).uniform(0.2, 1.0)
    result = trial(
        f"daemon-{seed}",
        kill_after=delay,
        daemon=True,
        phase="edits",
        seed=seed,
        latency_ms=RANDOM_LATENCY_MS,
    )
    assert result.crashed and result.in_flight, describe(result)
    assert result.ok, describe(result)
