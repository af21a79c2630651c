"""Reading the cluster from the controller: every planned instance over TCP (:mod:`tasks.redis.resp`), in
parallel.

:func:`observe` reads CLUSTER MYID / INFO / NODES and INFO replication from every instance of the layout,
and with ``settings`` the running value of each (``CONFIG GET``, pipelined: one round trip). Unreachable or
auth-failed instances are recorded, not raised. Nothing here uses SSH.

Secrets: the password is a parameter of :func:`redis_connector` / :func:`observe` only (a
:class:`~nr.secrets.Secret` or its text). It is never stored in observations or errors: every error text
passes through :func:`scrub`, and running ``requirepass``/``masterauth`` values are kept only as whether
they equal the password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from nr.secrets import Secret
from tasks.redis import resp
from tasks.redis.config import REDACTED, SECRET_DIRECTIVES
from tasks.redis.errors import AccessError, ClusterParseError
from tasks.redis.parse import (
    ClusterInfo,
    ClusterNode,
    as_text,
    parse_cluster_info,
    parse_cluster_nodes,
    parse_info,
)
from tasks.redis.plan import Layout, PlannedInstance, format_endpoint

log = logging.getLogger(__name__)

Password = Secret | str
OTHER_SECRET = "<another value>"  # a running requirepass/masterauth that is not the inventory's password


def plain(password: Password | None) -> str | None:
    """The password's text, for AUTH and scrubbing (the one place observation code reveals it)."""
    return password.reveal() if isinstance(password, Secret) else password


def scrub(message: str, password: Password | None) -> str:
    value = plain(password)
    return message.replace(value, REDACTED) if value else message


class Access(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    WRONG_PASSWORD = "wrong-password"
    NO_PASSWORD = "no-password-configured"
    NOT_CLUSTER = "cluster-disabled"
    ERROR = "error"


@dataclass(frozen=True)
class InstanceState:
    """What one planned instance said about itself and the cluster (or why it could not be read)."""

    host: str
    address: str
    port: int
    access: Access
    error: str | None = None
    node_id: str | None = None
    info: ClusterInfo | None = None
    nodes: tuple[ClusterNode, ...] = ()
    replication: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)  # CONFIG GET of the settings asked for
    keys: int | None = None  # DBSIZE, when asked for (nr status)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)

    @property
    def reachable(self) -> bool:
        return self.access is Access.OK

    @property
    def myself(self) -> ClusterNode | None:
        return next((n for n in self.nodes if n.myself), None)

    def knows(self, node_id: str) -> bool:
        return any(n.node_id == node_id and not n.handshake for n in self.nodes)

    def describe_access(self) -> str:
        if self.access is Access.OK:
            return "reachable"
        return f"{self.access.value}: {self.error}" if self.error else self.access.value


@dataclass(frozen=True)
class ClusterObservation:
    instances: tuple[InstanceState, ...]

    def get(self, endpoint: str) -> InstanceState | None:
        return next((i for i in self.instances if i.endpoint == endpoint), None)

    @property
    def reachable(self) -> tuple[InstanceState, ...]:
        return tuple(i for i in self.instances if i.reachable)


class NodeClient(Protocol):
    """What the component uses of a Redis client (:class:`tasks.redis.resp.Client`: raw replies)."""

    def execute_command(self, *args: Any, **options: Any) -> Any: ...

    def pipeline(self, transaction: bool = False) -> Any: ...

    def close(self) -> None: ...


Connector = Callable[[str, int], NodeClient]


def redis_connector(password: Password, timeout: float = 5.0, username: str | None = None) -> Connector:
    """``connect(address, port)`` for clients that AUTH with ``password`` and return raw replies
    (:mod:`tasks.redis.resp`). No retries (an unreachable instance must fail fast); socket timeouts of
    ``timeout`` seconds."""

    def connect(address: str, port: int) -> NodeClient:
        return resp.Client(address, port, plain(password), username, timeout)

    return connect


def classify(exc: Exception, password: Password | None) -> tuple[Access, str]:
    message = scrub(str(exc), password) or type(exc).__name__
    lower = message.lower()
    if isinstance(exc, resp.AuthError):
        if lower.startswith("noauth"):
            return Access.WRONG_PASSWORD, f"authentication required: no password was sent ({message})"
        if "without any password configured" in lower or "no password is set" in lower:
            return Access.NO_PASSWORD, (
                "the instance has no password configured (requirepass is empty) but AUTH was sent; "
                f"render its redis.conf with requirepass ({message})"
            )
        return Access.WRONG_PASSWORD, f"authentication failed: the redis password is wrong ({message})"
    if isinstance(exc, resp.ReplyError) and "cluster support disabled" in lower:
        return Access.NOT_CLUSTER, f"cluster mode is disabled (cluster-enabled no): {message}"
    if isinstance(exc, OSError):  # resp.Unreachable, or a socket error of a client passed in
        return Access.UNREACHABLE, message
    return Access.ERROR, f"{type(exc).__name__}: {message}"


