"""Configuration: the example is valid, overrides and credentials resolve, errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import ConfigError, load_config, read_credential

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "creds"
    d.mkdir()
    (d / "clickmaint-api-key").write_text("key-123456\n")
    (d / "mantenimiento-password").write_text("pw-abcdef\n")
    return {"CREDENTIALS_DIRECTORY": str(d)}


def test_example_config_is_valid_and_secret_free(creds) -> None:
    config = load_config(ROOT / "config.example.toml", env=creds)
    assert config.clickmaint.rate_limit == 300
    assert config.clickmaint_api_key is not None
    assert config.clickmaint_api_key.get_secret_value() == "key-123456"
    assert "key-123456" not in repr(config) and "pw-abcdef" not in repr(config)
    assert "key-123456" not in config.model_dump_json()


def test_env_overrides_use_toml_values(creds) -> None:
    env = {
        **creds,
        "SYNCD_CLICKMAINT__ENTITY_ID": "7",
        "SYNCD_STREAMS__WORK_ORDERS__ENABLED": "false",
    }
    config = load_config(ROOT / "config.example.toml", env=env)
    assert config.clickmaint.entity_id == 7
    assert config.streams.work_orders.enabled is False


def test_credential_lookup_order(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("from-credentials-dir")
    other = tmp_path / "other"
    other.write_text("from-file-env")
    assert read_credential("a", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "from-credentials-dir"
    assert read_credential("a", {"SYNCD_A_FILE": str(other)}) == "from-file-env"
    assert read_credential("a", {"SYNCD_A": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match="not found") as missing:
        read_credential("nope", {})
    assert "\n" not in str(missing.value)


def test_vendor_estado_names_are_aliases(tmp_path: Path, creds) -> None:
    text = (
        (ROOT / "config.example.toml")
        .read_text()
        .replace('on_hold = "ESPERA"', 'on_hold = "PENDIENTE"')
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    config = load_config(path, env=creds)
    from syncd.engine.mapping import WorkOrderMapping

    assert WorkOrderMapping(config).status_to_estado["on_hold"] == "ESPERA"


def test_fingerprint_changes_with_the_mapping_only(tmp_path: Path, creds) -> None:
    base = load_config(ROOT / "config.example.toml", env=creds).mapping_fingerprint()
    faster = load_config(
        ROOT / "config.example.toml",
        env={**creds, "SYNCD_STREAMS__WORK_ORDERS__INTERVAL_SECONDS": "5"},
    )
    assert faster.mapping_fingerprint() == base
    remapped = load_config(
        ROOT / "config.example.toml",
        env={**creds, "SYNCD_VOCABULARIES__PRIORITY_TO_PRIORIDAD__NONE": '"MEDIA"'},
    )
    assert remapped.mapping_fingerprint() != base


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("entity_id = 1", 'entity_id = "uno"'), "clickmaint.entity_id"),
        (
            lambda t: t.replace("entity_id = 1", "entity_id = 1\nentity = 2"),
            "unknown key clickmaint.entity",
        ),
        (
            lambda t: t.replace('username = "syncd"\n', ""),
            "missing required key mantenimiento.username",
        ),
        (lambda t: t.replace('completed = "REALIZADA"', 'completed = "TERMINADA"'), "TERMINADA"),
        (
            lambda t: t.replace(
                'server_timezone = "America/Tegucigalpa"', 'server_timezone = "Mars/Base"'
            ),
            "Mars/Base",
        ),
        (lambda t: t + "\n[broken", "invalid TOML"),
    ],
)
def test_errors_are_one_line_with_the_location(tmp_path: Path, creds, edit, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit((ROOT / "config.example.toml").read_text()))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env=creds)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
