"""The ``base`` component: host preparation every later component needs.

One round trip reads everything a host needs planned (:func:`tasks.base.plan.facts_commands`), a
pure function computes the changes (:func:`tasks.base.plan.plan`), and one more round trip applies
them — only when something differs. ``check`` and ``drift`` evaluate the same rules
(:mod:`tasks.base.rules`) on the same observation; ``check`` also reads swap and time sync.
"""

from __future__ import annotations

from nr.errors import NrError
from nr.facts import gather
from nr.outcome import Outcome, evaluate
from nr.play import HostRun, PlayContext
from nr.readahead import Read
from tasks.base.plan import BaseSpec, check_commands, facts_commands, os_problem, plan, spec_for
from tasks.base.rules import Observed, duplicate_hostnames, rules


def _request(spec: BaseSpec, *, checking: bool) -> tuple[list[str], dict[str, str]]:
    """The files and commands of the one round trip that reads a host (check reads swap and time too)."""
    return [f.path for f in spec.files()], check_commands(spec) if checking else facts_commands(spec)


def _observe(run: HostRun, spec: BaseSpec, *, checking: bool) -> Observed:
    files, commands = _request(spec, checking=checking)
    facts = gather(run.remote, files=files, commands=commands)
    return Observed(spec, facts, tuple(plan(spec, facts)))


def _converge(run: HostRun, spec: BaseSpec) -> Outcome[str]:
    o = _observe(run, spec, checking=False)
    problem = os_problem(o.facts)
    if problem:
        raise NrError(problem)
    return run.apply(o.changes, value=o.facts.out("hostname").strip())


def _inspect(run: HostRun, spec: BaseSpec, *, checking: bool) -> Outcome[str]:
    o = _observe(run, spec, checking=checking)
    verdict = evaluate(rules(spec), o)
    passed = sum(c.ok for c in verdict.checks)
    return Outcome(
        checks=verdict.checks,
        findings=verdict.drift,
        value=o.facts.out("hostname").strip(),
        summary=f"{passed}/{len(verdict.checks)} passed",
    )


class BaseComponent:
    name = "base"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def reads(self, ctx: PlayContext, mode: str) -> list[Read]:
        """The round trip each host's apply, check or drift starts with (read ahead: nr.readahead)."""
        return [Read.of(h.name, *_request(spec_for(h), checking=mode == "check")) for h in ctx.hosts()]

    def _hostnames(self, ctx: PlayContext, names: dict[str, str]) -> None:
        clashes = duplicate_hostnames(names)
        for host in ctx.hosts():
            if host.name in clashes:
                f = clashes[host.name]
                ctx.fail_host(host, "hostname", f"hostname {f.actual}; k3s needs unique hostnames ({f.fix})")

    def apply(self, ctx: PlayContext) -> None:
        specs = {h.name: spec_for(h) for h in ctx.hosts()}
        step = ctx.run("apply", lambda run: _converge(run, specs[run.name]))
        self._hostnames(ctx, step.values)

    def check(self, ctx: PlayContext) -> None:
        specs = {h.name: spec_for(h) for h in ctx.hosts()}
        step = ctx.run("check", lambda run: _inspect(run, specs[run.name], checking=True))
        self._hostnames(ctx, step.values)

    def drift(self, ctx: PlayContext) -> None:
        specs = {h.name: spec_for(h) for h in ctx.hosts()}
        step = ctx.run("drift", lambda run: _inspect(run, specs[run.name], checking=False))
        self._hostnames(ctx, step.values)


component = BaseComponent()
