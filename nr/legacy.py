"""Transitional helpers for components not yet moved to :class:`nr.play.HostRun` and typed outcomes.

Removed once every component uses ``ctx.run(step, fn: HostRun -> Outcome)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from nornir.core.task import Result, Task

from nr.changes import Change, apply_script, changes_diff
from nr.connection import remote
from nr.transport import Remote


def apply_changes(
    task: Task,
    changes: Sequence[Change],
    *,
    after: str = "",
    conn: Remote | None = None,
    timeout: float | None = None,
) -> Result:
    """Run every change's script in one round trip (nothing under dry-run); report the diff."""
    diff = changes_diff(changes)
    if changes and not task.is_dry_run():
        conn = conn or remote(task)
        for c in changes:
            if c.upload is not None:
                conn.put(c.upload.local, c.upload.remote_tmp)
        conn.run(apply_script(changes, after), timeout=timeout)
    return Result(
        host=task.host,
        changed=bool(changes),
        diff=diff,
        result=[c.what for c in changes],
        changes=list(changes),
    )
