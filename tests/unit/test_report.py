"""Run reports: JSON shape, failure reasons, exit codes, drift output."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import yaml
from click.testing import CliRunner
from rich.console import Console

from nr.changes import Change
from nr.cli import cli
from nr.config import Settings, init_nornir
from nr.drift import drift_exit_code, drift_json, print_drift, prom_text, write_prom
from nr.errors import NrError
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.report import DriftItem, Row, RunReport
from nr.secrets import Secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory(tmp_path: Path, port: int) -> Path:
    folder = tmp_path / "inv"
    folder.mkdir()
    hosts = {f"h{i}": {"hostname": f"127.0.0.{i}", "port": port} for i in (1, 2, 3)}
    (folder / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (folder / "defaults.yaml").write_text(
        yaml.safe_dump({"connection_options": {"fabric": {"extras": {"connect_timeout": 2}}}})
    )
    return folder


def run_tasks(tmp_path: Path, dry_run: bool = False) -> RunReport:
    nr = init_nornir(Settings(inventory(tmp_path, 22), dry_run=dry_run))
    report = RunReport("demo", dry_run=dry_run)
    secret = Secret("pa55word-xyz")

    def task(run: HostRun) -> Outcome[None]:
        if run.name == "h2":
            raise NrError(f"h2: disk full while writing (token {secret.reveal()})")
        if run.name == "h3":
            raise ValueError("unexpected")
        return Outcome(changes=[Change("file /etc/x", "sha256 aa", "absent", "true", "+ create /etc/x")])

    ctx = PlayContext(nr.with_processors([report]), component="demo", recorder=report)
    ctx.run("apply", task)
    return report


def test_json_shape(tmp_path: Path) -> None:
    doc = run_tasks(tmp_path).to_json()
    assert set(doc) >= {"ok", "changed", "failed_hosts", "results"}
    assert doc["ok"] is False
    assert doc["changed"] == 1
    assert doc["failed_hosts"] == ["h2", "h3"]
    rows = {r["host"]: r for r in doc["results"]}
    assert set(rows["h1"]) == {"host", "task", "changed", "failed", "diff", "error", "changes"}
    assert rows["h1"] == {
        "host": "h1",
        "task": "demo.apply",
        "changed": True,
        "failed": False,
        "diff": "+ create /etc/x\n",
        "error": "",
        "changes": ["file /etc/x"],
    }
    assert rows["h2"]["failed"] and rows["h2"]["error"].startswith("h2: disk full")
    assert rows["h3"]["error"] == "ValueError: unexpected"
    json.dumps(doc)


def test_secrets_redacted_in_errors(tmp_path: Path) -> None:
    report = run_tasks(tmp_path)
    text = json.dumps(report.to_json())
    assert "pa55word-xyz" not in text
    assert "********" in text


def test_drift_items_and_exit_code(tmp_path: Path) -> None:
    report = run_tasks(tmp_path, dry_run=True)
    assert [d.host for d in report.drift] == ["h1"]
    assert report.drift[0].fix == "nr run demo --limit h1"
    assert drift_exit_code(report) == 2  # h2 and h3 could not be checked
    doc = drift_json(report)
    assert doc["drift"][0] == {
        "component": "demo",
        "host": "h1",
        "what": "file /etc/x",
        "expected": "sha256 aa",
        "actual": "absent",
        "fix": "nr run demo --limit h1",
    }
    assert set(doc["unchecked_hosts"]) == {"h2", "h3"}


def test_prom_textfile(tmp_path: Path) -> None:
    report = run_tasks(tmp_path, dry_run=True)
    text = prom_text(report, now=1700000000.0)
    assert 'nr_drift_items{component="demo",host="h1"} 1' in text
    assert "nr_drift_hosts_unreachable 2" in text
    assert "nr_drift_last_run_timestamp_seconds 1700000000.000" in text
    assert "nr_drift_exit_code 2" in text
    for line in text.splitlines():  # every sample line is "name{labels} value" or "name value"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    path = tmp_path / "textfile" / "nr.prom"
    write_prom(path, text)
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["nr.prom"]


def test_unreachable_hosts_exit_1_and_are_named(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())  # nothing listens there: connection refused
    res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder), "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["failed_hosts"] == ["h1", "h2", "h3"]
    for r in doc["results"]:
        assert "cannot connect to 127.0.0." in r["error"] and "refused" in r["error"].lower()


def test_drift_unreachable_exit_2_and_prom(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())
    prom = tmp_path / "nr.prom"
    res = CliRunner().invoke(cli, ["drift", "-i", str(folder), "--prom", str(prom)])
    assert res.exit_code == 2, res.output
    assert "could not check h1" in res.output
    assert "nr_drift_hosts_unreachable 3" in prom.read_text()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    folder = inventory(tmp_path, 22)
    res = CliRunner().invoke(cli, ["run", "nosuchplay", "-i", str(folder)])
    assert res.exit_code == 2 and "unknown play 'nosuchplay'" in res.output
    res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder), "--limit", "h9"])
    assert res.exit_code == 2 and "--limit h9: no host or group of that name" in res.output
    res = CliRunner().invoke(cli, ["drift", "-i", str(folder), "--prom", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "ending in .prom" in res.output
    res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder), "--workers", "0"])
    assert res.exit_code == 2


def test_limit_by_group_selects_only_those_hosts(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())
    hosts = yaml.safe_load((folder / "hosts.yaml").read_text())
    hosts["h1"]["groups"] = ["k3s_servers"]
    (folder / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder), "--limit", "k3s_servers", "--json"])
    doc = json.loads(res.stdout)
    assert {r["host"] for r in doc["results"]} == {"h1"}


EVIL = "\x1b]0;owned\x07\x1b[2J\x9b31m"


def test_printed_values_never_carry_terminal_escapes() -> None:
    """A hostile host's stderr or file content reaches error rows, diffs, drift rows and notes."""
    report = RunReport("demo", console=Console(file=io.StringIO(), highlight=False))
    report.failed_reasons["h1"] = f"demo.apply: remote command failed (exit 1): {EVIL}"
    report.rows.append(Row("h2", "demo.apply", True, False, f"+ line {EVIL}\n", "", [f"file {EVIL}"]))
    report.drift.append(DriftItem("demo", "h2", f"file {EVIL}", "x", EVIL, "nr run demo"))
    report.note("demo", f"note {EVIL}")
    out = io.StringIO()
    console = Console(file=out, highlight=False, soft_wrap=True)
    report.print_summary(console, diffs=True)
    print_drift(report, console)
    text = out.getvalue() + report.console.file.getvalue()  # type: ignore[union-attr]
    assert not any(c in text for c in "\x1b\x07\x9b"), repr(text)
    assert text.count("\\x1b]0;owned\\a\\x1b[2J\\x9b31m") >= 5  # error, change, diff, drift, note
    assert "\\u001b]0;owned\\u0007" in json.dumps(report.to_json())  # JSON escapes them itself


