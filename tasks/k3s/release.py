"""k3s release binaries, on top of :mod:`nr.ops.release`: which asset a host needs and how it is verified.

Asset names follow install.sh (``setup_verify_arch``): x86_64/amd64 -> ``k3s``, aarch64/arm64 ->
``k3s-arm64``, s390x -> ``k3s-s390x``, any arm* -> ``k3s-armhf``, each with ``sha256sum-<arch>.txt``.

A download is checked against a sha256 shipped in this file when nr knows one for that version and
asset (:data:`KNOWN_SHA256`): then a compromised release page cannot swap both the binary and its
listing. Otherwise the release's own ``sha256sum-<arch>.txt`` is used.

The default version (:data:`tasks.k3s.contract.DEFAULT_VERSION`) is one whose sums are pinned here,
each read from two independent public pins that agree (zarf-dev/zarf's k3s init package and a Nix
``fetchStaticBinary`` of the same release); a test holds the default to that. To pin another version,
add its sums from the release's ``sha256sum-<arch>.txt``, checked against a second source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote as urlquote

from nr.errors import NrError
from nr.local_digests import local_sha256
from nr.ops.release import BinarySource, Release, ReleaseCache, elf_arch

RELEASES = "https://github.com/k3s-io/k3s/releases/download"

# (version, asset) -> sha256, pinned in the code.
KNOWN_SHA256: dict[tuple[str, str], str] = {
    # Pinned by zarf-dev/zarf packages/distros/k3s/zarf.yaml (its k3s init package, shasum fields),
    # and the same two sums in a Nix fetchStaticBinary of k3s 1.32.3+k3s1.
    ("v1.32.3+k3s1", "k3s"): "b19216803650b567bf980888dec39035edaf664339c55bc4462f7a003edbef83",
    ("v1.32.3+k3s1", "k3s-arm64"): "e1704d6dd74332acc8c398d36987663c7d559144b8ce789a83fd0ff1cb40cbaa",
}


@dataclass(frozen=True)
class Asset:
    arch: str  # k3s's (Go's) name for it: amd64, arm64, arm, s390x
    binary: str  # release asset of the binary
    checksums: str  # release asset with the sha256 of every asset of that arch


_ARCHES = {
    "x86_64": Asset("amd64", "k3s", "sha256sum-amd64.txt"),
    "amd64": Asset("amd64", "k3s", "sha256sum-amd64.txt"),
    "aarch64": Asset("arm64", "k3s-arm64", "sha256sum-arm64.txt"),
    "arm64": Asset("arm64", "k3s-arm64", "sha256sum-arm64.txt"),
    "s390x": Asset("s390x", "k3s-s390x", "sha256sum-s390x.txt"),
}
_ARM = Asset("arm", "k3s-armhf", "sha256sum-arm.txt")


def release_asset(machine: str) -> Asset:
    """The release assets for a host whose ``uname -m`` is ``machine`` (ValueError if k3s has none)."""
    m = machine.strip()
    if m in _ARCHES:
        return _ARCHES[m]
    if m.startswith("arm"):
        return _ARM
    raise ValueError(f"no k3s release for architecture {m!r} (k3s ships x86_64, aarch64, arm*, s390x)")


def release_url(version: str, filename: str) -> str:
    return f"{RELEASES}/{urlquote(version, safe='')}/{filename}"


def k3s_release(version: str, machine: str, known: dict[tuple[str, str], str] | None = None) -> Release:
    """The :class:`Release` of k3s ``version`` for a host whose ``uname -m`` is ``machine``."""
    asset = release_asset(machine)
    sums = KNOWN_SHA256 if known is None else known
    return Release(
        name="k3s",
        version=version,
        asset=asset.binary,
        url=release_url(version, asset.binary),
        sums_asset=asset.checksums,
        sums_url=release_url(version, asset.checksums),
        label=f"k3s {version} linux/{asset.arch} (release)",
        known_sha256=sums.get((version, asset.binary)),
    )


def release_binary(cache: ReleaseCache, version: str, machine: str, *, download: bool) -> BinarySource:
    """The verified release binary (downloaded once into the cache unless ``download`` is False)."""
    try:
        return cache.binary(k3s_release(version, machine), download=download)
    except NrError as exc:
        raise NrError(
            f"{exc}; on a machine without internet access set data.k3s_binary (and data.k3s_airgap_images) "
            "to local files"
        ) from None


def local_binary(path: Path, machine: str) -> BinarySource:
    """An operator-supplied k3s binary (data.k3s_binary), refused if built for another architecture."""
    if not path.is_file():
        raise NrError(f"k3s_binary {path} is not a file")
    arch = elf_arch(path)
    want = release_asset(machine).arch
    if arch is not None and arch != want:
        raise NrError(f"k3s_binary {path} is built for {arch}, but the host is {machine.strip()} ({want})")
    return BinarySource(local_sha256(path), f"local file {path}", path)
