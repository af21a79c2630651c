"""The lab's pure parts: addresses, the inventory it writes, remembered options."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nr.errors import NrError
from nr.inventory.validate import RawInventory, validate
from nr.machines.image import IMAGE
from nr.machines.lab import Lab, check_subnet, host_address
from nr.machines.labfiles import LabOptions, lab_inventory, merge_inventory, write_inventory
from nr.machines.startup import likely_cause
from nr.registry import registry

SCHEMA = registry().schema


def test_addresses_and_subnet_range() -> None:
    assert host_address("198.18.1.0/24", 1) == "198.18.1.11"
    assert host_address("198.18.1.0/24", 3) == "198.18.1.13"
    check_subnet("198.19.200.0/24")
    with pytest.raises(NrError, match=r"inside 198\.18\.0\.0/15"):
        check_subnet("10.0.0.0/24")
    with pytest.raises(NrError, match="no room"):
        host_address("198.18.1.0/28", 9)


def test_lab_inventory_is_valid_and_has_roles(tmp_path: Path) -> None:
    docs = lab_inventory([("lab1", "198.18.0.11"), ("lab2", "198.18.0.12"), ("lab3", "198.18.0.13")], tmp_path,
                         LabOptions({"k3s_binary": "/opt/k3s"}), SCHEMA)  # fmt: skip
    assert docs["hosts"]["lab1"]["groups"] == ["k3s_servers", "redis"]
    assert docs["hosts"]["lab3"]["groups"] == ["k3s_agents", "redis"]
    data = docs["defaults"]["data"]
    assert data["k3s_binary"] == "/opt/k3s" and data["image_base"] == IMAGE
    assert data["redis_password"].startswith("file:")
    validate(RawInventory(docs["hosts"], docs["groups"], docs["defaults"], base_dir=tmp_path), SCHEMA)


def test_lab_data_can_name_the_lab_network(tmp_path: Path) -> None:
    """The lab's app containers get addresses of the lab network: the Redis firewall lets it in."""
    docs = lab_inventory([("lab1", "198.18.7.11")], tmp_path, LabOptions(), SCHEMA, subnet="198.18.7.0/24")
    assert docs["defaults"]["data"]["redis_clients"] == ["198.18.7.0/24"]


def test_the_labs_kubeconfig_is_in_the_lab_folder_never_the_operators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = lab_inventory([("lab1", "198.18.7.11")], Path(".nr-lab"), LabOptions(), SCHEMA)
    assert docs["defaults"]["data"]["k3s_kubeconfig"] == str(tmp_path.resolve() / ".nr-lab" / "kubeconfig")


def test_two_hosts_have_no_redis_group(tmp_path: Path) -> None:
    docs = lab_inventory([("lab1", "198.18.0.11"), ("lab2", "198.18.0.12")], tmp_path, LabOptions(), SCHEMA)
    assert all("redis" not in h["groups"] for h in docs["hosts"].values())
    assert "k3s_binary" not in docs["defaults"]["data"]


def test_options_are_remembered(tmp_path: Path) -> None:
    LabOptions({"k3s_binary": "/opt/k3s"}, True).save(tmp_path)
    loaded = LabOptions.load(tmp_path)
    assert loaded == LabOptions({"k3s_binary": "/opt/k3s"}, True)
    assert loaded.merged({}, None) == loaded
    assert loaded.merged({"k3s_binary": "/other"}, False) == LabOptions({"k3s_binary": "/other"}, False)


