"""Waiting for k3s nodes, bounded: poll the first server's API, probe the services of nodes that are not
Ready, and give up early, with the cause and the fix, when waiting longer cannot help.

A k3s agent that cannot join does not exit: with a wrong token or a rejected node password it logs
the same line every 5-10 s forever and its unit stays ``active (running)`` (pkg/agent/config
``Get``/``getNodeNamedCrt``, pkg/agent/run.go ``createProxyAndValidateToken``; k3s #6194, #9009). The
probe therefore reads the unit's journal since the wait began and recognises those lines
(:data:`CAUSES`); servers that hit a fatal error exit and are restarted by systemd (NRestarts).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nr import progress
from nr.errors import NrError
from nr.facts import gather
from nr.transport import Remote
from tasks.k3s.contract import KUBECTL
from tasks.k3s.observe import DEPLOY_CMD, NODES_CMD, REMOTE_KUBECONFIG
from tasks.k3s.spec import ClusterSpec, NodeSpec
from tasks.k3s.status import ExpectedNode, cluster_status

READY_TIMEOUT = 300.0
POLL_SECONDS = 2.0
PROBE_SECONDS = 6.0  # how often the services of nodes that are not Ready are looked at
CRASH_RESTARTS = 2  # a service restarted this often by systemd since nr started it keeps exiting
STABLE_SECONDS = 6.0  # a restarted service must stay up this long (the API may report a stale Ready)
JOURNAL_LINES = 20

# The probe: systemd's view of the unit, the host's clock, and the unit's journal since ``since``.
PROBE_CMD = (
    "u={unit}\n"
    'systemctl show -p NRestarts -p ActiveState -p SubState "$u"\n'
    'now=$(date +%s); echo "Now=$now"\n'
    't=$(systemctl show -p ActiveEnterTimestamp --value "$u")\n'
    'if [ -n "$t" ]; then echo "Up=$(( now - $(date -d "$t" +%s) ))"; fi\n'
    "{journal}"
)
JOURNAL_CMD = (
    'echo "@@journal"; journalctl -u "$u" --since "@{since}" --no-pager -o cat 2>/dev/null | tail -n 200\n'
)


@dataclass(frozen=True)
class Cause:
    """A journal line that says why a node cannot join, what it means and how to fix it."""

    pattern: str
    cause: str
    fix: Callable[[str, str], str]  # (node, first server) -> what to do


def _cmd(*words: str) -> str:
    return shlex.join(words)


CAUSES = (
    Cause("Node password rejected", "the cluster rejected its node password: /etc/rancher/node/password "
          "differs from the one recorded for this node name (a reinstalled or cloned host)",
          lambda n, f: f"`{_cmd(*KUBECTL.split(), '-n', 'kube-system', 'delete', 'secret', n + '.node-password.k3s')}` "
                       f"on {f} (or `{_cmd(*KUBECTL.split(), 'delete', 'node', n)}`); the agent then joins by itself"),
    Cause("401 Unauthorized", "the server refused its token (401 Unauthorized)",
          lambda n, f: f"set data.k3s_token for {n} to the token the cluster on {f} was created with"),
    Cause("token CA hash does not match", "its token's CA hash is not this cluster's",
          lambda n, f: f"set data.k3s_token for {n} to the token the cluster on {f} was created with"),
    Cause("critical configuration value mismatch", "k3s refused the join: a critical configuration value "
          "differs from the cluster's", lambda n, f: f"give {n} the cluster-wide k3s settings of {f}"),
    Cause("bootstrap data already found and encrypted with different token", "its data directory belongs "
          "to a cluster made with another token",
          lambda n, f: f"set data.k3s_token to that cluster's token (or rotate it: `k3s token rotate`), or reset {n}"),
    Cause("duplicate node name found", "the cluster still has an etcd member of an earlier server named "
          "like this one", lambda n, f: f"`{_cmd(*KUBECTL.split(), 'delete', 'node', n)}` on {f}, then reset {n}"),
)  # fmt: skip


@dataclass(frozen=True)
class ServiceProbe:
    """A k3s service as systemd sees it on its host, with the journal lines since the wait began."""

    unit: str
    active: str = "unknown"
    sub: str = ""
    restarts: int = 0  # restarts by systemd (Restart=always) since the unit was last started by hand
    up: float = 0.0  # seconds since it last became active
    now: int | None = None  # the host's clock (epoch seconds)
    journal: tuple[str, ...] = ()
    error: str = ""  # the host could not be asked

    @classmethod
    def parse(cls, unit: str, text: str) -> ServiceProbe:
        head, _, journal = text.partition("@@journal\n")
        kv = dict(line.partition("=")[::2] for line in head.splitlines() if "=" in line)

        def num(key: str) -> int:
            value = kv.get(key, "").strip()
            return int(value) if value.lstrip("-").isdigit() else 0

        now = num("Now") or None
        return cls(unit, kv.get("ActiveState", "unknown"), kv.get("SubState", ""), num("NRestarts"),
                   num("Up"), now, tuple(journal.splitlines()))  # fmt: skip

    @property
    def running(self) -> bool:
        return self.active == "active" and self.sub == "running"

    def cause(self) -> tuple[Cause, str] | None:
        """The last journal line that names a known cause, with that line."""
        for line in reversed(self.journal):
            for c in CAUSES:
                if c.pattern in line:
                    return c, line.strip()
        return None

    def verdict(self, node: str = "", first: str = "") -> str | None:
        """Why waiting longer will not help (None: it might still come up)."""
        if self.error:
            return f"its host cannot be reached: {self.error}"
        found = self.cause()
        if found:
            c, line = found
            return f"{c.cause} (its journal: {line[-300:]!r}); fix: {c.fix(node, first)}"
        if self.restarts >= CRASH_RESTARTS:
            return f"{self.unit} keeps exiting (restarted {self.restarts} times by systemd)"
        if self.active in ("inactive", "failed"):
            return f"{self.unit} is {self.active}"
        return None


@dataclass(frozen=True)
class WaitOutcome:
    problems: dict[str, str]  # node -> why it is not Ready (with its journal)
    deployments: dict[str, str]  # kube-system deployment -> why it is not available
    kubeconfig: str | None
    elapsed: float


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Remotes(Protocol):
    def remote(self, host: str) -> Remote: ...


@dataclass
class _Round:
    """The state of one wait: nodes given up on, restarted nodes not yet seen to stay up, journal starts."""

    want: Sequence[ExpectedNode]
    unsure: set[str]
    gave_up: dict[str, str] = field(default_factory=dict)
    since: dict[str, int] = field(default_factory=dict)


def _awaited(problems: dict[str, str], deployments: dict[str, str]) -> str:
    """What a wait is waiting for now, in one line."""
    if problems:
        return "waiting for " + "; ".join(f"{n}: {why}" for n, why in sorted(problems.items()))[:150]
    if deployments:
        return "waiting for kube-system: " + ", ".join(sorted(deployments))
    return "k3s nodes Ready"


class Waiter:
    """Polls the first server until nodes are Ready (bounded) and explains every node that is not."""

    def __init__(
        self, remotes: Remotes, cluster: ClusterSpec, timeout: float, clock: Clock | None = None
    ) -> None:
        self.remotes, self.cluster, self.timeout = remotes, cluster, timeout
        self.clock = clock or Clock()

    def wait(
        self, want: Sequence[ExpectedNode], *, deployments: bool, restarted: Collection[str] = ()
    ) -> WaitOutcome:
        """A node k3s was restarted on in this run must also have kept its service up for
        ``STABLE_SECONDS``: the API may still call it Ready from before the restart. On a terminal,
        a live line says what is awaited and for how long (:mod:`nr.progress`)."""
        with progress.track(f"waiting for {len(want)} k3s node(s) Ready") as line:
            return self._wait(want, deployments, restarted, line)

    def _wait(
        self,
        want: Sequence[ExpectedNode],
        deployments: bool,
        restarted: Collection[str],
        line: progress.Tracker,
    ) -> WaitOutcome:
        start = self.clock.now()
        commands = {"nodes": NODES_CMD, **({"deploy": DEPLOY_CMD} if deployments else {})}
        r = _Round(want, {e.name for e in want if e.name in restarted})
        next_probe = start + PROBE_SECONDS
        while True:
            facts = gather(
                self.remotes.remote(self.cluster.first.name), files=[REMOTE_KUBECONFIG], commands=commands
            )
            pending = [e for e in want if e.name not in r.gave_up]
            problems, dep = cluster_status(facts, pending, self.cluster, deployments)
            line.say(_awaited(problems, dep))
            now = self.clock.now()
            probe = [n for n in r.unsure if n not in problems]
            if now >= next_probe:
                probe += list(problems)
                next_probe = now + PROBE_SECONDS
            self._judge(r, problems, probe)
            if not [n for n in problems if n not in r.gave_up] and not r.unsure and not dep:
                break
            if now - start >= self.timeout:
                problems.update({n: f"its service did not stay up for {STABLE_SECONDS:.0f} s after the restart"
                                 for n in r.unsure})  # fmt: skip
                break
            self.clock.sleep(POLL_SECONDS)
        elapsed = self.clock.now() - start
        failed = {**{n: w for n, w in problems.items() if n not in r.gave_up}, **r.gave_up}
        messages = {name: self._message(name, why, elapsed) for name, why in failed.items()}
        return WaitOutcome(messages, dep, facts.files[REMOTE_KUBECONFIG].text, elapsed)

    def _judge(self, r: _Round, problems: dict[str, str], names: Sequence[str]) -> None:
        for name, state in self.probe(names, r.since).items():
            if state.now is not None:
                r.since.setdefault(name, state.now)
            verdict = state.verdict(name, self.cluster.first.name)
            if verdict is not None:
                r.gave_up[name] = f"{problems.get(name, 'Ready as the API last saw it')}; {verdict}"
                r.unsure.discard(name)
            elif name not in problems and state.running and state.up >= STABLE_SECONDS:
                r.unsure.discard(name)

    def probe(self, names: Sequence[str], since: dict[str, int] | None = None) -> dict[str, ServiceProbe]:
        """The k3s service of each node, read on its own host (one command per host)."""
        out = {}
        for name in dict.fromkeys(names):
            unit = self.cluster.node(name).role.unit
            start = (since or {}).get(name)
            script = PROBE_CMD.format(unit=unit, journal=JOURNAL_CMD.format(since=start) if start else "")
            try:
                res = self.remotes.remote(name).run(script, check=False, timeout=30)
            except NrError as exc:
                out[name] = ServiceProbe(unit, error=str(exc))
                continue
            out[name] = ServiceProbe.parse(unit, res.stdout)
        return out

    def _message(self, name: str, why: str, elapsed: float) -> str:
        node = self.cluster.node(name)
        return (
            f"node {name} is not Ready after {elapsed:.0f} s: {why}; last lines of its journal "
            f"(journalctl -u {node.role.unit} -n {JOURNAL_LINES} --no-pager on {name}):\n"
            + self.journal(node)
        )

    def journal(self, node: NodeSpec) -> str:
        try:
            res = self.remotes.remote(node.name).run(
                f"journalctl -u {node.role.unit} -n {JOURNAL_LINES} --no-pager", check=False, timeout=30
            )
        except NrError as exc:
            return f"  (could not read it: {exc})"
        text = (res.stdout.strip() or res.stderr.strip() or "(empty)").splitlines()
        return "\n".join("  " + line for line in text[-JOURNAL_LINES:])
