"""Membership changes between the running cluster and the layout (scale-out, removal): pure planning.

A new host's master gets an even share of the slots, moved online from the masters holding more than
theirs (:func:`plan_slot_moves`); replicas are re-pointed to the rotation; nodes no longer in the layout
are forgotten once they hold no slot (one that still does is refused, with the way to drain it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.redis.errors import PlanError
from tasks.redis.plan import Layout, PlannedInstance, Role, Shard
from tasks.redis.slots import SlotRange, count_slots, format_ranges, ranges_from_slots, slots_of


@dataclass(frozen=True)
class Member:
    """A node as the running cluster sees it (input of :func:`plan_membership`)."""

    endpoint: str
    node_id: str
    role: Role
    master_id: str | None
    slots: tuple[SlotRange, ...] = ()
    # Whether this node is the layout's instance at `endpoint`. None: decide by endpoint. Set it when a stale
    # node id (an earlier incarnation of a reinstalled instance) shares the endpoint.
    in_layout: bool | None = None

    @property
    def slot_count(self) -> int:
        return count_slots(self.slots)


@dataclass(frozen=True)
class SlotMove:
    """Move ``slots`` online from master ``source`` to master ``target`` (endpoints)."""

    source: str
    target: str
    slots: tuple[SlotRange, ...]

    @property
    def count(self) -> int:
        return count_slots(self.slots)


@dataclass(frozen=True)
class Repoint:
    """Make ``replica`` replicate ``new_master``; ``current_master`` is the endpoint it follows now
    (None when it is a master without slots, e.g. a freshly started instance)."""

    replica: PlannedInstance
    current_master: str | None
    new_master: PlannedInstance


@dataclass(frozen=True)
class MembershipPlan:
    """What changes between the running cluster and the layout (after roles have been restored)."""

    new_shards: tuple[Shard, ...]
    repoints: tuple[Repoint, ...]
    slot_moves: tuple[SlotMove, ...]
    forget: tuple[Member, ...]

    @property
    def empty(self) -> bool:
        return not (self.new_shards or self.repoints or self.slot_moves or self.forget)


def plan_slot_moves(
    ownership: Mapping[str, Sequence[SlotRange]], masters: Sequence[str]
) -> tuple[SlotMove, ...]:
    """Give every master in ``masters`` that holds no slot an even share, taken proportionally from the
    masters that hold more than their even share.

    ``ownership`` maps a master to its slots; ``masters`` lists every master that should share the slots
    (existing and new). With N masters the targets are ``16384 // N`` or one more (the larger targets go to the
    masters holding most slots, so fewer slots move). The donated slots are the highest-numbered slots of each
    donor, so donors keep contiguous ranges. Returns no moves when no master is empty or no slot is assigned.
    """
    if len(set(masters)) != len(masters):
        raise PlanError("plan_slot_moves: duplicate master in the list")
    counts = {m: count_slots(ownership.get(m, ())) for m in masters}
    receivers = [m for m in masters if counts[m] == 0]
    total = sum(counts.values())
    if not receivers or total == 0:
        return ()
    n = len(masters)
    base, extra = divmod(total, n)
    by_size = sorted(masters, key=lambda m: (-counts[m], masters.index(m)))
    target = {m: base + (1 if k < extra else 0) for k, m in enumerate(by_size)}
    deficit = {m: target[m] for m in receivers}
    need = sum(deficit.values())
    surplus = {m: counts[m] - target[m] for m in masters if counts[m] > target[m]}
    available = sum(surplus.values())
    if available < need:  # cannot happen with the targets above; guard the arithmetic anyway
        raise PlanError(
            f"cannot find {need} slots for the new masters (only {available} above the even share)"
        )
    # Largest-remainder apportionment of `need` over the donors, proportional to their surplus.
    donors = [m for m in masters if m in surplus]
    shares = {m: need * surplus[m] // available for m in donors}
    remainder = need - sum(shares.values())
    for m in sorted(donors, key=lambda d: (-(need * surplus[d] % available), masters.index(d)))[:remainder]:
        shares[m] += 1
    moves: list[SlotMove] = []
    receiver_iter = iter(receivers)
    current = next(receiver_iter)
    still_needed = deficit[current]
    for donor in donors:
        give = sorted(slots_of(ownership.get(donor, ())))[counts[donor] - shares[donor] :]
        while give:
            take, give = give[:still_needed], give[still_needed:]
            moves.append(SlotMove(source=donor, target=current, slots=ranges_from_slots(take)))
            still_needed -= len(take)
            if still_needed == 0:
                nxt = next(receiver_iter, None)
                if nxt is None:
                    break
                current, still_needed = nxt, deficit[nxt]
    return tuple(moves)


def removal_error(member: Member, via: str) -> PlanError:
    """The refusal for a node that is not in the layout but still holds slots, with the way out."""
    prefix = member.node_id[:12]
    return PlanError(
        f"{member.endpoint} (node {member.node_id}) is not in the layout but is a master holding "
        f"{member.slot_count} slots ({format_ranges(member.slots)}); refusing to drop it (its keys would be "
        "lost). Move its slots away first, keeping the host in the inventory, e.g. "
        f"`REDISCLI_AUTH=… redis-cli --cluster rebalance {via} --cluster-weight {prefix}=0` (drains it) or "
        f"`redis-cli --cluster reshard {via} --cluster-from {member.node_id} --cluster-to <master id> "
        f"--cluster-slots {member.slot_count} --cluster-yes`; then remove the host from the inventory and run "
        "`nr run redis` again (it forgets the emptied instances)."
    )


def _check_roles(layout: Layout, by_endpoint: Mapping[str, Member]) -> None:
    """Membership is planned once every planned master is a master: refuse otherwise, saying why."""
    for shard in layout.shards:
        got = by_endpoint.get(shard.master.endpoint)
        if got is not None and got.role != "master":
            raise PlanError(
                f"shard {shard.number}: planned master {shard.master.label} is a replica; restore roles "
                "(CLUSTER FAILOVER) before planning membership changes"
            )
        rep = by_endpoint.get(shard.replica.endpoint)
        if rep is not None and rep.role == "master" and rep.slots:
            raise PlanError(
                f"{shard.replica.label} is planned as the replica of shard {shard.number} but is a master "
                f"holding {rep.slot_count} slots; it must give its slots to a planned master before it can "
                "replicate (restore roles with CLUSTER FAILOVER on the planned master)"
            )


def _repoints(
    layout: Layout, by_endpoint: Mapping[str, Member], by_id: Mapping[str, Member]
) -> list[Repoint]:
    """Planned replicas not following their planned master; fresh ones (masters without slots) first."""
    fresh: list[Repoint] = []
    moving: list[Repoint] = []
    for shard in layout.shards:
        rep = by_endpoint.get(shard.replica.endpoint)
        master = by_endpoint.get(shard.master.endpoint)
        if rep is not None and master is not None and rep.master_id == master.node_id:
            continue
        current = None
        if rep is not None and rep.role == "replica" and rep.master_id is not None:
            cur = by_id.get(rep.master_id)
            current = cur.endpoint if cur else rep.master_id
        (moving if current else fresh).append(Repoint(shard.replica, current, shard.master))
    return fresh + moving


def plan_membership(layout: Layout, members: Sequence[Member]) -> MembershipPlan:
    """Compare the running membership with ``layout`` (call it once every planned master is a master).

    * new shards: planned masters holding no slot while the cluster has slots -> slot moves to them;
    * repoints: planned replicas not replicating their planned master (re-rotation after a host was added
      or removed); replicas that are still masters without slots (fresh) come first, so no existing master
      is left without a replica while others are re-pointed;
    * forget: nodes not in the layout that hold no slot; a node not in the layout that holds slots is refused
      with :func:`removal_error`.
    """
    planned_endpoints = {i.endpoint for i in layout.instances}

    def planned(m: Member) -> bool:
        return m.endpoint in planned_endpoints if m.in_layout is None else m.in_layout

    by_endpoint = {m.endpoint: m for m in members if planned(m)}
    foreign = [m for m in members if not planned(m)]
    for m in foreign:
        if m.role == "master" and m.slots:
            raise removal_error(m, layout.shards[0].master.endpoint)
    _check_roles(layout, by_endpoint)
    ownership = {
        s.master.endpoint: by_endpoint[s.master.endpoint].slots
        for s in layout.shards
        if s.master.endpoint in by_endpoint
    }
    moves = plan_slot_moves(ownership, [s.master.endpoint for s in layout.shards])
    receiving = {mv.target for mv in moves}
    return MembershipPlan(
        new_shards=tuple(s for s in layout.shards if s.master.endpoint in receiving),
        repoints=tuple(_repoints(layout, by_endpoint, {m.node_id: m for m in members})),
        slot_moves=moves,
        forget=tuple(m for m in foreign if not (m.role == "master" and m.slots)),
    )
