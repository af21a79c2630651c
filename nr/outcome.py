"""What a host task returns, and the rows the report shows: typed, instead of Result extras.

* :class:`Outcome` is the value of one host's step: the changes made (or, under ``--dry-run``,
  that would be made), the findings (differences with the desired state that are not changes of
  this step), the check items, a typed ``value`` for the component's own use, or an error.
* :class:`Finding` is one report row of ``nr drift`` and, through :func:`evaluate`, of ``nr check``:
  what differs, expected and actual, the command that repairs it, and how bad it is.
* :class:`Rule` is one check: a small function from an observation to findings. The same rules
  serve ``check`` (a passing or failing item each) and ``drift`` (the findings), so a check can
  never fail without the drift report seeing it, or the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from nr.changes import Change, changes_diff

T = TypeVar("T")
O = TypeVar("O")  # noqa: E741 (an observation)


class Severity(StrEnum):
    ERROR = "error"  # broken: the check fails, drift reports it
    DRIFT = "drift"  # differs from the desired state: the check fails, drift reports it
    WARNING = "warning"  # worth knowing: the check warns, drift does not report it


@dataclass(frozen=True)
class Finding:
    """A difference between a host and its desired state, and the command that repairs it."""

    what: str
    expected: str
    actual: str
    fix: str = ""  # "" -> the report uses `nr run <component> --limit <host>`
    severity: Severity = Severity.DRIFT
    detail: str = ""  # a longer explanation or a diff

    @property
    def reported_by_drift(self) -> bool:
        return self.severity is not Severity.WARNING

    @classmethod
    def of_change(cls, change: Change) -> Finding:
        """A change a dry run would make, as a drift row."""
        return cls(change.what, change.expected, change.actual, change.fix, Severity.DRIFT, change.diff)


@dataclass(frozen=True)
class CheckItem:
    """One check of a converged host: ``ok`` or not, with what to look at when it is not."""

    name: str
    ok: bool
    detail: str = ""
    hint: str = ""
    warning: bool = False  # a failed warning is reported but does not fail the check run


@dataclass(frozen=True)
class Rule(Generic[O]):
    """One check: ``find`` returns the findings of an observation (none: the check passes)."""

    name: str
    find: Callable[[O], Iterable[Finding]]
    passed: Callable[[O], str] = lambda _: "ok"  # the detail shown when it passes


@dataclass(frozen=True)
class Verdict:
    checks: list[CheckItem]
    findings: list[Finding]

    @property
    def drift(self) -> list[Finding]:
        return [f for f in self.findings if f.reported_by_drift]


def check_item(rule_name: str, f: Finding) -> CheckItem:
    detail = f"{f.actual} (expected {f.expected})" if f.expected else f.actual
    return CheckItem(f.what or rule_name, False, detail, f.fix, warning=f.severity is Severity.WARNING)


def evaluate(rules: Iterable[Rule[O]], observed: O) -> Verdict:
    """Run every rule on ``observed``: one passing item per clean rule, one failing item per finding."""
    checks: list[CheckItem] = []
    findings: list[Finding] = []
    for rule in rules:
        found = list(rule.find(observed))
        findings += found
        if found:
            checks += [check_item(rule.name, f) for f in found]
        else:
            checks.append(CheckItem(rule.name, True, rule.passed(observed)))
    return Verdict(checks, findings)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one host's step did (or would do), found, checked and returns to the component."""

    changes: Sequence[Change] = ()
    findings: Sequence[Finding] = ()
    checks: Sequence[CheckItem] = ()
    value: T | None = None
    summary: str = ""  # one line for the progress display ("3/4 passed")
    error: str | None = None  # the host failed, for this reason (decided by the task, not raised)
    extra_diff: str = ""  # shown after the changes' diffs (e.g. what a later step will do)
    changed_flag: bool | None = field(default=None, repr=False)  # None: bool(changes)

    @property
    def changed(self) -> bool:
        return bool(self.changes) if self.changed_flag is None else self.changed_flag

    @property
    def diff(self) -> str:
        return changes_diff(self.changes) + self.extra_diff

    @property
    def failed_checks(self) -> list[CheckItem]:
        return [c for c in self.checks if not c.ok and not c.warning]
