"""What `nr drift` leaves for `nr status`: its last result, kept 0600 where data.drift_result says."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import yaml
from click.testing import CliRunner

from nr.cli import cli
from nr.drift import load_result, result_doc, result_path, save_result
from nr.report import DriftItem, RunReport
from tests.unit.test_report import free_port, inventory


def test_the_result_round_trips_and_a_broken_file_says_so(tmp_path: Path) -> None:
    report = RunReport("drift", dry_run=True)
    report.drift.append(
        DriftItem("base", "h1", "sysctl vm.overcommit_memory", "1", "0", "nr run base --limit h1")
    )
    path = result_path(tmp_path)
    assert path == tmp_path / ".nr-drift.json"
    assert result_path(tmp_path, "state/drift.json") == tmp_path / "state" / "drift.json"
    assert result_path(tmp_path, "/var/lib/nr/d.json") == Path("/var/lib/nr/d.json")
    assert save_result(path, result_doc(report, "base", now=1000.0)) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    last = load_result(path)
    assert last is not None and last.exit_code == 1 and last.finished == 1000.0 and last.scope == "base"
    assert last.items[0]["fix"] == "nr run base --limit h1"
    path.write_text("{not json")
    broken = load_result(path)
    assert broken is not None and "unreadable" in broken.error
    assert load_result(tmp_path / "none.json") is None


def test_save_result_reports_a_folder_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    problem = save_result(tmp_path / "file" / "drift.json", {"x": 1})
    assert problem is not None and "could not keep the result" in problem


def test_drift_keeps_its_result_and_status_shows_it(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())  # nothing listens: no host can be checked
    defaults = yaml.safe_load((folder / "defaults.yaml").read_text())
    defaults["data"] = {"drift_result": "state/last-drift.json"}
    (folder / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    t0 = time.time()
    res = CliRunner().invoke(cli, ["drift", "-i", str(folder)])
    assert res.exit_code == 2, res.output
    doc = json.loads((folder / "state" / "last-drift.json").read_text())
    assert (
        doc["exit_code"] == 2 and set(doc["unchecked_hosts"]) == {"h1", "h2", "h3"} and doc["finished"] >= t0
    )
    page = tmp_path / "site.html"
    status = CliRunner().invoke(cli, ["status", "-i", str(folder), "--html", str(page), "--json"])
    assert status.exit_code == 1, status.output
    shown = json.loads(status.stdout)
    assert not any(h["reachable"] for h in shown["hosts"])
    assert shown["drift"]["exit_code"] == 2 and set(shown["drift"]["unchecked"]) == {"h1", "h2", "h3"}
    assert "could not be checked" in page.read_text()
