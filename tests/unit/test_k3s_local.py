"""The k3s play on the operator's machine: release assets and verification (on nr.ops.release), arch
mapping, known sums, token, kubeconfig."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import yaml

from nr.errors import NrError
from nr.ops.release import BinarySource, ReleaseCache, elf_arch, parse_sha256sums
from nr.secrets import SecretError
from tasks.k3s.local import (
    kubeconfig_target,
    load_token,
    new_token,
    rewrite_kubeconfig,
    store_token,
    update_kubeconfig,
)
from tasks.k3s.release import KNOWN_SHA256, k3s_release, local_binary, release_asset, release_url

VERSION = "v1.31.4+k3s1"


class FakeReleases:
    """Serves release assets from a dict, counting downloads."""

    def __init__(self, assets: dict[str, bytes]) -> None:
        self.assets = assets
        self.fetched: list[str] = []

    def __call__(self, url: str, dest: Path) -> None:
        self.fetched.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in self.assets:
            raise NrError(f"cannot download {url}: 404")
        dest.write_bytes(self.assets[name])


class Cache:
    """The k3s release binaries through nr.ops.release's cache, with no pinned sums (the listing decides)."""

    def __init__(
        self, root: Path, fetch: FakeReleases, known: dict[tuple[str, str], str] | None = None
    ) -> None:
        self.cache = ReleaseCache(root, fetch)
        self.known = known or {}

    def binary(self, version: str, machine: str, *, download: bool = True) -> BinarySource:
        return self.cache.binary(k3s_release(version, machine, self.known), download=download)


def sums(**files: bytes) -> bytes:
    lines = [f"{hashlib.sha256(v).hexdigest()}  {k.replace('_', '-')}" for k, v in files.items()]
    lines.append(f"{'0' * 64}  k3s-airgap-images-amd64.tar.zst")
    return ("\n".join(lines) + "\n").encode()


def test_arch_mapping_and_urls() -> None:
    assert (
        release_asset("x86_64").binary == "k3s" and release_asset("x86_64").checksums == "sha256sum-amd64.txt"
    )
    assert release_asset("aarch64").binary == "k3s-arm64" and release_asset("aarch64").arch == "arm64"
    assert (
        release_asset("armv7l\n").binary == "k3s-armhf"
        and release_asset("armv7l").checksums == "sha256sum-arm.txt"
    )
    assert release_asset("s390x").binary == "k3s-s390x" and release_asset("armv6l").binary == "k3s-armhf"
    with pytest.raises(ValueError, match="no k3s release for architecture 'riscv64'"):
        release_asset("riscv64")
    assert release_url(VERSION, "k3s") == "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s"
    assert parse_sha256sums("abc  k3s\n" + "A" * 64 + " *k3s-arm64\n") == {"k3s-arm64": "a" * 64}


def test_download_once_and_verify(tmp_path: Path) -> None:
    binary = b"\x7fELF the k3s binary"
    fetch = FakeReleases({"k3s": binary, "sha256sum-amd64.txt": sums(k3s=binary)})
    cache = Cache(tmp_path / "k3s", fetch)
    src = cache.binary(VERSION, "x86_64")
    assert src.path == tmp_path / "k3s" / "k3s" / VERSION / "k3s" and src.path.read_bytes() == binary
    assert src.sha256 == hashlib.sha256(binary).hexdigest() and "v1.31.4+k3s1 linux/amd64" in src.label
    assert fetch.fetched == [release_url(VERSION, "sha256sum-amd64.txt"), release_url(VERSION, "k3s")]
    assert cache.binary(VERSION, "x86_64").path == src.path
    assert len(fetch.fetched) == 2  # cached: nothing downloaded again


def test_corrupted_download_is_refused_and_removed(tmp_path: Path) -> None:
    fetch = FakeReleases({"k3s-arm64": b"tampered", "sha256sum-arm64.txt": sums(k3s_arm64=b"genuine")})
    cache = Cache(tmp_path / "k3s", fetch)
    with pytest.raises(NrError, match=r"does not match .* from sha256sum-arm64\.txt; refusing to use it"):
        cache.binary(VERSION, "aarch64")
    assert sorted(p.name for p in (tmp_path / "k3s" / "k3s" / VERSION).iterdir()) == ["sha256sum-arm64.txt"]


def test_a_corrupted_cached_binary_is_downloaded_again(tmp_path: Path) -> None:
    binary = b"genuine"
    fetch = FakeReleases({"k3s": binary, "sha256sum-amd64.txt": sums(k3s=binary)})
    cache = Cache(tmp_path / "k3s", fetch)
    path = cache.binary(VERSION, "x86_64").path
    assert path is not None
    path.write_bytes(b"bit rot")
    assert cache.binary(VERSION, "x86_64").path == path and path.read_bytes() == binary


def test_dry_run_needs_only_the_checksums(tmp_path: Path) -> None:
    fetch = FakeReleases({"sha256sum-amd64.txt": sums(k3s=b"x")})
    src = Cache(tmp_path / "k3s", fetch).binary(VERSION, "x86_64", download=False)
    assert src.path is None and src.sha256 == hashlib.sha256(b"x").hexdigest()
    assert fetch.fetched == [release_url(VERSION, "sha256sum-amd64.txt")]


def test_checksum_file_without_the_asset_or_garbage(tmp_path: Path) -> None:
    with pytest.raises(NrError, match="lists no k3s"):
        Cache(tmp_path / "k3s", FakeReleases({"sha256sum-amd64.txt": sums(k3s_arm64=b"x")})).binary(
            VERSION, "x86_64"
        )
    with pytest.raises(NrError, match="not a sha256sum listing"):
        Cache(tmp_path / "b" / "k3s", FakeReleases({"sha256sum-amd64.txt": b"<html>"})).binary(
            VERSION, "amd64"
        )


