"""What the site looks like when a patch run stops, read live, and how to go on from there.

A run stops at the first host that does not come back healthy; the hosts after it are left untouched.
The report names, host by host, what was done (patched, how far the stopped one got, untouched),
where every Redis shard's master is now against the plan, which k3s nodes are not Ready or still
cordoned, and the commands that continue: fix the host, then run the play again for it and the rest
(``--limit``), which ends by restoring the planned Redis roles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from shlex import quote

from nr.errors import NrError
from nr.ops.kubectl import KubectlError
from nr.play import PlayContext
from tasks.k3s.contract import KUBECTL
from tasks.patch import kube
from tasks.patch.cluster import RedisSide
from tasks.patch.plan import PatchSite, Settings
from tasks.redis.topology import consolidate

UP_TO_DATE = "up to date, nothing to do"


@dataclass
class Progress:
    """What was done so far, host by host (in order), and which nodes this run cordoned."""

    done: dict[str, list[str]] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    finished: list[str] = field(default_factory=list)  # hosts patched and back in service
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # host -> step -> duration

    def timing(self, host: str) -> str:
        steps = self.seconds.get(host, {})
        parts = ", ".join(f"{step} {s:.0f} s" for step, s in steps.items())
        return f"{host} patched in {sum(steps.values()):.0f} s ({parts})"

    def add(self, host: str, what: str) -> None:
        self.done.setdefault(host, []).append(what)


def redis_lines(side: RedisSide) -> list[str]:
    obs = side.observe()
    topo = consolidate(side.site.layout, obs)
    owners = topo.owners()
    lines = []
    for shard in side.site.layout.shards:
        owner = topo.nodes.get(owners.get(shard.slots[0].start, ""))
        planned = topo.planned(shard.master)
        if owner is None:
            lines.append(f"shard {shard.number}: no master (its slots are not served)")
        elif owner.label != shard.master.label:
            how = "down" if planned is None or planned.down else "now its replica"
            lines.append(
                f"shard {shard.number}: mastered by {owner.label} (planned: {shard.master.label}, {how})"
            )
    down = [i.label for i in obs.instances if not i.reachable]
    if down:
        lines.append(f"instances not answering: {', '.join(down)}")
    bad = sorted({i.label for i in obs.reachable if i.info is not None and not i.info.ok})
    if bad:
        lines.append(f"cluster_state not ok on {', '.join(bad)}")
    return lines or ["every shard on its planned master, cluster ok"]


def k3s_lines(ctx: PlayContext, site: PatchSite) -> list[str]:
    if site.first is None:
        return []
    try:
        found = kube.nodes(ctx.remote(site.first))
    except (KubectlError, NrError) as exc:
        return [f"the API on {site.first} does not answer: {exc}"]
    lines = [f"node {n.name}: {'Ready' if n.ready else 'NOT Ready'}{', cordoned' if n.cordoned else ''}"
             for n in found.values() if not n.ready or n.cordoned]  # fmt: skip
    return lines or ["every node Ready and schedulable"]


def report(
    ctx: PlayContext, site: PatchSite, side: RedisSide | None, progress: Progress, stopped: str
) -> str:
    """The site's state (read now) and how to continue, as lines for the operator."""
    names = site.names()
    rest = names[names.index(stopped) + 1 :]
    out = ["", "Site state now (the run stopped here; the hosts after it were not touched):"]
    for name in names:
        if name in progress.finished:
            done = progress.done.get(name, [])
            out.append(f"  {name}: " + (done[0] if done[:1] == [UP_TO_DATE] else "patched, back in service"))
        elif name == stopped:
            out.append(f"  {name}: stopped after: {', '.join(progress.done.get(name, [])) or 'nothing'}")
        else:
            out.append(f"  {name}: untouched")
    if side is not None:
        out += ["  redis: " + line for line in _safe(lambda: redis_lines(side))]
    out += ["  k3s: " + line for line in k3s_lines(ctx, site)]
    out += _continue(ctx, site, progress, stopped, rest)
    return "\n".join(out)


def _safe(read: Callable[[], list[str]]) -> list[str]:
    try:
        return read()
    except NrError as exc:
        return [f"could not be read: {exc}"]


def _continue(
    ctx: PlayContext, site: PatchSite, progress: Progress, stopped: str, rest: Sequence[str]
) -> list[str]:
    # a run told to reboot every host (--reboot always) is continued the same way
    always = any(Settings.of(h).reboot == "always" for h in site.order if h.name in {stopped, *rest})
    again = f"{ctx.fix_command('patch')} --limit {quote(','.join([stopped, *rest]))}"
    again += " --reboot always" if always else ""
    out = [f"To continue: fix {stopped} (the error above), then `{again}` (it patches {stopped} and the "
           "hosts after it one at a time and restores the planned Redis roles at its end)."]  # fmt: skip
    skip = []
    if stopped in progress.cordoned and site.first:
        skip.append(f"`{KUBECTL} uncordon {quote(stopped)}` on {site.first}")
    if site.redis is not None:
        skip.append(f"`{ctx.fix_command('redis')}` (planned Redis roles)")
    if rest:
        skip.append(f"`{ctx.fix_command('patch')} --limit {quote(','.join(rest))}`")
    if skip:
        out.append(f"To leave {stopped} as it is instead: " + ", then ".join(skip) + ".")
    return out
