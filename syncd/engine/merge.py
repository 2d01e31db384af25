"""Per-field three-way merge against each side's base snapshot.

A side changed a field when its current value differs from *that side's* base (never by
comparing timestamps across systems).  Only a field changed on both sides to values that do not
agree is a conflict; the configured policy decides it, or (`manual`) it is logged and only that
field of that record is held back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .records import FieldSpec, Snapshot

_MISSING = object()

CLICKMAINT = "clickmaint"
MANTENIMIENTO = "mantenimiento"


class Translator(Protocol):
    def to_mt(self, field: str, value: Any) -> Any: ...

    def to_cm(self, field: str, value: Any) -> Any: ...

    def agree(self, field: str, cm_value: Any, mt_value: Any) -> bool: ...


@dataclass(frozen=True)
class Resolution:
    """An operator's decision for one conflicted field (`syncd conflicts resolve`)."""

    conflict_id: int
    take: str  # clickmaint | mantenimiento | value
    value: Any = None  # the Click Maint representation, when take == "value"


@dataclass(frozen=True)
class FieldConflict:
    field: str
    base: Any
    cm_value: Any
    mt_value: Any
    policy: str
    #: None for manual (held), else the side whose value won
    winner: str | None


@dataclass
class MergePlan:
    to_cm: dict[str, Any] = field(default_factory=dict)
    to_mt: dict[str, Any] = field(default_factory=dict)
    conflicts: list[FieldConflict] = field(default_factory=list)
    #: (field, direction, reason): a change that has no way onto the other side
    not_mirrorable: list[tuple[str, str, str]] = field(default_factory=list)
    #: fields whose base must not advance (open manual conflicts)
    hold: set[str] = field(default_factory=set)
    applied: list[int] = field(default_factory=list)
    moot: list[int] = field(default_factory=list)

    @property
    def has_writes(self) -> bool:
        return bool(self.to_cm or self.to_mt)


def newest_side(cm_age: float | None, mt_age: float | None) -> str | None:
    """`newest` policy: each age is measured on its own side's clock; None = unknown."""
    if cm_age is None or mt_age is None:
        return None
    return CLICKMAINT if cm_age <= mt_age else MANTENIMIENTO


def merge(
    specs: Iterable[FieldSpec],
    *,
    base_cm: Snapshot,
    base_mt: Snapshot,
    cm: Snapshot,
    mt: Snapshot,
    translator: Translator,
    policy_for: Callable[[str], str],
    resolutions: dict[str, Resolution] | None = None,
    open_conflicts: dict[str, int] | None = None,
    ages: tuple[float | None, float | None] = (None, None),
    force: str | None = None,
) -> MergePlan:
    """Plan the writes for one pair.

    `force` (a resync with `--prefer`) also settles differences that no side changed since
    the base, e.g. after a mapping change or a hand-made fix, in favour of that side.
    """
    resolutions = resolutions or {}
    open_conflicts = open_conflicts or {}
    plan = MergePlan()

    def send(spec: FieldSpec, direction: str, value: Any) -> None:
        name = spec.name
        writable = spec.mt_writable if direction == "to_mt" else spec.cm_writable
        if not writable and value is None:
            return  # nothing to mirror
        if not writable:
            plan.not_mirrorable.append((name, direction, spec.why_one_way or "not writable"))
            return
        try:
            translated = (
                translator.to_mt(name, value)
                if direction == "to_mt"
                else translator.to_cm(name, value)
            )
        except Exception as exc:  # Untranslatable, or a vocabulary hole
            plan.not_mirrorable.append((name, direction, str(exc) or type(exc).__name__))
            return
        (plan.to_mt if direction == "to_mt" else plan.to_cm)[name] = translated

    for spec in specs:
        name = spec.name
        cm_value, mt_value = cm.get(name), mt.get(name)
        cm_changed = base_cm.get(name, _MISSING) != cm_value
        mt_changed = base_mt.get(name, _MISSING) != mt_value

        resolution = resolutions.get(name)
        if resolution is not None:
            plan.applied.append(resolution.conflict_id)
            if resolution.take == CLICKMAINT:
                if not translator.agree(name, cm_value, mt_value):
                    send(spec, "to_mt", cm_value)
            elif resolution.take == MANTENIMIENTO:
                if not translator.agree(name, cm_value, mt_value):
                    send(spec, "to_cm", mt_value)
            else:
                if resolution.value != cm_value:
                    plan.to_cm[name] = resolution.value
                if not translator.agree(name, resolution.value, mt_value):
                    send(spec, "to_mt", resolution.value)
            continue

        if translator.agree(name, cm_value, mt_value):
            if name in open_conflicts:
                plan.moot.append(open_conflicts[name])
            continue
        if name in open_conflicts and not (cm_changed and mt_changed):
            # one side went back to the base: the other side's change now simply wins
            plan.moot.append(open_conflicts[name])

        if cm_changed and mt_changed:
            policy = policy_for(name)
            winner: str | None
            if policy == CLICKMAINT:
                winner = CLICKMAINT
            elif policy == MANTENIMIENTO:
                winner = MANTENIMIENTO
            elif policy == "newest":
                winner = newest_side(*ages)
            else:
                winner = None
            base = base_cm.get(name)
            plan.conflicts.append(FieldConflict(name, base, cm_value, mt_value, policy, winner))
            if winner is None:
                plan.hold.add(name)
            elif winner == CLICKMAINT:
                send(spec, "to_mt", cm_value)
            else:
                send(spec, "to_cm", mt_value)
        elif cm_changed:
            send(spec, "to_mt", cm_value)
        elif mt_changed:
            send(spec, "to_cm", mt_value)
        elif force == CLICKMAINT:
            send(spec, "to_mt", cm_value)
        elif force == MANTENIMIENTO:
            send(spec, "to_cm", mt_value)
        # else: neither changed yet they disagree: a one-way difference, already reported
    return plan


def advance_base(
    specs: Iterable[FieldSpec], old: Snapshot, current: Snapshot, hold: set[str]
) -> Snapshot:
    """New base for one side: what it holds now, except held (conflicted) fields."""
    new: Snapshot = {}
    for spec in specs:
        name = spec.name
        if name in hold and name in old:
            new[name] = old[name]
        elif name in hold:
            continue
        else:
            new[name] = current.get(name)
    return new


def base_after_write(before: Snapshot, after: Snapshot, written: dict[str, Any]) -> Snapshot:
    """What one side's base should be made of after syncd wrote `written` to it.

    A written field's base is the value written, not the value read back: the read-back
    normally shows just that, and when it does not, someone edited the field between our
    write and our read; taking the read-back as the base would hide that edit for good.
    Fields not written keep the value merged with, so a difference in `after` is a change.
    """
    return {k: (written[k] if k in written else before.get(k)) for k in after}


def edited_during_write(*sides: tuple[Snapshot, dict[str, Any]]) -> list[str]:
    """Fields whose read-back (`after`) differs from what was just written to that side."""
    return sorted({k for after, written in sides for k, v in written.items() if after.get(k) != v})
