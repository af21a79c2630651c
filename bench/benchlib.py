"""What the benchmarks under bench/ share: running `nr` of a checkout as a fresh process and timing it,
the machine's load, and the CPU the lab's host containers used (the lab hosts share this machine's cores).

A *checkout* is this repository (the default) or another version given with --baseline DIR (e.g.
`git worktree add --detach DIR main`): its `nr` runs with DIR as the working directory, so DIR's
`nr` and `tasks` packages are the ones imported (with this venv's libraries).
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = (
    str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
)

# A benchmark started as `bench/NAME` runs on the system python3, which lacks the project's
# libraries: it starts again on the project's venv (as bench/services does) before importing them.
if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and Path(PYTHON) != Path(sys.executable):
    os.execv(PYTHON, [PYTHON, sys.argv[0], *sys.argv[1:]])


def machine() -> str:
    """Cores and load average, for the header line (figures are comparable only under equal load)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


@dataclass(frozen=True)
class Timed:
    wall: float
    cpu: float  # user + system of the nr process (the controller's share)
    rc: int
    stdout: str
    stderr: str


_COMPILED: set[Path] = set()


def compiled(checkout: Path) -> None:
    """Bytecode for the checkout's modules, as an install has (scripts/bootstrap does the same): with
    PYTHONDONTWRITEBYTECODE set, every start would compile them from source again (~0.1 s)."""
    if checkout not in _COMPILED:
        subprocess.run([PYTHON, "-m", "compileall", "-q", "-j", "0", "nr", "tasks", "services"],
                       cwd=checkout, capture_output=True, check=False)  # fmt: skip
        _COMPILED.add(checkout)


def run_nr(checkout: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Timed:
    """`python -m nr ARGS` of ``checkout``, as an operator runs it: a fresh interpreter each time."""
    compiled(checkout)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, "-m", "nr", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if check and proc.returncode not in (0,):
        raise SystemExit(
            f"nr {' '.join(args)} in {checkout} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return Timed(wall, cpu, proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Series:
    """Samples of one measured thing (seconds)."""

    name: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    hosts_cpu: list[float] = field(default_factory=list)

    def add(self, t: Timed, hosts_cpu: float | None = None) -> None:
        self.walls.append(t.wall)
        self.cpus.append(t.cpu)
        if hosts_cpu is not None:
            self.hosts_cpu.append(hosts_cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    def line(self) -> str:
        text = (
            f"{self.name:<34} median {self.median:6.3f} s  (min {min(self.walls):.3f}, max {max(self.walls):.3f})"
            f"  controller CPU {statistics.median(self.cpus):.3f} s"
        )
        if self.hosts_cpu:
            text += f"  hosts CPU {statistics.median(self.hosts_cpu):.3f} s"
        return text


def container_ids(inventory: Path) -> list[str]:
    """The Docker ids of the lab hosts of ``inventory`` (a lab names each container after its host;
    the app's pods that the k3s stand-in runs beside them are not counted)."""
    import yaml

    names = list(yaml.safe_load((inventory / "hosts.yaml").read_text()))
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", *names], capture_output=True, text=True, check=False
    ).stdout
    return out.split()


def hosts_cpu_seconds(ids: Sequence[str]) -> float | None:
    """CPU seconds used so far by these containers (cgroup v1 cpuacct or v2 cpu.stat); None if unreadable."""
    total = 0.0
    for cid in ids:
        v1 = Path("/sys/fs/cgroup/cpuacct/docker") / cid / "cpuacct.usage"
        v2 = Path("/sys/fs/cgroup/system.slice") / f"docker-{cid}.scope" / "cpu.stat"
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            usage = next(line for line in v2.read_text().splitlines() if line.startswith("usage_usec"))
            total += int(usage.split()[1]) / 1e6
        else:
            return None
    return total


def measured(
    checkout: Path, ids: Sequence[str], *args: str, env: dict[str, str] | None = None
) -> tuple[Timed, float | None]:
    """Run nr and return its timing and the CPU the lab hosts used meanwhile."""
    before = hosts_cpu_seconds(ids)
    t = run_nr(checkout, *args, env=env)
    after = hosts_cpu_seconds(ids)
    return t, (None if before is None or after is None else after - before)


def version_of(checkout: Path) -> str:
    rev = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{checkout} ({rev[:70]})"


@contextlib.contextmanager
def delayed(inventory: Path, rtt_ms: float) -> Iterator[None]:
    """Every TCP connection to the hosts of ``inventory`` gets ``rtt_ms`` of round-trip time while this
    lasts (bench/delay_proxy.py; root); nothing is changed when ``rtt_ms`` is 0."""
    if not rtt_ms:
        yield
        return
    import yaml

    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    addresses = sorted({str(h["hostname"]) for h in hosts.values()})
    script = Path(__file__).resolve().parent / "delay_proxy.py"
    proxy = subprocess.Popen(
        [PYTHON, str(script), "--rtt", str(rtt_ms), *addresses], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proxy.stdout is not None
        if proxy.stdout.readline().strip() != "ready":
            raise RuntimeError("bench/delay_proxy.py did not start (it needs root and iptables)")
        yield
    finally:
        proxy.terminate()
        proxy.wait(10)
