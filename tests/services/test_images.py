"""Container images: offline build inputs (always) and, with Docker, build + run (marked docker)."""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import nr
from services.client.roundtrip import roundtrip
from services.vuelos_pb import vuelos_pb2_grpc
from tasks.deploy import images
from tests.support.locks import read_lock
from tests.support.procs import free_port
from tests.support.redis_cluster import LocalRedisCluster


def pins(spec: images.ImageSpec) -> dict[str, str]:
    """name -> version of the image's lock (each entry pinned with hashes: test_locks.py)."""
    return {name: pin.version for name, pin in read_lock(spec.requirements).items()}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_requirements_are_pinned_and_match_the_stubs() -> None:
    aeroalpes, adapter = pins(images.IMAGES["aeroalpes"]), pins(images.IMAGES["adapter"])
    assert {"redis", "httptools", "uvloop", "async-timeout"} <= set(aeroalpes)
    assert {"grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf"} <= set(adapter)
    # The generated stubs refuse older runtimes: the pins must satisfy them.
    grpc_module = Path(vuelos_pb2_grpc.__file__).read_text()
    needed_grpc = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc_module)
    needed_pb = re.search(r"Protobuf Python Version: ([0-9.]+)", Path(vuelos_pb2_grpc.__file__).with_name(
        "vuelos_pb2.py").read_text())  # fmt: skip
    assert needed_grpc and needed_pb
    assert version_tuple(adapter["grpcio"]) >= version_tuple(needed_grpc.group(1))
    assert version_tuple(adapter["protobuf"]) >= version_tuple(needed_pb.group(1))
    assert version_tuple(adapter["protobuf"])[0] == version_tuple(needed_pb.group(1))[0]


@pytest.mark.parametrize("key", sorted(images.IMAGES))
def test_dockerfiles_build_offline_multistage_non_root(key: str) -> None:
    text = images.IMAGES[key].dockerfile.read_text()
    assert text.index("ARG BASE_IMAGE=python:3.11-slim") < text.index("FROM ")
    assert text.count("FROM ${BASE_IMAGE}") == 2
    assert "python3 -m venv" in text
    assert text.count("--no-index --find-links") == 2 and "--no-deps nr-orchestrator" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and f"services.{key}.healthcheck" in text


def test_version_and_refs() -> None:
    assert images.project_version() == nr.__version__
    assert images.image_ref(images.IMAGES["adapter"], "1.2.3") == "aeroalpes-adapter:1.2.3"


def test_missing_docker_is_a_clear_error() -> None:
    with pytest.raises(images.DockerNotFound, match="not found on PATH"):
        images.build_images(docker="no-such-docker-cli")
    with pytest.raises(images.ImageBuildError, match="unknown service"):
        images.build_images(services=["web"])


# --- with Docker ------------------------------------------------------------------------------------


def lab_image() -> str:
    """The lab's base image (``nr lab image``), wherever the engine keeps its name."""
    for module in ("nr.machines.image", "nr.lab"):
        try:
            return str(importlib.import_module(module).IMAGE)
        except (ImportError, AttributeError):
            continue
    return "nr-lab-base:bookworm-2"


# Present locally or not at all (no pulls here): the default base, or the lab's image.
BASE_IMAGE_CANDIDATES = (
    images.DEFAULT_BASE_IMAGE,
    "python:3.11-slim",
    lab_image(),
    "aeroalpes-testbase:bookworm",
)


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    run = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and run.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout.strip()


def present(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode
        == 0
    )


@pytest.fixture(scope="module")
def base_image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("docker daemon not reachable (docker info failed)")
    wanted = os.environ.get("BASE_IMAGE") or os.environ.get("AEROALPES_BASE_IMAGE")
    for image in [wanted] if wanted else BASE_IMAGE_CANDIDATES:
        if image and present(image):
            return image
    pytest.skip(
        f"no base image present: set BASE_IMAGE (tried {wanted or BASE_IMAGE_CANDIDATES}); no pulls here"
    )


@pytest.fixture(scope="module")
def built(base_image: str) -> Iterator[dict[str, str]]:
    tag = f"test-{secrets.token_hex(4)}"
    refs = images.build_images(base_image=base_image, tag=tag)
    yield dict(zip(("aeroalpes", "adapter"), refs, strict=True))
    docker("rmi", *refs, check=False)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    if names:
        docker("rm", "--force", *names, check=False)


