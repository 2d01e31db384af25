"""One place that knows what a secret looks like.

Used by the log pipeline, by exception messages that quote server bodies, and by the ledger
before storing anything that came from a server.  Redaction is by key name for structured data
and by pattern for free text (bearer tokens, Django CSRF/session values in HTML or headers).
"""

from __future__ import annotations

import re
from typing import Any

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "x-csrftoken",
        "csrftoken",
        "csrfmiddlewaretoken",
        "sessionid",
        "password",
        "passwd",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "secret",
    }
)

_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        re.compile(
            r"(?i)((?:csrftoken|sessionid|csrfmiddlewaretoken)[\"']?\s*[=:]\s*[\"']?)[^\"';\s&<>]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)(name=[\"']csrfmiddlewaretoken[\"']\s+value=[\"'])[^\"']+"), r"\1***"),
    (
        re.compile(r"(?i)(value=[\"'])[^\"']{32,}([\"']\s+name=[\"']csrfmiddlewaretoken)"),
        r"\1***\2",
    ),
    (re.compile(r"(?i)((?:password|api_key|apikey)[\"']?\s*[=:]\s*[\"']?)[^\"'&\s,}]+"), r"\1***"),
]

_extra_secrets: set[str] = set()
#: secrets that replace each other (a session id after a re-login): only the newest is kept
_slots: dict[str, str] = {}


def register_secret(value: str | None, *, slot: str | None = None) -> None:
    """Remember a literal secret (API key, password) so it is scrubbed wherever it shows up.

    With `slot`, the value replaces the slot's previous one: session values rotate at every
    login and must not pile up for the life of the daemon.
    """
    if not value or len(value) < 4:
        return
    if slot is None:
        _extra_secrets.add(value)
    else:
        _slots[slot] = value


def redact_text(text: str) -> str:
    for secret in (*_extra_secrets, *_slots.values()):
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """Recursively scrub a structure: sensitive keys are masked, strings pattern-scrubbed."""
    if isinstance(value, dict):
        return {
            k: ("***" if isinstance(k, str) and k.lower() in SENSITIVE_KEYS and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def excerpt(body: str | bytes, limit: int = 300) -> str:
    """A short, scrubbed quote of a server body for error messages and the quarantine.

    The whole body is scrubbed *before* it is shortened: a secret straddling the cut (or one
    brought forward when whitespace collapses) would otherwise leave its first characters
    behind, no longer recognisable as the whole secret.  Only error paths call this.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    body = " ".join(redact_text(body).split())
    if len(body) > limit:
        body = body[:limit] + "…"
    return body
