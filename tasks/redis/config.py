"""One redis-server instance's configuration: options, paths, the rendered redis.conf (pure).

Secrets: the password is an argument of :func:`render_redis_conf` only; it appears verbatim (inside double
quotes) on the ``requirepass`` and ``masterauth`` lines and nowhere else. Diffs of the file mask those two
lines whatever their value (:data:`SECRET_DIRECTIVES`), so a hand-edited or old password never prints
either. :func:`render_redis_conf_redacted` renders the same file with a placeholder for previews.
:func:`runtime_settings` is what ``CONFIG GET`` of a process started with the file answers, for
:mod:`tasks.redis.runtime` to tell an instance still running an older config.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from tasks.redis.contract import (
    BUS_PORT_OFFSET,
    NODE_TIMEOUT_DEFAULT_MS,
    NODE_TIMEOUT_MAX_MS,
    NODE_TIMEOUT_MIN_MS,
    PASSWORD_MIN_LENGTH,
)
from tasks.redis.errors import PlanError
from tasks.redis.plan import Layout

REDACTED = "<redacted>"
SECRET_DIRECTIVES = ("requirepass", "masterauth")

_MANAGED_DIRECTIVES = frozenset(
    {
        "bind",
        "port",
        "requirepass",
        "masterauth",
        "masteruser",
        "user",
        "cluster-enabled",
        "cluster-config-file",
        "include",
        "rename-command",
        "dir",
        "pidfile",
        "logfile",
        "dbfilename",
    }
)


@dataclass(frozen=True)
class RedisConfigOptions:
    """Cluster-wide redis.conf settings and the on-host paths (defaults fit Debian's redis-server@.service).

    Debian bookworm's ``redis-server@.service`` (redis-server 7.0.15) runs
    ``/usr/bin/redis-server /etc/redis/redis-%i.conf --supervised systemd --daemonize no`` with ``Type=notify``,
    ``PIDFile=/run/redis-%i/redis-server.pid``, ``RuntimeDirectory=redis-%i``, ``User=redis``,
    ``ProtectSystem=strict`` and writable paths ``/var/lib/redis``, ``/var/log/redis``, ``/var/run/redis-%i``
    and ``/etc/redis``. So with ``%i`` = the port: the config is ``/etc/redis/redis-7000.conf``, the pidfile
    ``/run/redis-7000/redis-server.pid``, data under ``/var/lib/redis/7000`` (must exist, owned by redis),
    logs under ``/var/log/redis`` and the cluster state file ``/etc/redis/nodes-7000.conf`` (Redis rewrites
    it; /etc/redis is writable for the unit and owned by redis). ``daemonize no`` + ``supervised systemd``
    repeat what ExecStart forces, so the file also works when started by hand.
    """

    cluster_node_timeout_ms: int = NODE_TIMEOUT_DEFAULT_MS
    require_full_coverage: bool = True
    protected_mode: bool = True
    # Placement is managed by nr: do not let Redis move replicas to orphaned masters behind our back (a
    # transiently doubled replica during scale-out could otherwise land on its new master's host).
    allow_replica_migration: bool = False
    appendonly: bool = True
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    supervised: Literal["systemd", "no", "auto"] = "systemd"
    loglevel: Literal["debug", "verbose", "notice", "warning"] = "notice"
    conf_dir: str = "/etc/redis"
    data_root: str = "/var/lib/redis"
    log_dir: str = "/var/log/redis"
    run_dir_template: str = "/run/redis-{port}"
    extra_bind: tuple[str, ...] = ()
    # Announce the inventory address on the cluster bus (cluster-announce-ip) and originate bus and
    # replication connections from it (bind-source-addr, Redis >= 7.0). Without it a node records a peer under
    # the *source* address of the peer's connection, which is wrong on multi-homed hosts (and on loopback
    # aliases, where every peer would appear as 127.0.0.1).
    announce_address: bool = True
    maxmemory: str | None = None
    maxmemory_policy: str | None = None
    # Further "directive value" lines, rendered verbatim after the settings above (tuning, tests).
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        timeout = self.cluster_node_timeout_ms
        if not NODE_TIMEOUT_MIN_MS <= timeout <= NODE_TIMEOUT_MAX_MS:
            raise PlanError(
                f"cluster_node_timeout_ms {timeout} is too {'small' if timeout < NODE_TIMEOUT_MIN_MS else 'large'} "
                f"(use {NODE_TIMEOUT_MIN_MS}-{NODE_TIMEOUT_MAX_MS} ms; Redis's default is 15000, test setups use "
                "2000-5000)"
            )
        for name, value in (
            ("conf_dir", self.conf_dir),
            ("data_root", self.data_root),
            ("log_dir", self.log_dir),
            ("run_dir_template", self.run_dir_template),
        ):
            if not value.startswith("/") or any(c.isspace() for c in value):
                raise PlanError(f"{name} {value!r} must be an absolute path without whitespace")
        for name, value in self.extra:
            if (
                not name
                or any(c.isspace() for c in name)
                or "\n" in value
                or "\r" in value
                or name.lower() in _MANAGED_DIRECTIVES
            ):
                raise PlanError(
                    f"extra redis.conf directive {name!r} is invalid or managed by nr (one line, not one of "
                    f"{', '.join(sorted(_MANAGED_DIRECTIVES))})"
                )
        for addr in self.extra_bind:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise PlanError(f"extra_bind {addr!r} is not an IP address") from None


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to render one instance's redis.conf (no secret in here)."""

    host: str
    address: str
    port: int
    options: RedisConfigOptions = field(default_factory=RedisConfigOptions)

    @property
    def unit(self) -> str:
        return f"redis-server@{self.port}.service"

    @property
    def conf_path(self) -> str:
        return f"{self.options.conf_dir}/redis-{self.port}.conf"

    @property
    def cluster_config_file(self) -> str:
        return f"{self.options.conf_dir}/nodes-{self.port}.conf"

    @property
    def dir(self) -> str:
        return f"{self.options.data_root}/{self.port}"

    @property
    def dbfilename(self) -> str:
        return f"dump-{self.port}.rdb"

    @property
    def appendfilename(self) -> str:
        return f"appendonly-{self.port}.aof"

    @property
    def logfile(self) -> str:
        return f"{self.options.log_dir}/redis-server-{self.port}.log"

    @property
    def run_dir(self) -> str:
        return self.options.run_dir_template.format(port=self.port)

    @property
    def pidfile(self) -> str:
        return f"{self.run_dir}/redis-server.pid"


def instance_configs(layout: Layout, options: RedisConfigOptions | None = None) -> tuple[InstanceConfig, ...]:
    """One :class:`InstanceConfig` per instance, in :attr:`Layout.instances` order."""
    opts = options or RedisConfigOptions()
    return tuple(InstanceConfig(i.host, i.address, i.port, opts) for i in layout.instances)


_PASSWORD_FORBIDDEN = set(" \t\r\n\"'\\")


def validate_password(password: str) -> None:
    """Require a password of at least 16 characters that can sit verbatim inside double quotes in redis.conf.

    The message never contains the password.
    """
    if not isinstance(password, str) or not password:
        raise PlanError("the redis password is empty; requirepass and masterauth need a password")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise PlanError(
            f"the redis password has {len(password)} characters; use at least {PASSWORD_MIN_LENGTH} (the "
            "cluster's client ports answer anyone the firewall lets through, and AUTH is cheap to guess at)"
        )
    bad = [c for c in password if c in _PASSWORD_FORBIDDEN or not c.isprintable() or not c.isascii()]
    if bad:
        raise PlanError(
            "the redis password contains characters that redis.conf would need to escape (whitespace, "
            "quotes, backslash or non-printable/non-ASCII); use printable ASCII without those so it appears "
            "verbatim in redis.conf and can be masked"
        )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _render(config: InstanceConfig, secret_line: str) -> str:
    o = config.options
    bind = " ".join((config.address, *o.extra_bind))
    lines = [
        # The header names the module the file came from before tasks/redis became a package: kept byte
        # for byte, so that upgrading nr does not rewrite every instance's config.
        f"# Managed by nr (tasks/redis.py): redis-server@{config.port} on {config.host}. Do not edit by hand.",
        "# Cluster state lives in cluster-config-file and is rewritten by Redis itself; the role of this",
        "# instance (master/replica) is set at run time by nr and deliberately not part of this file.",
        f"bind {bind}",
        f"port {config.port}",
        f"protected-mode {_yes(o.protected_mode)}",
        "daemonize no",
        f"supervised {o.supervised}",
        f"pidfile {config.pidfile}",
        f"loglevel {o.loglevel}",
        f"logfile {config.logfile}",
        f"dir {config.dir}",
        f"dbfilename {config.dbfilename}",
        f"appendonly {_yes(o.appendonly)}",
        f'appendfilename "{config.appendfilename}"',
        f"appendfsync {o.appendfsync}",
        "cluster-enabled yes",
        f"cluster-config-file {config.cluster_config_file}",
        f"cluster-node-timeout {o.cluster_node_timeout_ms}",
        f"cluster-require-full-coverage {_yes(o.require_full_coverage)}",
        f"cluster-allow-replica-migration {_yes(o.allow_replica_migration)}",
        f"cluster-port {config.port + BUS_PORT_OFFSET}",
    ]
    if o.announce_address:
        lines.append(f"cluster-announce-ip {config.address}")
        lines.append(f"bind-source-addr {config.address}")
    if o.maxmemory:
        lines.append(f"maxmemory {o.maxmemory}")
    if o.maxmemory_policy:
        lines.append(f"maxmemory-policy {o.maxmemory_policy}")
    lines.extend(f"{name} {value}" for name, value in o.extra)
    lines.append(f'requirepass "{secret_line}"')
    lines.append(f'masterauth "{secret_line}"')
    return "\n".join(lines) + "\n"


def render_redis_conf(config: InstanceConfig, password: str) -> str:
    """The instance's redis.conf. ``password`` appears verbatim only in ``requirepass "…"`` and
    ``masterauth "…"`` (the last two lines), so replacing the exact string masks it in diffs."""
    validate_password(password)
    return _render(config, password)


def render_redis_conf_redacted(config: InstanceConfig) -> str:
    """The same file with ``<redacted>`` in place of the password (for previews and logs)."""
    return _render(config, REDACTED)


# CONFIG GET answers memory sizes in bytes; redis.conf accepts units (src/util.c memtoull: k=1000, kb=1024, ...)
_MEMORY_DIRECTIVES = frozenset({"maxmemory"})
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_MEMORY = re.compile(r"^(\d+)([a-z]*)$")


def memory_bytes(value: str) -> str:
    """``100mb`` -> ``104857600`` as Redis reads it; other text unchanged."""
    m = _MEMORY.match(value.strip().lower())
    if m is None or m.group(2) not in _UNITS:
        return value
    return str(int(m.group(1)) * _UNITS[m.group(2)])


def runtime_settings(config: InstanceConfig) -> dict[str, str]:
    """Every directive of the rendered file -> what ``CONFIG GET`` answers when the process runs with it.

    Derived from the rendered text itself, so a directive added to the file is compared at run time too.
    ``requirepass``/``masterauth`` map to :data:`REDACTED` (the caller compares them with the password).
    """
    out: dict[str, str] = {}
    for line in render_redis_conf_redacted(config).splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out[name.lower()] = memory_bytes(value) if name in _MEMORY_DIRECTIVES else value
    return out
