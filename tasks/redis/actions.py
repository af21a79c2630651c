"""The cluster actions nr plans and executes: MEET, ADDSLOTSRANGE, REPLICATE, FAILOVER, slot moves, FORGET.

Each action is a frozen value whose ``description`` is what ``nr`` prints. :mod:`tasks.redis.reconcile`
plans them from an observation; :mod:`tasks.redis.execute` performs them and waits after each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.redis.plan import format_endpoint
from tasks.redis.slots import SlotRange, count_slots, format_ranges


@dataclass(frozen=True)
class NodeRef:
    """An instance as actions address it: human label, where to connect, its node id."""

    label: str
    address: str
    port: int
    node_id: str

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)


@dataclass(frozen=True)
class Action:
    """Base of the planned actions; ``description`` is what ``nr`` prints."""

    kind: ClassVar[str] = "action"

    @property
    def description(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Meet(Action):
    """CLUSTER MEET ``node`` sent to ``seed`` (an instance already in the cluster)."""

    kind: ClassVar[str] = "meet"
    seed: NodeRef
    node: NodeRef

    @property
    def description(self) -> str:
        return f"MEET {self.node.endpoint} from {self.seed.endpoint}"


@dataclass(frozen=True)
class AddSlots(Action):
    """CLUSTER ADDSLOTSRANGE for unassigned slots on the planned master of ``shard``."""

    kind: ClassVar[str] = "addslots"
    node: NodeRef
    shard: int
    slots: tuple[SlotRange, ...]

    @property
    def description(self) -> str:
        bounds = " ".join(f"{r.start} {r.end}" for r in self.slots)
        return f"ADDSLOTSRANGE {bounds} on {self.node.label}"


@dataclass(frozen=True)
class Replicate(Action):
    """CLUSTER REPLICATE on ``replica`` so that it follows ``master``."""

    kind: ClassVar[str] = "replicate"
    replica: NodeRef
    master: NodeRef
    shard: int
    previous_master: str | None = None
    restore: bool = False  # step 1 of restoring a planned master that came back empty

    @property
    def description(self) -> str:
        if self.restore:
            return (
                f"REPLICATE {self.replica.label} -> current master of shard {self.shard} ({self.master.label}), "
                "so that FAILOVER can make it master again"
            )
        text = f"REPLICATE {self.replica.label} -> master of shard {self.shard} ({self.master.label})"
        if self.previous_master:
            text += f" (was replica of {self.previous_master})"
        return text


@dataclass(frozen=True)
class Failover(Action):
    """CLUSTER FAILOVER on the planned master ``node`` (currently a replica of ``current_master``).

    A plain CLUSTER FAILOVER is a coordinated, lossless switch: the master stops accepting writes, the replica
    catches up with the master's replication offset, then takes over and the old master becomes its replica.
    FORCE skips that handshake (only used when the current master is flagged failed, so it cannot take part:
    writes it acknowledged but had not replicated would be lost anyway). TAKEOVER (no majority vote, epoch
    bump by fiat) is never used by nr.
    """

    kind: ClassVar[str] = "failover"
    node: NodeRef
    shard: int
    current_master: NodeRef | None
    force: bool = False
    handover: bool = False  # before a restart of current_master: node takes over its shard for a while

    @property
    def description(self) -> str:
        if self.handover and self.current_master:
            return (
                f"FAILOVER on {self.node.label}: it takes over shard {self.shard} from "
                f"{self.current_master.label} before that one restarts"
            )
        verb = "FAILOVER FORCE" if self.force else "FAILOVER"
        text = f"{verb} on {self.node.label} to restore planned master of shard {self.shard}"
        if self.current_master:
            text += f" (current master {self.current_master.label})"
        return text


@dataclass(frozen=True)
class MoveSlots(Action):
    """Move ``slots`` online from ``source`` to ``target``: SETSLOT IMPORTING/MIGRATING, MIGRATE the keys in
    batches (AUTH inside the command), SETSLOT NODE on the target, the source and every master."""

    kind: ClassVar[str] = "move"
    source: NodeRef
    target: NodeRef
    shard: int
    slots: tuple[SlotRange, ...]
    masters: tuple[NodeRef, ...]
    resume: bool = False

    @property
    def count(self) -> int:
        return count_slots(self.slots)

    @property
    def description(self) -> str:
        what = "finish migrating" if self.resume else "MIGRATE"
        return (
            f"{what} {self.count} slots {format_ranges(self.slots, limit=4)} from {self.source.label} to "
            f"{self.target.label} (shard {self.shard}), keys moved online"
        )


@dataclass(frozen=True)
class SettleSlots(Action):
    """SETSLOT <slot> NODE <owner> on every master: closes importing/migrating markers left behind."""

    kind: ClassVar[str] = "settle"
    owner: NodeRef
    slots: tuple[SlotRange, ...]
    masters: tuple[NodeRef, ...]

    @property
    def description(self) -> str:
        return (
            f"SETSLOT NODE {self.owner.label} for slots {format_ranges(self.slots, limit=4)} on all masters "
            "(close a half-finished migration)"
        )


@dataclass(frozen=True)
class Forget(Action):
    """CLUSTER FORGET ``node`` on every instance of the layout (a node not in the layout, without slots)."""

    kind: ClassVar[str] = "forget"
    node: NodeRef
    on: tuple[NodeRef, ...]

    @property
    def description(self) -> str:
        return (
            f"FORGET {self.node.label} (node {self.node.node_id[:12]}, not in the layout, holds no slots) on "
            f"all {len(self.on)} instances"
        )
