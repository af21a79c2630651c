"""Supply chain: the hashed lock files (scripts/lock) and what installs from them. Every entry is pinned
with sha256 hashes; each lock agrees with what it locks (pyproject's dependencies and extras, each
image's requirements.in), so neither can change without the other; the installs use --require-hashes;
the images' default base is pinned by digest. And packaging: the tool does not pull the services'
server libraries, and importing it does not load them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tasks.deploy import images
from tests.support.locks import DEV_LOCK, ROOT, TOOL_LOCK, Pin, pyproject, read_lock, requirements_in

SERVICE_LOCKS = {key: spec.requirements for key, spec in images.IMAGES.items()}
ALL_LOCKS = [TOOL_LOCK, DEV_LOCK, *SERVICE_LOCKS.values()]
SERVER_LIBRARIES = {
    "flask", "werkzeug", "gunicorn", "httptools", "uvloop", "hiredis", "grpcio-health-checking",
    "grpcio-reflection",
}  # fmt: skip
PY3112_EXTRAS = {"async-timeout"}  # locks/py3112.in: what Debian bookworm's Python 3.11.2 needs on top


def assert_locked(requirements: list[Requirement], lock: dict[str, Pin], where: str) -> None:
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{where}: {requirement} is not in the lock (run scripts/lock)"
        assert requirement.specifier.contains(lock[name].version, prereleases=True), (
            f"{where}: {requirement} but the lock pins {lock[name].version} (run scripts/lock)"
        )


@pytest.mark.parametrize("path", ALL_LOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_lock_entry_is_pinned_with_hashes(path: Path) -> None:
    lock = read_lock(path)
    assert lock
    for pin in lock.values():
        assert pin.version, f"{path.name}: {pin.line[:80]!r} is not pinned with =="
        assert pin.hashes, f"{path.name}: {pin.name}=={pin.version} has no --hash"
    entries = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert not [line for line in entries if "file://" in line or " @ " in line]  # no local paths, no URLs


def test_the_tool_lock_agrees_with_pyproject() -> None:
    lock, groups = read_lock(TOOL_LOCK), pyproject()
    assert_locked(groups["dependencies"], lock, "pyproject [project.dependencies]")
    assert not SERVER_LIBRARIES & set(lock), "the tool's lock pulls a server library"
    assert set(lock) >= PY3112_EXTRAS


def test_the_dev_lock_holds_everything_the_tests_need_at_the_tools_versions() -> None:
    tool, dev, groups = read_lock(TOOL_LOCK), read_lock(DEV_LOCK), pyproject()
    for group in ("dependencies", "services", "dev"):
        assert_locked(groups[group], dev, f"pyproject {group}")
    for name, pin in tool.items():
        assert dev[name].version == pin.version, (
            f"{name}: dev lock {dev[name].version}, tool lock {pin.version}"
        )


@pytest.mark.parametrize("key", sorted(SERVICE_LOCKS))
def test_each_image_lock_agrees_with_its_requirements_in(key: str) -> None:
    lock = read_lock(SERVICE_LOCKS[key])
    assert_locked(
        requirements_in(SERVICE_LOCKS[key].with_suffix(".in")), lock, f"services/{key}/requirements.in"
    )
    assert not {"flask", "gunicorn", "werkzeug"} & set(lock)


def test_the_services_extra_is_the_images_libraries_and_the_dev_extra_has_it() -> None:
    groups = pyproject()
    services = {canonicalize_name(r.name): str(r.specifier) for r in groups["services"]}
    dev = {canonicalize_name(r.name): str(r.specifier) for r in groups["dev"]}
    assert services.items() <= dev.items(), "dev must pull everything [services] does"
    assert set(services) == SERVER_LIBRARIES - {"flask", "werkzeug", "gunicorn"}
    runtime = {canonicalize_name(r.name) for r in groups["dependencies"]}
    assert not runtime & SERVER_LIBRARIES
    assert {"grpcio", "protobuf"} <= runtime  # the checks' gRPC client


@pytest.mark.parametrize("key", sorted(images.IMAGES))
def test_images_install_with_require_hashes_on_a_base_pinned_by_digest(key: str) -> None:
    text = images.IMAGES[key].dockerfile.read_text()
    assert f"ARG BASE_IMAGE={images.DEFAULT_BASE_IMAGE}\n" in text
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", images.DEFAULT_BASE_IMAGE)
    assert "--require-hashes --no-index --find-links /tmp/build/wheels" in text
    assert "-r /tmp/build/requirements.txt" in text


def test_bootstrap_installs_the_tool_from_its_hashed_lock() -> None:
    script = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--require-hashes -r locks/nr.txt" in script
    assert "--no-deps -e ." in script
    assert "--require-hashes -r locks/dev.txt" in script


BLOCKER = """
import importlib.abc, json, subprocess, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed (blocked)")
        return None
sys.meta_path.insert(0, Blocker())
import nr.cli, services.client, tasks.checks, tasks.deploy
from nr.cli import main
sys.argv = ["nr", "--help"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def test_the_tool_runs_without_the_server_libraries() -> None:
    """As after ``pipx install .``: none of the services' server libraries is there; ``nr --help``, the
    checks' client and the deploy play still import and run (grpc itself only tries its optional
    grpc_health/grpc_reflection aliases, which the blocker refuses like a missing package)."""
    blocked = sorted(
        {"flask", "werkzeug", "gunicorn", "httptools", "uvloop", "hiredis", "grpc_health", "grpc_reflection"}
    )
    run = subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=blocked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(json.loads(run.stdout.splitlines()[-1]))
    assert (
        not {"services.aeroalpes.server", "services.adapter.server", "services.aeroalpes.repository"} & loaded
    )
