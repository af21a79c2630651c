"""Build the container images of the AeroAlpes services, offline.

The host prepares every wheel: ``pip download --require-hashes`` of the image's lock
(``services/<service>/requirements.txt``: each pin with the sha256 of its distributions, written by
``scripts/lock``) and ``pip wheel --no-deps`` of our project; the Dockerfiles install them with
``pip install --require-hashes --no-index --find-links``, so ``docker build`` needs no network (no
registry, no PyPI) beyond the base image already present, and a wheel that is not the locked one is
refused on the host and again in the image.

The default base image is pinned by digest (``DEFAULT_BASE_IMAGE``, the same as the Dockerfiles'
``ARG BASE_IMAGE``); ``--base-image`` / ``build_images(base_image=...)`` overrides it.

    python -m tasks.deploy.images build [--base-image IMG] [--tag T] [--only aeroalpes|adapter]

or, from Python: ``build_images(base_image=..., tag=...) -> list of image refs``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# python:3.11-slim by digest (a tag moves; a digest is one image). To move it: docker pull
# python:3.11-slim && docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim, then set the
# new digest here and in both Dockerfiles (tests/services/test_images.py checks they agree).
DEFAULT_BASE_IMAGE = (
    "python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"
)
DIST_NAME = "nr-orchestrator"
BUILDER_LABEL = "org.nr-orchestrator.stage=builder"
SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    key: str  # the service's directory under services/
    name: str  # the image repository name

    @property
    def dockerfile(self) -> Path:
        return SERVICES_DIR / self.key / "Dockerfile"

    @property
    def requirements(self) -> Path:
        return SERVICES_DIR / self.key / "requirements.txt"


IMAGES: dict[str, ImageSpec] = {
    "aeroalpes": ImageSpec("aeroalpes", "aeroalpes"),
    "adapter": ImageSpec("adapter", "aeroalpes-adapter"),
}


class ImageBuildError(RuntimeError):
    """Preparing wheels or running docker failed."""


class DockerNotFound(ImageBuildError):
    """No docker CLI, or no reachable docker daemon."""


def project_version(project_dir: Path | None = None) -> str:
    """The project's version: ``nr/__init__.py``'s ``__version__`` in a checkout, else the installed one."""
    init = (project_dir or SERVICES_DIR.parent) / "nr" / "__init__.py"
    if init.is_file():
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init.read_text(encoding="utf-8"), re.M)
        if found:
            return found.group(1)
    from importlib import metadata  # outside a checkout only: it costs ~25 ms to import

    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        raise ImageBuildError(
            f"cannot tell the version: no {init} and {DIST_NAME} is not installed"
        ) from None


def source_tag(project_dir: Path | None = None) -> str:
    """``<version>-<12 hex>``: the version and a digest of what the images are built from
    (``services/``, ``protos/``, ``pyproject.toml``). A changed source gets a new tag, so a deploy
    rolls the pods to it even when the version was not bumped; the same source, the same tag."""
    root = project_dir or SERVICES_DIR.parent
    files = [root / "pyproject.toml"]
    for folder in ("services", "protos"):
        files += sorted(
            p
            for p in (root / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{project_version(project_dir)}-{digest.hexdigest()[:12]}"


def find_project_dir(start: Path | None = None) -> Path:
    """The source checkout (directory with our pyproject.toml) the project wheel is built from."""
    candidate = (start or SERVICES_DIR.parent).resolve()
    pyproject = candidate / "pyproject.toml"
    if not pyproject.is_file() or f'name = "{DIST_NAME}"' not in pyproject.read_text(encoding="utf-8"):
        raise ImageBuildError(f"{candidate} is not a source checkout of {DIST_NAME} (no pyproject.toml)")
    return candidate


def image_ref(spec: ImageSpec, tag: str) -> str:
    return f"{spec.name}:{tag}"


def check_docker(docker: str = "docker") -> str:
    """The docker CLI's path; raises DockerNotFound when the CLI or the daemon is missing."""
    path = shutil.which(docker)
    if path is None:
        raise DockerNotFound(f"{docker!r} not found on PATH: install Docker to build the images")
    result = subprocess.run(
        [path, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DockerNotFound(
            f"the Docker daemon is not reachable: {detail[-1] if detail else 'docker info failed'}"
        )
    return path


def _run(argv: Sequence[str], what: str, quiet: bool) -> None:
    result = subprocess.run(list(argv), capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(((result.stderr or "") + (result.stdout or "")).splitlines()[-25:]) if quiet else ""
        raise ImageBuildError(f"{what} failed (exit {result.returncode})" + (f":\n{tail}" if tail else ""))


# Not part of the wheel; skipped when the checkout is copied for the build.
_NOT_SOURCES = (
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".nr-lab",
    "tests",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "node_modules",
)


def build_project_wheel(
    project_dir: Path, out_dir: Path, *, python: str = sys.executable, quiet: bool = True
) -> Path:
    """``pip wheel --no-deps`` of our project, built from a copy of the checkout (so the build leaves
    nothing in it) without build isolation (works offline; needs setuptools in ``python``'s env)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nr-src-") as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(project_dir, source, ignore=shutil.ignore_patterns(*_NOT_SOURCES), symlinks=True)
        argv = [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out_dir)]
        _run([*argv, str(source)], f"building the {DIST_NAME} wheel", quiet)
    wheels = sorted(out_dir.glob("nr_orchestrator-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise ImageBuildError(f"pip wheel produced no nr_orchestrator wheel in {out_dir}")
    return wheels[-1]


def prepare_context(
    spec: ImageSpec,
    context_dir: Path,
    project_wheel: Path,
    *,
    python: str = sys.executable,
    pip_args: Sequence[str] = (),
    quiet: bool = True,
) -> Path:
    """A build context: Dockerfile, requirements.txt (the hashed lock) and wheels/ (the locked wheels,
    checked against their hashes, + the project wheel)."""
    wheels = context_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    shutil.copy2(spec.dockerfile, context_dir / "Dockerfile")
    shutil.copy2(spec.requirements, context_dir / "requirements.txt")
    shutil.copy2(project_wheel, wheels / project_wheel.name)
    argv = [
        python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--require-hashes",
        "--no-deps", "--only-binary=:all:", "-d", str(wheels), "-r", str(spec.requirements), *pip_args,
    ]  # fmt: skip
    _run(argv, f"preparing the wheels of {spec.name}", quiet)
    return context_dir


def docker_build(
    context_dir: Path, ref: str, *, base_image: str, version: str, docker: str = "docker", quiet: bool = True
) -> None:
    argv = [
        docker, "build",
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--build-arg", f"VERSION={version}",
        "--tag", ref,
        "--file", str(context_dir / "Dockerfile"),
        str(context_dir),
    ]  # fmt: skip
    _run(argv, f"docker build of {ref}", quiet)


def prune_builder_stages(docker: str = "docker") -> None:
    """Removes the dangling builder-stage images our Dockerfiles label (best effort)."""
    subprocess.run(
        [docker, "image", "prune", "--force", "--filter", f"label={BUILDER_LABEL}"],
        capture_output=True,
        check=False,
    )


def build_images(
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    tag: str | None = None,
    services: Sequence[str] = ("aeroalpes", "adapter"),
    project_dir: Path | None = None,
    work_dir: Path | None = None,
    docker: str = "docker",
    python: str = sys.executable,
    pip_args: Sequence[str] = (),
    quiet: bool = True,
) -> list[str]:
    """Builds the images (``aeroalpes``, ``aeroalpes-adapter``) tagged ``tag`` (default: the project
    version) on ``base_image``; returns their refs. ``work_dir`` keeps the build contexts (default: a
    temporary directory, removed afterwards). Raises DockerNotFound / ImageBuildError."""
    unknown = [s for s in services if s not in IMAGES]
    if unknown:
        raise ImageBuildError(f"unknown service(s) {unknown}; known: {sorted(IMAGES)}")
    docker_path = check_docker(docker)
    source = find_project_dir(project_dir)
    version = project_version(source)
    tag = tag or version
    with tempfile.TemporaryDirectory(prefix="aeroalpes-images-") as tmp:
        root = work_dir or Path(tmp)
        project_wheel = build_project_wheel(source, root / "project", python=python, quiet=quiet)
        refs = []
        for key in services:
            spec = IMAGES[key]
            context = prepare_context(
                spec, root / key, project_wheel, python=python, pip_args=pip_args, quiet=quiet
            )
            ref = image_ref(spec, tag)
            docker_build(
                context, ref, base_image=base_image, version=version, docker=docker_path, quiet=quiet
            )
            refs.append(ref)
    prune_builder_stages(docker_path)
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.deploy.images", description="AeroAlpes images")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the images offline from wheels prepared on this host")
    build.add_argument("--base-image", default=DEFAULT_BASE_IMAGE, help=f"default: {DEFAULT_BASE_IMAGE}")
    build.add_argument("--tag", default=None, help="default: the project version")
    build.add_argument("--only", choices=sorted(IMAGES), action="append", help="build only this image")
    build.add_argument("--project-dir", type=Path, default=None, help="source checkout (default: this one)")
    build.add_argument("--verbose", action="store_true", help="show pip and docker output")
    args = parser.parse_args(argv)
    try:
        refs = build_images(
            base_image=args.base_image,
            tag=args.tag,
            services=args.only or ("aeroalpes", "adapter"),
            project_dir=args.project_dir,
            quiet=not args.verbose,
        )
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for ref in refs:
        print(ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
