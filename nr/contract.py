"""What a component declares about the inventory: its data keys, role groups and role rules.

The engine never names a component, a role or a data key of one. Each component exports a
:class:`Contract` (in a small module of its own, cheap to import), and the engine composes them:
the inventory schema and validator, ``nr inventory``'s role column, the lab and the Multipass
plugin (which groups generated hosts join, which secrets they generate, which ``nr lab up``
options map to data keys) all read the contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(Enum):
    """The type of an inventory value, as the validator checks it (the text is used in messages)."""

    STR = "a string"
    INT = "an integer"
    BOOL = "true or false"
    PORT = "a TCP port (1-65535)"
    PORTS = "a list of TCP ports"
    STR_LIST = "a list of strings"
    STR_MAP = "a mapping of strings to strings"
    SECRET = "a secret reference 'env:NAME' or 'file:PATH'"
    PATH = "a local file path"
    IP = "an IPv4 or IPv6 address"


# A value check beyond the kind: returns a problem ("must be ...") or None.
ValueCheck = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Field:
    """One inventory value: its kind, a line of help, and optionally a stricter check of its format."""

    kind: Kind
    help: str
    check: ValueCheck | None = None


@dataclass(frozen=True)
class RoleGroup:
    """An inventory group that gives its hosts a role (e.g. group ``web_servers`` -> role ``web-server``).

    ``default`` says whether host ``index`` (0-based) of ``count`` generated hosts joins the group in
    inventories the tool writes itself (the lab, ``nr vms``, the Multipass plugin).
    """

    name: str
    role: str
    help: str
    default: Callable[[int, int], bool] = lambda index, count: False


# host name -> every group of the host (parents included), in inventory order.
Membership = Mapping[str, frozenset[str]]
RoleRule = Callable[[Membership, str], list[str]]  # (membership, hosts file) -> problems


@dataclass(frozen=True)
class GeneratedSecret:
    """A secret that generated inventories create (random, 0600) and reference as ``data.<key>``."""

    key: str
    nbytes: int = 24


@dataclass(frozen=True)
class LabOption:
    """An ``nr lab up`` option that sets a data key in the lab inventory (remembered between ``up``s)."""

    flag: str  # "--tool-binary"
    key: str  # "tool_binary"
    help: str
    is_path: bool = True


@dataclass(frozen=True)
class RunOption:
    """An ``nr run`` option a component takes (e.g. ``--speed slow``). For that run it sets ``data.<key>``
    on every host, over the inventory's value; the key's :class:`Field` (declared in the same contract)
    checks the value. Only a play that runs a component declaring the option accepts it."""

    flag: str  # "--speed"
    key: str  # "tool_speed"
    help: str
    choices: Sequence[str] = ()  # the values it takes (any string when empty)


@dataclass(frozen=True)
class Contract:
    """Everything a component declares about the inventory. All parts are optional."""

    data: Mapping[str, Field] = field(default_factory=dict)
    roles: Sequence[RoleGroup] = ()
    rules: Sequence[RoleRule] = ()
    secrets: Sequence[GeneratedSecret] = ()
    lab_options: Sequence[LabOption] = ()
    # data keys set in the lab inventory (a string or a list of strings); "{lab_image}" is replaced by the
    # lab's base image, "{lab_subnet}" by the lab network's CIDR, "{lab_dir}" by the lab's folder (absolute)
    lab_data: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    # networks the component creates on hosts (e.g. a pod network): never a host's own address
    internal_networks: Sequence[str] = ()
    run_options: Sequence[RunOption] = ()


@dataclass(frozen=True)
class Schema:
    """The contracts of every registered component, composed (what the validator checks)."""

    data: Mapping[str, Field]
    roles: Sequence[RoleGroup]
    rules: Sequence[RoleRule]
    secrets: Sequence[GeneratedSecret]
    lab_options: Sequence[LabOption]
    lab_data: Mapping[str, str | Sequence[str]]
    internal_networks: Sequence[str] = ()

    @property
    def role_groups(self) -> dict[str, str]:
        return {r.name: r.role for r in self.roles}

    def default_groups(self, index: int, count: int) -> list[str]:
        """The role groups host ``index`` of ``count`` joins in a generated inventory."""
        return [r.name for r in self.roles if r.default(index, count)]


def compose(contracts: Mapping[str, Contract], common: Mapping[str, Field]) -> Schema:
    """One schema from the engine's ``common`` data keys and every component's contract.

    Two components may declare the same data key only with the same kind (they share the value).
    """
    data: dict[str, Field] = dict(common)
    owner: dict[str, str] = dict.fromkeys(common, "the engine")
    roles: dict[str, RoleGroup] = {}
    for name, c in contracts.items():
        for key, f in c.data.items():
            if key in data and data[key].kind is not f.kind:
                raise ValueError(
                    f"data key {key} is declared by {owner[key]} and {name} with different kinds"
                )
            data.setdefault(key, f)
            owner.setdefault(key, name)
        for r in c.roles:
            roles.setdefault(r.name, r)
    return Schema(
        data=data,
        roles=tuple(sorted(roles.values(), key=lambda r: r.name)),
        rules=tuple(rule for c in contracts.values() for rule in c.rules),
        secrets=tuple({s.key: s for c in contracts.values() for s in c.secrets}.values()),
        lab_options=tuple({o.flag: o for c in contracts.values() for o in c.lab_options}.values()),
        lab_data={k: v for c in contracts.values() for k, v in c.lab_data.items()},
        internal_networks=tuple(dict.fromkeys(n for c in contracts.values() for n in c.internal_networks)),
    )
