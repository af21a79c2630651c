"""Every benchmark starts as bench/README.md says (``bench/NAME``, on the system python3, which
re-starts on the project's venv) and answers ``--help``: a script that cannot import fails here,
not on the day someone measures with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.iterdir() if p.is_file() and not p.suffix and p.name != "README")


def test_the_scripts_are_found() -> None:
    assert {"startup", "noop_run", "site", "services", "backup", "patch"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_answers_help(name: str) -> None:
    proc = subprocess.run(
        [str(BENCH / name), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=BENCH.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower(), proc.stdout[-500:]
