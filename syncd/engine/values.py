"""An operator's value for one field (`syncd conflicts resolve ID --take value --value V`).

The merge writes such a value to Click Maint as it is and translates it for mantenimiento
(`merge.merge`, the `value` branch), so it must be what a Click Maint snapshot holds for that
field: text for titles and descriptions, a configured Click Maint status or priority name, an
ISO-8601 timestamp with a zone (or null) for the due date, an integer id (or null) for asset
and location.  A value that is none of these would fail every later cycle of the stream (a
status name without an id, for one), so it is refused when the decision is stored, with one
line saying what was expected.

Pure: decides from the configuration and the text the operator typed.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import CM_PRIORITIES, Config
from .mapping import MappingError, iso_z, parse_iso
from .records import WORK_ORDER_FIELDS, FieldSpec
from .requests import REQUEST_FIELDS

_NOT_GIVEN = object()


def _decoded(raw: str) -> Any:
    """The value as JSON when it is JSON (`"7"`, `null`), else `_NOT_GIVEN` (plain text)."""
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_GIVEN


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


def _text(field: str, raw: str, *, required: bool) -> str:
    decoded = _decoded(raw)
    if decoded is _NOT_GIVEN:
        text = raw
    elif isinstance(decoded, str):
        text = decoded
    elif isinstance(decoded, int | float) and not isinstance(decoded, bool):
        text = raw.strip()  # a title may be a number: kept as typed ("7.50" stays "7.50")
    else:
        raise ValueError(
            f"{field} is text, not {json.dumps(decoded)[:40]}; to mean that text, quote it: "
            f"--value '{json.dumps(raw)}'"
        )
    if required and not text.strip():
        raise ValueError(f"{field} cannot be empty")
    return text


def _word(field: str, raw: str, allowed: list[str], what: str) -> str:
    decoded = _decoded(raw)
    word = raw.strip() if decoded is _NOT_GIVEN else decoded
    if not isinstance(word, str) or word not in allowed:
        raise ValueError(
            f"{field}: {_shown(raw)} is not a {what}; expected one of: {', '.join(allowed)}"
        )
    return word


def _timestamp(field: str, raw: str) -> str | None:
    decoded = _decoded(raw)
    if decoded is None:
        return None
    text = raw.strip() if decoded is _NOT_GIVEN else decoded
    hint = "an ISO-8601 timestamp with a zone, e.g. 2026-03-01T16:00:00Z, or null"
    if not isinstance(text, str):
        raise ValueError(f"{field}: {_shown(raw)} is not {hint}")
    try:
        moment = parse_iso(text, field)
    except MappingError:
        raise ValueError(f"{field}: {_shown(raw)} is not {hint}") from None
    return iso_z(moment)


def _record_id(field: str, raw: str) -> int | None:
    decoded = _decoded(raw)
    if decoded is None:
        return None
    if isinstance(decoded, str) and decoded.strip().isdigit():
        decoded = int(decoded)
    if not isinstance(decoded, int) or isinstance(decoded, bool) or decoded <= 0:
        raise ValueError(f"{field}: {_shown(raw)} is not a Click Maint {field} id (or null)")
    return decoded


def operator_value(config: Config, stream: str, field: str, raw: str) -> Any:
    """`raw` (what the operator typed) as the Click Maint value of `field` in `stream`.

    Raises ValueError with a one-line reason when it is not a value that field can take.
    """
    vocab = config.vocabularies
    fields = {"work_orders": WORK_ORDER_FIELDS, "requests": REQUEST_FIELDS}.get(stream)
    if fields is None:
        raise ValueError(f"stream {stream!r} has no conflicts to resolve with a value")
    spec: FieldSpec | None = next((f for f in fields if f.name == field), None)
    if spec is None:
        raise ValueError(f"the {stream} stream has no field {field!r}")
    if not spec.cm_writable:
        # the value is written to Click Maint as it is (merge.merge, the `value` branch)
        raise ValueError(f"{field} cannot be given a value: {spec.why_one_way}; take a side")
    if field in ("title", "description"):
        return _text(field, raw, required=field == "title")
    if stream == "requests":
        if field == "status":
            return _word(field, raw, list(vocab.request_status_to_aviso), "request status")
        if field == "priority":
            return _word(field, raw, list(vocab.priority_to_prioridad), "Click Maint priority")
        raise ValueError(f"{field} cannot be given a value; take a side")
    if field == "status":
        return _word(field, raw, list(vocab.status_to_estado), "Click Maint status")
    if field == "priority":
        return _word(field, raw, list(CM_PRIORITIES), "Click Maint priority")
    if field == "due":
        return _timestamp(field, raw)
    if field in ("asset", "location"):
        return _record_id(field, raw)
    raise ValueError(f"{field} cannot be given a value; take a side")
