"""Ids the mantenimiento probe walked past: remembered, rechecked for a while, then dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncd.engine import probe_gaps
from syncd.engine.merge import base_after_write, edited_during_write
from syncd.ledger.models import iso_ms

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@given(st.dictionaries(st.integers(1, 10**9), st.just(iso_ms(NOW)), max_size=30))
def test_the_stored_text_round_trips(gaps: dict[int, str]) -> None:
    assert probe_gaps.load(probe_gaps.dump(gaps)) == gaps


def test_damaged_text_is_an_empty_set_not_a_crash() -> None:
    assert probe_gaps.load("{not json") == {}
    assert probe_gaps.load("[1, 2]") == {}
    assert probe_gaps.load(None) == {}


def test_an_id_keeps_the_time_it_was_first_passed_over() -> None:
    first = probe_gaps.add({}, [7], iso_ms(NOW))
    again = probe_gaps.add(first, [7, 9], iso_ms(NOW + timedelta(minutes=5)))
    assert again == {7: iso_ms(NOW), 9: iso_ms(NOW + timedelta(minutes=5))}


def test_ids_are_rechecked_for_a_while_then_dropped() -> None:
    gaps = {5: iso_ms(NOW - probe_gaps.RECHECK_FOR - timedelta(seconds=1)), 6: iso_ms(NOW)}
    assert probe_gaps.split_due(gaps, NOW) == ([6], [5])
    assert probe_gaps.split_due({7: "garbage"}, NOW) == ([], [7])


def test_a_first_probe_keeps_the_gaps_near_the_top_and_found_ids_leave() -> None:
    gaps = {3: "a", 10: "b", 38: "c"}
    assert probe_gaps.near_top(gaps, top=40, window=20) == {38: "c"}
    assert probe_gaps.without(gaps, [3, 38]) == {10: "b"}


@given(
    misses=st.lists(st.integers(1, 200), unique=True),
    found=st.integers(1, 200),
    floor=st.integers(0, 200),
)
def test_only_ids_between_the_floor_and_the_found_id_are_kept(
    misses: list[int], found: int, floor: int
) -> None:
    kept = probe_gaps.passed_over(sorted(misses), found=found, floor=floor)
    assert kept == [m for m in sorted(misses) if floor < m < found]


def test_a_written_field_is_based_on_what_was_written_not_on_the_read_back() -> None:
    before = {"title": "Bomba", "status": "ESPERA", "due": None}
    after = {"title": "Bomba", "status": "EJECUCION", "due": "2026-12-08T10:00:00Z"}
    written = {"status": "PROGRAMADA"}
    assert base_after_write(before, after, written) == {
        "title": "Bomba",
        "status": "PROGRAMADA",
        "due": None,  # not written: the merged value, so the new due date is a change
    }
    assert edited_during_write((after, written), ({"x": 1}, {"x": 1})) == ["status"]
