"""Performing the planned cluster actions, in order, waiting (bounded) after each step.

MEET, ADDSLOTSRANGE, REPLICATE and FORGET go out in groups; a FAILOVER and a slot move one at a time. Slots
move online the way the CLUSTER SETSLOT documentation describes (IMPORTING, MIGRATING, MIGRATE the keys,
NODE), so clients get ASK redirects for a slot only while it is open. MIGRATE carries the password as
``AUTH <password>`` inside the command sent over the controller's Redis connection (never a shell; no
client error names a command's arguments); Redis redacts it in SLOWLOG and MONITOR.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tasks.redis.actions import Action, AddSlots, Failover, Forget, Meet, MoveSlots, Replicate, SettleSlots
from tasks.redis.errors import ClusterError
from tasks.redis.observe import Connector, Password, plain, redis_connector
from tasks.redis.parse import parse_cluster_nodes
from tasks.redis.plan import Layout
from tasks.redis.session import (
    ActionResult,
    Session,
    pending_forgotten,
    pending_layout,
    pending_membership,
    pending_roles,
    pending_slots,
    pending_state_ok,
)
from tasks.redis.slots import slots_of

log = logging.getLogger(__name__)


def _groups(actions: Sequence[Action]) -> Iterator[list[Action]]:
    group: list[Action] = []
    for action in actions:
        if group and (type(action) is not type(group[0]) or isinstance(action, Failover | MoveSlots)):
            yield group
            group = []
        group.append(action)
    if group:
        yield group


def _do_meet(s: Session, group: list[Meet]) -> None:
    for a in group:
        s.run(a.seed, "CLUSTER", "MEET", a.node.address, a.node.port)
    s.wait("all instances to know each other (CLUSTER NODES)", lambda o: pending_membership(s.layout, o))


def _do_addslots(s: Session, group: list[AddSlots]) -> None:
    for a in group:
        args: list[Any] = ["CLUSTER", "ADDSLOTSRANGE"]
        for r in a.slots:
            args += [r.start, r.end]
        s.run(a.node, *args)
    s.wait("all instances to agree on slot ownership", lambda o: pending_slots(s.layout, o))


def _do_replicate(s: Session, group: list[Replicate]) -> None:
    for a in group:
        deadline = time.monotonic() + s.timeout
        while True:  # the replica must know the master id; MEET waits for that, gossip may still lag
            try:
                s.run(a.replica, "CLUSTER", "REPLICATE", a.master.node_id)
                break
            except ClusterError as exc:
                if "unknown node" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(s.poll)
    expected = {a.replica.node_id: a.master.node_id for a in group}
    s.wait(
        "replicas to follow their masters (" + ", ".join(a.replica.label for a in group) + ")",
        lambda o: pending_roles(s.layout, o, expected),
    )


# A manual failover that does not complete within Redis's CLUSTER_MF_TIMEOUT (5 s) is aborted; retry then.
_FAILOVER_RETRY_S = 6.0


def _do_failover(s: Session, a: Failover) -> None:
    args = ["CLUSTER", "FAILOVER"] + (["FORCE"] if a.force else [])
    if a.current_master and not a.force:
        # A coordinated failover needs the replica in sync with its master: wait for the replication link.
        before: dict[str, str | None] = {a.node.node_id: a.current_master.node_id}
        s.wait(
            f"{a.node.label} to be an in-sync replica of {a.current_master.label} before FAILOVER",
            lambda o: pending_roles(s.layout, o, before),
        )
    s.run(a.node, *args)
    sent = [time.monotonic()]

    def retry(_: float) -> None:
        if time.monotonic() - sent[0] < _FAILOVER_RETRY_S:
            return
        me = parse_cluster_nodes(s.run(a.node, "CLUSTER", "NODES"))
        if any(n.myself and n.is_replica for n in me):
            log.info("manual failover of %s did not complete yet; sending it again", a.node.label)
            s.run(a.node, *args)
        sent[0] = time.monotonic()

    expected: dict[str, str | None] = {a.node.node_id: None}
    if a.current_master and not a.force:
        expected[a.current_master.node_id] = a.node.node_id
    s.wait(
        f"{a.node.label} to be master of shard {a.shard} again and the cluster ok",
        lambda o: pending_roles(s.layout, o, expected) or pending_state_ok(o),
        on_poll=retry,
    )


def _migrate_keys(s: Session, a: MoveSlots, slot: int, count: int) -> int:
    """MIGRATE the keys of an open slot in batches. While the slot is MIGRATING the source creates no new
    keys (it answers ASK for missing ones), so a short GETKEYSINSLOT batch means the slot is empty."""
    moved = 0
    while count > 0:
        keys = s.run(a.source, "CLUSTER", "GETKEYSINSLOT", slot, s.migrate_batch)
        if not keys:
            break
        base: list[Any] = ["MIGRATE", a.target.address, a.target.port, "", 0, s.migrate_timeout_ms]
        auth: list[Any] = ["AUTH", plain(s.password), "KEYS", *keys]
        try:
            s.run(a.source, *base, *auth)
        except ClusterError as exc:
            if "BUSYKEY" not in str(exc):
                raise
            # A previous, interrupted run copied the key already; the source copy is the current one.
            s.run(a.source, *base, "REPLACE", *auth)
        moved += len(keys)
        if len(keys) < s.migrate_batch:
            break
    return moved


def _move_chunk(s: Session, a: MoveSlots, chunk: Sequence[int]) -> int:
    """The documented online move (CLUSTER SETSLOT docs) for a few slots at once, pipelined per node:
    IMPORTING on the target, MIGRATING on the source, MIGRATE the keys, NODE on the target (it bumps its
    epoch) and then on the source. The other masters are told in batches by the caller."""
    s.batch(a.target, [("CLUSTER", "SETSLOT", n, "IMPORTING", a.source.node_id) for n in chunk])
    replies = s.batch(
        a.source,
        [
            cmd
            for n in chunk
            for cmd in (
                ("CLUSTER", "SETSLOT", n, "MIGRATING", a.target.node_id),
                ("CLUSTER", "COUNTKEYSINSLOT", n),
            )
        ],
    )
    moved = 0
    for n, count in zip(chunk, replies[1::2], strict=True):
        if int(count):
            moved += _migrate_keys(s, a, n, int(count))
    node_cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.target.node_id) for n in chunk]
    s.batch(a.target, node_cmds)
    s.batch(a.source, node_cmds)
    return moved


def _do_move(s: Session, a: MoveSlots, batch: int = 128) -> str:
    """Move the slots online. Clients get ASK redirects for a slot only while it is open, so empty slots
    move in pipelined batches (open for a few round trips) and slots holding keys one at a time (open while
    their keys are MIGRATEd)."""
    others = [m for m in a.masters if m.node_id not in (a.source.node_id, a.target.node_id)]
    slots = sorted(slots_of(a.slots))
    counts: list[Any] = []
    for i in range(0, len(slots), 1024):
        counts += s.batch(a.source, [("CLUSTER", "COUNTKEYSINSLOT", n) for n in slots[i : i + 1024]])
    empty = [n for n, c in zip(slots, counts, strict=True) if not int(c)]
    full = [n for n, c in zip(slots, counts, strict=True) if int(c)]
    chunks = [empty[i : i + batch] for i in range(0, len(empty), batch)] + [[n] for n in full]
    moved = 0
    pending: list[int] = []

    def notify_others() -> None:
        cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.target.node_id) for n in pending]
        for m in others:
            s.batch(m, cmds)
        pending.clear()

    for chunk in chunks:
        moved += _move_chunk(s, a, chunk)
        pending.extend(chunk)
        if len(pending) >= batch:
            notify_others()
    notify_others()
    s.wait(
        f"all instances to agree that {a.target.label} owns {a.count} moved slots",
        lambda o: pending_slots(s.layout, o) or pending_state_ok(o),
    )
    return f"{moved} keys moved"


def _do_settle(s: Session, a: SettleSlots) -> None:
    cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.owner.node_id) for n in sorted(slots_of(a.slots))]
    s.batch(a.owner, cmds)
    for m in a.masters:
        if m.node_id != a.owner.node_id:
            s.batch(m, cmds)
    s.wait("open slots to be closed", lambda o: pending_slots(s.layout, o))


def _do_forget(s: Session, group: list[Forget]) -> None:
    # FORGET bans the id for 60 s on each node; send it everywhere quickly so gossip cannot re-add it.
    for a in group:
        for ref in a.on:
            try:
                s.run(ref, "CLUSTER", "FORGET", a.node.node_id)
            except ClusterError as exc:
                if "unknown node" not in str(exc).lower():
                    raise
    ids = [a.node.node_id for a in group]
    s.wait("the removed nodes to be forgotten", lambda o: pending_forgotten(o, ids))


def _perform(session: Session, group: list[Action]) -> str:
    """Run one group of actions (all of one kind; failovers and moves alone); returns a detail line."""
    first = group[0]
    if isinstance(first, Meet):
        _do_meet(session, [a for a in group if isinstance(a, Meet)])
    elif isinstance(first, AddSlots):
        _do_addslots(session, [a for a in group if isinstance(a, AddSlots)])
    elif isinstance(first, Replicate):
        _do_replicate(session, [a for a in group if isinstance(a, Replicate)])
    elif isinstance(first, Failover):
        _do_failover(session, first)
    elif isinstance(first, MoveSlots):
        return _do_move(session, first)
    elif isinstance(first, SettleSlots):
        for a in group:
            if isinstance(a, SettleSlots):
                _do_settle(session, a)
    elif isinstance(first, Forget):
        _do_forget(session, [a for a in group if isinstance(a, Forget)])
    else:
        raise ClusterError(f"unknown action {first!r}")
    return ""


def execute(
    actions: Sequence[Action],
    layout: Layout,
    password: Password,
    *,
    timeout: float = 60.0,
    connect: Connector | None = None,
    poll: float = 0.2,
    migrate_batch: int = 100,
    progress: Callable[[str], None] | None = None,
    settle: bool = True,
) -> list[ActionResult]:
    """Perform ``actions`` (from :func:`~tasks.redis.reconcile.plan_actions` for the same ``layout``) in
    order and wait after each step (at most ``timeout`` seconds per wait, TimeoutError names what was
    awaited). With ``settle``, wait at the end until the cluster matches the layout and every instance
    reports cluster_state:ok (not while a rolling restart keeps shards on their replicas on purpose)."""
    if not actions:
        return []
    io_timeout = min(30.0, max(5.0, timeout / 2))
    session = Session(
        layout,
        password,
        connect or redis_connector(password, timeout=io_timeout),
        timeout,
        poll,
        migrate_batch,
        migrate_timeout_ms=int(io_timeout * 500),
    )
    results: list[ActionResult] = []
    try:
        for group in _groups(actions):
            start = time.monotonic()
            for a in group:
                log.info("redis: %s", a.description)
                if progress:
                    progress(a.description)
            detail = _perform(session, group)
            seconds = time.monotonic() - start
            results.extend(ActionResult(a.description, seconds / len(group), detail) for a in group)
        if settle:
            session.wait(
                "the cluster to match the layout (cluster_state:ok, slots agreed, planned roles)",
                lambda o: pending_layout(layout, o),
            )
    finally:
        session.close()
    return results
