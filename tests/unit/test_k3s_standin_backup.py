"""The k3s stand-in's datastore, `etcd-snapshot` and `--cluster-reset` (tests/fakes/k3s), in process: each
imitates upstream's observable behaviour (the table above "the datastore, etcd snapshots and cluster
reset" in tests/fakes/k3s names the sources), the inconvenient parts included."""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import json
import os
import socket
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "k3s"
TOKEN = "the-cluster-token-0123"
SECRET_VALUE = "redis-password-in-a-secret"


@pytest.fixture
def k3s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("k3s_standin_backup", str(FAKE))
    spec = importlib.util.spec_from_loader("k3s_standin_backup", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    db = tmp_path / "server" / "db"
    for name, path in {
        "STATE": db / "stand-in.json", "MEMBER_FILE": db / "etcd" / "stand-in-member",
        "NODE_PASSWORD": tmp_path / "node" / "password", "TOKEN_FILE": tmp_path / "server" / "token",
        "SNAPSHOTS": db / "snapshots", "RESET_FLAG": db / "reset-flag", "CONFIG": tmp_path / "config.yaml",
        "IMAGES_DB": tmp_path / "images.json", "DOCKER_SOCK": tmp_path / "no-docker.sock",
    }.items():  # fmt: skip
        monkeypatch.setattr(module, name, str(path))
    monkeypatch.setattr(module, "API_STARTING", 0.0)
    with socket.socket() as s:  # a free port for the reset's "is k3s still running" probe
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(module, "API_PORT", s.getsockname()[1])
    return module


def config(k3s: ModuleType, **values: Any) -> dict[str, Any]:
    cfg = {"token": TOKEN, "node-name": "s1", **values}
    Path(k3s.CONFIG).write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    return cfg


def register(
    p: Any, name: str, password: str = "pw", role: str = "agent", member: str | None = None
) -> tuple[int, Any]:
    body = {"name": name, "role": role, "token": TOKEN, "password": password, "member": member, "labels": [],
            "taints": [], "critical": p.critical, "etcd": role == "server", "version": "v1", "arch": "amd64", "ip": "x"}  # fmt: skip
    code, reply = p.call("register", body, TOKEN)
    return int(code), reply


def secret_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis", "namespace": "default"},
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()}}  # fmt: skip


def test_one_server_keeps_its_datastore_in_sqlite_in_wal_mode(k3s: ModuleType, tmp_path: Path) -> None:
    p = k3s.Primary(config(k3s, **{"secrets-encryption": True}))
    assert p.call("apply", {"docs": [secret_doc()]}, TOKEN)[0] == 200
    db = tmp_path / "server" / "db"
    assert (db / "state.db").exists() and (db / "state.db-wal").exists()  # kine keeps it open
    assert not (db / "stand-in.json").exists() and stat.S_IMODE((db / "state.db").stat().st_mode) == 0o600
    raw = b"".join(f.read_bytes() for f in db.iterdir() if f.is_file())
    assert TOKEN.encode() not in raw  # a hash of the token, never the token
    encoded = base64.b64encode(SECRET_VALUE.encode())
    assert encoded not in raw and SECRET_VALUE.encode() not in raw  # Secrets encrypted at rest
    again = k3s.Primary(config(k3s, **{"secrets-encryption": True}))
    assert again.state["objects"]["secret/default/redis"]["doc"]["data"]["password"] == encoded.decode()
    with pytest.raises(SystemExit):  # k3s #3888
        k3s.Primary(config(k3s, token="another-token-456789"))


