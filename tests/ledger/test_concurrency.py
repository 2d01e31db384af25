"""Two processes on one ledger (the daemon and a manual `syncd resync`, or `syncd quarantine
retry`) must never both journal the same create, and never see half of a hold."""

from __future__ import annotations

import threading
from pathlib import Path

from syncd.ledger.models import OPERATOR_HOLD
from syncd.ledger.store import Ledger


def test_racing_writers_journal_one_intent_per_source(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    writers = 4
    rounds = 25
    barrier = threading.Barrier(writers)
    tokens: list[list[str]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        ledger = Ledger.open(path)  # its own connection, as another process would have
        try:
            for source in range(rounds):
                barrier.wait()
                intent = ledger.add_intent(
                    stream="work_orders",
                    op="create",
                    source_side="cm",
                    source_id=str(source),
                    target_side="mt",
                    payload={"snapshot": {"title": f"wo {source}"}},
                )
                tokens[index].append(intent.token)
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)
            barrier.abort()
        finally:
            ledger.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # every writer got the same intent for each source, and the outbox holds exactly one
    for source in range(rounds):
        assert len({tokens[i][source] for i in range(writers)}) == 1
    ledger = Ledger.open(path)
    try:
        live = ledger.live_intents("work_orders")
        assert sorted(int(i.source_id) for i in live) == list(range(rounds))
    finally:
        ledger.close()


def test_a_hold_is_never_seen_as_an_ordinary_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger.open(path)
    try:
        item = ledger.hold("work_orders", "cm", "7", "created elsewhere: operator decides")
        assert item.next_retry_at == OPERATOR_HOLD
        stored = ledger.get_quarantined("work_orders", "cm", "7")
        assert stored is not None and stored.next_retry_at == OPERATOR_HOLD
        assert ledger.due_quarantine("work_orders", now="2999-01-01T00:00:00.000Z") == []
    finally:
        ledger.close()
