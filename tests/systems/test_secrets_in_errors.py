"""A server that echoes our secrets back (a 5xx body dumping the request, a debug page, an HTML
page served where JSON was expected) must not get them into exception messages or logs, and
the quoted body is cut to a bounded excerpt.  The answers are the simulators' own, rewritten
by a transport in front of them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import structlog

from syncd.config import load_config
from syncd.sandbox.clickmaint_sim import ClickMaintSim
from syncd.sandbox.launch import config_text
from syncd.sandbox.mantenimiento_sim import MantenimientoSim
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.systems.clickmaint import ClickMaintClient
from syncd.systems.errors import BadResponse, RemoteError, ServerError
from syncd.systems.http import HttpClient, RequestStats, RetryPolicy
from syncd.systems.mantenimiento import DjangoSessionAuth, MantenimientoClient

from .logcapture import rendered_logs

#: registered as secrets the way production does it: by loading the config's credentials
CM_KEY = "cmk-live-R3gistered7Qx9"
MT_PASSWORD = "Pw-Registered-5aXv81"
#: never registered: only the redaction patterns (Bearer, api_key=, csrf fields) protect it
PATTERN_KEY = "cmk-live-PatternOnly4Lm2"
RETRY = RetryPolicy(attempts=2, backoff_initial=0.001, backoff_max=0.001, jitter=0.0)
#: an error message is the server/method/path, a short reason and the excerpt (300 + "…")
MESSAGE_BOUND = 500


@pytest.fixture(scope="module", autouse=True)
def registered_secrets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`load_config` registers both credentials with the redactor; do exactly that."""
    tmp = tmp_path_factory.mktemp("secrets")
    creds = tmp / "credentials"
    creds.mkdir()
    (creds / "clickmaint-api-key").write_text(CM_KEY + "\n")
    (creds / "mantenimiento-password").write_text(MT_PASSWORD + "\n")
    path = tmp / "config.toml"
    path.write_text(config_text("http://cm.test/api/v1", "http://mt.test", tmp / "state"))
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(creds))
    config = load_config(path, env=env)
    assert config.clickmaint_api_key.get_secret_value() == CM_KEY


class Echo(httpx.BaseTransport):
    """In front of a simulator: `answer(request, response)` may replace its answer."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.WSGITransport(app=app)  # type: ignore[arg-type]
        self.answer: Callable[[httpx.Request, httpx.Response], httpx.Response | None] = (
            lambda _q, _r: None
        )
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        response = self.inner.handle_request(request)
        response.read()
        return self.answer(request, response) or response


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked"
        assert secret[:8] not in text, f"the start of {secret!r} leaked"


def logged_as_the_engine_does(exc: RemoteError) -> None:
    """run.py logs a failed cycle's error text; a crash is logged with its traceback."""
    log = structlog.get_logger("syncd.engine")
    log.error("cycle.remote_error", error=str(exc), kind=type(exc).__name__)
    try:
        raise exc
    except RemoteError:
        log.exception("cycle.crashed")


# -- Click Maint ------------------------------------------------------------------------------
def cm_client(transport: Echo, key: str) -> ClickMaintClient:
    http = HttpClient(
        "clickmaint",
        "http://cm.test/api/v1",
        retry=RETRY,
        headers={"Authorization": f"Bearer {key}", "X-Entity-Id": "1"},
        transport=transport,
        stats=RequestStats(),
    )
    return ClickMaintClient(http, 1)


def cm_sim(*keys: str) -> ClickMaintSim:
    sim = ClickMaintSim(api_keys={k: [1, 2] for k in keys})
    sim.create_work_order({"title": "WO"})
    return sim


def debug_json(request: httpx.Request) -> bytes:
    """A 5xx body that dumps the request it failed on, headers included."""
    return json.dumps(
        {
            "status": "error",
            "message": "Internal Server Error",
            "request": {
                "path": request.url.path,
                "headers": {"Authorization": request.headers["authorization"]},
                "api_key": request.headers["authorization"].split()[-1],
            },
        }
    ).encode()