def test_etcd_snapshot_save_writes_a_private_file_and_logs_on_stderr(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p = k3s.Primary(config(k3s, **{"cluster-init": True, "secrets-encryption": True, "node-ip": "10.0.0.1"}))
    p.call("apply", {"docs": [secret_doc()]}, TOKEN)
    k3s.write_private(k3s.TOKEN_FILE, f"K10{k3s.ca_hash(p.state['ca'])}::server:{TOKEN}\n")
    monkeypatch.setattr(k3s, "_try", lambda url, op, body, auth: p.call(op, body, auth))
    capsys.readouterr()
    k3s.main(["etcd-snapshot", "save", "--name", "nr-lab"])
    out, err = capsys.readouterr()
    assert out == ""
    assert 'level=warning msg="Unknown flag --node-ip found in config.yaml, skipping"' in err
    (name,) = [
        line.split("Snapshot ")[1].split(" saved.")[0] for line in err.splitlines() if "saved." in line
    ]
    assert name.startswith("nr-lab-s1-") and name.rsplit("-", 1)[1].isdigit()
    snap = Path(k3s.SNAPSHOTS) / name
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600 and stat.S_IMODE(snap.parent.stat().st_mode) == 0o700
    assert TOKEN.encode() not in snap.read_bytes() and SECRET_VALUE.encode() not in snap.read_bytes()
    k3s.main(["etcd-snapshot", "delete", name, "nope"])
    err = capsys.readouterr().err
    assert f"Snapshot {name} deleted." in err and 'level=warning msg="Snapshot nope not found."' in err
    assert not snap.exists()


def test_etcd_snapshot_save_fails_like_k3s_without_etcd_or_a_server(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        k3s.main(["etcd-snapshot", "save"])
    assert exit_.value.code == 1 and "open " in capsys.readouterr().err  # no server/token yet
    k3s.write_private(k3s.TOKEN_FILE, f"{TOKEN}\n")
    monkeypatch.setattr(k3s, "_try", lambda *a: (503, {"message": "connection refused"}))
    with pytest.raises(SystemExit):
        k3s.main(["etcd-snapshot", "save"])
    refused = (
        'see server log for details: Post \\"https://127.0.0.1:6443/db/snapshot\\": dial tcp 127.0.0.1:6443'
    )
    assert refused in capsys.readouterr().err
    p = k3s.Primary(config(k3s))  # one server: SQLite (k3s #11388's guardrail)
    monkeypatch.setattr(k3s, "_try", lambda url, op, body, auth: p.call(op, body, auth))
    with pytest.raises(SystemExit):
        k3s.main(["etcd-snapshot", "save"])
    assert 'level=fatal msg="see server log for details: etcd datastore disabled"' in capsys.readouterr().err


def snapshot(k3s: ModuleType, p: Any) -> Path:
    path = Path(k3s.SNAPSHOTS) / "snap"
    k3s.write_private(str(path), json.dumps({"stand-in": "etcd snapshot", "state": p.store.encode(p.state)}))
    return path


def test_cluster_reset_restores_keeps_one_member_leaves_a_flag_and_exits(
    k3s: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(k3s, **{"cluster-init": True})
    p = k3s.Primary(cfg)
    p.critical = k3s.critical(cfg)
    register(p, "s1", role="server", member="m1")
    register(p, "s2", role="server", member="m2")
    p.call(
        "apply", {"docs": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}]}, TOKEN
    )
    snap = snapshot(k3s, p)
    p.call("delete", {"kind": "configmap", "name": "kept", "namespace": "default"}, TOKEN)
    assert "configmap/default/kept" not in k3s.load_json(k3s.STATE, {})["objects"]
    Path(k3s.MEMBER_FILE).parent.mkdir(parents=True, exist_ok=True)
    Path(k3s.MEMBER_FILE).write_text("m1\n")
    with pytest.raises(SystemExit) as exit_:
        k3s.main(["server", "--cluster-reset", f"--cluster-reset-restore-path={snap}"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "Pre-restore etcd database moved to" in out
    assert "restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db" in out
    state = k3s.load_json(k3s.STATE, {})
    assert "configmap/default/kept" in state["objects"] and list(state["members"]) == ["s1"]
    assert {"m1", "m2"} <= set(state["removed_members"]) and os.path.exists(k3s.RESET_FLAG)
    assert [d.name for d in (tmp_path / "server" / "db").iterdir() if d.name.startswith("etcd-old-")]
    restarted = k3s.Primary(cfg)  # the next normal start
    restarted.critical = k3s.critical(cfg)
    assert not os.path.exists(k3s.RESET_FLAG)
    assert (
        register(restarted, "s1", password="new-pw", role="server", member=restarted.state["members"]["s1"])[
            0
        ]
        == 200
    )
    code, reply = register(restarted, "s2", role="server", member="m2")  # its old db/etcd was not removed
    assert code == 409 and "the member has been permanently removed from the cluster" in reply["message"]
    assert register(restarted, "s2", role="server", member="m9")[0] == 200  # db removed: a new member
    assert register(restarted, "a1", password="other")[0] == 200
    assert register(restarted, "a1", password="changed")[0] == 403  # agents are checked, unlike the server


def test_cluster_reset_refusals(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(k3s, **{"cluster-init": True})
    p = k3s.Primary(cfg)
    snap = snapshot(k3s, p)
    for args, message in [
        ([f"--cluster-reset-restore-path={snap}.nope"], "etcd: snapshot path does not exist: "),
        (
            [f"--cluster-reset-restore-path={Path(k3s.SNAPSHOTS)}"],
            "snapshot path must be a file, not a directory",
        ),
        (
            [f"--cluster-reset-restore-path={snap}", "--token", "another-token-0000"],
            "encrypted with different token",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_:
            k3s.main(["server", "--cluster-reset", *args])
        assert exit_.value.code == 1 and message in capsys.readouterr().out
    k3s.write_private(k3s.RESET_FLAG, "")
    with pytest.raises(SystemExit):
        k3s.main(["server", "--cluster-reset"])
    assert "Managed etcd cluster membership was previously reset" in capsys.readouterr().out
    with socket.socket() as busy:  # k3s still running: the reset cannot listen
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        monkeypatch.setattr(k3s, "API_PORT", busy.getsockname()[1])
        with pytest.raises(SystemExit):
            k3s.main(["server", "--cluster-reset", f"--cluster-reset-restore-path={snap}"])
    assert "bind: address already in use" in capsys.readouterr().out


def test_cluster_reset_on_sqlite_resets_nothing_and_just_runs_the_server(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(k3s)
    ran: list[str] = []
    monkeypatch.setattr(k3s, "run", ran.append)
    k3s.main(["server", "--cluster-reset", "--cluster-reset-restore-path=/x"])
    assert ran == ["server"]


def test_kubectl_deletes_stored_objects(k3s: ModuleType) -> None:
    p = k3s.Primary(config(k3s))
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "app"},
        "spec": {},
    }
    p.call(
        "apply",
        {"docs": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}, doc]},
        TOKEN,
    )
    code, reply = p.call("delete", {"kind": "deployment", "name": "api", "namespace": "app"}, TOKEN)
    assert (code, reply["line"]) == (200, 'deployment.apps "api" deleted')
    assert p.call("delete", {"kind": "deployment", "name": "api", "namespace": "app"}, TOKEN)[0] == 404
