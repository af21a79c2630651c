"""Debian packages: which are installed (one ``dpkg-query``), and the change that installs the rest.

Package names come from inventories, so they are validated (Debian policy: ``[a-z0-9][a-z0-9+.-]+``,
optionally ``=version``) and passed after ``--``: a name can never become an apt-get option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from shlex import quote
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # package_problem serves the inventory validator, which loads nothing else of this
    from nr.changes import Change
    from nr.facts import Fact, Output

_NAME = r"[a-z0-9][a-z0-9+.-]+"
_VERSION = r"[0-9][A-Za-z0-9.+~:-]*"
PACKAGE_RE = re.compile(rf"^{_NAME}(={_VERSION})?$")

INSTALL = (
    "export DEBIAN_FRONTEND=noninteractive\n"
    "apt-get update -qq\n"
    "apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold -- {pkgs} >/dev/null"
)


def package_problem(spec: object) -> str | None:
    """Why ``spec`` is not a Debian package name (optionally ``name=version``), or None."""
    if not isinstance(spec, str) or not PACKAGE_RE.match(spec):
        return (
            "must be a Debian package name (lowercase letters, digits, '+', '-', '.'; optionally "
            "=VERSION), not an option or a path"
        )
    return None


@dataclass(frozen=True)
class Package:
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Package:
        name, _, version = spec.partition("=")
        return cls(name, version or None)

    def __str__(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


def _parse_installed(out: Output) -> dict[str, str]:
    """``dpkg-query`` lines ``name status version`` -> installed name -> version."""
    found: dict[str, str] = {}
    for line in out.text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "installed":
            found[parts[0]] = parts[2] if len(parts) > 2 else ""
    return found


def installed(names: Iterable[str], fact_name: str = "packages") -> Fact[dict[str, str]]:
    """The installed packages among ``names``, with their versions (missing ones are just absent)."""
    pkgs = " ".join(quote(Package.parse(n).name) for n in names)
    command = (
        f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}} ${{Version}}\\n' -- {pkgs} 2>/dev/null || true"
    )
    from nr.facts import Fact

    return Fact(fact_name, command, _parse_installed)


def missing(wanted: Sequence[str], have: dict[str, str]) -> list[Package]:
    out = []
    for spec in wanted:
        p = Package.parse(spec)
        if p.name not in have or (p.version is not None and have[p.name] != p.version):
            out.append(p)
    return out


def plan_packages(wanted: Sequence[str], have: dict[str, str]) -> Change | None:
    """Install every package of ``wanted`` that ``have`` lacks (or has in another version)."""
    todo = missing(wanted, have)
    if not todo:
        return None
    from nr.changes import Change

    names = [str(p) for p in todo]
    return Change(
        f"packages {' '.join(names)}",
        "installed",
        "not installed",
        INSTALL.format(pkgs=" ".join(quote(n) for n in names)),
        "".join(f"+ package {n}\n" for n in names),
    )