def _config(client: NodeClient, settings: Sequence[str], password: Password | None) -> dict[str, str]:
    """CONFIG GET of each setting in one pipeline (Redis 6 takes one pattern per CONFIG GET)."""
    if not settings:
        return {}
    pipe = client.pipeline(transaction=False)
    for name in settings:
        pipe.execute_command("CONFIG", "GET", name)
    values: dict[str, str] = {}
    for reply in pipe.execute():
        pairs = [as_text(x) for x in reply]
        values.update(zip(pairs[::2], pairs[1::2], strict=True))
    secret = plain(password)
    for name in SECRET_DIRECTIVES:
        if name in values:
            values[name] = REDACTED if values[name] == secret else (OTHER_SECRET if values[name] else "")
    return values


def _observe_instance(
    inst: PlannedInstance,
    connect: Connector,
    password: Password | None,
    settings: Sequence[str] = (),
    keys: bool = False,
) -> InstanceState:
    def failed(access: Access, error: str) -> InstanceState:
        return InstanceState(inst.host, inst.address, inst.port, access=access, error=error)

    try:
        client = connect(inst.address, inst.port)
    except Exception as exc:
        return failed(*classify(exc, password))
    try:
        node_id = as_text(client.execute_command("CLUSTER", "MYID"))
        info = parse_cluster_info(client.execute_command("CLUSTER", "INFO"))
        nodes = parse_cluster_nodes(client.execute_command("CLUSTER", "NODES"))
        replication = parse_info(client.execute_command("INFO", "replication"))
        config = _config(client, settings, password)
        dbsize = int(client.execute_command("DBSIZE")) if keys else None
    except ClusterParseError as exc:
        return failed(Access.ERROR, str(exc))
    except Exception as exc:
        return failed(*classify(exc, password))
    finally:
        try:
            client.close()
        except Exception:
            log.debug("closing the connection to %s failed", inst.endpoint, exc_info=True)
    return InstanceState(
        inst.host,
        inst.address,
        inst.port,
        access=Access.OK,
        node_id=node_id,
        info=info,
        nodes=nodes,
        replication=replication,
        config=config,
        keys=dbsize,
    )


def observe(
    layout: Layout,
    password: Password,
    timeout: float = 5.0,
    *,
    connect: Connector | None = None,
    settings: Sequence[str] = (),
    keys: bool = False,
) -> ClusterObservation:
    """Read every planned instance (in parallel); with ``settings``, their running values too, and
    with ``keys`` how many keys each holds (DBSIZE).

    Failures are recorded in :class:`InstanceState`, never raised.
    """
    conn = connect or redis_connector(password, timeout)
    instances = layout.instances
    with ThreadPoolExecutor(max_workers=min(16, len(instances))) as pool:
        states = list(pool.map(lambda i: _observe_instance(i, conn, password, settings, keys), instances))
    return ClusterObservation(instances=tuple(states))


def access_problems(observation: ClusterObservation) -> list[str]:
    """One line per instance that cannot be used (wrong password first)."""
    order = {Access.WRONG_PASSWORD: 0, Access.NO_PASSWORD: 1, Access.NOT_CLUSTER: 2}
    bad = sorted((i for i in observation.instances if not i.reachable), key=lambda i: order.get(i.access, 9))
    return [f"{i.label} ({i.endpoint}): {i.describe_access()}" for i in bad]


def require_access(observation: ClusterObservation) -> None:
    """Raise :class:`AccessError` unless every planned instance is reachable with the password."""
    problems = access_problems(observation)
    if not problems:
        return
    wrong = [i for i in observation.instances if i.access is Access.WRONG_PASSWORD]
    head = (
        "the redis password is wrong for " + ", ".join(i.label for i in wrong)
        if wrong
        else "cannot plan the Redis Cluster: not every instance is usable"
    )
    raise AccessError(
        head
        + "; nothing was changed:\n  "
        + "\n  ".join(problems)
        + "\n(start missing instances with `nr run redis`; a wrong password means the inventory secret "
        "differs from requirepass on the instances)"
    )
