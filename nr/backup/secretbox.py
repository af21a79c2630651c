"""The secrets of a backup: never in clear; an encrypted file only when the operator gives a key.

A backup needs some secrets to be restored (a datastore encrypted with a cluster token is useless
without that token). nr never writes them in clear, not even 0600: backup folders get copied to other
machines and other people. What a backup always holds for each secret is its *reference* (where the
inventory keeps it: ``env:NAME``, ``file:PATH``, or a file nr generated) and a *fingerprint*: a salted,
deliberately slow hash (scrypt) that lets a restore check that the inventory holds the same secret
without the backup revealing it.

With ``--secrets-key env:NAME|file:PATH`` (a passphrase of at least 16 characters) the values go into
``secrets.enc`` too: AES-256-GCM under a key derived from the passphrase with scrypt (random salt and
nonce per file; the file's header is authenticated). A wrong passphrase or a modified file is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping

from nr.errors import NrError
from nr.secrets import Secret

FORMAT = "nr-secrets/1"
MIN_PASSPHRASE = 16
_N, _R, _P = 2**15, 8, 1  # scrypt cost for the key (about 0.1 s, 32 MiB)
_FP_SALT = b"nr-backup-fingerprint/1"


class BoxError(NrError):
    """The secrets file cannot be opened: wrong passphrase, modified, or not one."""


def fingerprint(value: str) -> str:
    """A slow, salted hash of a secret: comparable, not reversible (and costly to guess at)."""
    return hashlib.scrypt(value.encode(), salt=_FP_SALT, n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=16).hex()


def _key(passphrase: Secret, salt: bytes, n: int, r: int, p: int) -> bytes:
    text = passphrase.reveal()
    if len(text) < MIN_PASSPHRASE:
        raise BoxError(
            f"--secrets-key ({passphrase.source}): the passphrase has {len(text)} characters; use at least "
            f"{MIN_PASSPHRASE}"
        )
    return hashlib.scrypt(text.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 2**20, dklen=32)


def seal(values: Mapping[str, str], passphrase: Secret) -> bytes:
    """The encrypted file holding ``values`` (name -> secret value)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": FORMAT, "kdf": {"name": "scrypt", "n": _N, "r": _R, "p": _P}, "cipher": "AES-256-GCM"}
    header |= {"salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode()}
    aad = json.dumps(header, sort_keys=True).encode()
    plain = json.dumps(dict(values), sort_keys=True).encode()
    data = AESGCM(_key(passphrase, salt, _N, _R, _P)).encrypt(nonce, plain, aad)
    return (json.dumps({**header, "data": base64.b64encode(data).decode()}, indent=1) + "\n").encode()


def unseal(blob: bytes, passphrase: Secret, where: str = "secrets.enc") -> dict[str, str]:
    """The values of an encrypted file; BoxError when the passphrase is wrong or the file was changed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        doc = json.loads(blob)
        header = {k: v for k, v in doc.items() if k != "data"}
        if header.get("format") != FORMAT:
            raise BoxError(f"{where}: not an nr secrets file (format {header.get('format')!r})")
        kdf = header["kdf"]
        salt, nonce = base64.b64decode(header["salt"]), base64.b64decode(header["nonce"])
        key = _key(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        aad = json.dumps(header, sort_keys=True).encode()
        plain = AESGCM(key).decrypt(nonce, base64.b64decode(doc["data"]), aad)
    except InvalidTag:
        raise BoxError(f"{where}: the passphrase is wrong, or the file was modified") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BoxError(f"{where}: not a readable nr secrets file ({type(exc).__name__})") from None
    values = json.loads(plain)
    if not isinstance(values, dict):
        raise BoxError(f"{where}: not a readable nr secrets file")
    for value in values.values():
        Secret(str(value), "the backup")  # masked in every output from now on
    return {str(k): str(v) for k, v in values.items()}
