"""The k3s stand-in's kubectl diff/apply and ctr images, as deploy uses them: each imitates the real
tool's observable behaviour (the table above the kubectl section of tests/fakes/k3s names the sources)."""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from nr.facts import Output
from nr.ops.kubectl import FULL_CONTEXT_DIFF, named, snapshot_command, view
from nr.ops.kubediff import show
from tasks.deploy import nodes

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "k3s"


@pytest.fixture
def k3s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("k3s_standin_deploy", str(FAKE))
    spec = importlib.util.spec_from_loader("k3s_standin_deploy", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "STATE", str(tmp_path / "db" / "state.json"))
    monkeypatch.setattr(module, "IMAGES_DB", str(tmp_path / "images.json"))
    monkeypatch.setattr(module, "IMAGES_DIR", str(tmp_path / "agent-images"))
    monkeypatch.setattr(module, "DOCKER_SOCK", str(tmp_path / "no-docker.sock"))
    monkeypatch.delenv("KUBECTL_EXTERNAL_DIFF", raising=False)
    monkeypatch.setattr(module, "API_STARTING", 0.0)  # no "apiserver not ready" window in these tests
    return module


def primary(k3s: ModuleType) -> Any:
    return k3s.Primary({"token": "secret", "node-name": "s1", "cluster-init": True})


def secret(password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis", "namespace": "app"},
            "type": "Opaque", "data": {"password": base64.b64encode(password.encode()).decode()}}  # fmt: skip


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}
CONFIG = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "app"},
    "data": {"a": "1"},
}


def call(p: Any, *docs: dict[str, Any], diff: bool = False) -> tuple[int, dict[str, Any]]:
    code, reply = p.call("apply", {"docs": json.loads(json.dumps(docs)), "diff": diff}, "secret")
    return int(code), reply


def test_diff_fails_for_a_namespace_that_does_not_exist_even_with_the_namespace_first(
    k3s: ModuleType,
) -> None:
    p = primary(k3s)
    assert call(p, NAMESPACE, CONFIG, diff=True) == (404, {"message": 'namespaces "app" not found'})
    code, reply = call(p, NAMESPACE, CONFIG)  # apply creates them in stream order
    assert code == 200 and reply["lines"] == ["namespace/app created", "configmap/c created"]
    code, reply = call(p, NAMESPACE, CONFIG, diff=True)
    assert code == 200 and all(o["live"] == o["merged"] for o in reply["objects"])
    assert call(p, {**CONFIG, "metadata": {"name": "d"}}, diff=True)[0] == 200  # "default" always exists


def test_apply_stores_the_last_applied_annotation_and_warns_where_it_is_missing(k3s: ModuleType) -> None:
    p = primary(k3s)
    call(p, NAMESPACE, CONFIG)
    stored = p.state["objects"]["configmap/app/c"]["doc"]
    assert json.loads(stored["metadata"]["annotations"][k3s.LAST_APPLIED]) == CONFIG
    del stored["metadata"]["annotations"]  # as if created by kubectl create
    _, reply = call(p, CONFIG)
    assert reply["lines"] == ["configmap/c configured"]
    assert reply["warnings"] == [k3s.missing_annotation_warning(stored)]
    assert reply["warnings"][0].startswith(
        "Warning: resource configmaps/c is missing the kubectl.kubernetes.io/"
    )


