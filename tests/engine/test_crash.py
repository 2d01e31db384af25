"""Crash safety with real `kill -9` (short version; `bench/crash_matrix.py` is the long one).

`syncd sync --once` (all three streams) is killed at each named step between a remote write
and the ledger commit that records it, and at random instants, and the daemon (`syncd run`)
at random instants; after restarts nothing is duplicated or lost, both sides agree, every
usage transaction is on its OT once and no record was set aside by the crash.
"""

from __future__ import annotations

import random

import pytest

from syncd.sandbox.crashlab import NAMED_POINTS, describe, trial

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("phase", "point"), NAMED_POINTS, ids=[f"{p}-{c}" for p, c in NAMED_POINTS]
)
def test_kill_9_at_each_step(phase: str, point: str) -> None:
    result = trial(f"{phase}/{point}", crash_at=point, phase=phase)
    assert result.crashed, f"crash point {point} never reached: {result.notes}"
    assert result.ok, describe(result)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_random_instants(seed: int) -> None:
    rng = random.Random(seed)
    result = trial(f"random-{seed}", kill_after=rng.uniform(0.4, 2.0), phase="edits", seed=seed)
    assert result.ok, describe(result)


@pytest.mark.parametrize("seed", [4, 5])
def test_kill_9_of_the_daemon(seed: int) -> None:
    rng = random.Random(seed)
    delay = rng.uniform(1.0, 5.0)
    result = trial(f"daemon-{seed}", kill_after=delay, daemon=True, phase="edits", seed=seed)
    assert result.crashed  # a daemon is always running when the kill comes
    assert result.ok, describe(result)
