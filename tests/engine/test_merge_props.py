"""Properties of the per-field three-way merge (`syncd.engine.merge`), independent of any server.

The stateful test drives merge through both simulators; these pin the rules themselves, over
every combination of "who changed what" and every policy, so a regression names the rule it
broke.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncd.engine.merge import (
    CLICKMAINT,
    MANTENIMIENTO,
    Resolution,
    advance_base,
    merge,
    newest_side,
)
from syncd.engine.records import FieldSpec

FIELDS = (
    FieldSpec("a", cm_writable=True, mt_writable=True),
    FieldSpec("b", cm_writable=True, mt_writable=True),
    FieldSpec("c", cm_writable=True, mt_writable=False, why_one_way="read-only on mt"),
)
POLICIES = ("manual", CLICKMAINT, MANTENIMIENTO, "newest")
#: a tiny alphabet so that "both sides changed to the same value" happens often
VALUES = st.sampled_from(["x", "y", "z", None])


class Identity:
    """Both sides hold the same representation: agreement is equality."""

    def to_mt(self, field: str, value: Any) -> Any:
        return value

    def to_cm(self, field: str, value: Any) -> Any:
        return value

    def agree(self, field: str, cm_value: Any, mt_value: Any) -> bool:
        return bool(cm_value == mt_value)


snapshots = st.fixed_dictionaries({spec.name: VALUES for spec in FIELDS})
ages = st.tuples(st.one_of(st.none(), st.floats(0, 1e6)), st.one_of(st.none(), st.floats(0, 1e6)))


def run(
    base: dict,
    cm: dict,
    mt: dict,
    policy: str,
    age: tuple = (None, None),
    *,
    base_mt: dict | None = None,
    **kw: Any,
):
    """merge() over FIELDS with one base for both sides unless `base_mt` is given."""
    return merge(
        FIELDS,
        base_cm=base,
        base_mt=base if base_mt is None else base_mt,
        cm=cm,
        mt=mt,
        translator=Identity(),
        policy_for=lambda _field: policy,
        ages=age,
        **kw,
    )


@given(base=snapshots, policy=st.sampled_from(POLICIES))
def test_nothing_changed_means_nothing_to_do(base: dict, policy: str) -> None:
    plan = run(base, dict(base), dict(base), policy)
    assert not plan.has_writes
    assert plan.conflicts == [] and plan.hold == set() and plan.not_mirrorable == []


@given(base=snapshots, cm=snapshots, mt=snapshots, policy=st.sampled_from(POLICIES), age=ages)
def test_every_field_follows_the_rule_for_who_changed_it(
    base: dict, cm: dict, mt: dict, policy: str, age: tuple
) -> None:
    plan = run(base, cm, mt, policy, age)
    conflicted = {c.field for c in plan.conflicts}
    for spec in FIELDS:
        f = spec.name
        cm_changed, mt_changed = cm[f] != base[f], mt[f] != base[f]
        if cm[f] == mt[f]:
            # agreement is never a conflict and never a write, whoever changed what
            assert f not in conflicted and f not in plan.to_cm and f not in plan.to_mt
        elif cm_changed and mt_changed:
            assert f in conflicted  # both changed, to different values: logged
            winner = {
                CLICKMAINT: CLICKMAINT,
                MANTENIMIENTO: MANTENIMIENTO,
                "newest": newest_side(*age),
                "manual": None,
            }[policy]
            (conflict,) = [c for c in plan.conflicts if c.field == f]
            assert conflict.winner == winner and conflict.base == base[f]
            if winner is None:
                assert f in plan.hold and f not in plan.to_cm and f not in plan.to_mt
            elif winner == CLICKMAINT:
                assert plan.to_mt.get(f, cm[f]) == cm[f] and f not in plan.to_cm
            else:
                assert plan.to_cm.get(f) == mt[f] and f not in plan.to_mt
        elif cm_changed:
            assert f not in conflicted and f not in plan.to_cm
            if spec.mt_writable:
                assert plan.to_mt[f] == cm[f]
            elif cm[f] is not None:
                assert (f, "to_mt", spec.why_one_way) in plan.not_mirrorable
        elif mt_changed:
            assert f not in conflicted and plan.to_cm[f] == mt[f] and f not in plan.to_mt
        else:
            # both still at the base yet different: can only happen with per-side bases
            raise AssertionError("unreachable with one shared base")


@given(base=snapshots, cm=snapshots, mt=snapshots, policy=st.sampled_from(POLICIES), age=ages)
def test_applying_the_plan_converges_every_field_not_held(
    base: dict, cm: dict, mt: dict, policy: str, age: tuple
) -> None:
    plan = run(base, cm, mt, policy, age)
    cm_after = {**cm, **plan.to_cm}
    mt_after = {**mt, **plan.to_mt}
    one_way = {name for name, direction, _ in plan.not_mirrorable if direction == "to_mt"}
    for spec in FIELDS:
        if spec.name in plan.hold or not spec.mt_writable:
            continue
        assert cm_after[spec.name] == mt_after[spec.name], spec.name
    # and a second merge against the advanced bases has nothing left to do
    new_cm = advance_base(FIELDS, base, cm_after, plan.hold)
    new_mt = advance_base(FIELDS, base, mt_after, plan.hold)
    again = run(new_cm, cm_after, mt_after, policy, age, base_mt=new_mt)
    held_or_one_way = plan.hold | one_way | {s.name for s in FIELDS if not s.mt_writable}
    assert set(again.to_cm) <= held_or_one_way and set(again.to_mt) <= held_or_one_way
    assert {c.field for c in again.conflicts} <= plan.hold


@given(base=snapshots, cm=snapshots, mt=snapshots, age=ages)
def test_side_policies_are_mirror_images(base: dict, cm: dict, mt: dict, age: tuple) -> None:
    """Swapping the sides' values and the side policy swaps the writes (fields both sides can
    write)."""
    both = {"a", "b"}
    forward = run(base, cm, mt, CLICKMAINT, age)
    backward = run(base, mt, cm, MANTENIMIENTO, age)
    assert {k: v for k, v in forward.to_mt.items() if k in both} == {
        k: v for k, v in backward.to_cm.items() if k in both
    }
    assert {k: v for k, v in forward.to_cm.items() if k in both} == {
        k: v for k, v in backward.to_mt.items() if k in both
    }
    assert [c.field for c in forward.conflicts] == [c.field for c in backward.conflicts]


@given(base=snapshots, cm=snapshots, mt=snapshots, value=VALUES)
def test_an_operator_resolution_settles_the_field_and_is_marked_applied(
    base: dict, cm: dict, mt: dict, value: Any
) -> None:
    resolutions = {"a": Resolution(7, "value", value)}
    plan = run(base, cm, mt, "manual", resolutions=resolutions, open_conflicts={"a": 7})
    assert 7 in plan.applied and "a" not in plan.hold
    assert "a" not in {c.field for c in plan.conflicts}
    assert plan.to_cm.get("a", cm["a"]) == value
    assert plan.to_mt.get("a", mt["a"]) == value


@given(base=snapshots, cm=snapshots, mt=snapshots)
def test_an_open_conflict_becomes_moot_once_the_sides_agree(base: dict, cm: dict, mt: dict) -> None:
    mt = {**mt, "a": cm["a"]}
    plan = run(base, cm, mt, "manual", open_conflicts={"a": 3})
    assert 3 in plan.moot and "a" not in plan.hold


def test_newest_needs_both_ages() -> None:
    assert newest_side(None, 5.0) is None and newest_side(5.0, None) is None
    assert newest_side(1.0, 2.0) == CLICKMAINT
    assert newest_side(3.0, 2.0) == MANTENIMIENTO


@given(old=snapshots, current=snapshots, hold=st.sets(st.sampled_from(["a", "b", "c"])))
def test_advance_base_keeps_held_fields_and_takes_the_rest(
    old: dict, current: dict, hold: set[str]
) -> None:
    new = advance_base(FIELDS, old, current, hold)
    for spec in FIELDS:
        expected = old[spec.name] if spec.name in hold else current[spec.name]
        assert new[spec.name] == expected
