"""`syncd check`: local checks on real configs, remote checks against the loopback simulators."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.checks import CheckResult, run_checks
from syncd.config import Config, load_config
from syncd.ledger.db import connect, migrate
from syncd.ledger.store import Ledger
from syncd.sandbox.clickmaint_sim import ClickMaintVariant
from syncd.sandbox.launch import Sandbox, start_sandbox

from .test_views import write_config_file, write_credentials

LOCAL = ["config", "state dir", "ledger", "credentials", "time zones"]
REMOTE = ["clickmaint", "capabilities", "vocabulary", "mantenimiento", "materials"]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    creds = write_credentials(tmp_path / "credentials")
    return load_config(write_config_file(tmp_path), env={"CREDENTIALS_DIRECTORY": str(creds)})


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


# -- local ------------------------------------------------------------------------------------
def test_offline_checks_pass_on_a_fresh_install(config: Config) -> None:
    results = run_checks(config, online=False)
    assert [r.name for r in results] == LOCAL
    assert all(r.status == "pass" for r in results), results
    checks = by_name(results)
    assert config.source in checks["config"].detail
    assert config.mapping_fingerprint() in checks["config"].detail
    assert "created on first run" in checks["ledger"].detail
    assert "America/Tegucigalpa (UTC-06:00 now)" in checks["time zones"].detail
    assert "cm-sandbox-key" not in " ".join(r.detail for r in results)


def test_state_dir_that_is_a_file_fails(config: Config) -> None:
    config.state_dir.write_text("not a directory")
    check = by_name(run_checks(config, online=False))["state dir"]
    assert (check.status, check.detail) == ("fail", f"{config.state_dir} is not a directory")


def test_ledger_with_links_passes(config: Config) -> None:
    Ledger.open(config.ledger_path).close()
    results = by_name(run_checks(config, online=False))
    assert results["state dir"].detail == f"{config.state_dir} is writable"
    assert results["ledger"].status == "pass"
    assert "schema up to date, 0 link(s)" in results["ledger"].detail


def test_pending_migrations_warn(config: Config) -> None:
    config.state_dir.mkdir(parents=True)
    db = connect(config.ledger_path)
    migrate(db, config.ledger_path, stop_before="m001_core")
    db.conn.close()
    check = by_name(run_checks(config, online=False))["ledger"]
    assert check.status == "warn" and "migration(s) pending (m001_core" in check.detail


def test_changed_mapping_warns(config: Config) -> None:
    ledger = Ledger.open(config.ledger_path)
    ledger.set_meta("mapping_fingerprint", "0123456789abcdef")
    ledger.close()
    check = by_name(run_checks(config, online=False))["ledger"]
    assert check.status == "warn" and "resync --rebaseline" in check.detail


def test_credentials_not_loaded_fail(tmp_path: Path) -> None:
    bare = load_config(write_config_file(tmp_path), require_secrets=False, env={})
    check = by_name(run_checks(bare, online=False))["credentials"]
    assert check.status == "fail"
    assert "clickmaint-api-key, mantenimiento-password" in check.detail


# -- online -----------------------------------------------------------------------------------
@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    boxes: list[Sandbox] = []

    def make(**kw: object) -> Sandbox:
        box = start_sandbox(
            directory=tmp_path / "box", work_orders=20, ots=20, avisos=0, requests=0, **kw
        )
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.stop()


def load(box: Sandbox, **env: str) -> Config:
    return load_config(box.config_path, env={**box.env(), **env})


def test_online_checks_pass_against_the_sandbox(start: Callable[..., Sandbox]) -> None:
    box = start()
    results = run_checks(load(box))
    assert [r.name for r in results] == LOCAL + REMOTE
    assert all(r.status == "pass" for r in results), results
    checks = by_name(results)
    assert "API key accepted, entity 1" in checks["clickmaint"].detail
    assert "strategy keyset" in checks["capabilities"].detail
    assert "statuses in the first 20 work orders" in checks["vocabulary"].detail
    assert "login as syncd works" in checks["mantenimiento"].detail


def test_unknown_status_is_a_vocabulary_warning(start: Callable[..., Sandbox]) -> None:
    box = start()
    box.cm.statuses[9] = {"id": 9, "name": "awaiting_vendor", "is_custom": True}
    next(iter(box.cm.work_orders.values()))["status_id"] = 9
    check = by_name(run_checks(load(box)))["vocabulary"]
    assert check.status == "warn"
    assert "not in vocabularies.status_to_estado: awaiting_vendor" in check.detail


def test_missing_filter_support_warns_about_the_fallback(start: Callable[..., Sandbox]) -> None:
    box = start(variant=ClickMaintVariant(updated_at_filter=False, per_page_cap=50))
    check = by_name(run_checks(load(box)))["capabilities"]
    assert check.status == "warn"
    assert "updated_at filter no" in check.detail and "strategy desc" in check.detail
    assert "clickmaint.per_page = 100 is capped to 50" in check.detail


def test_wrong_api_key_fails(start: Callable[..., Sandbox]) -> None:
    box = start()
    assert box.credentials_dir is not None
    (box.credentials_dir / "clickmaint-api-key").write_text("wrong-key\n")
    results = by_name(run_checks(load(box)))
    assert results["clickmaint"].status == "fail"
    assert "HTTP 401" in results["clickmaint"].detail
    assert "wrong-key" not in results["clickmaint"].detail
    assert results["capabilities"].detail == "skipped: Click Maint is not usable"
    assert results["mantenimiento"].status == "pass"


def test_wrong_password_fails(start: Callable[..., Sandbox]) -> None:
    box = start()
    assert box.credentials_dir is not None
    (box.credentials_dir / "mantenimiento-password").write_text("nope\n")
    results = by_name(run_checks(load(box)))
    assert results["clickmaint"].status == "pass"
    assert results["mantenimiento"].status == "fail"
    assert "mantenimiento" in results["mantenimiento"].detail
    assert results["materials"].status == "warn"


def test_foreign_entity_fails(start: Callable[..., Sandbox]) -> None:
    box = start()
    check = by_name(run_checks(load(box, SYNCD_CLICKMAINT__ENTITY_ID="42")))["clickmaint"]
    assert check.status == "fail"
    assert "entity 42 is not among its entities [1, 2]" in check.detail


def test_stopped_servers_fail_without_traceback(start: Callable[..., Sandbox]) -> None:
    box = start()
    loaded = load(box)
    box.stop()
    results = by_name(run_checks(loaded))
    for name in ("clickmaint", "mantenimiento"):
        assert results[name].status == "fail"
        assert "cannot connect" in results[name].detail
        assert "Traceback" not in results[name].detail
