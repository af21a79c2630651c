"""The k3s play on the operator's machine: the release cache, the cluster token file, the kubeconfig.

* :class:`ReleaseCache` downloads a release asset once into ``~/.cache/nr/k3s/<version>/``, checks
  it against the release's ``sha256sum-<arch>.txt`` and refuses a mismatch. The fetch function is
  a parameter, so the verification is tested with local files.
* :func:`load_token` / :func:`store_token`: a generated token lives in ``<inventory>/secrets/k3s_token``
  (0600); it is written once and reused (k3s cannot change it later).
* :func:`update_kubeconfig`: merge the fetched k3s.yaml into the operator's kubeconfig (0600),
  leaving every other cluster, user and context alone, writing only when the content changes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from nr.errors import NrError
from nr.ops.files import local_sha256
from nr.secrets import Secret, SecretRef, write_secret_file
from tasks.k3s.plan import BinarySource, merge_kubeconfig, parse_sha256sums, release_asset, release_url

TOKEN_FILE = "secrets/k3s_token"
DOWNLOAD_TIMEOUT = 60

Fetch = Callable[[str, Path], None]


def http_fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (streamed; bounded time without progress)."""
    req = urllib.request.Request(url, headers={"User-Agent": "nr-orchestrator"})
    try:
        with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT) as resp, dest.open("wb") as fh:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
    except OSError as exc:
        raise NrError(
            f"cannot download {url}: {exc}; on a machine without internet access set data.k3s_binary "
            "(and data.k3s_airgap_images) to local files"
        ) from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ReleaseCache:
    """k3s release binaries, downloaded once and verified (``~/.cache/nr/k3s/<version>/<asset>``)."""

    def __init__(self, root: Path | None = None, fetch: Fetch = http_fetch) -> None:
        self.root = root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nr" / "k3s"
        self.fetch = fetch

    def _checksums(self, version: str, name: str) -> dict[str, str]:
        folder = self.root / version
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            self.fetch(release_url(version, name), part)
            os.replace(part, path)
        sums = parse_sha256sums(path.read_text(encoding="utf-8", errors="replace"))
        if not sums:
            path.unlink()
            raise NrError(f"{release_url(version, name)}: not a sha256sum listing (removed from the cache)")
        return sums

    def expected_sha256(self, version: str, machine: str) -> str:
        asset = release_asset(machine)
        sums = self._checksums(version, asset.checksums)
        if asset.binary not in sums:
            raise NrError(f"{asset.checksums} of k3s {version} lists no {asset.binary}")
        return sums[asset.binary]

    def binary(self, version: str, machine: str, *, download: bool = True) -> BinarySource:
        """The verified binary for ``machine`` (``uname -m``); downloaded if missing and ``download``."""
        asset = release_asset(machine)
        want = self.expected_sha256(version, machine)
        path = self.root / version / asset.binary
        label = f"k3s {version} linux/{asset.arch} (release)"
        if path.exists() and local_sha256(path) == want:
            return BinarySource(want, label, path)
        if not download:
            return BinarySource(want, label + " [not downloaded yet]", None)
        part = path.with_name(path.name + ".part")
        self.fetch(release_url(version, asset.binary), part)
        got = file_sha256(part)
        if got != want:
            part.unlink()
            raise NrError(
                f"{release_url(version, asset.binary)}: sha256 {got} does not match {want} from "
                f"{asset.checksums}; refusing to use it (download removed)"
            )
        os.replace(part, path)
        path.chmod(0o755)
        return BinarySource(want, label, path)


# ELF e_machine values of the architectures k3s ships.
_ELF_MACHINES = {0x3E: "amd64", 0xB7: "arm64", 0x28: "arm"}


def elf_arch(path: Path) -> str | None:
    """k3s's arch name of an ELF executable (None: not ELF, e.g. a script, or unknown)."""
    with path.open("rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return _ELF_MACHINES.get(machine, "other")


def local_binary(path: Path, machine: str) -> BinarySource:
    """An operator-supplied k3s binary (data.k3s_binary), refused if built for another architecture."""
    if not path.is_file():
        raise NrError(f"k3s_binary {path} is not a file")
    arch = elf_arch(path)
    want = release_asset(machine).arch
    if arch is not None and arch != want:
        raise NrError(f"k3s_binary {path} is built for {arch}, but the host is {machine} ({want})")
    return BinarySource(local_sha256(path), f"local file {path}", path)


# -- the token -------------------------------------------------------------------------------------
def token_path(inventory_dir: Path) -> Path:
    return inventory_dir / TOKEN_FILE


def load_token(inventory_dir: Path) -> Secret | None:
    """The token kept in the inventory folder, if there is one (refused if not 0600)."""
    path = token_path(inventory_dir)
    if not path.exists():
        return None
    return SecretRef("file", str(path)).resolve()


def new_token() -> Secret:
    return Secret(secrets.token_hex(32), "generated")


def store_token(inventory_dir: Path, token: Secret) -> Path:
    """Write the token 0600; the secrets folder gets a .gitignore so it is never committed."""
    path = token_path(inventory_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_secret_file(path, token.reveal())
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Written by nr: secrets are never committed.\n*\n", encoding="utf-8")
    return path


# -- kubeconfig --------------------------------------------------------------------------------------
def kubeconfig_target(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the operator's kubeconfig is: ``explicit``, else $KUBECONFIG's first path, else ~/.kube/config."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ if env is None else env
    for part in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if part.strip():
            return Path(part.strip()).expanduser()
    return Path("~/.kube/config").expanduser()


def update_kubeconfig(path: Path, new: Mapping[str, Any], name: str) -> bool:
    """Merge context ``name`` of ``new`` into the kubeconfig at ``path``; True when the file changed."""
    old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        existing = yaml.safe_load(old_text) if old_text.strip() else {}
    except yaml.YAMLError as exc:
        raise NrError(f"{path}: not a valid kubeconfig ({exc}); not touching it") from None
    if not isinstance(existing, dict):
        raise NrError(f"{path}: not a kubeconfig mapping; not touching it")
    try:
        merged = merge_kubeconfig(existing, new, name)
    except ValueError as exc:
        raise NrError(f"kubeconfig {path}: {exc}") from None
    if merged == existing and old_text and (path.stat().st_mode & 0o077) == 0:
        return False
    text = yaml.safe_dump(merged, default_flow_style=False, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.nr-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True
