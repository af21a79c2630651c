"""nr.ops.kubectl and nr.ops.kubediff: kubectl's exit codes and messages, and diffs safe to print.

The diff cases run the real ``diff`` program on folders laid out as kubectl diff lays them out (one
YAML file per object, named ``<group.>v1.Kind.namespace.name``), with the arguments nr passes in
KUBECTL_EXTERNAL_DIFF.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nr.facts import Output
from nr.ops import kubectl
from nr.ops.kubediff import LAST_APPLIED, object_name, parse, show, show_new

NOT_FOUND_NS = 'Error from server (NotFound): namespaces "aeroalpes" not found'
MEMCACHE = (
    'E1231 10:41:43.245451 40547 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API '
    'group list: the server is currently unable to handle the request"'
)


def test_get_command_quotes_and_bounds_the_request() -> None:
    cmd = kubectl.get_command("k3s kubectl", "deployments", namespace="a b")
    assert cmd == "k3s kubectl get deployments -n 'a b' -o json --request-timeout=10s"


def test_json_is_read_from_stdout_with_discovery_noise_on_stderr() -> None:
    doc = {"items": [{"metadata": {"name": "api"}, "spec": {"replicas": 2}, "status": {}}]}
    out = Output(0, json.dumps(doc), MEMCACHE)
    assert kubectl.deployments(out) == {"api": (0, 2)}  # zero counts are omitted by the API


def test_a_failed_get_names_its_stderr() -> None:
    refused = (
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
    )
    with pytest.raises(kubectl.KubectlError, match="was refused"):
        kubectl.items(Output(1, "", MEMCACHE + "\n" + refused), "deployments")


def test_exists_tells_not_found_from_an_api_that_does_not_answer() -> None:
    assert kubectl.exists(Output(0, "namespace/aeroalpes"), "namespace aeroalpes")
    assert not kubectl.exists(Output(1, "", NOT_FOUND_NS), "namespace aeroalpes")
    with pytest.raises(kubectl.KubectlError, match="InternalError"):
        kubectl.exists(
            Output(
                1, "", 'Error from server (InternalError): an error on the server ("apiserver not ready")'
            ),
            "namespace aeroalpes",
        )


def test_diff_exit_codes_like_kubectl() -> None:
    assert kubectl.DiffResult.parse(0, "", MEMCACHE) == kubectl.DiffResult(False, "")
    assert kubectl.DiffResult.parse(1, "--- a\n+++ b\n", "").changed
    with pytest.raises(kubectl.NamespaceMissing) as missing:
        kubectl.DiffResult.of(Output(2, "", NOT_FOUND_NS))
    assert missing.value.namespace == "aeroalpes"
    with pytest.raises(kubectl.KubectlError, match=r"exit 2\): error: failed to run \"diff\""):
        kubectl.DiffResult.parse(2, "", 'error: failed to run "diff": exit status 2')


def test_diff_command_asks_for_full_context_with_arguments_kubectl_passes_on() -> None:
    cmd = kubectl.diff_command("k3s kubectl", '"$m"')
    env, _, rest = cmd.partition(" k3s kubectl")
    program = shlex.split(env)[0].split("=", 1)[1]
    assert rest == ' diff -f "$m"' and program.split()[0] == "diff"
    # kubectl cmd/diff getCommand drops arguments that are not letters, digits, '-' and '='
    assert all(c.isalnum() or c in "-=" for arg in program.split()[1:] for c in arg)


def test_rollout_timeout_is_named_with_the_deployment_and_its_last_status() -> None:
    waiting = 'Waiting for deployment "api" rollout to finish: 1 of 2 updated replicas are available...\n'
    out = Output(1, waiting, "error: timed out waiting for the condition")
    assert kubectl.rollout_problem("api", out, 180) == (
        "deployment api did not finish its rollout within 180 s; last status: " + waiting.strip()
    )
    assert kubectl.rollout_problem("api", Output(0, 'deployment "api" successfully rolled out'), 180) is None
    gone = Output(1, "", 'Error from server (NotFound): deployments.apps "api" not found')
    assert "NotFound" in str(kubectl.rollout_problem("api", gone, 180))
    assert (
        kubectl.rollout_status_command("k", "api", "ns", 180)
        == "k rollout status deployment/api -n ns --timeout=180s"
    )


# -- kubectl diff output, parsed and masked ----------------------------------------------------------------
def secret(value: str, *, annotated: bool = True, string_data: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "redis", "namespace": "app", "labels": {"a": "b"}},
        "type": "Opaque",
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }
    if string_data is not None:
        obj["stringData"] = {"token": string_data}
    if annotated:  # what kubectl apply stores: the applied object as compact JSON, newline-ended
        applied = {k: v for k, v in obj.items() if k != "status"}
        obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(applied, separators=(",", ":")) + "\n"}
    return obj


def deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "app"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c"}]}}}}  # fmt: skip


def kubectl_diff(tmp_path: Path, live: list[dict[str, Any]], merged: list[dict[str, Any]]) -> str:
    """The real diff program on kubectl-style LIVE/MERGED folders, with nr's KUBECTL_EXTERNAL_DIFF."""
    folders = {"LIVE": tmp_path / "LIVE-1", "MERGED": tmp_path / "MERGED-2"}
    for side, objs in (("LIVE", live), ("MERGED", merged)):
        folders[side].mkdir()
        for o in objs:
            (folders[side] / object_name(o)).write_text(yaml.safe_dump(o))
    argv = [*kubectl.FULL_CONTEXT_DIFF.split(), str(folders["LIVE"]), str(folders["MERGED"])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


def test_a_changed_secret_shows_that_it_changed_and_no_value(tmp_path: Path) -> None:
    old, new = secret("old-Pa55word-1234"), secret("new-Pa55word-5678", string_data="tok-42-secret")
    text = kubectl_diff(tmp_path, [old, deployment(2)], [new, deployment(3)])
    shown = show(text)
    for value in ("old-Pa55word-1234", "new-Pa55word-5678", "tok-42-secret"):
        assert value not in shown and base64.b64encode(value.encode()).decode() not in shown
    assert "-  password: '*** (before)'" in shown and "+  password: '*** (after)'" in shown
    assert f"+    {LAST_APPLIED}: '*** (after)'" in shown
    assert "+  token: '***'" in shown  # stringData, which kubectl itself never masks
    assert "-  replicas: 2\n+  replicas: 3" in shown  # other objects as they are
    assert shown.count("--- LIVE/") == 2


def test_an_unchanged_secret_value_is_masked_without_before_and_after(tmp_path: Path) -> None:
    old, new = secret("same-Pa55word-1234"), secret("same-Pa55word-1234")
    new["metadata"]["labels"] = {"a": "c"}
    shown = show(kubectl_diff(tmp_path, [old], [new]))
    assert f"    {LAST_APPLIED}: '***'" in shown and "(before)" not in shown
    assert "same-Pa55word-1234" not in shown and "c2FtZS" not in shown


def test_a_secret_diff_that_cannot_be_read_back_is_not_shown() -> None:
    value = base64.b64encode(b"leaked-Pa55word").decode()
    partial = (
        "diff -u -N /tmp/LIVE-1/v1.Secret.app.redis /tmp/MERGED-2/v1.Secret.app.redis\n"
        "--- /tmp/LIVE-1/v1.Secret.app.redis\t2024-01-01\n+++ /tmp/MERGED-2/v1.Secret.app.redis\t2024-01-01\n"
        f"@@ -7,3 +7,3 @@\n   labels:\n-    x: {value}\n+    x: y\n   name: redis\n"
    )
    shown = show(partial)
    assert value not in shown and "a Secret differs; its values are not shown" in shown
    other = partial.replace("v1.Secret.app.redis", "v1.ConfigMap.app.cm")
    assert value in show(other)  # only Secrets are hidden when the diff is partial


def test_parse_reads_both_versions_of_each_object(tmp_path: Path) -> None:
    text = kubectl_diff(tmp_path, [deployment(2)], [deployment(2), secret("x-Pa55word-0000")])
    by_name = {d.name: d for d in parse(text)}
    assert set(by_name) == {"v1.Secret.app.redis"}  # diff lists only objects that differ
    new = by_name["v1.Secret.app.redis"]
    assert new.old == "" and yaml.safe_load(str(new.new))["kind"] == "Secret"


def test_show_new_masks_secrets_in_objects_that_do_not_exist_yet() -> None:
    text = show_new(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}, secret("n3w-Pa55word-99")]
    )
    assert "+++ MERGED/v1.Namespace..app" in text and "+++ MERGED/v1.Secret.app.redis" in text
    assert "n3w-Pa55word-99" not in text and base64.b64encode(b"n3w-Pa55word-99").decode() not in text
    assert "+  password: '***'" in text


