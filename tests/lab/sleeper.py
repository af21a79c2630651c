"""A component for fault tests, loaded by `nr` through NR_CATALOGS=tests.lab.sleeper:CATALOG.

``nr run sleeper`` makes one quick change on every host (``touch`` of NR_TEST_MARK), then runs a long
command on every host under the host's lock (``sleep``: NR_TEST_SLEEP seconds, or per host from
NR_TEST_SLEEP_HOSTS="host=seconds,..."), so a test can pause a host, cut it off or press Ctrl-C while
a remote command runs.
"""

from __future__ import annotations

import os
from shlex import quote

from nr.changes import Change
from nr.contract import Contract
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.registry import Catalog, Entry

CONTRACT = Contract()


def _seconds(host: str) -> str:
    per_host = dict(
        pair.split("=", 1) for pair in os.environ.get("NR_TEST_SLEEP_HOSTS", "").split(",") if "=" in pair
    )
    return str(int(per_host.get(host, os.environ.get("NR_TEST_SLEEP", "600"))))


class Sleeper:
    name = "sleeper"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def apply(self, ctx: PlayContext) -> None:
        mark = os.environ.get("NR_TEST_MARK", "/var/lib/nr-sleeper-mark")

        def touch(run: HostRun) -> Outcome[None]:
            return run.apply(
                [Change(f"file {mark}", "present", "absent", f"touch {quote(mark)}", f"+ {mark}\n")]
            )

        def sleep(run: HostRun) -> Outcome[None]:
            seconds = _seconds(run.name)
            return run.apply([Change("sleep", "slept", "awake", f"sleep {seconds}", f"+ sleep {seconds}\n")])

        ctx.run("touch", touch)
        ctx.run("sleep", sleep)

    def check(self, ctx: PlayContext) -> None: ...

    def drift(self, ctx: PlayContext) -> None: ...


component = Sleeper()
CATALOG = Catalog(
    entries=[Entry("sleeper", "test component: a quick change, then a long command", f"{__name__}:CONTRACT",
                   f"{__name__}:component")],
)  # fmt: skip