def run_container(names: list[str], image: str, *args: str) -> str:
    name = f"aeroalpes-test-{secrets.token_hex(4)}"
    names.append(name)
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        *args,
        image,
    )
    return name


def wait_healthy(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if status == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} is {status!r}; logs:\n{docker('logs', '--tail', '20', name, check=False)}")


@pytest.mark.docker
def test_images_are_built_with_version_labels(built: dict[str, str]) -> None:
    for ref in built.values():
        labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", ref))
        assert labels["org.opencontainers.image.version"] == nr.__version__
        assert docker("inspect", "--format", "{{.Config.User}}", ref) == "10001:10001"


@pytest.mark.docker
def test_aeroalpes_image_runs_healthy(built: dict[str, str], containers: list[str]) -> None:
    name = run_container(containers, built["aeroalpes"], "--publish", "127.0.0.1::5000", "--env",
                         "REDIS_NODES=redis-0:7000")  # fmt: skip
    wait_healthy(name)
    host_port = docker("port", name, "5000/tcp").splitlines()[0].rsplit(":", 1)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/health", timeout=5) as answer:
        assert json.load(answer) == {"status": "up"}
    assert docker("exec", name, "id", "-u") == "10001"


@pytest.mark.docker
def test_adapter_image_runs_healthy(built: dict[str, str], containers: list[str]) -> None:
    name = run_container(containers, built["adapter"])
    wait_healthy(name)
    assert docker("exec", name, "python", "-m", "services.adapter.healthcheck") == "SERVING"


@pytest.mark.docker
def test_images_serve_the_round_trip_on_host_network(
    built: dict[str, str], containers: list[str], redis_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    """Both containers on the host's loopback with the test Redis Cluster: the client round trip passes."""
    secret = tmp_path / "redis-password"
    secret.write_text(redis_cluster.password)
    secret.chmod(0o644)  # readable by the image's non-root user (a throwaway test password)
    api_port, grpc_port = free_port(), free_port()
    run_container(
        containers, built["aeroalpes"], "--network", "host",
        "--env", f"PORT={api_port}", "--env", "HOST=127.0.0.1", "--env", f"REDIS_NODES={redis_cluster.nodes_env}",
        "--env", "REDIS_PASSWORD_FILE=/run/secrets/redis-password",
        "--volume", f"{secret}:/run/secrets/redis-password:ro",
    )  # fmt: skip
    adapter = run_container(
        containers, built["adapter"], "--network", "host",
        "--env", f"PORT={grpc_port}", "--env", "HOST=127.0.0.1", "--env", f"AEROALPES_URL=http://127.0.0.1:{api_port}",
    )  # fmt: skip
    wait_healthy(adapter)
    result = roundtrip(f"127.0.0.1:{grpc_port}", timeout=10, wait_for_ready=True)
    assert result.ok, result.message


def test_source_tag_follows_the_sources_the_images_are_built_from(tmp_path: Path) -> None:
    (tmp_path / "nr").mkdir()
    (tmp_path / "nr" / "__init__.py").write_text('__version__ = "2.0.1"\n')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "nr-orchestrator"\n')
    (tmp_path / "services" / "aeroalpes").mkdir(parents=True)
    app = tmp_path / "services" / "aeroalpes" / "app.py"
    app.write_text("print('v1')\n")
    (tmp_path / "protos").mkdir()
    (tmp_path / "protos" / "vuelos.proto").write_text('syntax = "proto3";\n')
    first = images.source_tag(tmp_path)
    assert re.fullmatch(r"2\.0\.1-[0-9a-f]{12}", first)
    (tmp_path / "services" / "__pycache__").mkdir()
    (tmp_path / "services" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "nr" / "engine.py").write_text("# not part of the images' sources\n")
    assert images.source_tag(tmp_path) == first
    app.write_text("print('v2')\n")
    second = images.source_tag(tmp_path)
    assert second != first and second.startswith("2.0.1-")
    (tmp_path / "protos" / "vuelos.proto").write_text('syntax = "proto3";\npackage vuelos;\n')
    assert images.source_tag(tmp_path) not in (first, second)