def test_the_last_applied_json_of_an_object_is_a_note_and_its_change_is_shown_as_yaml(tmp_path: Path) -> None:
    def applied(obj: dict[str, Any]) -> dict[str, Any]:
        out = json.loads(json.dumps(obj))
        out["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(obj, separators=(",", ":")) + "\n"}
        return out

    shown = show(kubectl_diff(tmp_path, [applied(deployment(2))], [applied(deployment(3))]))
    assert '{"apiVersion"' not in shown  # the one-line JSON copy of the object is not printed
    assert "-  replicas: 2" in shown and "+  replicas: 3" in shown  # unchanged notes stay out of context
    new = show_new([applied(deployment(1))])
    assert '{"apiVersion"' not in new and "(the applied object as JSON, diffed above as YAML)" in new


def test_a_snapshot_is_viewed_per_kind_and_namespace_and_a_failed_one_is_never_a_no() -> None:
    assert kubectl.snapshot_command("k3s kubectl") == (
        "k3s kubectl get nodes,namespaces,deployments --all-namespaces -o json --request-timeout=10s"
    )
    doc = {"kind": "List", "items": [
        {"kind": "Node", "metadata": {"name": "n1"}},
        {"kind": "Namespace", "metadata": {"name": "app"}},
        {"kind": "Deployment", "metadata": {"name": "api", "namespace": "app"}},
        {"kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system"}},
    ]}  # fmt: skip
    out = Output(0, json.dumps(doc), "E1130 memcache.go:265] couldn't get resource list")
    names = lambda o: [i["metadata"]["name"] for i in json.loads(o.text)["items"]]  # noqa: E731
    assert names(kubectl.view(out, "Deployment")) == ["api", "coredns"]
    assert names(kubectl.view(out, "Deployment", "kube-system")) == ["coredns"]
    assert names(kubectl.view(out, "Node")) == ["n1"] and kubectl.view(out, "Node").err == out.err
    assert kubectl.named(out, "Namespace", "app") and not kubectl.named(out, "Namespace", "api")
    refused = Output(1, "", "The connection to the server 127.0.0.1:6443 was refused")
    assert kubectl.view(refused, "Node") is refused
    with pytest.raises(kubectl.KubectlError, match="was refused"):
        kubectl.named(refused, "Namespace", "app")
