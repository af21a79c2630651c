"""k3s behaviours taken from upstream, on the lab's converged 1-server/2-agent cluster (after test_03).

- Proxies: install.sh gives the units ``EnvironmentFile=-/etc/default/<unit>``; nr writes
  ``data.k3s_env`` there (0600), so k3s, kubelet and containerd run with it. A proxy password never
  prints.
- metrics-server: the app's HorizontalPodAutoscaler needs it (k3s docs, "Packaged Components");
  disabling it is a warning, not an error.

Each test leaves the cluster as it found it, for the modules after this one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.lab.conftest import LabEnv
from tests.lab.test_03_k3s import OTHER_KUBECONFIG, Site, k3s_inventory, ready

pytestmark = pytest.mark.lab

PROXY_PASSWORD = "pr0xy-pa55word-for-the-lab"


@pytest.fixture(scope="module")
def site(lab: LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("k3s-upstream")
    kubeconfig = base / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(yaml.safe_dump(OTHER_KUBECONFIG))
    yield Site(lab, k3s_inventory(lab, base), kubeconfig)


def process_env(site: Site, host: str, unit: str) -> str:
    pid = site.env.exec(host, f"systemctl show -p MainPID --value {unit}").strip()
    return site.env.exec(host, f"tr '\\0' '\\n' < /proc/{pid}/environ")


def test_the_cluster_is_converged_before_these_tests(site: Site) -> None:
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0 and res.json["changed"] == 0, res.stdout + res.stderr


def test_proxy_settings_reach_k3s_through_its_environment_file_and_no_password_prints(site: Site) -> None:
    agent = site.hosts[2]
    env = {
        "HTTPS_PROXY": f"http://nr:{PROXY_PASSWORD}@proxy.invalid:3128",
        "NO_PROXY": "127.0.0.1,localhost,198.18.0.0/15,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local",
    }
    site.edit("hosts.yaml", lambda d: d[agent].setdefault("data", {}).update(k3s_env=env))
    try:
        dry = site.nr("run", "k3s", "--dry-run", "--json")
        assert dry.code == 0, dry.stdout + dry.stderr
        assert "proxy.invalid" in dry.stdout and PROXY_PASSWORD not in dry.stdout + dry.stderr
        res = site.nr("run", "k3s", "--json")
        assert res.code == 0, res.stdout + res.stderr
        assert PROXY_PASSWORD not in res.stdout + res.stderr
        assert site.env.exec(agent, "stat -c '%a %U' /etc/default/k3s-agent").strip() == "600 root"
        files = site.env.exec(agent, "systemctl show -p EnvironmentFiles --value k3s-agent")
        assert "/etc/default/k3s-agent" in files
        assert "HTTPS_PROXY=http://nr:" in process_env(site, agent, "k3s-agent")
        assert ready(site.nodes()[agent])
    finally:
        site.edit("hosts.yaml", lambda d: d[agent]["data"].pop("k3s_env", None))
    back = site.nr("run", "k3s", "--json")
    assert back.code == 0, back.stdout + back.stderr
    assert "HTTPS_PROXY" not in process_env(site, agent, "k3s-agent")
    again = site.nr("run", "k3s", "--json")
    assert again.code == 0 and again.json["changed"] == 0, again.stdout


def test_disabling_metrics_server_is_a_warning_about_the_hpa(site: Site) -> None:
    site.edit("defaults.yaml", lambda d: d["data"].update(k3s_disable=["metrics-server"]))
    try:
        res = site.nr("run", "k3s", "--dry-run", "--json")
    finally:
        site.edit("defaults.yaml", lambda d: d["data"].pop("k3s_disable"))
    assert res.code == 0, res.stdout + res.stderr
    assert any("removes metrics-server" in n and "HorizontalPodAutoscaler" in n for n in res.json["notes"])