def elf(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + machine.to_bytes(2, "little") + b"\0" * 40


def test_elf_arch_and_local_binary(tmp_path: Path) -> None:
    for machine, arch in ((0x3E, "amd64"), (0xB7, "arm64"), (0x28, "arm")):
        (tmp_path / arch).write_bytes(elf(machine))
        assert elf_arch(tmp_path / arch) == arch
    script = tmp_path / "script"
    script.write_text("#!/usr/bin/env python3\n")
    assert elf_arch(script) is None
    assert local_binary(tmp_path / "amd64", "x86_64").path == tmp_path / "amd64"
    assert local_binary(script, "aarch64").label == f"local file {script}"
    with pytest.raises(NrError, match="built for arm64, but the host is x86_64"):
        local_binary(tmp_path / "arm64", "x86_64")
    with pytest.raises(NrError, match="is not a file"):
        local_binary(tmp_path / "missing", "x86_64")


def test_token_is_stored_0600_with_a_gitignore_and_reloaded(tmp_path: Path) -> None:
    assert load_token(tmp_path) is None
    token = new_token()
    assert len(token.reveal()) == 64
    path = store_token(tmp_path, token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (path.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    loaded = load_token(tmp_path)
    assert loaded is not None and loaded.reveal() == token.reveal()
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_token(tmp_path)


def test_kubeconfig_target() -> None:
    assert kubeconfig_target("/x/cfg", {"KUBECONFIG": "/y"}) == Path("/x/cfg")
    assert kubeconfig_target(None, {"KUBECONFIG": f"/a/one{os.pathsep}/b/two"}) == Path("/a/one")
    assert kubeconfig_target(None, {}) == Path("~/.kube/config").expanduser()


def test_update_kubeconfig_writes_0600_only_when_it_differs(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    existing = {"apiVersion": "v1", "kind": "Config", "current-context": "other",
                "clusters": [{"name": "other", "cluster": {"server": "https://o:6443"}}],
                "users": [{"name": "other", "user": {}}], "contexts": [{"name": "other", "context": {}}]}  # fmt: skip
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(existing))
    path.chmod(0o644)
    fetched = {"clusters": [{"name": "default", "cluster": {"server": "https://127.0.0.1:6443"}}],
               "users": [{"name": "default", "user": {"client-key-data": "S0VZ"}}],
               "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}]}  # fmt: skip
    new = rewrite_kubeconfig(fetched, "https://10.0.0.1:6443", "lab")
    assert update_kubeconfig(path, new, "lab") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "other" and [c["name"] for c in doc["contexts"]] == ["other", "lab"]
    before = path.stat().st_mtime_ns
    assert update_kubeconfig(path, new, "lab") is False and path.stat().st_mtime_ns == before
    path.write_text("clusters: [")
    with pytest.raises(NrError, match="not a valid kubeconfig"):
        update_kubeconfig(path, new, "lab")
    fresh = tmp_path / "new" / "config"
    assert (
        update_kubeconfig(fresh, new, "lab") and yaml.safe_load(fresh.read_text())["current-context"] == "lab"
    )


def test_no_token_is_made_up_while_the_first_server_cannot_be_read(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tasks.k3s.tokens import _default_token

    notes: list[str] = []
    ctx = SimpleNamespace(inventory_dir=tmp_path, dry_run=False, note=notes.append)
    with pytest.raises(NrError, match="the first server could not be read"):
        _default_token(ctx, None, readable=False)  # type: ignore[arg-type]
    assert load_token(tmp_path) is None and notes == []  # nothing stored
    made = _default_token(ctx, None, readable=True)  # type: ignore[arg-type]
    kept = load_token(tmp_path)
    assert kept is not None and kept.reveal() == made.reveal() and "generated" in notes[0]
    assert "k3s token rotate" in notes[0]  # the token can be changed, at a price (k3s docs, cli/token.md)


def test_a_sum_known_to_nr_is_used_instead_of_the_release_listing(tmp_path: Path) -> None:
    """issue 10 item 14: a compromised release page cannot swap the binary and its listing together."""
    binary = b"genuine k3s"
    good = hashlib.sha256(binary).hexdigest()
    tampered = FakeReleases({"k3s": b"evil", "sha256sum-amd64.txt": sums(k3s=b"evil")})
    with pytest.raises(NrError, match=r"does not match .* from the sha256 known to nr"):
        Cache(tmp_path / "a", tampered, known={(VERSION, "k3s"): good}).binary(VERSION, "x86_64")
    assert tampered.fetched == [release_url(VERSION, "k3s")]  # the listing is not even read
    honest = FakeReleases({"k3s": binary})
    assert (
        Cache(tmp_path / "b", honest, known={(VERSION, "k3s"): good}).binary(VERSION, "x86_64").sha256 == good
    )
    release = k3s_release("v1.32.3+k3s1", "aarch64")
    assert (
        release.asset == "k3s-arm64" and release.known_sha256 == KNOWN_SHA256[("v1.32.3+k3s1", "k3s-arm64")]
    )
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in KNOWN_SHA256.values())
    assert k3s_release("v1.29.0+k3s1", "x86_64").known_sha256 is None  # unknown version: the listing decides


def test_the_default_version_downloads_against_sums_pinned_in_the_code() -> None:
    from tasks.k3s.contract import DEFAULT_VERSION

    for machine in ("x86_64", "aarch64"):
        release = k3s_release(DEFAULT_VERSION, machine)
        assert release.known_sha256 == KNOWN_SHA256[(DEFAULT_VERSION, release.asset)]
