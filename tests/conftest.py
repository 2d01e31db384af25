"""Shared fixtures: simulators in-process (httpx WSGI transport) and over loopback sockets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import settings

from syncd.sandbox.clickmaint_sim import ClickMaintSim
from syncd.systems.budget import RateBudget
from syncd.systems.clickmaint import ClickMaintClient
from syncd.systems.http import HttpClient, RequestStats, RetryPolicy
from syncd.systems.mantenimiento import DjangoSessionAuth, MantenimientoClient

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


MT_PASSWORD = "syncd-sandbox-pass"


def cm_client(
    transport: httpx.BaseTransport | None,
    *,
    key: str = CM_KEY,
    entity: int = 1,
    budget: RateBudget | None = None,
    retry: RetryPolicy = FAST_RETRY,
    base_url: str = "http://cm.test/api/v1",
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ClickMaintClient:
    """A Click Maint client as App builds one (transport None: real sockets)."""
    http = HttpClient(
        "clickmaint",
        base_url,
        timeout=timeout,
        budget=budget,
        retry=retry,
        headers={"Authorization": f"Bearer {key}", "X-Entity-Id": str(entity)},
        transport=transport,
        stats=RequestStats(),
        sleep=sleep,
    )
    return ClickMaintClient(http, entity)


def mt_client(
    transport: httpx.BaseTransport | None,
    *,
    user: str = "syncd",
    password: str = MT_PASSWORD,
    retry: RetryPolicy = FAST_RETRY,
    base_url: str = "http://mt.test",
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> MantenimientoClient:
    """A mantenimiento client as App builds one (transport None: real sockets)."""
    auth = DjangoSessionAuth(user, lambda: password)
    http = HttpClient(
        "mantenimiento",
        base_url,
        timeout=timeout,
        auth=auth,
        retry=retry,
        transport=transport,
        stats=RequestStats(),
        sleep=sleep,
        classify_5xx=MantenimientoClient.classify_5xx,
    )
    return MantenimientoClient(http, auth)


@pytest.fixture
def make_cm_client(cm_sim: ClickMaintSim) -> Iterator[Callable[..., ClickMaintClient]]:
    made: list[ClickMaintClient] = []

    def make(
        *,
        transport: httpx.BaseTransport | None = None,
        sockets: bool = False,
        **options: Any,
    ) -> ClickMaintClient:
        client = cm_client(
            None if sockets else (transport or httpx.WSGITransport(app=cm_sim)), **options
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.http.close()