def test_check_says_which_hosts_could_not_be_checked(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())  # connection refused: no host can be checked
    res = CliRunner().invoke(cli, ["check", "base", "-i", str(folder)])
    assert res.exit_code == 1, res.output
    assert "0 check(s) failed" not in res.output
    assert "Not all checks passed: 3 host(s) could not be checked (h1, h2, h3)" in res.output
    assert "could not check h1: base." in res.output


def test_one_line_per_change_and_cluster_actions_counted() -> None:
    from nr.report import change_lines

    two = Outcome(changes=[Change("file /a", "x", "y", "true"), Change("package b", "x", "y", "true")])
    assert change_lines(two) == ["file /a", "package b"]
    actions = (
        "".join(f"~ MEET 10.0.0.{i}:7000 from 10.0.0.1:7000\n" for i in range(5))
        + "~ ADDSLOTSRANGE 0 5460 on a\n"
    )
    assert change_lines(Outcome(extra_diff=actions, changed_flag=True)) == ["5 x MEET, 1 x ADDSLOTSRANGE"]
    assert change_lines(Outcome(extra_diff="~ FAILOVER on a:7003\n", changed_flag=True)) == [
        "FAILOVER on a:7003"
    ]
    assert change_lines(Outcome(extra_diff="k3s is not installed\nmore\n", changed_flag=True)) == [
        "k3s is not installed"
    ]
    assert change_lines(Outcome(extra_diff="~ x\n")) == []


def test_the_summary_lists_changes_and_shows_diffs_only_when_asked(tmp_path: Path) -> None:
    report = run_tasks(tmp_path)
    quiet, loud = io.StringIO(), io.StringIO()
    report.print_summary(Console(file=quiet, width=120))
    report.print_summary(Console(file=loud, width=120), diffs=True)
    assert "~ h1  demo.apply  file /etc/x" in quiet.getvalue() and "+ create /etc/x" not in quiet.getvalue()
    assert "--diff shows" in quiet.getvalue()
    assert "+ create /etc/x" in loud.getvalue() and "--diff shows" not in loud.getvalue()
    (tmp_path / "dry").mkdir()
    dry = run_tasks(tmp_path / "dry", dry_run=True)
    out = io.StringIO()
    dry.print_summary(Console(file=out, width=120))
    assert "Would change:" in out.getvalue() and "+ create /etc/x" in out.getvalue()
