"""`nr --version` says the package's version; shell completion (click's) knows the commands and plays."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from nr.cli import cli
from tests.conftest import REPO

NR = Path(sys.executable).parent / "nr"


def test_version_is_the_packages() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"nr, version {version}"


def run_nr(**env: str) -> str:
    proc = subprocess.run(
        [str(NR)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout


def complete(words: str) -> list[str]:
    out = run_nr(_NR_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
    return [line.split(",", 1)[1] for line in out.splitlines()]


def test_bash_completion_knows_commands_plays_and_components() -> None:
    assert "complete -o nosort -F _nr_completion nr" in run_nr(_NR_COMPLETE="bash_source")
    assert complete("nr st") == ["status"]
    assert complete("nr run s") == ["site"]
    assert complete("nr drift k") == ["k3s", "k3s-reset"]


def test_the_help_names_status_and_how_to_turn_completion_on() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    assert "nr status shows the site at a glance" in text
    assert 'eval "$(_NR_COMPLETE=bash_source nr)"' in text  # the variable the test above uses
