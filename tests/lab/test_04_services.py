"""The real service images on the lab network, keeping reservations in the lab's Redis Cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from services.client.roundtrip import roundtrip
from tests.lab.conftest import SVC_ADAPTER, SVC_API, Services

pytestmark = [pytest.mark.lab, pytest.mark.docker]


def test_images_run_and_the_client_round_trip_passes(services: Services) -> None:
    result = roundtrip(services.adapter_target, timeout=10, wait_for_ready=True)
    assert result.ok, result.message
    with urllib.request.urlopen(f"http://{services.aeroalpes}:5000/health", timeout=5) as resp:
        assert json.load(resp) == {"status": "up"}
    with urllib.request.urlopen(f"http://{services.aeroalpes}:5000/ready", timeout=5) as resp:
        assert resp.status == 200


def test_client_console_script_against_the_containers(services: Services) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.client", "--target", services.adapter_target, "--timeout", "10"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_containers_run_as_non_root(services: Services) -> None:
    for name in (SVC_API, SVC_ADAPTER):
        user = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout
        assert user.strip() == "10001"