def test_options_of_earlier_versions_are_read(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text('{"k3s_binary": "/opt/k3s", "docker_socket": true}')
    assert LabOptions.load(tmp_path) == LabOptions({"k3s_binary": "/opt/k3s"}, True)


def test_the_site_is_named_after_the_lab(tmp_path: Path) -> None:
    a = lab_inventory([("a1", "198.18.0.11")], tmp_path, LabOptions(), SCHEMA, site="alab")
    b = lab_inventory([("b1", "198.18.1.11")], tmp_path, LabOptions(), SCHEMA, site="blab")
    assert a["defaults"]["data"]["site_name"] == "alab" and b["defaults"]["data"]["site_name"] == "blab"


def test_lab_up_refuses_a_name_that_cannot_name_a_site(tmp_path: Path) -> None:
    with pytest.raises(NrError, match="--name Lab_1: must be a DNS label"):
        Lab(name="Lab_1", subnet="198.18.72.0/24", state_dir=tmp_path).up(1)


def docs(count: int, **data: str) -> dict[str, dict[str, object]]:
    hosts = [(f"lab{i}", f"198.18.0.{10 + i}") for i in range(1, count + 1)]
    return lab_inventory(hosts, Path("/s"), LabOptions(data), SCHEMA, site="lab")


def test_merge_keeps_what_the_operator_changed_and_updates_the_rest() -> None:
    written = docs(3)
    current = copy.deepcopy(written)
    current["defaults"]["data"]["site_name"] = "home"  # edited
    current["defaults"]["data"]["node_ip"] = "198.18.0.99"  # added
    del current["defaults"]["data"]["image_base"]  # removed
    current["hosts"]["lab2"]["groups"] = ["k3s_servers", "redis"]  # edited
    current["hosts"]["lab3"]["port"] = 2222  # added
    new = docs(4, k3s_binary="/opt/k3s")  # scale-out, with a new lab option
    merged = merge_inventory(written, current, new)
    data = merged["defaults"]["data"]
    assert data["site_name"] == "home" and data["node_ip"] == "198.18.0.99"
    assert "image_base" not in data  # stays removed: lab's value did not change
    assert data["k3s_binary"] == "/opt/k3s"  # lab's new setting arrives
    assert merged["hosts"]["lab2"]["groups"] == ["k3s_servers", "redis"]
    assert merged["hosts"]["lab3"] == {**new["hosts"]["lab3"], "port": 2222}
    assert merged["hosts"]["lab4"] == new["hosts"]["lab4"]  # the new host, with lab's groups
    assert list(merged["hosts"]) == ["lab1", "lab2", "lab3", "lab4"]  # lab says which hosts exist
    assert merge_inventory(new, merged, new) == merged  # idempotent
    assert merge_inventory(written, written, new) == new  # nothing edited: lab's documents


def test_merge_without_a_record_keeps_every_difference() -> None:
    """Inventories written before lab kept a record: whatever differs from lab's documents is kept."""
    current = docs(3)
    current["defaults"]["data"]["site_name"] = "lab-of-old"
    merged = merge_inventory({}, current, docs(3))
    assert merged["defaults"]["data"]["site_name"] == "lab-of-old"


def test_write_inventory_keeps_edits_on_disk(tmp_path: Path) -> None:
    write_inventory(tmp_path, docs(3), "lab")
    text = (tmp_path / "defaults.yaml").read_text()
    assert text.startswith("# Written by `nr lab up` for lab 'lab'. Edit freely")
    (tmp_path / "defaults.yaml").write_text(text.replace("site_name: lab", "site_name: edited"))
    write_inventory(tmp_path, docs(4), "lab")
    assert "site_name: edited" in (tmp_path / "defaults.yaml").read_text()
    assert "lab4:" in (tmp_path / "hosts.yaml").read_text()
    (tmp_path / "groups.yaml").write_text("a: [unclosed\n")
    with pytest.raises(NrError, match=r"cannot keep your edits: .*groups.yaml: line 2"):
        write_inventory(tmp_path, docs(4), "lab")


def test_the_likely_cause_of_a_dead_host() -> None:
    assert "inotify limits" in (likely_cause("Failed to allocate directory watch: Too many open files") or "")
    assert "cgroups" in (likely_cause("Failed to mount cgroup at /sys/fs/cgroup/systemd") or "")
    assert likely_cause("everything is fine") is None
    silent = (
        likely_cause("  \n") or ""
    )  # systemd died before it logged a line: 20 hosts at inotify's default 128
    assert silent.startswith("nothing logged") and "fs.inotify.max_user_instances=" in silent


def test_a_host_that_died_at_start_is_explained_while_its_restart_policy_restarts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lab hosts restart by policy (they come back after a reboot): a host that dies at once is then
    "restarting" (Docker reports it Running and Restarting, exit code kept), or, just after a restart,
    Running again for a moment (exit code 0, RestartCount above 0): seen in CI, where `docker exec` had
    said "is restarting" and the next inspect found it running. A host never restarted runs."""
    from nr.machines import startup

    def inspect(running: bool, restarting: bool, code: int, restarts: int) -> str:
        state = {"Running": running, "Restarting": restarting, "ExitCode": code}
        return json.dumps({"State": state, "RestartCount": restarts})

    cases = {
        "restarting": ([inspect(True, True, 1, 1)], True),
        "up again a moment, then restarting": (
            [inspect(True, False, 0, 2)] * 3 + [inspect(True, True, 1, 3)],
            True,
        ),
        "running, never restarted": ([inspect(True, False, 0, 0)], False),
        "restarted once, then stays up": ([inspect(True, False, 0, 1)] * 100, False),
    }
    for case, (answers, died) in cases.items():
        asked: list[str] = []

        def docker(*args: str, answers: list[str] = answers, asked: list[str] = asked, **_: object) -> str:
            if args[0] != "inspect":
                return "Too many open files"
            asked.append(args[0])
            return answers[min(len(asked), len(answers)) - 1]

        slept: list[float] = []
        monkeypatch.setattr(startup, "docker", docker)
        err = startup.died_at_start("nrt1", settle=2.0, sleep=slept.append)
        assert (err is not None) == died, case
        if err is not None:
            assert "lab host nrt1 died at start (exit code 1); likely cause: this machine's inotify" in str(
                err
            )
            assert len(asked) == len(answers), case
        assert sum(slept) <= 2.0 + 1e-9, case


def test_a_docker_command_that_hangs_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nr.machines.image import docker

    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nsleep 5\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(
        NrError, match=r"^docker exec nrb5019 did not finish within 0.3 s \(is the machine overloaded"
    ):
        docker("exec", "-i", "nrb5019", "sh", "-s", input="true", timeout=0.3)


def test_hosts_made_for_a_state_folder_that_is_gone_are_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh clone on a machine whose Docker kept the lab: the new folder's secrets (made now) are
    not the ones those hosts' Redis holds, so the hosts go; with the folder's key present they stay."""
    import nr.machines.lab as lab_module

    lab = Lab(name="olab", subnet="198.18.73.0/24", state_dir=tmp_path / "new")
    kept = {"olab2": {"State": "running"}, "olab10": {"State": "exited"}, "olab1": {"State": "exited"}}
    assert lab._orphans(kept) == ["olab1", "olab2", "olab10"]
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "id_ed25519").write_text("key")
    assert lab._orphans(kept) == []

    asked: list[tuple[str, ...]] = []

    def docker(*args: str, **_: object) -> str:
        asked.append(args)
        if args[0] == "ps":
            return "\n".join(json.dumps({"Names": n, "State": "running"}) for n in ("olab1", "olab2"))
        if args[0] == "image":  # what comes after the hosts are removed is not this test's
            raise NrError("stop here")
        return ""

    monkeypatch.setattr(lab_module, "docker", docker)
    monkeypatch.setattr(lab_module, "check_inotify", lambda n: asked.append(("inotify", str(n))))
    monkeypatch.setattr(lab_module, "ensure_image", lambda log: docker("image"))
    with pytest.raises(NrError, match="stop here"):
        Lab(name="olab", subnet="198.18.73.0/24", state_dir=tmp_path / "other").up(2)
    assert [a[0] for a in asked[:2]] == ["info", "ps"]
    assert asked[2:] == [("inotify", "2"), ("rm", "-f", "olab1", "olab2"), ("image",)]
