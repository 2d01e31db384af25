"""A per-server request budget shared by every caller in the process.

Why not a plain token bucket (or pyrate-limiter): Click Maint publishes "N requests per 5
minutes per IP" without saying whether the window is fixed or sliding.  A sliding-window log of
our own sends is the only scheme that is safe against both (a sequence that never exceeds N in
*any* window also never exceeds N in a fixed one) while still allowing a full burst.  On top of
that the budget has to

* keep a *reserve* that only priority callers (adoption look-ups, `syncd check`) may use,
* follow the server's own view (`X-RateLimit-Remaining/Reset`) while it is fresh, because
  other clients behind the same IP spend the same budget, and because after a fixed window
  resets the server allows a new burst that a sliding log of our sends would spread out (the
  log alone decides only when no fresh server view exists: before the first answer, after a
  reset, or with a server that sends no headers),
* stop everybody when one caller gets a 429 with `Retry-After`, and
* serve waiting callers first-come-first-served so one busy stream cannot starve another,
* wait in slices of at most `WAIT_SLICE` seconds, calling the owner's `on_wait` hook between
  them: a wait is progress for the daemon's watchdog, and a stop request (SIGTERM) ends it
  instead of outlasting systemd's `TimeoutStopSec=`.

None of the maintained limiter libraries combine these, so this small class does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BudgetExhausted

#: the longest uninterrupted wait inside `acquire`: `on_wait` runs at least this often
WAIT_SLICE = 1.0


@dataclass(frozen=True)
class BudgetSnapshot:
    server: str
    limit: int
    window: float
    reserve: int
    used_in_window: int
    paused_for: float
    server_remaining: int | None
    waiting: int

    @property
    def available(self) -> int:
        return max(0, self.limit - self.reserve - self.used_in_window)


class RateBudget:
    def __init__(
        self,
        server: str,
        limit: int,
        window: float,
        *,
        reserve: int = 10,
        ceiling: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        _validate(limit, window, reserve)
        self.server = server
        self.limit = limit
        self.window = window
        self.reserve = reserve
        #: an operator's cap: the server's published limit is adopted, but never above this
        self.ceiling = ceiling
        self._configured = (limit, window, reserve, ceiling)
        self._clock = clock
        self._wall = wall
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._server_remaining: int | None = None
        self._capped = False
        self._server_reset_at = 0.0  # monotonic
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._waiting = 0
        self._abandoned: set[int] = set()
        #: Called in the waiting thread before every wait slice (at least once a second while
        #: `acquire` waits).  The owner reports the wait as progress to the watchdog and may
        #: raise to abandon the wait: the caller's place in the queue is given up and the
        #: exception propagates (the daemon raises `StopRequested` once a stop was requested).
        #: It runs under the budget's lock, so it must be quick and must not use the budget.
        self.on_wait: Callable[[], None] | None = None
        self.wait_slice = WAIT_SLICE

    # -- public API -------------------------------------------------------------------------
    def acquire(
        self,
        *,
        priority: bool = False,
        deadline: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> float:
        """Block until one request may be sent; returns seconds waited.

        `deadline` is a monotonic time: if the request could not be sent before it, raise
        `BudgetExhausted` instead of waiting (callers then checkpoint partial progress).
        Priority callers skip the queue and may dip into the reserve.  `on_wait` (default:
        the budget's `on_wait`) is called before every wait slice and may raise to give up.
        """
        hook = on_wait if on_wait is not None else self.on_wait
        started = self._clock()
        with self._cond:
            ticket = None
            if not priority:
                ticket = self._next_ticket
                self._next_ticket += 1
                self._waiting += 1
            try:
                while True:
                    now = self._clock()
                    my_turn = priority or ticket == self._serving
                    wait = self._wait_needed(now, priority) if my_turn else None
                    if wait == 0.0:
                        self._sent.append(now)
                        if self._server_remaining is not None:
                            self._server_remaining -= 1
                        if ticket is not None:
                            ticket = None
                            self._serving += 1
                            self._cond.notify_all()
                        return now - started
                    if deadline is not None and wait is not None and now + wait > deadline:
                        raise BudgetExhausted(self.server, wait)
                    if deadline is not None and now >= deadline:
                        raise BudgetExhausted(self.server, wait or 0.0)
                    if hook is not None:
                        hook()  # progress for the watchdog; raises to abandon the wait
                    timeout = wait if wait is not None else 0.05
                    if deadline is not None:
                        timeout = min(timeout, max(0.0, deadline - now))
                    self._cond.wait(timeout=max(0.001, min(timeout, self.wait_slice)))
            finally:
                if ticket is not None:
                    # not served (deadline, stop, any exception): give our place to the next
                    self._skip_ticket(ticket)
                if not priority:
                    self._waiting -= 1

    def reconfigure(
        self, limit: int, window: float, *, reserve: int = 10, ceiling: int | None = None
    ) -> None:
        """New settings from a reloaded config; what was sent stays counted.

        Unchanged settings change nothing (a limit learned from the server is kept).
        """
        _validate(limit, window, reserve)
        with self._cond:
            if (limit, window, reserve, ceiling) == self._configured:
                return
            self._configured = (limit, window, reserve, ceiling)
            self.limit, self.window, self.reserve, self.ceiling = limit, window, reserve, ceiling
            if ceiling is None:
                self._capped = False
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """A 429 told us to stop: nobody sends until the pause is over."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe(self, limit: int | None, remaining: int | None, reset_epoch: float | None) -> None:
        """Fold in the server's rate-limit headers (the server's view is authoritative)."""
        with self._cond:
            if limit and limit > self.reserve:
                adopted = min(limit, self.ceiling) if self.ceiling else limit
                # an operator's cap below the server's limit: our own log must keep deciding
                self._capped = adopted < limit
                if adopted != self.limit:
                    self.limit = adopted
            if remaining is not None and reset_epoch is not None:
                seconds_left = max(0.0, reset_epoch - self._wall())
                self._server_remaining = remaining
                self._server_reset_at = self._clock() + seconds_left
            self._cond.notify_all()

    def snapshot(self) -> BudgetSnapshot:
        with self._cond:
            now = self._clock()
            self._expire(now)
            return BudgetSnapshot(
                server=self.server,
                limit=self.limit,
                window=self.window,
                reserve=self.reserve,
                used_in_window=len(self._sent),
                paused_for=max(0.0, self._paused_until - now),
                server_remaining=self._server_view(now),
                waiting=self._waiting,
            )

    # -- internals ------------------------------------------------------------------------
    def _skip_ticket(self, ticket: int) -> None:
        # Tickets are served strictly in order; an abandoned ticket must still advance the
        # head or everybody behind it waits forever.
        if ticket == self._serving:
            self._serving += 1
        else:
            self._abandoned.add(ticket)
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()

    def _server_view(self, now: float) -> int | None:
        if self._server_remaining is None:
            return None
        if now >= self._server_reset_at:
            self._server_remaining = None
            return None
        return self._server_remaining

    def _wait_needed(self, now: float, priority: bool) -> float:
        """Seconds until a request may go out now (0.0 = go)."""
        self._expire(now)
        if now < self._paused_until:
            return self._paused_until - now
        server_left = self._server_view(now)
        if server_left is not None:
            # The server's own count wins over our log while it is fresh: it also counts the
            # other clients behind our IP, and a fixed window that reset lets a new burst go at
            # once instead of replaying the last window's pace.
            floor = 0 if priority else self.reserve
            if server_left <= floor:
                return max(0.001, self._server_reset_at - now)
            if not self._capped:
                return 0.0
        allowed = self.limit if priority else self.limit - self.reserve
        if len(self._sent) >= allowed:
            # the oldest send that must expire before we are under the limit again
            index = len(self._sent) - allowed
            return max(0.001, self._sent[index] + self.window - now)
        return 0.0


def _validate(limit: int, window: float, reserve: int) -> None:
    if limit <= 0 or window <= 0:
        raise ValueError("limit and window must be positive")
    if reserve >= limit:
        raise ValueError("reserve must be smaller than the limit")
