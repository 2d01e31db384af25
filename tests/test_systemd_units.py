"""The systemd units in systemd/ keep the contract the daemon relies on.

Static checks parse the unit files (plus any `<unit>.d/*.conf` drop-ins, as systemd would);
when `systemd-analyze` is installed, `.ci/systemd-check` runs too (verify + offline security
score), including a negative run proving that a trailing comment fails the check.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from syncd.config import ClickMaintSection, MantenimientoSection

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
CHECK = ROOT / ".ci" / "systemd-check"
DAEMON = "syncd.service"
RESYNC = "syncd-resync.service"
TIMER = "syncd-resync.timer"
SERVICES = (DAEMON, RESYNC)

Unit = dict[str, dict[str, list[str]]]

# Directives newer than systemd 252 (Debian 12); none is in its man pages. The real gate is
# `systemd-analyze verify` (252) in .ci/systemd-check, which reports unknown keys.
NEWER_THAN_252 = {
    "OpenFile",  # 253
    "ReloadSignal",  # 253
    "RestartSteps",  # 254
    "RestartMaxDelaySec",  # 254
    "ImportCredential",  # 254
    "MemoryKSM",  # 254
    "SetLoginEnvironment",  # 255
    "SurviveFinalKillSignal",  # 255
    "CoredumpReceive",  # 255
    "PrivatePIDs",  # 257
}
HARDENING_KEYS = (
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateUsers",
    "PrivateIPC",
    "PrivateMounts",
    "ProtectHostname",
    "ProtectClock",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RemoveIPC",
    "DevicePolicy",
    "KeyringMode",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "IPAddressDeny",
    "IPAddressAllow",
)
SHARED_KEYS = (
    "User",
    "Group",
    "StateDirectory",
    "StateDirectoryMode",
    "ConfigurationDirectory",
    "LoadCredential",
    "Environment",
    "UMask",
    "KillMode",
    "TimeoutStopSec",
)


# -- a tiny unit-file parser ------------------------------------------------------------------
def _assignment_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) for every non-comment, non-blank line."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def _parse_into(unit: Unit, path: Path) -> None:
    section = None
    for number, line in _assignment_lines(path):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, {})
            continue
        assert section is not None, f"{path.name}:{number}: assignment outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not a KEY=VALUE line: {line!r}"
        unit[section].setdefault(key.strip(), []).append(value.strip())


def load_unit(name: str) -> Unit:
    """The unit as installed: the file, then its drop-ins in lexical order."""
    unit: Unit = {}
    _parse_into(unit, UNITS / name)
    for dropin in sorted((UNITS / f"{name}.d").glob("*.conf")):
        _parse_into(unit, dropin)
    return unit


def unit_files() -> list[Path]:
    files = sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer"))
    files += sorted(UNITS.glob("*.service.d/*.conf")) + sorted(UNITS.glob("*.timer.d/*.conf"))
    return files


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is not set"
    return values[-1]


def seconds(span: str) -> float:
    """systemd.time(7) time span -> seconds ("90s", "5min", "1h 30min", bare = seconds)."""
    units = {
        "us": 1e-6,
        "ms": 1e-3,
        "s": 1,
        "sec": 1,
        "m": 60,
        "min": 60,
        "h": 3600,
        "hr": 3600,
        "d": 86400,
    }
    span = span.strip()
    if re.fullmatch(r"\d+(\.\d+)?", span):
        return float(span)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", span)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == span.replace(" ", ""), span
    for number, unit in parts:
        assert unit in units, f"unknown time unit in {span!r}"
        total += float(number) * units[unit]
    return total


def credential_names() -> set[str]:
    """The credential names syncd reads: config defaults plus config.example.toml, if any."""
    names = {
        ClickMaintSection.model_fields["api_key_credential"].default,
        MantenimientoSection.model_fields["password_credential"].default,
    }
    for example in (ROOT / "config.example.toml", ROOT / "docs" / "config.example.toml"):
        if example.is_file():
            data = tomllib.loads(example.read_text(encoding="utf-8"))
            names.add(data.get("clickmaint", {}).get("api_key_credential", "clickmaint-api-key"))
            names.add(
                data.get("mantenimiento", {}).get("password_credential", "mantenimiento-password")
            )
    return names


def loaded_credentials(unit: Unit) -> dict[str, str]:
    out = {}
    for value in unit["Service"].get("LoadCredential", []):
        name, _, source = value.partition(":")
        out[name] = source
    return out


@pytest.fixture(scope="module")
def daemon() -> Unit:
    return load_unit(DAEMON)


@pytest.fixture(scope="module")
def resync() -> Unit:
    return load_unit(RESYNC)


# -- the daemon -------------------------------------------------------------------------------
def test_daemon_is_type_notify_with_main_pid_access(daemon: Unit) -> None:
    assert one(daemon, "Service", "Type") == "notify"
    assert one(daemon, "Service", "NotifyAccess") == "main"
    # the console script itself is the main PID (a wrapper's child could not notify)
    assert one(daemon, "Service", "ExecStart") == "/opt/syncd/venv/bin/syncd run"
    assert one(daemon, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_daemon_watchdog_restart_and_start_limit(daemon: Unit) -> None:
    assert seconds(one(daemon, "Service", "WatchdogSec")) == 300
    assert one(daemon, "Service", "Restart") == "on-failure"
    assert seconds(one(daemon, "Service", "RestartSec")) == 15
    prevent = " ".join(daemon["Service"]["RestartPreventExitStatus"]).split()
    assert "78" in prevent  # EX_CONFIG: a restart cannot fix a bad config
    # the start limit only works in [Unit]; [Service] StartLimitInterval= is legacy
    assert seconds(one(daemon, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(daemon, "Unit", "StartLimitBurst")) >= 1
    for key in ("StartLimitIntervalSec", "StartLimitInterval", "StartLimitBurst"):
        assert key not in daemon["Service"], f"{key}= belongs in [Unit]"
    assert seconds(one(daemon, "Service", "TimeoutStartSec")) > 0


def test_daemon_stops_gracefully(daemon: Unit) -> None:
    assert seconds(one(daemon, "Service", "TimeoutStopSec")) >= 30
    assert one(daemon, "Service", "KillMode") == "mixed"


def test_daemon_is_installed_into_multi_user(daemon: Unit) -> None:
    assert one(daemon, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(daemon, "Unit", "After")
    assert "network-online.target" in one(daemon, "Unit", "Wants")


# -- both services ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SERVICES)
def test_static_user_and_managed_directories(name: str) -> None:
    unit = load_unit(name)
    assert one(unit, "Service", "User") == "syncd"
    assert one(unit, "Service", "Group") == "syncd"
    assert "DynamicUser" not in unit["Service"]
    assert one(unit, "Service", "StateDirectory") == "syncd"
    assert one(unit, "Service", "StateDirectoryMode") == "0750"
    assert one(unit, "Service", "ConfigurationDirectory") == "syncd"
    assert one(unit, "Service", "UMask") == "0027"
    env = " ".join(unit["Service"]["Environment"]).split()
    for var in ("PYTHONUNBUFFERED=1", "PYTHONFAULTHANDLER=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert var in env


@pytest.mark.parametrize("name", SERVICES)
def test_credentials_come_from_load_credential(name: str) -> None:
    unit = load_unit(name)
    loaded = loaded_credentials(unit)
    expected = credential_names() | {"clickmaint-api-key", "mantenimiento-password"}
    assert expected <= set(loaded), f"missing LoadCredential= for {expected - set(loaded)}"
    for cred in expected:
        assert loaded[cred] == f"/etc/syncd/credentials/{cred}"
    # secrets never travel through the environment
    assert "EnvironmentFile" not in unit["Service"]
    env = " ".join(unit["Service"].get("Environment", [])).lower()
    assert "password" not in env and "api_key" not in env and "api-key" not in env


@pytest.mark.parametrize("name", SERVICES)
def test_hardening(name: str) -> None:
    unit = load_unit(name)
    svc = unit["Service"]
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    assert one(unit, "Service", "ProtectHome") == "yes"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert one(unit, "Service", "SystemCallArchitectures") == "native"
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    filters = svc["SystemCallFilter"]
    assert "@system-service" in filters
    denied = {group for f in filters if f.startswith("~") for group in f[1:].split()}
    assert {"@privileged", "@resources"} <= denied


def test_hardening_and_shared_settings_are_identical() -> None:
    daemon, resync = load_unit(DAEMON)["Service"], load_unit(RESYNC)["Service"]
    for key in HARDENING_KEYS + SHARED_KEYS:
        assert daemon.get(key) == resync.get(key), f"{key}= differs between the units"


@pytest.mark.parametrize("name", SERVICES)
def test_no_runtime_directory(name: str) -> None:
    # systemd deletes a RuntimeDirectory= when its unit stops: the resync finishing would
    # remove it under the running daemon. Locks live in the state directory instead.
    assert "RuntimeDirectory" not in load_unit(name)["Service"]


# -- the resync oneshot and its timer ---------------------------------------------------------
def test_resync_oneshot(resync: Unit) -> None:
    assert one(resync, "Service", "Type") == "oneshot"
    assert one(resync, "Service", "ExecStart") == "/opt/syncd/venv/bin/syncd resync --yes"
    assert seconds(one(resync, "Service", "TimeoutStartSec")) == 3 * 3600
    assert one(resync, "Service", "Nice") == "10"
    assert "Restart" not in resync["Service"]


def test_timer_if_present() -> None:
    if not (UNITS / TIMER).exists():
        pytest.skip(f"no {TIMER}")
    timer = load_unit(TIMER)
    assert one(timer, "Timer", "OnCalendar")
    assert one(timer, "Timer", "Persistent") == "true"
    assert seconds(one(timer, "Timer", "RandomizedDelaySec")) > 0
    target = timer["Timer"].get("Unit", [RESYNC])[-1]
    assert (UNITS / target).is_file()
    assert one(timer, "Install", "WantedBy") == "timers.target"


# -- file hygiene -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", unit_files(), ids=lambda p: str(p.relative_to(UNITS)))
def test_no_trailing_comments(path: Path) -> None:
    # systemd has no trailing comments: "RestartSec=15s  # x" fails to parse and the setting
    # silently falls back to its default (verify only warns, exit 0).
    for number, line in _assignment_lines(path):
        if line.startswith("["):
            continue
        assert "#" not in line, f"{path.name}:{number}: '#' after a value: {line!r}"
        assert not re.search(r"\s;", line), f"{path.name}:{number}: ';' comment? {line!r}"


@pytest.mark.parametrize("path", unit_files(), ids=lambda p: str(p.relative_to(UNITS)))
def test_no_directives_newer_than_systemd_252(path: Path) -> None:
    unit: Unit = {}
    _parse_into(unit, path)
    keys = {key for section in unit.values() for key in section}
    assert not keys & NEWER_THAN_252
    assert unit.get("Service", {}).get("Type", ["simple"])[-1] != "notify-reload"


def test_sysusers_creates_the_syncd_system_user() -> None:
    lines = [
        line.split()
        for line in (UNITS / "sysusers.d" / "syncd.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [fields for fields in lines if fields[:2] == ["u", "syncd"]]
    assert len(users) == 1
    assert "/var/lib/syncd" in users[0]


def test_readme_covers_every_file() -> None:
    readme = (UNITS / "README.md").read_text(encoding="utf-8")
    for path in [*unit_files(), UNITS / "sysusers.d" / "syncd.conf"]:
        assert path.name in readme, f"README.md does not mention {path.name}"
    for command in ("systemd-sysusers", "daemon-reload", "systemctl reload syncd"):
        assert command in readme


def test_ci_check_script_is_executable_bash() -> None:
    assert CHECK.stat().st_mode & stat.S_IXUSR
    text = CHECK.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


# -- systemd-analyze (only where it is installed) ---------------------------------------------
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd); "
    ".ci/systemd-check installs it in CI",
)


def _run_check(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")
    return subprocess.run(
        ["bash", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_analyze
def test_ci_systemd_check_passes(tmp_path: Path) -> None:
    result = _run_check(CHECK, cwd=tmp_path)  # any cwd: the script finds the repo itself
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "verify: no output" in output
    for name in SERVICES:
        line = re.search(rf"Overall exposure level for {re.escape(name)}: ([\d.]+) (\w+)", output)
        assert line, f"no exposure line for {name}:\n{output}"
        assert float(line.group(1)) <= 2.0, line.group(0)
        assert line.group(2) in ("OK", "SAFE", "PERFECT"), line.group(0)


@needs_analyze
def test_ci_systemd_check_fails_on_a_trailing_comment(tmp_path: Path) -> None:
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    shutil.copytree(UNITS, tmp_path / "systemd")
    unit = tmp_path / "systemd" / DAEMON
    text = unit.read_text(encoding="utf-8")
    assert "\nRestartSec=15s\n" in text
    unit.write_text(text.replace("\nRestartSec=15s\n", "\nRestartSec=15s  # cap\n"))
    result = _run_check(tmp_path / ".ci" / "systemd-check", cwd=tmp_path)
    assert result.returncode != 0
    assert "15s  # cap" in result.stdout + result.stderr
