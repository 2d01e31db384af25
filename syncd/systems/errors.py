"""The failures a remote system can hand us, as types the engine can act on.

The engine's decisions depend only on the category: a `Rejected` record is quarantined, an
`OutcomeUnknown` create is adopted-or-retried later, `Unavailable` ends the cycle early without
touching the cursor.  Messages carry the server, method and path (never the query string or any
header) and a scrubbed excerpt of the body.
"""

from __future__ import annotations

from ..redact import excerpt, redact_text

#: a server's own message (a 4xx `message` field) is quoted at most this long
MESSAGE_LIMIT = 300


class RemoteError(Exception):
    """Base class: something went wrong talking to `server`."""

    def __init__(
        self,
        message: str,
        *,
        server: str = "",
        method: str = "",
        path: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        # Messages and bodies can quote a server, and a server can quote our request (an API
        # key, a session cookie): every one is scrubbed here, whoever raised it.
        message = excerpt(message, MESSAGE_LIMIT)
        body = redact_text(body)
        self.server = server
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        where = f"{server} {method} {path}".strip()
        status_part = f" -> HTTP {status}" if status is not None else ""
        body_part = f" | body: {body}" if body else ""
        super().__init__(f"{where}{status_part}: {message}{body_part}" if where else message)


class AuthFailed(RemoteError):
    """Credentials were refused (401, or the Django login form came back)."""


class PermissionDenied(RemoteError):
    """Authenticated but not allowed (403, foreign entity, missing section, CSRF refused)."""


class NotFound(RemoteError):
    """The record does not exist (404, or the server's HTML 404 page)."""


class Rejected(RemoteError):
    """The server refused the data we sent (400/422): the record goes to quarantine."""


class RateLimited(RemoteError):
    """Still throttled after honouring Retry-After as often as the retry policy allows."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(RemoteError):
    """5xx after the retries allowed for this request."""


class LoginUnavailable(ServerError):
    """The login step answered 5xx or 429: the request itself was never sent, so it may be
    retried whatever its method (a wrong password is `AuthFailed`, never this).  A 429's
    `Retry-After` is kept so the resend waits for it."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class BadResponse(RemoteError):
    """A body we cannot use: HTML where JSON was expected, truncated JSON, wrong envelope."""


class Unavailable(RemoteError):
    """The server could not be reached at all (connection refused, DNS, connect timeout)."""


class OutcomeUnknown(RemoteError):
    """A non-idempotent request may or may not have been applied (timeout after sending).

    Never retried blindly: the caller must look for the effect (outbox token) first.
    """


class BudgetExhausted(Exception):
    """The rate budget cannot serve this caller before its deadline; make partial progress."""

    def __init__(self, server: str, wait: float) -> None:
        self.server = server
        self.wait = wait
        super().__init__(f"{server}: rate budget exhausted (next request possible in {wait:.0f}s)")
