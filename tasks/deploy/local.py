"""The service images on this machine: looked up in Docker, built once per run when missing, saved.

Without ``data.image_registry`` the images are built here with Docker (offline, from wheels;
:mod:`tasks.deploy.images`) and saved as tarballs in ``~/.cache/nr/images``. Their tag is the
version plus a digest of their sources (:func:`tasks.deploy.images.source_tag`): a changed source
is a new tag in the manifests, so the pods roll to it; the same source is never rebuilt. A dry run
(and ``check``/``drift``) builds and writes nothing: it works with what Docker already has.

Docker builds for its own architecture (the wheels are prepared on this machine, for it): the
nodes must have the same one (:func:`tasks.deploy.nodes.arch_problem`).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from nr import progress
from nr.errors import NrError
from nr.ops.release import UNAME_ARCH
from tasks.deploy.manifests import IMAGES, AppSite
from tasks.deploy.nodes import Image

CACHE = Path("~/.cache/nr/images").expanduser()


def docker(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NrError(f"docker {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def inspect(ref: str) -> tuple[str, str] | None:
    """(image ID, architecture) of a local image, or None when Docker does not have it."""
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}} {{.Architecture}}", ref],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        return None
    image_id, _, arch = proc.stdout.strip().partition(" ")
    return image_id, arch


def docker_arch() -> str:
    """The architecture Docker builds for here (``docker info``: uname's name -> Go's name)."""
    raw = docker("info", "-f", "{{.Architecture}}", timeout=60).strip()
    return UNAME_ARCH.get(raw, raw)


class Builder:
    """The images of one run: looked up (and, unless a dry run, built and saved) at most once.

    Host functions run in parallel and ask for the images when they plan their node; the first one
    that asks looks them up, and builds them only when Docker lacks them; the others wait for it.
    """

    def __init__(self, app: AppSite, base_image: str, *, dry_run: bool) -> None:
        self.app, self.base_image, self.dry_run = app, base_image, dry_run
        self._lock = threading.Lock()
        self._images: list[Image] | None = None
        self._error: NrError | None = None
        self._arch: str | None = None

    @property
    def refs(self) -> list[tuple[str, str]]:
        return [(name, self.app.image(name)) for name in IMAGES]

    def arch(self) -> str:
        """What the images are (or will be) built for."""
        with self._lock:
            if self._arch is None:
                found = [inspect(ref) for _, ref in self.refs]
                self._arch = found[0][1] if all(found) and found[0] else docker_arch()
            return self._arch

    def images(self) -> list[Image]:
        """The images; under a dry run those Docker already has, by ref only when it has none."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._images is None:
                try:
                    self._images = self._lookup()
                except NrError as exc:
                    self._error = exc
                    raise
            return self._images

    def _lookup(self) -> list[Image]:
        found = {ref: inspect(ref) for _, ref in self.refs}
        if not all(found.values()):
            if self.dry_run:
                return [Image(name, ref) for name, ref in self.refs]
            self._build()
            found = {ref: inspect(ref) for _, ref in self.refs}
        out = []
        for name, ref in self.refs:
            image_id = (found[ref] or ("", ""))[0]
            if not image_id:
                raise NrError(f"deploy: docker has no image {ref} after building it")
            out.append(
                Image(name, ref, image_id, save(name, ref, image_id, self.app.tag, dry_run=self.dry_run))
            )
        return out

    def _build(self) -> None:
        from tasks.deploy.images import ImageBuildError, build_images

        try:
            with progress.track(f"building images {', '.join(IMAGES)} (docker build)"):
                build_images(base_image=self.base_image, tag=self.app.tag)
        except ImageBuildError as exc:
            raise NrError(f"deploy: building the images failed: {exc}") from None


def save(name: str, ref: str, image_id: str, tag: str, *, dry_run: bool, cache: Path = CACHE) -> Path | None:
    """The image's tarball in the cache (``docker save``d once; earlier builds' tarballs removed once
    an hour old).
    None under a dry run when it is not saved yet: a dry run writes nothing, here either."""
    tarball = cache / f"{name}-{tag}-{image_id.removeprefix('sha256:')[:16]}.tar"
    if tarball.exists():
        return tarball
    if dry_run:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
    with progress.track(f"saving image {ref} (docker save)"):
        docker("save", "-o", str(tmp), ref)
    tmp.replace(tarball)
    for old in _older(cache, name, tarball):
        old.unlink(missing_ok=True)
    return tarball


KEEP_SECONDS = 3600  # another run (another checkout's version) may be uploading a tarball it saved


def _older(cache: Path, name: str, current: Path) -> Sequence[Path]:
    """Other builds' tarballs of ``name`` not written in the last :data:`KEEP_SECONDS`."""
    pattern = re.compile(rf"{re.escape(name)}-\d[^/]*\.tar")
    stale = time.time() - KEEP_SECONDS
    return [
        p
        for p in cache.glob(f"{name}-*.tar")
        if p != current and pattern.fullmatch(p.name) and p.stat().st_mtime < stale
    ]
