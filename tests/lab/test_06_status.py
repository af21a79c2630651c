"""`nr status` on the lab site: one round trip per host; the Redis layout as the seed's table; k3s,
the app's objects and pods, every route with its latency; the HTML page in headless Chromium (a box
per host, an arrow per replica); a stopped instance in red with its fix, in the text, the JSON, the
page and the drift result `nr status` shows afterwards. And the lab's kubeconfig stays in the lab.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.conftest import LabEnv
from tests.support import browser

pytestmark = [pytest.mark.lab, pytest.mark.docker]

RED = "rgb(198, 40, 40)"


@pytest.fixture(scope="module")
def site(lab: LabEnv) -> LabEnv:
    res = lab.nr("run", "site", "--json", timeout=1200)  # converged already after test_05: a no-op then
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    return lab


def section(doc: dict[str, Any], component: str) -> dict[str, Any]:
    return next(s for s in doc["sections"] if s["component"] == component)


def rows(table: dict[str, Any]) -> list[list[str]]:
    return [[c["text"] for c in row] for row in table["rows"]]


def test_status_shows_the_whole_site_in_one_round_trip_per_host(site: LabEnv, tmp_path: Path) -> None:
    page = tmp_path / "site.html"
    res = site.nr("status", "--json", "--html", str(page))
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    doc = res.json
    h1, h2, h3 = site.hosts
    assert {h: s["commands"] for h, s in doc["ssh"].items()} == dict.fromkeys(site.hosts, 1)
    assert all(h["reachable"] and h["info"]["os"].startswith("Debian") for h in doc["hosts"])
    redis = section(doc, "redis")
    assert rows(redis["tables"][0]) == [
        [h1, "shard 1 master", "replica of shard 3"],
        [h2, "shard 2 master", "replica of shard 1"],
        [h3, "shard 3 master", "replica of shard 2"],
    ]
    assert all(r[5].startswith("link up") for r in rows(redis["tables"][1]))
    k3s = {line["host"]: line["value"]["text"] for line in section(doc, "k3s")["host_lines"]}
    assert k3s[h1].startswith("server v") and k3s[h1].endswith("Ready") and k3s[h2].startswith("agent")
    app = section(doc, "deploy")
    assert rows(app["tables"][0]) == [["aeroalpes", "2/2"], ["aeroalpes-adapter", "2/2"]]
    # each pod in the box of the host its node runs on: the two replicas of a Deployment are spread
    placed = {b["label"]: set() for b in app["boxes"]}
    for b in app["boxes"]:
        placed[b["label"]].add(b["host"])
    assert len(app["boxes"]) == 4 and {b["host"] for b in app["boxes"]} <= {h1, h2, h3}
    assert {label: len(hosts) for label, hosts in placed.items()} == {"aeroalpes": 2, "aeroalpes-adapter": 2}
    routes = rows(section(doc, "checks")["tables"][0])
    assert len(routes) == 4 and all(r[4].endswith(" ms") for r in routes)
    seen = browser.inspect_page(page)
    assert seen["hosts"] == site.hosts and len(seen["arrows"]) == 3 and seen["fail_items"] == []


def test_a_stopped_replica_shows_in_red_with_its_fix_and_in_the_drift_result(
    site: LabEnv, tmp_path: Path
) -> None:
    h3 = site.hosts[2]
    site.exec(h3, "systemctl stop redis-server@7003")
    try:
        res = site.nr("status", "--json")
        assert res.code == 1, res.stdout[-3000:]
        cell = section(res.json, "redis")["tables"][0]["rows"][2][2]
        assert (cell["text"], cell["level"]) == ("down", "fail") and "plan: replica of shard 2" in cell[
            "note"
        ]
        text = site.nr("status", env={"COLUMNS": "200"})
        assert text.code == 1 and f"start redis-server@7003 on {h3}" in text.stdout
        page = tmp_path / "drift.html"
        drift = site.nr("drift", "--html", str(page))
        assert drift.code == 1, drift.stdout[-3000:] + drift.stderr[-2000:]
        seen = browser.inspect_page(page)
        assert seen["fail_items"] == [RED] and RED in seen["fail_lines"]
        assert any(f"{h3}:7003: access" in t and "redis-server@7003" in t for t in seen["fail_texts"])
        kept = site.inventory / ".nr-drift.json"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and json.loads(kept.read_text())["exit_code"] == 1
        later = site.nr("status", "--json")
        assert later.json["drift"]["exit_code"] == 1
        assert any(d["what"] == f"{h3}:7003: access" for d in later.json["drift"]["items"])
    finally:
        site.exec(h3, "systemctl start redis-server@7003")
    deadline = time.monotonic() + 120
    while site.nr("status").code != 0:
        assert time.monotonic() < deadline, "the replica did not come back"
        time.sleep(2)


def test_the_lab_keeps_its_kubeconfig_in_its_folder(site: LabEnv, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    res = site.nr("run", "k3s", "--json", env={"HOME": str(home), "KUBECONFIG": ""})
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert not (home / ".kube").exists()
    path = (site.state_dir / "kubeconfig").resolve()
    note = next(n for n in res.json["notes"] if "kubeconfig" in n)
    assert f"use it: KUBECONFIG={path} kubectl --context lab get nodes" in note
    assert "lab" in {c["name"] for c in yaml.safe_load(path.read_text())["contexts"]}