def test_diff_runs_the_diff_program_on_live_and_merged_folders_and_masks_data_only(
    k3s: ModuleType, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = primary(k3s)
    call(p, NAMESPACE, secret("old-Pa55word-1"))
    _, reply = call(p, NAMESPACE, secret("new-Pa55word-2"), diff=True)
    assert k3s.run_diff(reply["objects"]) == 1
    out = capfd.readouterr().out
    assert out.startswith("diff -u -N /tmp/LIVE-") and "/v1.Secret.app.redis" in out
    assert "-  password: '*** (before)'" in out and "+  password: '*** (after)'" in out
    old_b64 = base64.b64encode(b"old-Pa55word-1").decode()
    assert old_b64 in out  # kubectl leaves the last-applied annotation as it is: the old value shows
    monkeypatch.setenv("KUBECTL_EXTERNAL_DIFF", FULL_CONTEXT_DIFF)
    assert k3s.run_diff(reply["objects"]) == 1
    shown = show(capfd.readouterr().out)  # what nr makes of it
    assert old_b64 not in shown and base64.b64encode(b"new-Pa55word-2").decode() not in shown
    assert "+    kubectl.kubernetes.io/last-applied-configuration: '*** (after)'" in shown
    same = call(p, NAMESPACE, secret("old-Pa55word-1"), diff=True)[1]
    assert k3s.run_diff(same["objects"]) == 0 and capfd.readouterr().out == ""


def test_a_failing_diff_program_is_exit_2_and_bad_arguments_are_dropped_with_a_warning(
    k3s: ModuleType, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = [{"name": "v1.ConfigMap.app.c", "live": None, "merged": CONFIG}]
    monkeypatch.setenv("KUBECTL_EXTERNAL_DIFF", "diff --no-such-option")
    with pytest.raises(SystemExit) as exc:
        k3s.run_diff(objects)
    assert exc.value.code == 2 and 'error: failed to run "diff": exit status 2' in capfd.readouterr().err
    monkeypatch.setenv("KUBECTL_EXTERNAL_DIFF", "diff -u $(id) -N")
    assert k3s.run_diff(objects) == 1
    assert "invalid argument is ignored: $(id)" in capfd.readouterr().err


def test_the_yaml_it_prints_reads_back_as_the_object(k3s: ModuleType) -> None:
    obj = k3s.with_last_applied({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "true", "n": "1"}},
        "spec": {"template": {"spec": {"containers": [{"args": ["--a", "b: c", "it's", " lead", ""], "env": []}]}}},
        "data": {"multi": "l1\nl2\n", "nonl": "l1\nl2", "blank": "a\n\nb\n", "uni": "é\u2028"}, "z": None, "f": 1.5,
    })  # fmt: skip
    assert yaml.safe_load(k3s.dump_yaml(obj)) == obj


