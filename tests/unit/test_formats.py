"""Format checks of inventory values: what passes and what is refused."""

from __future__ import annotations

import pytest

from nr import formats


@pytest.mark.parametrize("value", ["198.18.0.11", "::1", "vm1", "vm-1.lab.example", "VM1.example."])
def test_addresses_that_pass(value: str) -> None:
    assert formats.address(value) is None


@pytest.mark.parametrize(
    "value", ["", "vm1;id", "$(reboot)", "-oProxyCommand=x", "a b", "vm_1", "a" * 64, "exa..mple", "`id`"]
)
def test_addresses_refused(value: str) -> None:
    assert formats.address(value)


def test_cidr_interface_labels_taints_images_ports() -> None:
    assert formats.cidr("10.42.0.0/16") is None and formats.cidr("10.42.0.1/16") and formats.cidr("x")
    assert formats.interface("eth0") is None and formats.interface("enp0s3.100") is None
    assert formats.interface("eth0;id") and formats.interface("-x") and formats.interface("a" * 16)
    assert formats.k8s_label("node.kubernetes.io/zone=a") is None and formats.k8s_label("tier=") is None
    assert formats.k8s_label("bad key=x") and formats.k8s_label("k=$(id)") and formats.k8s_label("noequals")
    assert (
        formats.k8s_taint("dedicated=redis:NoSchedule") is None and formats.k8s_taint("gpu:NoExecute") is None
    )
    assert formats.k8s_taint("k=v:Sometimes") and formats.k8s_taint("k=v")
    assert formats.image_ref("registry.lab:5000/team/aeroalpes:1.0") is None
    assert formats.image_ref("python:3.11-slim@sha256:" + "a" * 64) is None
    assert formats.image_ref("Bad/Name") and formats.image_ref("x;id") and formats.image_ref("a b")
    node_port = formats.port_range(30000, 32767, "a NodePort")
    assert node_port(30051) is None and node_port(8080) == "must be a NodePort (30000-32767)"
    assert (
        formats.each(formats.k8s_label)(["a=b", "c d=e"])
        == "'c d=e': label key name 'c d' must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at both ends"
    )
    assert formats.dns_label("lab") is None and formats.dns_label("Lab") and formats.dns_label("a.b")
