"""SSH client keys and MAC checks at the cost of one host, not of every host.

* The inventory's private key is parsed once per run (:func:`preload`): given only its file name,
  paramiko's ``SSHClient._auth`` parses the file once for every key class it tries (RSA, ECDSA, then
  Ed25519: three parses of an Ed25519 key) on every connection. The key is handed to paramiko loaded
  (``pkey``, which ``_auth`` tries first, as it would have tried that file first); a file paramiko
  cannot load by itself (a passphrase, a type it does not know) is left to it by name, so its error
  is the one it gives today.
* Paramiko checks each packet's MAC, and each hashed ``known_hosts`` name, with a Python loop
  (``paramiko.util.constant_time_bytes_eq``: ~5 us for a 32-byte MAC, and for every hashed entry of
  a known_hosts file on every lookup). :func:`compare_in_c` gives it the standard library's
  ``hmac.compare_digest``, the same constant-time comparison in C (~0.1 us).
"""

from __future__ import annotations

import hmac
import threading
from pathlib import Path
from typing import Any

import paramiko
import paramiko.hostkeys
import paramiko.util

_loaded: dict[tuple[object, ...], paramiko.PKey | None] = {}
_lock = threading.Lock()
CERT_SUFFIX = "-cert.pub"  # paramiko loads <key>-cert.pub beside a key (PKey.from_path, SSHClient)


def _identity(path: Path) -> tuple[object, ...] | None:
    """The key file and its certificate as they are now (a changed file is loaded again)."""
    found: list[object] = [str(path)]
    for file in (path, Path(str(path) + CERT_SUFFIX)):
        try:
            st = file.stat()
        except FileNotFoundError:
            found.append(None)
            continue
        except OSError:
            return None
        found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(found)


def load_once(path: Path) -> paramiko.PKey | None:
    """The private key in ``path`` (with its certificate, if one is beside it), parsed once per run;
    None when paramiko cannot load it without help (encrypted, unknown type, unreadable)."""
    ident = _identity(path)
    if ident is None or ident[1] is None:
        return None
    with _lock:
        if ident not in _loaded:
            try:
                _loaded[ident] = paramiko.PKey.from_path(path)
            except Exception:  # paramiko tries the file by name, and reports it, as it does today
                _loaded[ident] = None
        return _loaded[ident]


def preload(connect_kwargs: dict[str, Any]) -> None:
    """Hand paramiko the connection's first key file loaded (``pkey``) instead of by name; the other
    names (ssh_config's IdentityFile) stay, tried after it as before."""
    names = connect_kwargs.get("key_filename")
    if connect_kwargs.get("pkey") is not None or not names:
        return
    names = [names] if isinstance(names, str) else list(names)
    key = load_once(Path(names[0]).expanduser())
    if key is None:
        return
    connect_kwargs["pkey"] = key
    if names[1:]:
        connect_kwargs["key_filename"] = names[1:]
    else:
        del connect_kwargs["key_filename"]


def _equal(a: bytes | str, b: bytes | str) -> bool:
    """``constant_time_bytes_eq``'s answer (str or bytes, equal or not), compared in C."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass") if isinstance(a, str) else bytes(a),
        b.encode("utf-8", "surrogatepass") if isinstance(b, str) else bytes(b),
    )


def compare_in_c() -> None:
    """Paramiko's MAC and hashed-host comparisons through :func:`_equal` (once; harmless again)."""
    paramiko.util.constant_time_bytes_eq = _equal  # packet.py calls it as util.constant_time_bytes_eq
    setattr(paramiko.hostkeys, "constant_time_bytes_eq", _equal)  # noqa: B010 (imported by name, not in the stubs)
