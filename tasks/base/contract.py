"""What the base play reads from the inventory."""

from __future__ import annotations

from typing import Any

from nr.contract import Contract, Field, Kind
from nr.ops.apt import package_problem


def _packages_problem(value: Any) -> str | None:
    bad = [p for p in value if package_problem(p)]
    if bad:
        return f"{', '.join(repr(p) for p in bad[:3])}: {package_problem(bad[0])}"
    return None


CONTRACT = Contract(
    data={
        "packages": Field(
            Kind.STR_LIST, "extra Debian packages installed by the base play", _packages_problem
        ),
        "set_hostname": Field(Kind.BOOL, "set the host's hostname to its inventory name (default true)"),
    },
)
