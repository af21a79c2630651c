"""Release binaries on the operator's machine: downloaded once, checked against a sha256, cached.

A :class:`Release` names a binary asset and where its checksum comes from: a sha256 known to the
code (pinned, so a compromised release page cannot swap both the binary and its listing), else the
release's checksum listing. :class:`ReleaseCache` keeps verified files under
``~/.cache/nr/<name>/<version>/``; the fetch function is a parameter, so verification is tested
with local files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nr.cache_dir import cache_root
from nr.errors import NrError
from nr.local_digests import local_sha256

DOWNLOAD_TIMEOUT = 60
Fetch = Callable[[str, Path], None]


def http_fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (streamed; bounded time without progress)."""
    import urllib.request  # here: a run that downloads nothing does not load the HTTP stack (~10 ms)

    req = urllib.request.Request(url, headers={"User-Agent": "nr-orchestrator"})
    try:
        with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT) as resp, dest.open("wb") as fh:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
    except OSError as exc:
        raise NrError(f"cannot download {url}: {exc}") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` or ``<hex> *<name>``) -> name -> hex (pure)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64 and all(c in "0123456789abcdef" for c in parts[0].lower()):
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


@dataclass(frozen=True)
class Release:
    """One binary asset of one release."""

    name: str  # the tool's name: the cache folder
    version: str
    asset: str  # the binary's file name in the release
    url: str  # where the binary is downloaded from
    sums_asset: str  # the checksum listing's file name
    sums_url: str
    label: str  # "<tool> <version> linux/amd64 (release)"
    known_sha256: str | None = None  # shipped with the code: the listing is then not trusted


@dataclass(frozen=True)
class BinarySource:
    """A binary a host should run: its sha256, what it is, and where it is locally (None: not fetched)."""

    sha256: str
    label: str
    path: Path | None


class ReleaseCache:
    """Verified release binaries (``<root>/<name>/<version>/<asset>``)."""

    def __init__(self, root: Path | None = None, fetch: Fetch = http_fetch) -> None:
        self.root = root or cache_root()
        self.fetch = fetch

    def folder(self, release: Release) -> Path:
        return self.root / release.name / release.version

    def _listing(self, release: Release) -> dict[str, str]:
        folder = self.folder(release)
        path = folder / release.sums_asset
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            self.fetch(release.sums_url, part)
            os.replace(part, path)
        sums = parse_sha256sums(path.read_text(encoding="utf-8", errors="replace"))
        if not sums:
            path.unlink()
            raise NrError(f"{release.sums_url}: not a sha256sum listing (removed from the cache)")
        return sums

    def expected_sha256(self, release: Release) -> str:
        if release.known_sha256:
            return release.known_sha256
        sums = self._listing(release)
        if release.asset not in sums:
            raise NrError(
                f"{release.sums_asset} of {release.name} {release.version} lists no {release.asset}"
            )
        return sums[release.asset]

    def binary(self, release: Release, *, download: bool = True) -> BinarySource:
        """The verified binary; downloaded if missing and ``download`` (a dry run passes False)."""
        want = self.expected_sha256(release)
        path = self.folder(release) / release.asset
        if path.exists() and local_sha256(path) == want:
            return BinarySource(want, release.label, path)
        if not download:
            return BinarySource(want, release.label + " [not downloaded yet]", None)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        self.fetch(release.url, part)
        got = file_sha256(part)
        if got != want:
            part.unlink()
            source = "the sha256 known to nr" if release.known_sha256 else release.sums_asset
            raise NrError(
                f"{release.url}: sha256 {got} does not match {want} from {source}; refusing to use it "
                "(download removed)"
            )
        os.replace(part, path)
        path.chmod(0o755)
        return BinarySource(want, release.label, path)


# ELF e_machine values -> Go/Kubernetes architecture names.
_ELF_MACHINES = {0x3E: "amd64", 0xB7: "arm64", 0x28: "arm", 0xF3: "riscv64", 0x16: "s390x"}
# `uname -m` -> Go/Kubernetes architecture names.
UNAME_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
              "armv8l": "arm", "riscv64": "riscv64", "s390x": "s390x"}  # fmt: skip


def elf_arch(path: Path) -> str | None:
    """The architecture of an ELF executable (None: not ELF, e.g. a script; "other": unknown)."""
    with path.open("rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return _ELF_MACHINES.get(machine, "other")