ECHOES: dict[str, Callable[[httpx.Request, str], httpx.Response]] = {
    "json-5xx-dump": lambda q, _k: httpx.Response(
        500, content=debug_json(q), headers={"content-type": "application/json"}
    ),
    "html-502-bearer": lambda q, _k: httpx.Response(
        502,
        html=f"<html><body><h1>502</h1><pre>GET {q.url.path}\n"
        f"Authorization: {q.headers['authorization']}</pre></body></html>",
    ),
    "text-503-bare-key": lambda _q, k: httpx.Response(
        503, text=f"upstream refused the key {k} (X-Api-Key {k})"
    ),
}


@pytest.mark.parametrize(
    ("echo", "key"),
    [(echo, CM_KEY) for echo in sorted(ECHOES)]
    # a bare string nobody registered is indistinguishable from data: patterns only
    + [(echo, PATTERN_KEY) for echo in sorted(ECHOES) if "bare" not in echo],
    ids=lambda v: {CM_KEY: "registered", PATTERN_KEY: "pattern-only"}.get(v, v),
)
def test_clickmaint_5xx_echoing_the_key(echo: str, key: str) -> None:
    transport = Echo(cm_sim(key))
    transport.answer = lambda q, _r: ECHOES[echo](q, key)
    client = cm_client(transport, key)
    with rendered_logs() as logs:
        with pytest.raises(ServerError) as caught:
            client.get_work_order(1001)
        logged_as_the_engine_does(caught.value)
    assert key in transport.sent[0].headers["authorization"]  # the server did get it
    assert caught.value.status in (500, 502, 503) and caught.value.body  # the body is quoted
    assert_clean(str(caught.value), key)
    assert_clean(logs.getvalue(), key)
    assert "cycle.remote_error" in logs.getvalue()


@pytest.mark.parametrize("at", [0, 280, 295, 299, 5000])
def test_bad_response_trims_the_body_and_never_cuts_a_secret_in_half(at: int) -> None:
    """An HTML page where JSON was expected: quoted, but at most 300 characters of it, and a
    secret standing where the cut falls does not leave its first characters behind."""
    page = "<p>" + "x" * at + f" {CM_KEY} Bearer {PATTERN_KEY} " + "y" * 100_000 + "</p>"
    transport = Echo(cm_sim(CM_KEY))
    transport.answer = lambda _q, _r: httpx.Response(200, html=page)
    client = cm_client(transport, CM_KEY)
    with rendered_logs() as logs:
        with pytest.raises(BadResponse) as caught:
            client.get_work_order(1001)
        logged_as_the_engine_does(caught.value)
    message = str(caught.value)
    assert "expected JSON" in message
    assert len(caught.value.body) <= 301 and len(message) < MESSAGE_BOUND
    assert "y" * 400 not in logs.getvalue()
    assert_clean(message, CM_KEY, PATTERN_KEY)
    assert_clean(logs.getvalue(), CM_KEY, PATTERN_KEY)


def test_rejected_create_quotes_no_key() -> None:
    """A 422 whose message repeats the request's headers (some APIs do)."""
    transport = Echo(cm_sim(PATTERN_KEY))
    transport.answer = lambda q, _r: httpx.Response(
        422,
        json={"status": "error", "message": f"bad request from {q.headers['authorization']}"},
    )
    client = cm_client(transport, PATTERN_KEY)
    with pytest.raises(RemoteError) as caught:
        client.create_work_order({"title": "x"})
    assert "bad request from Bearer" in str(caught.value)
    assert_clean(str(caught.value), PATTERN_KEY)


# -- mantenimiento ----------------------------------------------------------------------------
def mt_client(transport: Echo) -> MantenimientoClient:
    auth = DjangoSessionAuth("syncd", lambda: MT_PASSWORD)
    http = HttpClient(
        "mantenimiento",
        "http://mt.test",
        retry=RETRY,
        auth=auth,
        transport=transport,
        stats=RequestStats(),
        classify_5xx=MantenimientoClient.classify_5xx,
    )
    return MantenimientoClient(http, auth)


