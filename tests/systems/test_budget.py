"""The shared rate budget: sliding window, reserve, server view, pauses, fairness, deadlines."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.engine.run import StopRequested
from syncd.systems.budget import WAIT_SLICE, RateBudget
from syncd.systems.errors import BudgetExhausted


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=2, max_value=40),
    reserve=st.integers(min_value=0, max_value=5),
    window=st.floats(min_value=1.0, max_value=100.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=150),
    priority=st.lists(st.booleans(), min_size=1, max_size=150),
)
def test_never_more_than_the_limit_in_any_window(limit, reserve, window, gaps, priority) -> None:
    """Whatever the arrival pattern, no window of `window` seconds holds more than `limit`
    sends, and normal callers leave the reserve untouched."""
    if reserve >= limit:
        reserve = limit - 1
    clock = FakeClock()
    budget = RateBudget("t", limit, window, reserve=reserve, clock=clock)
    sends: list[tuple[float, bool]] = []
    for gap, prio in zip(gaps, priority * (len(gaps) // len(priority) + 1), strict=False):
        clock.now += gap
        # what acquire() does: wait as long as the budget says (again if needed), then send
        for _ in range(10):
            with budget._cond:
                wait = budget._wait_needed(clock.now, prio)
            if wait == 0.0:
                break
            clock.now += wait
        else:
            pytest.fail("the budget never allowed the send")
        budget.acquire(priority=prio)
        sends.append((clock.now, prio))
    times = [t for t, _ in sends]
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t < start + window]
        assert len(in_window) <= limit
    normal = [t for t, p in sends if not p]
    for start in normal:
        # normal sends inside any window, counting everything sent before them in it
        inside = [t for t in times if start <= t < start + window]
        normal_inside = [t for t in normal if start <= t < start + window]
        assert len(normal_inside) <= limit - reserve or len(inside) <= limit


def test_reserve_is_kept_for_priority_callers() -> None:
    clock = FakeClock()
    budget = RateBudget("t", 5, 60, reserve=2, clock=clock)
    for _ in range(3):
        budget.acquire()
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=clock.now + 1)
    budget.acquire(priority=True)
    budget.acquire(priority=True)
    with pytest.raises(BudgetExhausted):
        budget.acquire(priority=True, deadline=clock.now + 1)
    clock.now += 61
    budget.acquire()


def test_server_view_and_pause_hold_everyone() -> None:
    clock = FakeClock()
    wall = [5000.0]
    budget = RateBudget("t", 300, 300, reserve=10, clock=clock, wall=lambda: wall[0])
    budget.observe(300, 10, wall[0] + 30)  # another client on our IP used the rest
    with pytest.raises(BudgetExhausted) as exc:
        budget.acquire(deadline=clock.now + 5)
    assert exc.value.wait == pytest.approx(30, abs=0.01)
    budget.acquire(priority=True)  # the reserve is still there for priority callers
    clock.now += 31
    budget.acquire()
    budget.pause(20)
    with pytest.raises(BudgetExhausted):
        budget.acquire(priority=True, deadline=clock.now + 5)
    clock.now += 21
    budget.acquire()


def test_a_fresh_server_window_allows_a_new_burst() -> None:
    """A fixed window that reset must not be spread out at the pace of the last one."""
    clock = FakeClock()
    wall = [5000.0]
    budget = RateBudget("t", 10, 60, reserve=2, clock=clock, wall=lambda: wall[0])
    for _ in range(8):  # the usable share of the first window, each answer seen
        budget.acquire()
        clock.now += 5
        wall[0] += 5
    with pytest.raises(BudgetExhausted):  # our log is full for another 60 - 40 s
        budget.acquire(deadline=clock.now + 1)
    # the server reset its window: a fresh count of 10 with 9 left after one request
    budget.observe(10, 9, wall[0] + 60)
    for _ in range(7):  # down to the reserve, at once
        budget.acquire(deadline=clock.now + 0.001)
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=clock.now + 1)


def test_an_operator_cap_below_the_server_limit_keeps_our_log_deciding() -> None:
    clock = FakeClock()
    budget = RateBudget("t", 300, 60, reserve=1, ceiling=5, clock=clock, wall=lambda: 5000.0)
    budget.observe(300, 299, 5000.0 + 60)
    for _ in range(4):
        budget.acquire()
    with pytest.raises(BudgetExhausted):  # the server would allow 295 more; the cap says no
        budget.acquire(deadline=clock.now + 1)


def test_learns_limit_but_respects_ceiling() -> None:
    budget = RateBudget("t", 300, 300, reserve=10)
    budget.observe(1000, 990, time.time() + 100)
    assert budget.limit == 1000
    capped = RateBudget("t", 300, 300, reserve=10, ceiling=500)
    capped.observe(1000, 990, time.time() + 100)
    assert capped.limit == 500


def test_waiting_callers_are_served_in_arrival_order() -> None:
    """Two streams sharing the budget alternate; neither can starve the other."""
    budget = RateBudget("t", 4, 0.4, reserve=0)
    order: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        for _ in range(6):
            budget.acquire()
            with lock:
                order.append(name)
            time.sleep(0.001)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(order) == ["a"] * 6 + ["b"] * 6
    # after the initial burst, neither stream gets more than two turns in a row
    tail = "".join(order[4:])
    assert "aaa" not in tail and "bbb" not in tail


def test_abandoned_ticket_does_not_block_the_queue() -> None:
    budget = RateBudget("t", 1, 0.3, reserve=0)
    budget.acquire()
    with pytest.raises(BudgetExhausted):
        budget.acquire(deadline=time.monotonic() + 0.01)
    started = time.monotonic()
    budget.acquire()  # must not wait for the abandoned caller
    assert time.monotonic() - started < 1.0


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        RateBudget("t", 0, 10)
    with pytest.raises(ValueError):
        RateBudget("t", 10, 10, reserve=10)


# -- waiting: progress for the watchdog, interrupted by a stop ----------------------------------
def test_a_wait_reports_progress_and_a_stop_abandons_it() -> None:
    """The budget holds the caller for 300 s of its clock; the stop ends the wait at once and
    gives the caller's place in the queue to the next one."""
    clock = FakeClock()
    budget = RateBudget("t", 2, 300, reserve=0, clock=clock)
    budget.wait_slice = 0.001  # real seconds per slice; the clock itself never moves
    budget.acquire()
    budget.acquire()
    calls: list[float] = []

    def on_wait() -> None:
        calls.append(clock.now)
        if len(calls) == 5:
            raise StopRequested()

    budget.on_wait = on_wait
    with pytest.raises(StopRequested):
        budget.acquire()
    assert calls == [1000.0] * 5  # called again and again during one wait, never waited out
    assert budget.snapshot().waiting == 0
    budget.on_wait = None
    clock.now += 301
    budget.acquire(deadline=clock.now + 0.001)  # the abandoned ticket does not block the queue


def test_a_stop_ends_a_real_wait_within_one_slice() -> None:
    budget = RateBudget("t", 1, 300, reserve=0)
    budget.acquire()  # the next send is allowed in 300 s
    stop = threading.Event()
    beats: list[float] = []
    first_beat = threading.Event()
    outcome: list[BaseException] = []

    def on_wait() -> None:
        beats.append(time.monotonic())
        first_beat.set()
        if stop.is_set():
            raise StopRequested()

    def caller() -> None:
        try:
            budget.acquire(on_wait=on_wait)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    assert first_beat.wait(5)
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [type(e) for e in outcome] == [StopRequested]
    assert time.monotonic() - stopped_at < WAIT_SLICE + 0.5
    assert len(beats) >= 2
