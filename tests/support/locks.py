"""Reading the hashed lock files (pip-compile --generate-hashes format) and pyproject's requirements."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
TOOL_LOCK = ROOT / "locks" / "nr.txt"
DEV_LOCK = ROOT / "locks" / "dev.txt"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    hashes: tuple[str, ...]
    line: str


def read_lock(path: Path) -> dict[str, Pin]:
    """Every requirement of a lock file, by canonical name (options and comments skipped)."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise AssertionError(f"{path.name}: an option in a lock ({line[:60]!r})")
        spec, _, _ = line.partition(" --hash")
        requirement = Requirement(spec.strip())
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        name = canonicalize_name(requirement.name)
        pins[name] = Pin(name, versions[0] if len(versions) == 1 else "", tuple(HASH.findall(line)), line)
    return pins


def pyproject() -> dict[str, list[Requirement]]:
    """``dependencies`` and each optional extra of pyproject.toml, parsed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def requirements_in(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]
