"""Pure parts of the deploy and checks components: which nodes get an image, rollout status, the
config digest that rolls the pods, and the routes the checks try."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nornir.core.inventory import Host

from nr.facts import Facts, Output
from tasks.checks.play import routes_for
from tasks.deploy.plan import CONFIG_DIGEST, AppSite, config_digest, render, with_config_digest
from tasks.deploy.play import LocalImage, _unavailable, parse_deployments, plan_images

IMAGE_ID = "sha256:" + "ab" * 32


def image(tmp_path: Path, saved: bool = True) -> LocalImage:
    tarball = tmp_path / "aeroalpes.tar"
    if saved:
        tarball.write_bytes(b"x" * 4096)
    return LocalImage("aeroalpes", "aeroalpes:0.1.0-0123456789ab", IMAGE_ID, tarball)


def facts(ctr: str, marker: str) -> Facts:
    return Facts(outputs={"ctr": Output(0, ctr), "id aeroalpes": Output(0, marker)})


def test_a_node_with_the_image_is_left_alone(tmp_path: Path) -> None:
    listed = "docker.io/library/aeroalpes:0.1.0-0123456789ab\n"
    assert plan_images([image(tmp_path)], facts(listed, IMAGE_ID + "\n")) == []


def test_a_node_without_the_image_gets_it_pushed_and_imported(tmp_path: Path) -> None:
    for ctr, marker in [("", ""), ("docker.io/library/aeroalpes:0.1.0-0123456789ab", "sha256:old")]:
        (change,) = plan_images([image(tmp_path)], facts(ctr, marker))
        assert change.upload is not None
        assert "ctr images import /var/lib/nr/images/aeroalpes.tar" in change.script
        assert change.script.index("[ -x /usr/local/bin/k3s ]") < change.script.index("ctr images import")
        assert "(sha256:abababababab, 4 KiB)" in change.diff


def test_a_dry_run_without_a_saved_tarball_plans_without_an_upload(tmp_path: Path) -> None:
    (change,) = plan_images([image(tmp_path, saved=False)], facts("", ""))
    assert change.upload is None and "not saved yet" in change.diff


def test_rollout_status_from_kubectl_json() -> None:
    out = json.dumps({"items": [
        {"metadata": {"name": "aeroalpes"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 2}},
        {"metadata": {"name": "aeroalpes-adapter"}, "spec": {"replicas": 2}, "status": {}},
    ]})  # fmt: skip
    status = parse_deployments(out)
    assert status == {"aeroalpes": (2, 2), "aeroalpes-adapter": (0, 2)}
    assert _unavailable(status) == ["aeroalpes-adapter"]
    assert parse_deployments("") == {} and _unavailable({}) == []


def test_config_digest_rolls_the_pods_on_a_new_password_or_node_list_and_hides_the_password() -> None:
    site = AppSite(tag="0.1.0", redis_nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)))
    objects = render(site)

    def digest_of(objs: list[dict[str, Any]]) -> str:
        dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "aeroalpes")
        return str(dep["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST])

    first = digest_of(with_config_digest(objects, "s3cret-one"))
    assert first == digest_of(with_config_digest(objects, "s3cret-one"))  # stable: no rollout on a re-run
    assert first != digest_of(with_config_digest(objects, "s3cret-two"))
    bigger = AppSite(tag="0.1.0", redis_nodes=(*site.redis_nodes, ("10.0.0.4", 7000)))
    assert first != digest_of(with_config_digest(render(bigger), "s3cret-one"))
    assert "s3cret-one" not in json.dumps(with_config_digest(objects, "s3cret-one"))
    assert config_digest({"REDIS_NODES": "a:1"}, "p") != config_digest({"REDIS_NODES": "b:1"}, "p")
    adapter = next(
        o for o in with_config_digest(objects, "p") if o["metadata"]["name"] == "aeroalpes-adapter"
    )
    assert CONFIG_DIGEST not in json.dumps(adapter)  # the adapter reads neither: it does not restart
    assert objects == render(site)  # the input is not modified


def test_routes_use_the_cluster_node_port_and_bracket_ipv6() -> None:
    first = Host("s1", hostname="10.0.0.1", data={"adapter_node_port": 30999})
    agent = Host("a1", hostname="fd00::5", data={"adapter_node_port": 31111})
    assert [(r.name, r.target) for r in routes_for(first, first)] == [
        ("NodePort 30999", "10.0.0.1:30999"),
        ("ingress :80", "10.0.0.1:80"),
    ]
    assert [(r.name, r.target) for r in routes_for(agent, first)] == [("NodePort 30999", "[fd00::5]:30999")]
