"""Applying the plans in the rollout order, with waits and halts (the orchestration ``nr run k3s`` does).

* Install: the first server (waited for), the other servers one at a time (each Ready before the
  next joins), then the agents in parallel.
* Upgrade (a k3s binary is replaced): servers one at a time, then agents one at a time, each Ready
  with the new version before the next; the rollout halts at the first node that does not come back,
  failing the later hosts that have changes ("not started"), leaving converged hosts alone.
* A serial stage stops at its first failing host; a first server that does not come up stops the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nr.errors import NrError
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from tasks.k3s.plan import Stage, rollout
from tasks.k3s.prepare import Prepared
from tasks.k3s.status import expected
from tasks.k3s.versions import learn
from tasks.k3s.wait import Waiter


@dataclass
class _StageRun:
    stage: Stage
    problems: dict[str, str] = field(default_factory=dict)  # node -> why it did not become Ready
    broken: list[str] = field(default_factory=list)  # nodes whose apply failed

    @property
    def failed(self) -> list[str]:
        return list(self.problems) + self.broken


class Rollout:
    def __init__(self, ctx: PlayContext, prep: Prepared, waiter: Waiter) -> None:
        self.ctx, self.prep, self.waiter = ctx, prep, waiter

    @property
    def upgrade(self) -> bool:
        return any(p.upgrade for p in self.prep.plans.values())

    def stages(self) -> list[Stage]:
        c = self.prep.cluster
        return rollout([n.name for n in c.servers], [n.name for n in c.agents], upgrade=self.upgrade)

    def run(self) -> None:
        """Every stage in order; after a halt, hosts with changes fail as "not started"."""
        ctx, prep = self.ctx, self.prep
        first = prep.cluster.first.name
        halt = f"the first server {first} could not be read or planned" if ctx.failed(first) else None
        for stage in self.stages():
            names = [n for n in stage.hosts if n in prep.plans and not ctx.failed(n)]
            if not names:
                continue
            if halt is not None:
                for n in names:
                    if prep.plans[n].changed:  # a host with nothing to change is left alone
                        ctx.fail_host(prep.hosts[n], stage.step, f"not started: {halt}")
                continue
            failed = self._stage(stage, names)
            if self.upgrade and failed:
                halt = f"{failed[0]} failed during the upgrade (upgrade halted: servers first, one at a time)"
            elif first in names and ctx.failed(first):
                halt = f"the first server {first} is not up"

    def _stage(self, stage: Stage, names: Sequence[str]) -> list[str]:
        """Apply the plans of ``names``; a serial stage stops at its first node that fails.
        Returns the nodes that failed (their apply, or becoming Ready)."""
        state = _StageRun(stage)
        self.ctx.run(stage.step, lambda run: self._converge(run, state),
                     hosts=[self.prep.hosts[n] for n in names], serial=stage.serial)  # fmt: skip
        for name, message in state.problems.items():
            self.ctx.fail_host(self.prep.hosts[name], "ready", message)
        return state.failed

    def _converge(self, run: HostRun, state: _StageRun) -> Outcome[None]:
        if state.stage.serial and state.failed:
            raise NrError(
                f"not started: {state.failed[0]} failed first (one node at a time: the rollout halted)"
            )
        plan = self.prep.plans[run.name]
        try:
            outcome: Outcome[None] = run.apply(plan.changes, after=plan.after)
            if plan.installs_binary and not run.dry_run and self.prep.versions is not None:
                learn(run.remote, self.prep.versions)  # it runs; and the next run need not ask
        except Exception:
            state.broken.append(run.name)
            raise
        if plan.restart and not run.dry_run:
            self.prep.restarted.add(run.name)
            if state.stage.wait_each:
                found = self.waiter.wait([expected(plan.node)], deployments=False, restarted=[run.name])
                state.problems.update(found.problems)
                self.prep.restarted.discard(run.name)
        return outcome
