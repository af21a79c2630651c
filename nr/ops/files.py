"""Files on hosts: a :class:`FileSpec` (content, mode, owner) and the change that makes a host match it.

Small files travel inside the apply script (base64, written atomically: temp file in the same
folder, chmod/chown, rename). Large or binary local files (:func:`plan_upload`) travel over SFTP
and are checked against their local sha256 before they are installed.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import posixpath
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

from nr.changes import Change, Upload, mask, mask_keys, mask_url_credentials
from nr.facts import STAMP_ID, STAMPS, FileState
from nr.local_digests import local_sha256
from nr.lock import UPLOAD_PREFIX


@dataclass(frozen=True)
class FileSpec:
    """A file as it should be on the host."""

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secrets: Sequence[str] = field(default=(), repr=False)  # values masked in diffs
    # keys whose lines are masked in diffs whatever their value (``requirepass``, ``token``): a secret
    # that differs from the inventory's (hand-edited, or the old one after a rotation) never prints either
    secret_keys: Sequence[str] = ()

    @classmethod
    def text(
        cls,
        path: str,
        text: str,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secrets: Sequence[str] = (),
        secret_keys: Sequence[str] = (),
    ) -> FileSpec:
        return cls(path, text.encode(), mode, owner, group, tuple(secrets), tuple(secret_keys))

    def masked(self, text: str) -> str:
        """``text`` (this file's content, old or new) as a diff may show it."""
        return mask_url_credentials(mask_keys(mask(text, self.secrets), self.secret_keys))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def write_file_script(spec: FileSpec) -> str:
    """Shell that writes ``spec`` atomically: temp file in the same folder, chmod/chown, rename."""
    p = quote(spec.path)
    b64 = base64.b64encode(spec.content).decode()
    chunks = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    return (
        f'mkdir -p "$(dirname {p})"\n'
        f'nr_tmp=$(mktemp "$(dirname {p})/.nr-XXXXXX")\n'
        f"base64 -d > \"$nr_tmp\" <<'NR_EOF'\n{chunks}\nNR_EOF\n"
        f'chown {quote(spec.owner)}:{quote(spec.group)} "$nr_tmp"\n'
        f'chmod {spec.mode:04o} "$nr_tmp"\n'
        f'mv -f "$nr_tmp" {p}'
    )


def plan_file(spec: FileSpec, state: FileState) -> Change | None:
    """The change that makes ``state`` match ``spec``, or ``None`` if it already does (pure)."""
    what = f"file {spec.path}"
    want_meta = f"{spec.mode:04o} {spec.owner}:{spec.group}"
    if not state.exists:
        new = spec.masked(spec.content.decode("utf-8", errors="replace"))
        diff = "".join(difflib.unified_diff([], new.splitlines(keepends=True), "/dev/null", spec.path))
        return Change(
            what,
            f"present ({want_meta}, sha256 {spec.sha256[:12]})",
            "absent",
            write_file_script(spec),
            f"+ create {spec.path} ({want_meta})\n{diff}",
        )
    have_meta = f"{state.mode:04o} {state.owner}:{state.group}" if state.mode is not None else "?"
    if state.sha256 != spec.sha256:
        old = spec.masked(state.text or "") if state.content is not None else "(not shown: large file)\n"
        new = spec.masked(spec.content.decode("utf-8", errors="replace"))
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), spec.path, spec.path
            )
        )
        if not diff:  # only masked parts differ (a secret changed)
            diff = f"~ {spec.path}: secret value changed\n"
        return Change(
            what,
            f"sha256 {spec.sha256[:12]}",
            f"sha256 {(state.sha256 or '?')[:12]}",
            write_file_script(spec),
            f"~ update {spec.path}\n{diff}",
        )
    if have_meta != want_meta:
        script = (
            f"chown {quote(spec.owner)}:{quote(spec.group)} {quote(spec.path)}\n"
            f"chmod {spec.mode:04o} {quote(spec.path)}"
        )
        return Change(
            what, want_meta, have_meta, script, f"~ {spec.path}: mode/owner {have_meta} -> {want_meta}\n"
        )
    return None


def stamp_script(dest: str, digest: str, stamps: str = STAMPS) -> str:
    """Shell that notes ``dest``'s identity and ``digest`` in its stamp (:data:`nr.facts.STAMPS`), so
    reads take the digest from there instead of hashing the file again while it stays as installed. The
    old stamp goes first; a stamp that cannot be written is simply missing (the file is hashed)."""
    stamp = quote(f"{stamps}{dest}")
    folder = quote(posixpath.dirname(f"{stamps}{dest}"))
    return (
        f"rm -f {stamp}; {{ mkdir -p {folder} && i=$(stat -c {quote(STAMP_ID)} -- {quote(dest)}) "
        f"&& printf '%s\\n%s\\n' \"$i\" {digest} > {stamp}.nr-new && mv -f {stamp}.nr-new {stamp}; }} "
        f"2>/dev/null || rm -f {stamp}.nr-new"
    )


def plan_upload(
    local: Path,
    dest: str,
    state: FileState,
    *,
    mode: int = 0o755,
    owner: str = "root",
    group: str = "root",
    stamp: bool = True,
) -> Change | None:
    """Push a local (possibly large, binary) file only when the host's copy differs (pure but for hashing).

    The file travels over SFTP into the login user's home; the apply script checks its hash and
    installs it atomically with its mode and owner, and (``stamp``, for a file that stays where it is
    put and is read again) notes its digest for later reads (:func:`stamp_script`).
    """
    digest = local_sha256(local)
    want_meta = f"{mode:04o} {owner}:{group}"
    have_meta = (
        f"{state.mode:04o} {state.owner}:{state.group}" if state.exists and state.mode is not None else ""
    )
    if state.exists and state.sha256 == digest and have_meta == want_meta:
        return None
    # Relative to the login user's home (SFTP's and the script's working directory): not a
    # predictable name in a world-writable /tmp, and unique per run (two runs never share one).
    # Checked against the local hash before install; leftovers of killed runs are removed by
    # every apply (nr.lock.host_lock_script).
    tmp = f"{UPLOAD_PREFIX}{digest[:16]}-{secrets.token_hex(6)}"
    t, d = quote(tmp), quote(dest)
    script = (
        f"echo {quote(f'{digest}  {tmp}')} | sha256sum -c --quiet - "
        f"|| {{ rm -f {t}; echo {quote(f'upload of {dest} corrupted')} >&2; exit 1; }}\n"
        f"install -D -m {mode:04o} -o {quote(owner)} -g {quote(group)} {t} {d}.nr-new\n"
        f"mv -f {d}.nr-new {d}\n"
        f"rm -f {t}"
    )
    if stamp and dest.startswith("/"):
        script += "\n" + stamp_script(dest, digest)
    actual = "absent" if not state.exists else f"sha256 {(state.sha256 or '?')[:12]} {have_meta}"
    verb = "+ install" if not state.exists else "~ replace"
    return Change(
        f"file {dest}",
        f"sha256 {digest[:12]} {want_meta}",
        actual,
        script,
        f"{verb} {dest} from {local} (sha256 {digest[:12]}, {local.stat().st_size} bytes)\n",
        upload=Upload(local, tmp),
    )


def plan_files(specs: Iterable[FileSpec], states: dict[str, FileState]) -> list[Change]:
    out = []
    for spec in specs:
        c = plan_file(spec, states.get(spec.path, FileState(spec.path, False)))
        if c is not None:
            out.append(c)
    return out