@pytest.fixture
def mt() -> MantenimientoSim:
    sim = MantenimientoSim()
    seed_mantenimiento(sim, ots=3, avisos=0, seed=1)
    sim.users["syncd"]["password"] = MT_PASSWORD
    return sim


def session_secrets(client: MantenimientoClient, transport: Echo) -> list[str]:
    """Everything secret the client sent: password, session, CSRF secret and form token."""
    assert client.auth is not None and client.auth.sessionid and client.auth.csrftoken
    login = next(q for q in transport.sent if q.method == "POST" and "/admin/login" in q.url.path)
    form = httpx.QueryParams(login.content.decode())
    return [MT_PASSWORD, client.auth.sessionid, client.auth.csrftoken, form["csrfmiddlewaretoken"]]


def test_mantenimiento_debug_500_echoing_cookies_password_and_csrf(mt: MantenimientoSim) -> None:
    """A Django debug page (DEBUG=True left on) dumps the request: cookies, the CSRF header,
    and (remembered from the login) the posted form with the password."""
    transport = Echo(mt)
    client = mt_client(transport)
    ot_id = min(mt.ots)
    client.get_ot(ot_id)
    secrets = session_secrets(client, transport)
    login_form = next(q for q in transport.sent if q.method == "POST").content.decode()

    def debug_page(request: httpx.Request, _r: httpx.Response) -> httpx.Response | None:
        if "/update/" not in request.url.path:
            return None
        return httpx.Response(
            500,
            html=(
                "<h1>OperationalError</h1><table>"
                f"<tr><td>Cookie</td><td>{request.headers.get('cookie')}</td></tr>"
                f"<tr><td>X-CSRFToken</td><td>{request.headers.get('x-csrftoken')}</td></tr>"
                f"<tr><td>last POST</td><td>{login_form}</td></tr>"
                f"<tr><td>settings</td><td>DB_PASSWORD = '{MT_PASSWORD}'</td></tr></table>"
            ),
        )

    transport.answer = debug_page
    with rendered_logs() as logs:
        with pytest.raises(ServerError) as caught:
            client.update_status_notes(ot_id, notas="x")
        logged_as_the_engine_does(caught.value)
    assert "sessionid=" in caught.value.body  # the page is quoted, only its values scrubbed
    assert_clean(str(caught.value), *secrets)
    assert_clean(logs.getvalue(), *secrets)


def test_mantenimiento_login_page_instead_of_json(mt: MantenimientoSim) -> None:
    """A proxy answers an API read with the (compact) login page: BadResponse, and the
    page's csrfmiddlewaretoken does not travel with it."""
    transport = Echo(mt)
    client = mt_client(transport)
    ot_id = min(mt.ots)
    client.get_ot(ot_id)
    secrets = session_secrets(client, transport)
    token = secrets[-1]
    transport.answer = lambda q, _r: (
        httpx.Response(
            200,
            html=f'<form method="post"><input type="hidden" name="csrfmiddlewaretoken" '
            f'value="{token}"><input name="password" value="{MT_PASSWORD}"></form>',
        )
        if "/detalle/" in q.url.path
        else None
    )
    with rendered_logs() as logs:
        with pytest.raises(BadResponse) as caught:
            client.get_ot(ot_id)
        logged_as_the_engine_does(caught.value)
    assert "csrfmiddlewaretoken" in caught.value.body
    assert len(str(caught.value)) < MESSAGE_BOUND
    assert_clean(str(caught.value), *secrets)
    assert_clean(logs.getvalue(), *secrets)


def test_secrets_stay_out_of_a_whole_session_log(mt: MantenimientoSim, tmp_path: Path) -> None:
    """Login, re-login after expiry, writes: the debug log names routes, never values."""
    transport = Echo(mt)
    client = mt_client(transport)
    ot_id = min(mt.ots)
    with rendered_logs() as logs:
        client.get_ot(ot_id)
        mt.expire_all_sessions()
        client.update_status_notes(ot_id, notas="otra vez")
    assert "http.request" in logs.getvalue()
    assert_clean(logs.getvalue(), *session_secrets(client, transport))
