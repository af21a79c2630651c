"""Validate raw inventory data (hosts, groups, defaults) before anything connects.

Every problem is collected (not only the first) and named by file, host or group, and field, so an
operator fixes the inventory in one pass. Paths and ``file:`` secret references are made absolute
(relative to the inventory folder) so later steps never depend on the working directory.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nr.contract import Field, Kind, Schema
from nr.inventory.schema import (
    CONNECTION_KEYS,
    CONNECTION_PLUGINS,
    DEFAULTS_KEYS,
    GROUP_KEYS,
    HOST_KEYS,
    SSH_EXTRAS,
)
from nr.secrets import SecretError, SecretRef

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class InventoryError(Exception):
    """The inventory is invalid; ``issues`` holds one message per problem."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = issues


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path, *, required: bool) -> Any:
    """Read one YAML file; a missing optional file reads as ``{}``. Errors name the file and line."""
    if not path.exists():
        if required:
            raise InventoryError([f"{path}: file not found"])
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InventoryError([f"{path}: {where}{exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise InventoryError([f"{path}: not valid YAML: {exc}"]) from None
    return {} if data is None else data


class _Validator:
    def __init__(self, raw: RawInventory, schema: Schema) -> None:
        self.raw = raw
        self.schema = schema
        self.issues: list[str] = []

    def err(self, where: str, message: str) -> None:
        self.issues.append(f"{where}: {message}")

    # -- values -------------------------------------------------------------------------------
    def check_value(self, where: str, f: Field, value: Any) -> Any:
        """Check ``value`` against ``f``; returns the normalized value (absolute paths, secret refs)."""
        before = len(self.issues)
        normalized = self._check_kind(where, f, value)
        if f.check is not None and len(self.issues) == before:
            problem = f.check(value)
            if problem:
                self.err(where, problem)
        return normalized

    def _check_kind(self, where: str, f: Field, value: Any) -> Any:
        if f.kind is Kind.PATH and _KIND_OK[Kind.PATH](value):
            p = Path(value).expanduser()
            return str(p if p.is_absolute() else (self.raw.base_dir / p).resolve())
        if f.kind is Kind.SECRET:
            return self._secret(where, value)
        if not _KIND_OK[f.kind](value):
            self.err(where, f"must be {f.kind.value}, got {_show(value, f.kind)}")
        elif f.kind is Kind.PORTS and len(set(value)) != len(value):
            self.err(where, f"ports must be distinct, got {value}")
        return value

    def _secret(self, where: str, value: Any) -> Any:
        """A typed :class:`SecretRef` (file paths made absolute); the value itself is never echoed."""
        try:
            ref = SecretRef.parse(value, self.raw.base_dir)
        except SecretError as exc:
            self.err(where, str(exc))
            return value
        if ref.kind == "file":
            return SecretRef("file", str(ref.path.resolve()))
        return SecretRef("env", ref.target)

    # -- one host / group / defaults entry ----------------------------------------------------
    def check_entry(self, where: str, entry: Any, allowed: set[str], group_names: set[str]) -> None:
        if not isinstance(entry, dict):
            self.err(where, f"must be a mapping of fields, got {_type(entry)}")
            return
        for key in entry:
            if key not in allowed:
                self.err(where, f"unknown field '{key}' (allowed: {', '.join(sorted(allowed))})")
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
        for key, (ok, want) in _FIELDS.items():
            if key in entry and not ok(entry[key]):
                self.err(f"{where}: {key}", f"must be {want}, got {_show(entry[key])}")
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
                self.err(where, f"unknown group '{g}' (not defined in {self.raw.groups_source})")
        if len(set(groups)) != len(groups):
            self.err(where, "lists a group twice")

    def check_data(self, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            self.err(where, f"must be a mapping, got {_type(data)}")
            return
        self.check_keys(where, data, self.schema.data, "unknown key")

    def check_keys(
        self, where: str, values: dict[str, Any], known: Mapping[str, Field], unknown: str
    ) -> None:
        """Every key of ``values`` must be in ``known``; values are checked and normalized in place."""
        for key, value in values.items():
            if key not in known:
                self.err(f"{where}.{key}", f"{unknown} (known: {', '.join(sorted(known))})")
            else:
                values[key] = self.check_value(f"{where}.{key}", known[key], value)

    def check_connection_options(self, where: str, options: Any) -> None:
        if not isinstance(options, dict):
            self.err(where, f"must be a mapping, got {_type(options)}")
            return
        for plugin, opts in options.items():
            w = f"{where}.{plugin}"
            if plugin not in CONNECTION_PLUGINS:
                self.err(w, f"unknown connection plugin (known: {', '.join(sorted(CONNECTION_PLUGINS))})")
            elif not isinstance(opts, dict):
                self.err(w, f"must be a mapping, got {_type(opts)}")
            else:
                self.check_plugin_options(w, opts)

    def check_plugin_options(self, where: str, opts: dict[str, Any]) -> None:
        for key in opts:
            if key not in CONNECTION_KEYS:
                self.err(where, f"unknown field '{key}' (allowed: {', '.join(sorted(CONNECTION_KEYS))})")
        if "port" in opts and not is_port(opts["port"]):
            self.err(f"{where}.port", f"must be a TCP port (1-65535), got {_show(opts['port'])}")
        if opts.get("password") is not None:
            opts["password"] = self.check_value(f"{where}.password", Field(Kind.SECRET, ""), opts["password"])
        extras = opts.get("extras")
        if extras is not None and not isinstance(extras, dict):
            self.err(f"{where}.extras", f"must be a mapping, got {_type(extras)}")
        elif extras is not None:
            self.check_keys(f"{where}.extras", extras, SSH_EXTRAS, "unknown option")

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
            self.check_entry(f"{gs}: group '{name}'", group, GROUP_KEYS, group_names)
            if isinstance(group, dict) and name in (group.get("groups") or []):
                self.err(f"{gs}: group '{name}': groups", "a group cannot be its own parent")
        self.check_group_cycles(groups)
        for name, host in raw.hosts.items():
            where = f"{hs}: host '{name}'"
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
                    self.err(f"{self.raw.groups_source}: group '{start}'", "groups form a cycle")
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
                    f"address {key[0]} is also used by {', '.join(o for o in others if o != name)}",
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
                    f"{self.raw.hosts_source}: host '{name}': data.node_ip", f"{ip} is used by another host"
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
    Kind.IP: lambda v: isinstance(v, str) and _is_ip(v),
    Kind.PATH: _nonempty,
    Kind.SECRET: lambda v: isinstance(v, str),
}

# The plain fields of a host, group or defaults entry: what each must be.
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hostname": (_nonempty, "a non-empty address"),
    "port": (is_port, "a TCP port (1-65535)"),
    "username": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "platform": (lambda v: isinstance(v, str), "a string"),
}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _type(value: Any) -> str:
    return {list: "a list", dict: "a mapping", str: "a string", int: "an integer", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any, kind: Kind | None = None) -> str:
    if kind is Kind.SECRET:
        return _type(value)  # never echo what might be a secret
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
