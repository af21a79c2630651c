"""The service images on this machine: looked up in Docker, built once per run when missing, saved.

Without ``data.image_registry`` the images are built here with Docker (offline, from wheels;
:mod:`tasks.deploy.images`) and saved as tarballs in ``~/.cache/nr/images``
(``$XDG_CACHE_HOME/nr/images`` when set). Their tag is the version plus a digest of their sources
(:func:`tasks.deploy.images.source_tag`): a changed source is a new tag in the manifests, so the
pods roll to it; the same source is never rebuilt. A dry run
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
from collections.abc import Callable, Sequence
from pathlib import Path

from nr import progress
from nr.cache_dir import cache_root
from nr.errors import NrError
from nr.ops.release import UNAME_ARCH
from tasks.deploy.manifests import IMAGES, AppSite
from tasks.deploy.nodes import Image

CACHE = cache_root() / "images"


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


def save_platform(arch: str) -> str | None:
    """``linux/<arch>`` when Docker keeps its images in containerd's store, else None.

    From that store ``docker save`` writes the image's whole index (other platforms, build
    attestations) whose content it may not hold, and ``ctr images import`` then fails with
    "content digest ... not found" (containerd#11344, kind#3795); ``docker save --platform`` (Docker
    28+, docker/cli#7278) writes only the nodes' platform. The classic store has one platform per image.
    """
    status = docker("info", "-f", "{{json .DriverStatus}}", timeout=60)
    return f"linux/{arch}" if "io.containerd.snapshotter" in status else None


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
        self._found: dict[str, tuple[str, str] | None] | None = None  # docker image inspect, per ref
        self._save_platform: tuple[str | None] | None = None

    def _inspect(self) -> dict[str, tuple[str, str] | None]:
        """What Docker has of the images (asked once; again after a build)."""
        if self._found is None:
            self._found = {ref: inspect(ref) for _, ref in self.refs}
        return self._found

    @property
    def refs(self) -> list[tuple[str, str]]:
        return [(name, self.app.image(name)) for name in IMAGES]

    def arch(self) -> str:
        """What the images are (or will be) built for."""
        with self._lock:
            if self._arch is None:
                found = list(self._inspect().values())
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
        found = self._inspect()
        if not all(found.values()):
            if self.dry_run:
                return [Image(name, ref) for name, ref in self.refs]
            self._build()
            self._found = None
            found = self._inspect()
        out = []
        for name, ref in self.refs:
            image_id = (found[ref] or ("", ""))[0]
            if not image_id:
                raise NrError(f"deploy: docker has no image {ref} after building it")
            tarball = save(name, ref, image_id, self.app.tag, dry_run=self.dry_run, platform=self._platform)
            out.append(Image(name, ref, image_id, tarball))
        return out

    def _platform(self) -> str | None:
        """What ``docker save`` is asked for (only when a tarball is written; once per run)."""
        if self._save_platform is None:
            arch = (inspect(self.refs[0][1]) or ("", ""))[1] or docker_arch()
            self._save_platform = (save_platform(arch),)
        return self._save_platform[0]

    def _build(self) -> None:
        from tasks.deploy.images import ImageBuildError, build_images

        try:
            with progress.track(f"building images {', '.join(IMAGES)} (docker build)"):
                build_images(base_image=self.base_image, tag=self.app.tag)
        except ImageBuildError as exc:
            raise NrError(f"deploy: building the images failed: {exc}") from None


def save(
    name: str,
    ref: str,
    image_id: str,
    tag: str,
    *,
    dry_run: bool,
    cache: Path = CACHE,
    platform: Callable[[], str | None] = lambda: None,
) -> Path | None:
    """The image's tarball in the cache (``docker save``d once). A tarball in use is marked as just
    used; only the KEEP most recently used of an image stay (two checkouts of other versions run in
    turn, e.g. a benchmark against main, would otherwise delete each other's tarball and pay a
    ``docker save`` of some 240 MB in every no-op run). None under a dry run when it is not saved
    yet: a dry run writes nothing, here either."""
    tarball = cache / f"{name}-{tag}-{image_id.removeprefix('sha256:')[:16]}.tar"
    if tarball.exists():
        if not dry_run:
            tarball.touch()
        return tarball
    if dry_run:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
    wanted = platform()
    with progress.track(f"saving image {ref} (docker save)"):
        docker("save", *(["--platform", wanted] if wanted else []), "-o", str(tmp), ref)
    tmp.replace(tarball)
    for old in _older(cache, name, tarball):
        old.unlink(missing_ok=True)
    return tarball


KEEP = 3  # tarballs per image kept in the cache, the most recently used
KEEP_SECONDS = (
    3600  # ... and any written in the last hour: another run (another checkout) may be uploading it
)


def _older(cache: Path, name: str, current: Path, keep: int = KEEP) -> Sequence[Path]:
    """The tarballs of ``name`` beyond the ``keep`` most recently used and not written in the last
    :data:`KEEP_SECONDS` (``current`` is never one)."""
    pattern = re.compile(rf"{re.escape(name)}-\d[^/]*\.tar")
    others = [p for p in cache.glob(f"{name}-*.tar") if p != current and pattern.fullmatch(p.name)]
    others.sort(key=_used, reverse=True)
    stale = time.time() - KEEP_SECONDS
    return [p for p in others[keep - 1 :] if _used(p) < stale]


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by another run
        return 0.0
