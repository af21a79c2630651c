"""The engine and the base play against real sshd hosts (the lab)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.lab.conftest import LAB_NAME, LAB_SUBNET, LabEnv, neighbour_subnet

pytestmark = pytest.mark.lab


def copy_inventory(env: LabEnv, dest: Path, hosts: list[str] | None = None) -> Path:
    """A copy of the lab inventory (same key and secrets), optionally with fewer hosts."""
    inv = dest / "inventory"
    shutil.copytree(env.inventory, inv)
    for name in ("id_ed25519", "known_hosts", "secrets"):
        src = env.state_dir / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    if hosts is not None:
        doc = yaml.safe_load((inv / "hosts.yaml").read_text())
        (inv / "hosts.yaml").write_text(yaml.safe_dump({h: {"hostname": doc[h]["hostname"]} for h in hosts}))
    return inv


def test_dry_run_on_fresh_hosts_changes_nothing_and_lists_changes(lab: LabEnv) -> None:
    res = lab.nr("run", "base", "--dry-run", "--json")
    assert res.code == 0, res.stderr
    doc = res.json
    assert doc["dry_run"] is True and doc["ok"] is True
    assert doc["changed"] == 3
    for row in doc["results"]:
        assert row["changed"] is True
        assert "+ package curl" in row["diff"]
        assert "+ create /etc/sysctl.d/90-nr.conf" in row["diff"]
        assert "+vm.overcommit_memory = 1" in row["diff"]
    for host in lab.hosts:  # nothing was changed on any host
        out = lab.exec(
            host,
            "test -e /etc/sysctl.d/90-nr.conf && echo present; "
            "dpkg-query -W -f='${db:Status-Status}' curl 2>/dev/null || echo no-curl",
        )
        assert "present" not in out and "no-curl" in out


def test_base_converges_then_second_run_changes_nothing(lab: LabEnv) -> None:
    first = lab.nr("run", "base", "--json")
    assert first.code == 0, first.stdout + first.stderr
    assert first.json["changed"] == 3
    second = lab.nr("run", "base", "--json")
    assert second.code == 0
    doc = second.json
    assert doc["changed"] == 0, doc
    assert all(not r["changed"] and not r["failed"] for r in doc["results"])
    # one SSH connection per host and one command for a no-op run (facts gathered in one go)
    assert {h: s["commands"] for h, s in doc["ssh"].items()} == {h: 1 for h in lab.hosts}
    text = lab.nr("run", "base")
    assert "nothing changed (already converged)" in text.stdout
    for host in lab.hosts:
        assert lab.exec(
            host, "cat /proc/sys/vm/overcommit_memory; cat /etc/modules-load.d/nr.conf"
        ).split() == [
            "1",
            "#",
            "Written",
            "by",
            "nr",
            "(base",
            "play):",
            "kernel",
            "modules",
            "k3s",
            "needs.",
            "br_netfilter",
            "overlay",
        ]


def test_check_and_drift_after_converge(lab: LabEnv) -> None:
    check = lab.nr("check", "base", "--json")
    assert check.code == 0, check.stdout
    names = {c["name"] for c in check.json["checks"] if c["host"] == lab.hosts[0]}
    assert {
        "hostname",
        "module br_netfilter",
        "sysctl vm.overcommit_memory",
        "swap off",
        "time synchronised",
    } <= names
    drift = lab.nr("drift", "base", "--json")
    assert drift.code == 0, drift.stdout
    assert drift.json["drift"] == []


def test_drift_names_a_hand_made_change_and_the_fix(lab: LabEnv, tmp_path: Path) -> None:
    host = lab.hosts[1]
    lab.exec(
        host, "echo 0 > /proc/sys/net/ipv4/ip_forward; echo '# hand edit' >> /etc/modules-load.d/nr.conf"
    )
    prom = tmp_path / "nr.prom"
    res = lab.nr("drift", "base", "--json", "--prom", str(prom))
    assert res.code == 1, res.stdout + res.stderr
    items = res.json["drift"]
    assert {
        (d["host"], d["what"], d["expected"], d["actual"]) for d in items if d["what"].startswith("sysctl")
    } == {(host, "sysctl net.ipv4.ip_forward", "1", "0")}
    assert any(d["what"] == "file /etc/modules-load.d/nr.conf" for d in items)
    assert all(d["fix"] == f"nr run base -i {lab.inventory} --limit {host}" for d in items)
    assert f'nr_drift_items{{component="base",host="{host}"}} 2' in prom.read_text()
    fix = lab.nr("run", "base", "--limit", host, "--json")
    assert fix.code == 0 and fix.json["changed"] == 1
    assert lab.nr("drift", "base").code == 0


def test_stopped_host_fails_alone_and_is_named(lab: LabEnv, tmp_path: Path) -> None:
    victim = lab.hosts[2]
    inv = copy_inventory(lab, tmp_path)
    defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
    defaults["connection_options"]["fabric"]["extras"]["connect_timeout"] = 3
    (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    lab.stop(victim)
    try:
        res = lab.nr("run", "base", "--json", inventory=inv)
        text = lab.nr("run", "base", inventory=inv)
    finally:
        lab.start(victim)
    assert res.code == 1
    doc = res.json
    assert doc["failed_hosts"] == [victim]
    rows = {r["host"]: r for r in doc["results"]}
    assert "cannot connect to " + LAB_SUBNET.rsplit(".", 1)[0] + "." in rows[victim]["error"]
    assert all(not rows[h]["failed"] for h in lab.hosts if h != victim)
    assert text.code == 1
    assert f"{victim}: base.apply: cannot connect to" in text.stdout


def test_changed_host_key_is_refused(lab: LabEnv, tmp_path: Path) -> None:
    inv = copy_inventory(lab, tmp_path)
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    # give host 1 the key of host 2: a man in the middle would look like this
    addr1 = lines[0].split()[0]
    lines[0] = addr1 + " " + " ".join(lines[1].split()[1:])
    (tmp_path / "known_hosts").write_text("\n".join(lines) + "\n")
    res = lab.nr("run", "base", "--json", inventory=inv)
    assert res.code == 1
    doc = res.json
    assert doc["failed_hosts"] == [lab.hosts[0]]
    err = next(r["error"] for r in doc["results"] if r["host"] == lab.hosts[0])
    assert (
        f"host key of {addr1} CHANGED: {tmp_path / 'known_hosts'} has" in err and "refusing to connect" in err
    )
    # the hint edits the inventory's known_hosts file, the one that holds the key, not ~/.ssh/known_hosts
    assert err.endswith(f"remove the old one: ssh-keygen -R {addr1} -f {tmp_path / 'known_hosts'}")


def test_unknown_host_key_refused_unless_accept_new(lab: LabEnv, tmp_path: Path) -> None:
    inv = copy_inventory(lab, tmp_path)
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    (tmp_path / "known_hosts").write_text("\n".join(lines[:2]) + "\n")  # host 3 unknown
    res = lab.nr("run", "base", "--json", inventory=inv)
    assert res.code == 1 and res.json["failed_hosts"] == [lab.hosts[2]]
    err = next(r["error"] for r in res.json["results"] if r["host"] == lab.hosts[2])
    assert "is not in known_hosts" in err and "accept_new" in err
    defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
    defaults["connection_options"]["fabric"]["extras"]["accept_new"] = True
    (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    res = lab.nr("run", "base", "--json", inventory=inv)
    assert res.code == 0, res.stdout
    assert (tmp_path / "known_hosts").read_text().splitlines()[2] == lines[2]  # recorded exactly


class ProcessSampler:
    """Samples a host's full process list (all users) until stopped."""

    def __init__(self, env: LabEnv, host: str) -> None:
        self.env, self.host = env, host
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.env.exec(self.host, "ps -eww -o user,args", check=False))
            time.sleep(0.05)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_sudo_password_never_leaks(lab: LabEnv, tmp_path: Path) -> None:
    host = lab.hosts[0]
    password = "S3cret-sudo-" + str(time.time_ns())
    pub = (lab.state_dir / "id_ed25519.pub").read_text().strip()
    lab.exec(
        host,
        f"""
        id -u op >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo op
        echo 'op:{password}' | chpasswd
        install -d -m 700 -o op -g op /home/op/.ssh
        echo '{pub}' > /home/op/.ssh/authorized_keys; chown op:op /home/op/.ssh/authorized_keys
        DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq curl >/dev/null
    """,
    )
    inv = copy_inventory(lab, tmp_path, hosts=[host])
    defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
    defaults["username"] = "op"
    defaults["connection_options"]["fabric"]["extras"]["sudo_password"] = "env:NR_TEST_SUDO_PASSWORD"
    (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    env = {"NR_TEST_SUDO_PASSWORD": password}
    with ProcessSampler(lab, host) as sampler:
        res = lab.nr("run", "base", "--json", inventory=inv, env=env)
        text = lab.nr("run", "base", "--dry-run", inventory=inv, env=env)
    assert res.code == 0, res.stdout + res.stderr
    assert res.json["changed"] == 1 and "+ package curl" in res.json["results"][0]["diff"]
    assert len(sampler.samples) > 5
    assert any("sudo" in s for s in sampler.samples)  # the sampler did see our commands
    for blob in [res.stdout, res.stderr, text.stdout, text.stderr, *sampler.samples]:
        assert password not in blob
    # a wrong sudo password is a clear error, and the password is not echoed
    bad = lab.nr("run", "base", "--json", inventory=inv, env={"NR_TEST_SUDO_PASSWORD": "wrong-password-123"})
    assert bad.code == 1
    assert "sudo_password is wrong" in bad.json["results"][0]["error"]
    assert "wrong-password-123" not in bad.stdout + bad.stderr


def test_secret_given_to_a_task_stays_off_command_lines_and_output(lab: LabEnv) -> None:
    """Engine level: a task exports a secret to a remote program; output and ps never show it."""
    from shlex import quote

    from nr.config import Settings, init_nornir
    from nr.outcome import Outcome
    from nr.play import HostRun, PlayContext
    from nr.report import RunReport
    from nr.secrets import Secret

    token = Secret("tok-" + str(time.time_ns()))
    host = lab.hosts[1]

    def task(run: HostRun) -> Outcome[str]:
        out = run.remote.run(
            f"export NR_TOKEN={quote(token.reveal())}\nsh -c 'sleep 1.5; echo token=$NR_TOKEN'"
        )
        return Outcome(value=out.stdout)

    nr = init_nornir(Settings(lab.inventory))
    ctx = PlayContext(nr, component="test", recorder=RunReport("secret"))
    with ProcessSampler(lab, host) as sampler:
        step = ctx.run("secret", task, hosts=[nr.inventory.hosts[host]])
    for h in nr.inventory.hosts.values():
        h.close_connections()
    assert not step.failed
    assert (step.value(host) or "").strip() == "token=********"
    assert len(sampler.samples) > 5 and any("sleep 1.5" in s for s in sampler.samples)
    assert not any(token.reveal() in s for s in sampler.samples)


def test_upload_only_when_the_host_copy_differs(lab: LabEnv, tmp_path: Path) -> None:
    """Engine level: plan_upload + HostRun.apply push a large file over SFTP once, as user nr + sudo."""
    import os

    from nr.config import Settings, init_nornir
    from nr.facts import gather
    from nr.ops.files import plan_upload
    from nr.outcome import Outcome
    from nr.play import HostRun, PlayContext
    from nr.report import RunReport

    blob = tmp_path / "tool"
    blob.write_bytes(os.urandom(3 * 1024 * 1024))
    dest = "/usr/local/bin/nr-test-tool"

    def task(run: HostRun) -> Outcome[None]:
        facts = gather(run.remote, files=[dest])
        change = plan_upload(blob, dest, facts.files[dest], mode=0o750)
        return run.apply([change] if change else [])

    def run() -> tuple[bool, dict[str, int]]:
        nr = init_nornir(Settings(lab.inventory))
        report = RunReport("upload")
        step = PlayContext(nr, component="test", recorder=report).run("upload", task)
        stats = {
            h: nr.inventory.hosts[h].connections["fabric"].connection.stats.transfers
            for h in nr.inventory.hosts
        }
        for h in nr.inventory.hosts.values():
            h.close_connections()
        assert not step.failed, step.failed
        return step.changed, stats

    changed, transfers = run()
    assert changed and set(transfers.values()) == {1}
    for host in lab.hosts:
        out = lab.exec(
            host, f"stat -c '%a %U' {dest}; sha256sum < {dest}; ls -a /home/nr | grep -c nr-upload || true"
        )
        mode_owner, digest, leftovers = out.splitlines()
        assert mode_owner == "750 root"
        assert digest.split()[0] == __import__("hashlib").sha256(blob.read_bytes()).hexdigest()
        assert leftovers == "0"
    changed, transfers = run()
    assert not changed and set(transfers.values()) == {0}


# -- faults: Ctrl-C, two runs at once, a host that goes silent (issue 11) ------------------------------

SLEEPER = {"NR_CATALOGS": "tests.lab.sleeper:CATALOG", "PYTHONPATH": str(REPO)}


class Background:
    """`nr run sleeper` in a subprocess, its stderr (progress) read as it comes."""

    def __init__(self, env: LabEnv, extra: dict[str, str], *args: str) -> None:
        cmd = [sys.executable, "-m", "nr", "run", "sleeper", "-i", str(env.inventory), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, **SLEEPER, **extra},
        )  # fmt: skip
        self.err: list[str] = []
        threading.Thread(
            target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")), daemon=True
        ).start()  # type: ignore[union-attr]

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None, "".join(self.err)
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {''.join(self.err)}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def wait_remote(env: LabEnv, host: str, pattern: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (
        env.exec(host, f"pgrep -f {pattern!r} >/dev/null && echo yes || true", check=False).strip() != "yes"
    ):
        assert time.monotonic() < deadline, f"{pattern} never started on {host}"
        time.sleep(0.2)


def kill_remote(env: LabEnv, pattern: str) -> None:
    for host in env.hosts:
        env.exec(host, f"pkill -f {pattern!r} || true", check=False)


def test_ctrl_c_ends_the_run_at_once_and_one_run_at_a_time(lab: LabEnv) -> None:
    marker = "sleep 597"
    run = Background(lab, {"NR_TEST_SLEEP": "597", "NR_TEST_MARK": "/var/lib/nr-ctrl-c"})
    try:
        run.wait_for("sleeper.sleep")
        for host in lab.hosts:
            wait_remote(lab, host, marker)
        # a second run on the same inventory is refused, naming the first; read-only commands still run
        second = lab.nr("run", "base", env=SLEEPER)
        assert second.code == 2, second.stdout + second.stderr
        assert f"another nr run is changing this inventory: pid {run.proc.pid} of user" in second.stderr
        assert f"(nr run sleeper -i {lab.inventory})" in second.stderr
        assert lab.nr("drift", "base").code == 0
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        out, _ = run.proc.communicate(timeout=30)
        took = time.monotonic() - t0
        assert run.proc.returncode == 130, out + "".join(run.err)
        assert took < 4, took  # ends within ~2 s (the bound is generous: the machine is shared)
        assert "INTERRUPTED (Ctrl-C): 3 host(s), 3 task(s) changed before the interrupt" in out
        assert all(f"{h}: sleeper.sleep: " in out and "interrupted (Ctrl-C)" in out for h in lab.hosts), out
        # the remote commands run on and hold each host's lock: another run there is refused, naming it
        host = lab.hosts[1]
        lab.exec(host, "echo 0 > /proc/sys/net/ipv4/ip_forward")
        blocked = lab.nr("run", "base", "--limit", host, "--json")
        assert blocked.code == 1
        error = blocked.json["results"][0]["error"]
        assert f"another nr run is changing this host: pid {run.proc.pid} of user" in error, error
        assert "(nr run sleeper -i" in error and "try again when it has finished" in error
    finally:
        run.stop()
        kill_remote(lab, marker)
    assert lab.nr("run", "base", "--limit", lab.hosts[1]).code == 0


def test_a_paused_host_is_lost_within_the_keepalive_window(lab: LabEnv) -> None:
    victim = lab.hosts[2]
    # the others run longer than the keepalive window: busy hosts answer keepalives and are not lost
    run = Background(lab, {"NR_TEST_SLEEP": "20", "NR_TEST_SLEEP_HOSTS": f"{victim}=598"}, "--json")
    paused = False
    try:
        wait_remote(lab, victim, "sleep 598", timeout=90)  # (--json: no progress lines to wait for)
        subprocess.run(["docker", "pause", victim], check=True, capture_output=True)
        paused = True
        t0 = time.monotonic()
        out, _ = run.proc.communicate(timeout=60)  # before: hung until command_timeout (900 s)
        took = time.monotonic() - t0
    finally:
        run.stop()
        if paused:
            subprocess.run(["docker", "unpause", victim], check=False, capture_output=True)
        kill_remote(lab, "sleep 598")
    assert run.proc.returncode == 1
    assert took < 40, took  # the others' 20 s; the victim: 3 x 5 s without an answer, plus a tick
    doc = json.loads(out)
    assert doc["failed_hosts"] == [victim]
    error = next(r["error"] for r in doc["results"] if r["host"] == victim and r["failed"])
    assert "host stopped answering (no reply to SSH keepalives for 15 s" in error, error
    assert "did not finish within" not in error


def test_lab_up_keeps_the_operators_edits(lab: LabEnv) -> None:
    inv = lab.inventory
    saved = {p: p.read_text() for p in inv.glob("*.yaml")}
    try:
        defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
        defaults["data"]["site_name"] = "edited-site"
        defaults["connection_options"]["fabric"]["extras"]["connect_timeout"] = 7
        (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
        hosts = yaml.safe_load((inv / "hosts.yaml").read_text())
        hosts[lab.hosts[1]]["data"] = {"node_ip": hosts[lab.hosts[1]]["hostname"]}
        (inv / "hosts.yaml").write_text(yaml.safe_dump(hosts))
        lab.lab.up(3)
        after = yaml.safe_load((inv / "defaults.yaml").read_text())
        assert after["data"]["site_name"] == "edited-site"
        assert after["connection_options"]["fabric"]["extras"]["connect_timeout"] == 7
        assert after["data"]["redis_password"] == defaults["data"]["redis_password"]  # lab's own keys stay
        assert yaml.safe_load((inv / "hosts.yaml").read_text()) == hosts
        written = json.loads((inv / ".written-by-lab.json").read_text())
        assert written["defaults"]["data"]["site_name"] == LAB_NAME  # lab names the site after itself
        assert lab.nr("inventory").code == 0
    finally:
        for path, text in saved.items():
            path.write_text(text)


def test_a_host_that_dies_at_start_is_explained(lab: LabEnv, tmp_path: Path) -> None:
    from nr.errors import NrError
    from nr.machines.image import IMAGE
    from nr.machines.lab import Lab, new_keypair

    name = f"{LAB_NAME}dead"
    dead = Lab(name=name, subnet=neighbour_subnet(), state_dir=tmp_path)
    dead.down()
    private, public = new_keypair()  # the host is this folder's (a lost folder's hosts are made anew)
    (tmp_path / "id_ed25519").write_bytes(private)
    (tmp_path / "id_ed25519").chmod(0o600)
    (tmp_path / "id_ed25519.pub").write_text(public + "\n")
    script = "echo 'Failed to create control group inotify object: Too many open files' >&2; exit 1"
    subprocess.run(["docker", "create", "--name", f"{name}1", "--label", f"nr.lab={name}", IMAGE, "sh", "-c", script],
                   check=True, capture_output=True)  # fmt: skip
    try:
        with pytest.raises(NrError) as err:
            dead.up(1)
    finally:
        dead.down()
    text = str(err.value)
    assert (
        f"lab host {name}1 died at start (exit code 1); likely cause: this machine's inotify limits" in text
    )
    assert "sysctl -w fs.inotify.max_user_instances=1024" in text
    assert "Failed to create control group inotify object: Too many open files" in text
    assert "docker exec failed" not in text
