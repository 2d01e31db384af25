"""Shared fixtures: simulators in-process (httpx WSGI transport) and over loopback sockets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import settings

from syncd.sandbox.clickmaint_sim import ClickMaintSim
from syncd.systems.budget import RateBudget
from syncd.systems.clickmaint import ClickMaintClient
from syncd.systems.http import HttpClient, RequestStats, RetryPolicy

# A shared 2-core CI machine can pause any example for a garbage collection or a neighbour's
# burst; hypothesis' default 200 ms deadline would then fail a correct property as "flaky".
# Properties here are about outcomes, speed lives in bench/.
settings.register_profile("syncd", deadline=None)
settings.load_profile("syncd")

# Tests talk to loopback only; a proxy set for the machine (HTTP_PROXY, ALL_PROXY) must not
# catch the plain httpx clients some tests use to play a user or a curl.
os.environ["NO_PROXY"] = ",".join(
    p for p in (os.environ.get("NO_PROXY"), "127.0.0.1", "localhost", "::1") if p
)


@pytest.fixture(autouse=True, scope="session")
def _structured_logging() -> None:
    """Route structlog through stdlib logging (as in production) so caplog sees every line."""
    import sys

    from syncd.logging import configure_logging

    configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)


FAST_RETRY = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05, jitter=0.0)
CM_KEY = "cm-sandbox-key"


@pytest.fixture
def cm_sim() -> ClickMaintSim:
    return ClickMaintSim()


@pytest.fixture
def make_cm_client(cm_sim: ClickMaintSim) -> Iterator[Callable[..., ClickMaintClient]]:
    made: list[HttpClient] = []

    def make(
        *,
        key: str = CM_KEY,
        entity: int = 1,
        budget: RateBudget | None = None,
        retry: RetryPolicy = FAST_RETRY,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        base_url: str = "http://cm.test/api/v1",
        sockets: bool = False,
    ) -> ClickMaintClient:
        http = HttpClient(
            "clickmaint",
            base_url,
            timeout=timeout,
            budget=budget,
            retry=retry,
            headers={"Authorization": f"Bearer {key}", "X-Entity-Id": str(entity)},
            transport=None if sockets else (transport or httpx.WSGITransport(app=cm_sim)),
            stats=RequestStats(),
        )
        made.append(http)
        return ClickMaintClient(http, entity)

    yield make
    for http in made:
        http.close()
