"""`syncd resync`: resumable after an interruption, `--since` recovers what the watermark
skipped, `--prefer` settles standing differences, and the command itself (summary, exit
code, progress on a terminal)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from syncd import cli as cli_module
from syncd.cli import cli
from syncd.sandbox.launch import start_sandbox

from .harness import Harness, make_harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


def seed_work_orders(h: Harness, count: int) -> list[int]:
    ids = []
    for i in range(count):
        h.cm.clock.advance(1)  # distinct updated_at values: the scan can checkpoint per page
        ids.append(h.cm.create_work_order({"title": f"Orden {i:03d} — revisión"})["id"])
    h.cm.clock.advance(60)  # past the lag
    return ids


def cursor(h: Harness, key: str) -> str | None:
    ledger = h.ledger()
    try:
        return ledger.get_cursor("work_orders", key)
    finally:
        ledger.close()


def test_an_interrupted_resync_resumes_where_it_stopped(h: Harness) -> None:
    ids = seed_work_orders(h, 250)  # three pages of 100

    def second_page_down(request: httpx.Request) -> Exception | None:
        # Click Maint goes away once the first page of work orders has been mirrored (a full
        # resync first lists every id, for deletions; that pass creates nothing)
        if request.url.path.endswith("/work_orders") and len(h.mt.ots) >= 100:
            return httpx.ConnectError("connection refused")
        return None

    h.cm_transport.before = second_page_down
    failed = h.sync(kind="resync", full=True)
    assert failed.status == "failed"
    checkpoint = cursor(h, "resync_cm_progress full")
    assert checkpoint is not None  # the first page is done and remembered
    assert len(h.pairs()) == 100

    h.cm_transport.before = lambda _request: None
    asked: list[str] = []
    h.cm_transport.after = lambda r: asked.append(r.url.params.get("filter[updated_at_gteq]", ""))
    resumed = h.sync(kind="resync", full=True)
    assert resumed.status == "ok", resumed.error
    # it went on from the checkpoint: the two pages left, never the first one again
    assert len(asked) == 2 and all(since > "2000" for since in asked), asked
    assert cursor(h, "resync_cm_progress full") is None  # finished: nothing left to resume
    assert cursor(h, "cm_watermark") is not None
    linked = {int(cm) for cm, _ in h.pairs()}
    assert linked == set(ids)
    assert len(h.mt.ots) == 250  # each work order exactly one OT, none created twice
    assert h.quiet_sync().writes == 0


def test_a_full_resync_does_not_resume_an_interrupted_since_resync(h: Harness) -> None:
    """Each resync question keeps its own checkpoint: `--full` after an interrupted
    `--since` starts at the beginning, and its completion clears both checkpoints."""
    ids = seed_work_orders(h, 250)
    since = h.cm.work_orders[ids[50]]["updated_at"]  # 200 newer: two pages

    def down_after_first_page(request: httpx.Request) -> Exception | None:
        if request.url.path.endswith("/work_orders") and len(h.mt.ots) >= 100:
            return httpx.ConnectError("connection refused")
        return None

    h.cm_transport.before = down_after_first_page
    assert h.sync(kind="resync", since=str(since)).status == "failed"
    assert len(h.pairs()) == 100  # the first page of the --since run, checkpointed
    h.cm_transport.before = lambda _request: None
    assert h.sync(kind="resync", full=True).status == "ok"
    assert len(h.pairs()) == 250  # everything, not only what is newer than --since
    names = [c["name"] for c in h.ledger().cursors("work_orders")]
    assert not any(n.startswith("resync_cm_progress") for n in names), names


def test_resync_since_recovers_changes_the_watermark_skipped(h: Harness) -> None:
    (wo,) = seed_work_orders(h, 1)
    h.quiet_sync()
    h.cm.update_work_order(wo, {"title": "cambiado mientras syncd no miraba"})
    edited_at = h.cm.work_orders[wo]["updated_at"]
    h.cm.clock.advance(60)
    # e.g. a restored ledger or a clock mishap: the watermark sits past the edit
    ledger = h.ledger()
    ledger.set_cursor("work_orders", "cm_watermark", "2999-01-01T00:00:00Z")
    ledger.close()
    h.sync()
    (mt,) = [int(m) for c, m in h.pairs() if int(c) == wo]
    assert h.mt.ots[mt]["descripcion_corta"] != "cambiado mientras syncd no miraba"

    since = (edited_at.replace(microsecond=0)).isoformat()
    report = h.sync(kind="resync", since=since)
    assert report.status == "ok", report.error
    assert h.mt.ots[mt]["descripcion_corta"] == "cambiado mientras syncd no miraba"


def test_resync_prefer_settles_a_standing_difference(h: Harness) -> None:
    (wo,) = seed_work_orders(h, 1)
    h.quiet_sync()
    (mt,) = [int(m) for c, m in h.pairs() if int(c) == wo]
    # priority cannot be written in mantenimiento after creation: a Click Maint change stays
    # a one-way difference, reported, never a loop of writes
    h.cm.update_work_order(wo, {"priority": "high"})
    h.cm.clock.advance(60)
    h.quiet_sync()
    assert h.cm.work_orders[wo]["priority"] == "high"
    assert h.mt.ots[mt]["prioridad"] != "ALTA"
    # an operator decides mantenimiento is right
    report = h.sync(kind="resync", full=True, prefer="mantenimiento")
    assert report.status == "ok", report.error
    expected = h.mapping.to_cm("priority", h.mt.ots[mt]["prioridad"])
    assert h.cm.work_orders[wo]["priority"] == expected
    assert h.quiet_sync().writes == 0


def test_resync_command_against_the_sandbox_over_sockets(tmp_path: Path) -> None:
    """The command as an operator runs it: real sockets, a summary per stream, exit 0, and a
    second resync that has nothing left to write."""
    box = start_sandbox(directory=tmp_path / "sb", work_orders=8, ots=15)
    try:
        env = {
            "SYNCD_CONFIG": str(box.config_path),
            "CREDENTIALS_DIRECTORY": str(box.credentials_dir),
        }
        args = ["resync", "--full", "--yes", "--json", "--stream", "work_orders"]
        first = CliRunner().invoke(cli, args, env=env)
        assert first.exit_code == 0, first.output
        (report,) = json.loads(first.stdout)
        assert report["stream"] == "work_orders" and report["kind"] == "resync"
        assert report["status"] == "ok"
        assert report["counts"]["created_mt"] > 0 and report["counts"]["created_cm"] > 0
        again = CliRunner().invoke(cli, args, env=env)
        assert again.exit_code == 0, again.output
        (second,) = json.loads(again.stdout)
        assert not any(
            k.startswith(("created_", "updated_", "cancelled_")) and v
            for k, v in second["counts"].items()
        ), second["counts"]
    finally:
        box.stop()


def test_progress_is_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert cli_module._progress() is None  # a pipe or a journal: no bar, no \r noise

    # The clock is the test's: a machine up for hours has a monotonic clock far
    # past any constant, so a fixed "later" value could lie in the past.
    clock = {"now": 500.0}
    monkeypatch.setattr(cli_module.time, "monotonic", lambda: clock["now"])
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    show = cli_module._progress()
    assert show is not None
    show("clickmaint pages", 3, None)
    assert terminal.getvalue() == "\rclickmaint pages       3"
    clock["now"] += 0.05
    show("clickmaint pages", 4, None)  # too soon: throttled, nothing drawn
    assert terminal.getvalue() == "\rclickmaint pages       3"
    clock["now"] += 1.0
    show("mantenimiento OTs", 15, 60)
    assert terminal.getvalue().endswith(
        "\rmantenimiento OTs      [#######.......................] 15/60"
    )
