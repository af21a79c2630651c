"""Validate raw inventory data (hosts, groups, defaults) before anything connects.

Every problem is collected (not only the first) and named by file, host or group, and field, so an
operator fixes the inventory in one pass. Paths and ``file:`` secret references are made absolute
(relative to the inventory folder) so later steps never depend on the working directory.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nr import formats
from nr.contract import Field, Kind, Schema
from nr.inventory.files import ANY_FILE, PRIVATE_KEY, SECRET_FILE, TEXT_FILE, FileRule, file_problem
from nr.inventory.loader import InventoryError, load_yaml
from nr.inventory.schema import (
    CONNECTION_KEYS,
    CONNECTION_PLUGINS,
    DEFAULTS_KEYS,
    GROUP_KEYS,
    HOST_KEYS,
    SSH_EXTRAS,
)
from nr.secrets import SecretError, SecretRef
from nr.text import clip, printable

__all__ = ["InventoryError", "RawInventory", "load_yaml", "validate"]

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass
class RawInventory:
    """Inventory data as read from files or a plugin, before validation."""

    hosts: Any
    groups: Any = field(default_factory=dict)
    defaults: Any = field(default_factory=dict)
    hosts_source: str = "hosts.yaml"
    groups_source: str = "groups.yaml"
    defaults_source: str = "defaults.yaml"
    base_dir: Path = field(default_factory=Path.cwd)


class _Validator:
    def __init__(self, raw: RawInventory, schema: Schema) -> None:
        self.raw = raw
        self.schema = schema
        self.issues: list[str] = []

    def err(self, where: str, message: str) -> None:
        text = printable(f"{where}: {message}", newlines=False)
        self.issues.append(text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "...")

    # -- values -------------------------------------------------------------------------------
    def check_value(self, where: str, f: Field, value: Any, rule: FileRule = ANY_FILE) -> Any:
        """Check ``value`` against ``f`` (a path against ``rule``); returns the normalized value
        (absolute paths, secret refs)."""
        before = len(self.issues)
        normalized = self._check_kind(where, f, value, rule)
        if f.check is not None and len(self.issues) == before:
            problem = f.check(value)
            if problem:
                self.err(where, problem)
        return normalized

    def _check_kind(self, where: str, f: Field, value: Any, rule: FileRule) -> Any:
        if f.kind is Kind.PATH and _KIND_OK[Kind.PATH](value):
            p = Path(value).expanduser()
            path = p if p.is_absolute() else (self.raw.base_dir / p).resolve()
            self.check_file(where, path, rule)
            return str(path)
        if f.kind is Kind.SECRET:
            return self._secret(where, value)
        if not _KIND_OK[f.kind](value):
            self.err(where, f"must be {f.kind.value}, got {_show(value, f.kind)}")
        elif f.kind is Kind.PORTS and len(set(value)) != len(value):
            self.err(where, f"ports must be distinct, got {clip(value)}")
        return value

    def _secret(self, where: str, value: Any) -> Any:
        """A typed :class:`SecretRef` (file paths made absolute); the value itself is never echoed."""
        try:
            ref = SecretRef.parse(value, self.raw.base_dir)
        except SecretError as exc:
            self.err(where, str(exc))
            return value
        if ref.kind == "file":
            path = ref.path.resolve()
            self.check_file(where, path, SECRET_FILE, "secret file ")
            return SecretRef("file", str(path))
        return SecretRef("env", ref.target)

    def check_file(self, where: str, path: Path, rule: FileRule, what: str = "") -> None:
        problem = file_problem(path, rule)
        if problem:
            self.err(where, what + problem)

    # -- one host / group / defaults entry ----------------------------------------------------
    def check_entry(self, where: str, entry: Any, allowed: set[str], group_names: set[str]) -> None:
        if not isinstance(entry, dict):
            self.err(where, f"must be a mapping of fields, got {_type(entry)}")
            return
        for key in entry:
            if key not in allowed:
                self.err(where, f"unknown field '{clip(key)}' (allowed: {', '.join(sorted(allowed))})")
        self.check_fields(where, entry)
        if "groups" in entry:
            self.check_groups(f"{where}: groups", entry["groups"], group_names)
        if "data" in entry:
            if entry["data"] is None:
                entry["data"] = {}
            self.check_data(f"{where}: data", entry["data"])
        if "connection_options" in entry:
            self.check_connection_options(f"{where}: connection_options", entry["connection_options"])

    def check_fields(self, where: str, entry: dict[str, Any]) -> None:
        """hostname, port, username, platform and password of a host, group or defaults entry."""
        for key, check in _FIELDS.items():
            problem = check(entry[key]) if key in entry else None
            if problem:
                self.err(f"{where}: {key}", f"{problem}, got {_show(entry[key])}")
        if entry.get("password") is not None:
            entry["password"] = self.check_value(
                f"{where}: password", Field(Kind.SECRET, ""), entry["password"]
            )

    def check_groups(self, where: str, groups: Any, group_names: set[str]) -> None:
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            self.err(where, f"must be a list of group names, got {_show(groups)}")
            return
        for g in groups:
            if g not in group_names:
                self.err(where, f"unknown group '{clip(g)}' (not defined in {self.raw.groups_source})")
        if len(set(groups)) != len(groups):
            self.err(where, "lists a group twice")

    def check_data(self, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            self.err(where, f"must be a mapping, got {_type(data)}")
            return
        self.check_keys(where, data, self.schema.data, "unknown key")

    def check_keys(
        self,
        where: str,
        values: dict[str, Any],
        known: Mapping[str, Field],
        unknown: str,
        files: Mapping[str, FileRule] | None = None,
    ) -> None:
        """Every key of ``values`` must be in ``known``; values are checked and normalized in place."""
        for key, value in values.items():
            if key not in known:
                self.err(f"{where}.{clip(key)}", f"{unknown} (known: {', '.join(sorted(known))})")
            else:
                rule = (files or {}).get(key, ANY_FILE)
                values[key] = self.check_value(f"{where}.{key}", known[key], value, rule)

    def check_connection_options(self, where: str, options: Any) -> None:
        if not isinstance(options, dict):
            self.err(where, f"must be a mapping, got {_type(options)}")
            return
        for plugin, opts in options.items():
            w = f"{where}.{plugin}"
            if plugin not in CONNECTION_PLUGINS:
                w = f"{where}.{clip(plugin)}"
                self.err(w, f"unknown connection plugin (known: {', '.join(sorted(CONNECTION_PLUGINS))})")
            elif not isinstance(opts, dict):
                self.err(w, f"must be a mapping, got {_type(opts)}")
            else:
                self.check_plugin_options(w, opts)

    def check_plugin_options(self, where: str, opts: dict[str, Any]) -> None:
        for key in opts:
            if key not in CONNECTION_KEYS:
                self.err(where, f"unknown field '{key}' (allowed: {', '.join(sorted(CONNECTION_KEYS))})")
        for key, check in _FIELDS.items():
            problem = check(opts[key]) if key in opts else None
            if problem:
                self.err(f"{where}.{key}", f"{problem}, got {_show(opts[key])}")
        if opts.get("password") is not None:
            opts["password"] = self.check_value(f"{where}.password", Field(Kind.SECRET, ""), opts["password"])
        extras = opts.get("extras")
        if extras is not None and not isinstance(extras, dict):
            self.err(f"{where}.extras", f"must be a mapping, got {_type(extras)}")
        elif extras is not None:
            self.check_keys(f"{where}.extras", extras, SSH_EXTRAS, "unknown option", _SSH_FILES)

    # -- whole inventory -----------------------------------------------------------------------
    def run(self) -> None:
        raw = self.raw
        hs, gs, ds = raw.hosts_source, raw.groups_source, raw.defaults_source
        groups = raw.groups if raw.groups is not None else {}
        defaults = raw.defaults if raw.defaults is not None else {}
        if not isinstance(groups, dict):
            self.err(gs, f"must be a mapping of group name to group, got {_type(groups)}")
            groups = {}
        if not isinstance(defaults, dict):
            self.err(ds, f"must be a mapping of fields, got {_type(defaults)}")
            defaults = {}
        if not isinstance(raw.hosts, dict):
            self.err(hs, f"must be a mapping of host name to host, got {_type(raw.hosts)}")
            return
        if not raw.hosts:
            self.err(hs, "defines no hosts")
            return
        group_names = {str(g) for g in groups} | set(
            self.schema.role_groups
        )  # role groups need no definition
        self.check_entry(ds, defaults, DEFAULTS_KEYS, group_names)
        for name, group in groups.items():
            self.check_entry(f"{gs}: group '{clip(name)}'", group, GROUP_KEYS, group_names)
            if isinstance(group, dict) and name in (group.get("groups") or []):
                self.err(f"{gs}: group '{clip(name)}': groups", "a group cannot be its own parent")
        self.check_group_cycles(groups)
        for name, host in raw.hosts.items():
            where = f"{hs}: host '{clip(name)}'"
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.err(
                    where,
                    "name must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63 characters), "
                    "as it becomes the node's hostname",
                )
            self.check_entry(where, host, HOST_KEYS, group_names)
            if isinstance(host, dict) and "hostname" not in host:
                self.err(where, "missing field 'hostname' (the address to connect to)")
        self.check_uniqueness()
        self.check_roles(groups)

    def check_group_cycles(self, groups: dict[str, Any]) -> None:
        def parents(g: str) -> list[str]:
            entry = groups.get(g)
            ps = entry.get("groups") if isinstance(entry, dict) else None
            return [p for p in ps if isinstance(p, str)] if isinstance(ps, list) else []

        for start in groups:
            seen: set[str] = set()
            stack = list(parents(start))
            while stack:
                g = stack.pop()
                if g == start:
                    self.err(f"{self.raw.groups_source}: group '{clip(start)}'", "groups form a cycle")
                    break
                if g in seen:
                    continue
                seen.add(g)
                stack.extend(parents(g))

    def check_uniqueness(self) -> None:
        hosts = {n: h for n, h in self.raw.hosts.items() if isinstance(h, dict)}
        addrs = Counter(
            (str(h.get("hostname")).strip(), h.get("port", 22)) for h in hosts.values() if h.get("hostname")
        )
        for name, host in hosts.items():
            key = (str(host.get("hostname")).strip(), host.get("port", 22))
            if host.get("hostname") and addrs[key] > 1:
                others = [
                    n for n, h in hosts.items() if (str(h.get("hostname")).strip(), h.get("port", 22)) == key
                ]
                self.err(
                    f"{self.raw.hosts_source}: host '{name}': hostname",
                    f"address {clip(key[0])} is also used by {', '.join(o for o in others if o != name)}",
                )
        ips = Counter(
            str((h.get("data") or {}).get("node_ip"))
            for h in hosts.values()
            if (h.get("data") or {}).get("node_ip")
        )
        for name, host in hosts.items():
            ip = (host.get("data") or {}).get("node_ip") if isinstance(host.get("data"), dict) else None
            if ip and ips[str(ip)] > 1:
                self.err(
                    f"{self.raw.hosts_source}: host '{name}': data.node_ip",
                    f"{clip(ip)} is used by another host",
                )

    def host_groups(self, groups: dict[str, Any]) -> dict[str, set[str]]:
        """Every group a host belongs to, parents included."""

        def closure(names: list[str]) -> set[str]:
            out: set[str] = set()
            stack = list(names)
            while stack:
                g = stack.pop()
                if g in out:
                    continue
                out.add(g)
                entry = groups.get(g)
                if isinstance(entry, dict) and isinstance(entry.get("groups"), list):
                    stack.extend(p for p in entry["groups"] if isinstance(p, str))
            return out

        result: dict[str, set[str]] = {}
        for name, host in self.raw.hosts.items():
            gl = host.get("groups") if isinstance(host, dict) else None
            result[name] = closure([g for g in gl if isinstance(g, str)] if isinstance(gl, list) else [])
        return result

    def check_roles(self, groups: dict[str, Any]) -> None:
        """Every component's role rules, on every host's groups (parents included)."""
        if self.issues:
            return  # role rules assume well-formed entries
        membership = {h: frozenset(g) for h, g in self.host_groups(groups).items()}
        for rule in self.schema.rules:
            self.issues += rule(membership, self.raw.hosts_source)


def validate(raw: RawInventory, schema: Schema) -> None:
    """Raise :class:`InventoryError` listing every problem; normalizes paths and secret refs in place."""
    v = _Validator(raw, schema)
    v.run()
    if v.issues:
        raise InventoryError(v.issues)


def is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


_KIND_OK: dict[Kind, Callable[[Any], bool]] = {
    Kind.STR: _nonempty,
    Kind.INT: lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    Kind.BOOL: lambda v: isinstance(v, bool),
    Kind.PORT: is_port,
    Kind.PORTS: lambda v: isinstance(v, list) and bool(v) and all(is_port(p) for p in v),
    Kind.STR_LIST: lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
    Kind.STR_MAP: lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    Kind.IP: lambda v: isinstance(v, str) and formats.is_ip(v),
    Kind.PATH: _nonempty,
    Kind.SECRET: lambda v: isinstance(v, str),
}

# The plain fields of a host, group or defaults entry (and of connection options): what each must be.
# hostname and username reach ssh_config's `Match exec` lines (%h, %r), which run in a shell.
_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")


def _hostname_problem(value: Any) -> str | None:
    if not _nonempty(value):
        return "must be a non-empty address"
    return formats.address(value)


_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "hostname": _hostname_problem,
    "port": lambda v: None if is_port(v) else "must be a TCP port (1-65535)",
    "username": lambda v: (
        None
        if isinstance(v, str) and _USERNAME.match(v)
        else "must be a user name (letters, digits, '_', '.', '@', '-'; not starting with '-' or '.')"
    ),
    "platform": lambda v: None if isinstance(v, str) else "must be a string",
}
# what the files named in connection_options.fabric.extras must be
_SSH_FILES = {"key_filename": PRIVATE_KEY, "known_hosts": TEXT_FILE, "ssh_config": TEXT_FILE}
MESSAGE_LIMIT = 1000


def _type(value: Any) -> str:
    return {list: "a list", dict: "a mapping", str: "a string", int: "an integer", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any, kind: Kind | None = None) -> str:
    if kind is Kind.SECRET:
        return _type(value)  # never echo what might be a secret
    return clip(repr(value), 60)
