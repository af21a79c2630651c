"""A session of cluster commands from the controller, and the conditions it waits for.

:class:`Session` keeps one client per instance for a run of actions, turns every failure into a
:class:`~tasks.redis.errors.ClusterError` naming the instance (never the password), and polls observations
until a condition holds (:meth:`Session.wait`, bounded). The ``pending_*`` functions are those conditions:
each returns what is still missing, or None.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.redis.actions import NodeRef
from tasks.redis.errors import AccessError, ClusterError
from tasks.redis.observe import (
    Access,
    ClusterObservation,
    Connector,
    NodeClient,
    Password,
    access_problems,
    classify,
    observe,
    require_access,
)
from tasks.redis.parse import as_text
from tasks.redis.plan import Layout
from tasks.redis.topology import consolidate, disagreements

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionResult:
    description: str
    seconds: float
    detail: str = ""


FATAL_ACCESS = frozenset({Access.WRONG_PASSWORD, Access.NO_PASSWORD, Access.NOT_CLUSTER})


class _Borrowed:
    """A cached client handed to observe(): its close() must not close the shared connection."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._client.execute_command(*args, **options)

    def pipeline(self, transaction: bool = False) -> Any:
        return self._client.pipeline(transaction)

    def close(self) -> None:
        return None


class Session:
    def __init__(
        self,
        layout: Layout,
        password: Password,
        connect: Connector,
        timeout: float,
        poll: float,
        migrate_batch: int,
        migrate_timeout_ms: int,
    ) -> None:
        self.layout = layout
        self.password = password
        self._connect = connect
        self.timeout = timeout
        self.poll = poll
        self.migrate_batch = migrate_batch
        self.migrate_timeout_ms = migrate_timeout_ms
        self._clients: dict[tuple[str, int], NodeClient] = {}

    def client(self, address: str, port: int) -> NodeClient:
        key = (address, port)
        if key not in self._clients:
            self._clients[key] = self._connect(address, port)
        return self._clients[key]

    def borrowed(self, address: str, port: int) -> NodeClient:
        return _Borrowed(self.client(address, port))

    def close(self) -> None:
        for client in self._clients.values():
            try:
                client.close()
            except Exception:
                log.debug("close failed", exc_info=True)
        self._clients.clear()

    def run(self, ref: NodeRef, *args: Any) -> Any:
        try:
            return self.client(ref.address, ref.port).execute_command(*args)
        except Exception as exc:
            raise self._error(ref, args, exc) from None

    def batch(self, ref: NodeRef, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        try:
            pipe = self.client(ref.address, ref.port).pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            result: list[Any] = pipe.execute()
            return result
        except Exception as exc:
            raise self._error(ref, commands[0], exc) from None

    def _error(self, ref: NodeRef, args: Sequence[Any], exc: Exception) -> ClusterError:
        access, text = classify(exc, self.password)
        command = " ".join(as_text(a) for a in args[:2])
        if access in (Access.WRONG_PASSWORD, Access.NO_PASSWORD, Access.UNREACHABLE):
            return AccessError(f"{ref.label} ({ref.endpoint}): {command}: {text}")
        return ClusterError(f"{ref.label} ({ref.endpoint}): {command} failed: {text}")

    def observe(self) -> ClusterObservation:
        return observe(self.layout, self.password, connect=self.borrowed)

    def wait(
        self,
        what: str,
        pending: Callable[[ClusterObservation], str | None],
        on_poll: Callable[[float], None] | None = None,
    ) -> None:
        """Poll observations until ``pending`` returns None; TimeoutError names what and the last reason."""
        start = time.monotonic()
        reason: str | None = "not observed yet"
        while True:
            obs = self.observe()
            if any(i.access in FATAL_ACCESS for i in obs.instances):
                require_access(obs)  # a wrong password or a non-cluster instance will not heal by waiting
            problems = access_problems(obs)
            reason = ("; ".join(problems) if problems else None) or pending(obs)
            if reason is None:
                return
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                raise TimeoutError(
                    f"timed out after {self.timeout:.0f} s waiting for {what}; still: {reason}"
                )
            if on_poll:
                on_poll(elapsed)
            time.sleep(self.poll)


# ----------------------------------------------------------------------------------- wait conditions


def pending_membership(layout: Layout, obs: ClusterObservation) -> str | None:
    ids = {s.endpoint: s.node_id for s in obs.reachable if s.node_id}
    for st in obs.reachable:
        for inst in layout.instances:
            other = ids.get(inst.endpoint)
            if other and other != st.node_id and not st.knows(other):
                return f"{st.label} does not know {inst.label} yet"
    return None


def pending_slots(layout: Layout, obs: ClusterObservation) -> str | None:
    topo = consolidate(layout, obs)
    problems = disagreements(obs, topo)
    if problems:
        return problems[0]
    for st in obs.reachable:
        me = st.myself
        if me is not None and me.migrations:
            return f"{st.label} still has open slots {[m.slot for m in me.migrations][:5]}"
    return None


def pending_roles(layout: Layout, obs: ClusterObservation, expected: Mapping[str, str | None]) -> str | None:
    """``expected`` maps node id -> master id (None: master). Self-reports, every view, replication links."""
    by_id = {s.node_id: s for s in obs.reachable if s.node_id}
    for node_id, master_id in expected.items():
        st = by_id.get(node_id)
        me = st.myself if st else None
        if st is None or me is None:
            continue
        if me.master_id != master_id or (master_id is None) != me.is_master:
            return f"{st.label} is not yet {'a master' if master_id is None else 'a replica of ' + master_id[:12]}"
        if master_id is not None and st.replication.get("master_link_status") != "up":
            return f"{st.label}: replication link to its master is not up yet"
        for view in obs.reachable:
            entry = next((n for n in view.nodes if n.node_id == node_id), None)
            if entry is not None and (entry.master_id != master_id or (master_id is None) != entry.is_master):
                return f"{view.label} does not see the new role of {st.label} yet"
    return None


def pending_state_ok(obs: ClusterObservation) -> str | None:
    for st in obs.reachable:
        if st.info is None or not st.info.ok:
            return f"{st.label}: cluster_state {st.info.summary() if st.info else 'unknown'}"
    return None


def pending_forgotten(obs: ClusterObservation, node_ids: Iterable[str]) -> str | None:
    for st in obs.reachable:
        for node_id in node_ids:
            if st.knows(node_id):
                return f"{st.label} still knows node {node_id[:12]}"
    return None


def planned_roles(layout: Layout, obs: ClusterObservation) -> dict[str, str | None]:
    ids = {s.endpoint: s.node_id for s in obs.reachable if s.node_id}
    out: dict[str, str | None] = {}
    for shard in layout.shards:
        m, r = ids.get(shard.master.endpoint), ids.get(shard.replica.endpoint)
        if m:
            out[m] = None
        if r and m:
            out[r] = m
    return out


def pending_layout(layout: Layout, obs: ClusterObservation) -> str | None:
    return (
        pending_state_ok(obs)
        or pending_slots(layout, obs)
        or pending_roles(layout, obs, planned_roles(layout, obs))
    )