def docker_save(path: Path, *tags: str) -> Path:
    with tarfile.open(path, "w") as tar:
        data = json.dumps([{"RepoTags": list(tags)}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def ctr(k3s: ModuleType, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    k3s.main(["ctr", *args])
    return str(capsys.readouterr().out)


def test_ctr_import_does_not_pin_label_does_and_ls_filters_on_it(
    k3s: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tarball = docker_save(tmp_path / "a.tar", "aeroalpes:1", "me/other:2")
    assert "unpacking docker.io/library/aeroalpes:1" in ctr(k3s, capsys, "images", "import", str(tarball))
    pinned = 'labels."io.cri-containerd.pinned"==pinned'
    assert ctr(k3s, capsys, "images", "ls", "-q", pinned) == "\n"
    assert ctr(k3s, capsys, "images", "ls", "-q").split() == [
        "docker.io/library/aeroalpes:1",
        "docker.io/me/other:2",
    ]
    out = ctr(
        k3s, capsys, "images", "label", "docker.io/library/aeroalpes:1", "io.cri-containerd.pinned=pinned"
    )
    assert out == "io.cri-containerd.pinned=pinned\n"
    assert ctr(k3s, capsys, "-n", "k8s.io", "images", "ls", "-q", pinned).split() == [
        "docker.io/library/aeroalpes:1"
    ]
    assert ctr(k3s, capsys, "images", "ls", "-q", "name==docker.io/me/other:2").split() == [
        "docker.io/me/other:2"
    ]
    ctr(k3s, capsys, "images", "import", str(tarball))  # imported again: the label stays
    assert ctr(k3s, capsys, "images", "ls", "-q", pinned).split() == ["docker.io/library/aeroalpes:1"]
    with pytest.raises(SystemExit):
        k3s.main(["ctr", "images", "label", "docker.io/library/nope:1", "a=b"])
    assert 'ctr: image "docker.io/library/nope:1": not found' in capsys.readouterr().err


def test_ctr_images_ls_prints_containerds_table_that_deploy_reads(
    k3s: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctr(k3s, capsys, "images", "import", str(docker_save(tmp_path / "a.tar", "aeroalpes:1", "me/other:2")))
    ctr(k3s, capsys, "images", "label", "docker.io/library/aeroalpes:1", "io.cri-containerd.pinned=pinned")
    head, *rows = ctr(k3s, capsys, "images", "ls").splitlines()
    assert head.split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert [r.split()[0] for r in rows] == ["docker.io/library/aeroalpes:1", "docker.io/me/other:2"]
    assert [r.split()[-1] for r in rows] == ["io.cri-containerd.pinned=pinned", "-"]
    assert all(len(r) == len(head) for r in rows)  # tabwriter: every cell padded to its column
    text = ctr(k3s, capsys, "images", "ls")
    assert nodes.parse_images(text) == (
        {"docker.io/library/aeroalpes:1", "docker.io/me/other:2"},
        {"docker.io/library/aeroalpes:1"},
    )


def test_image_gc_deletes_unpinned_images_only(
    k3s: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctr(k3s, capsys, "images", "import", str(docker_save(tmp_path / "a.tar", "kept:1", "lost:1")))
    ctr(k3s, capsys, "images", "label", "docker.io/library/kept:1", "io.cri-containerd.pinned=pinned")
    k3s.main(["stand-in", "image-gc"])
    assert capsys.readouterr().out == "deleted docker.io/library/lost:1\n"
    assert ctr(k3s, capsys, "images", "ls", "-q").split() == ["docker.io/library/kept:1"]


def test_k3s_pins_what_its_agent_images_folder_holds_and_unpins_what_left_it(
    k3s: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(k3s.IMAGES_DIR)
    folder.mkdir()
    docker_save(folder / "airgap.tar", "pause:3.9")
    ctr(k3s, capsys, "images", "import", str(docker_save(tmp_path / "b.tar", "mine:1")))
    ctr(k3s, capsys, "images", "label", "docker.io/library/mine:1", "io.cri-containerd.pinned=pinned")
    k3s.preload_images()
    db = k3s.images_db()
    assert db["docker.io/library/pause:3.9"] == {
        "io.cattle.k3s.pinned": "pinned",
        "io.cri-containerd.pinned": "pinned",
    }
    (folder / "airgap.tar").unlink()
    k3s.preload_images()  # the next start: k3s's own pins are cleared, nr's label is not k3s's
    db = k3s.images_db()
    assert db["docker.io/library/pause:3.9"] == {} and db["docker.io/library/mine:1"] == {
        "io.cri-containerd.pinned": "pinned"
    }


def test_kubectl_get_of_several_types_prints_one_list_the_snapshot_views_read(
    k3s: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubectl get nodes,namespaces,deployments -A -o json` (nr.ops.kubectl.snapshot_command): one List
    with every item's kind (kubectl get.go printGeneric), cluster-scoped and namespaced ones together."""
    p = primary(k3s)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "app"},
                  "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}  # fmt: skip
    assert call(p, NAMESPACE, deployment)[0] == 200
    (tmp_path / "k3s.yaml").write_text("    server: https://127.0.0.1:6443\n")
    (tmp_path / "token").write_text("secret\n")
    monkeypatch.setattr(k3s, "KUBECONFIG", str(tmp_path / "k3s.yaml"))
    monkeypatch.setattr(k3s, "TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setattr(k3s, "http", lambda url, op, body, auth: p.call(op, body, auth))
    k3s.main(["kubectl", *snapshot_command("").split()])
    out = Output(0, capsys.readouterr().out)
    doc = json.loads(out.text)
    assert doc["kind"] == "List" and {"Namespace", "Deployment"} <= {i["kind"] for i in doc["items"]}
    assert {i["kind"] for i in doc["items"]} <= {"Node", "Namespace", "Deployment"}
    assert named(out, "Namespace", "app") and not named(out, "Namespace", "nope")
    assert [i["metadata"]["name"] for i in json.loads(view(out, "Deployment", "app").text)["items"]] == [
        "api"
    ]
    assert json.loads(view(out, "Deployment", "other").text)["items"] == []
