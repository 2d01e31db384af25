"""`syncd demo`, the README's quick start: it must run unattended and end in agreement."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncd.demo import run_demo

from .procs import base_env, run_cli

pytestmark = pytest.mark.timeout(120)


@pytest.mark.e2e
def test_demo_runs_edits_both_sides_and_ends_in_agreement(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    args = ("demo", "--interval", "1", "--edits-per-cycle", "3", "--dir", str(directory))
    result = run_cli(*args, "--duration", "8", env=base_env(), timeout=90)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # the first work_orders cycle links both seeded systems: creates both ways
    first = re.search(r"cycle +work_orders #1 ok in [0-9.]+s: (.*)", out)
    assert first, out
    assert re.search(r"\d+ OTs created in mantenimiento", first.group(1)), out
    assert re.search(r"\d+ WOs created in Click Maint", first.group(1)), out
    # the other two streams run too: seeded transactions and requests / avisos
    assert re.search(r"cycle +part_usage #\d+ ok .*\d+ transaction\(s\) mirrored to OTs", out)
    assert re.search(r"cycle +requests #\d+ ok .*\d+ avisos created in mantenimiento", out)
    assert re.search(r"part transaction \d+ \(\S+ × [0-9.]+\) on WO \d+ → material", out)
    assert re.search(r"created OT \d+ in mantenimiento", out), out
    assert re.search(r"created WO \d+ in Click Maint", out), out
    assert re.search(r"user +Click Maint +WO \d+: ", out), out
    assert re.search(r"user +mantenimiento OT \d+: ", out), out
    assert re.search(r"syncd +WO \d+ → OT \d+: ", out), out  # a Click Maint edit crossed over
    assert re.search(r"syncd +OT \d+ → WO \d+: ", out), out  # and a mantenimiento edit
    match = re.search(
        r"final comparison +(\d+) pairs compared .*, 0 differences; 0 records without a "
        r"partner; transactions on their OT exactly once: yes",
        out,
    )
    assert match and int(match.group(1)) >= 80, out
    linked = re.search(r"requests ⇄ avisos +(\d+) linked", out)
    assert linked and int(linked.group(1)) >= 80, out
    mirrored = re.search(r"part transactions +(\d+) mirrored onto OTs", out)
    assert mirrored and int(mirrored.group(1)) > 0, out
    assert "conflicts" in out
    assert (directory / "syncd.log").stat().st_size > 0

    # the same directory again (the default --dir is reused): a fresh ledger, same result
    again = run_cli(*args, "--duration", "2", env=base_env(), timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ", 0 differences; 0 records without a partner" in again.stdout


def test_demo_refuses_a_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# someone's real config\n")
    code = run_demo(duration=1, interval=1, edits=1, directory=tmp_path)
    assert code == 2
    assert (tmp_path / "config.toml").read_text() == "# someone's real config\n"
