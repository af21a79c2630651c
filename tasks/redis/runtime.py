"""What each running instance really runs with, compared with its config file (``CONFIG GET``).

A config file that changed while its restart did not happen (an interrupted run, a host that failed
before its turn) and a setting changed at run time (``CONFIG SET appendonly no``) look the same from
here: the process runs with values its file does not say. Both are drift, fail ``nr check``, and are a
restart the next ``nr run redis`` does (one host at a time). Values are compared as ``CONFIG GET``
answers them (:func:`tasks.redis.config.runtime_settings`); the password is compared, never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.redis.config import REDACTED, SECRET_DIRECTIVES, InstanceConfig, runtime_settings
from tasks.redis.observe import OTHER_SECRET, ClusterObservation, InstanceState
from tasks.redis.plan import format_endpoint

PERSISTENCE = ("appendonly",)
ACCESS = ("bind", *SECRET_DIRECTIVES)


@dataclass(frozen=True)
class Mismatch:
    """A setting the process runs with another value than its config file says."""

    setting: str
    file: str
    running: str

    @property
    def running_text(self) -> str:
        if self.setting in SECRET_DIRECTIVES:
            return f"{self.setting}: " + (
                "another password" if self.running == OTHER_SECRET else "no password"
            )
        return f"{self.setting} {self.running}"

    @property
    def file_text(self) -> str:
        if self.setting in SECRET_DIRECTIVES:
            return f"{self.setting}: the inventory's password"
        return f"{self.setting} {self.file}"

    def describe(self) -> str:
        if self.setting in SECRET_DIRECTIVES:
            return f"{self.running_text} (the file has the inventory's)"
        return f"{self.running_text} (file: {self.file})"


def settings_to_read(configs: Sequence[InstanceConfig]) -> list[str]:
    """Every setting the config files of ``configs`` set (what ``observe`` asks ``CONFIG GET`` for)."""
    names: dict[str, None] = {}
    for c in configs:
        names.update(dict.fromkeys(runtime_settings(c)))
    return list(names)


def mismatches(config: InstanceConfig, state: InstanceState | None) -> list[Mismatch]:
    """The settings ``state`` (a reachable instance's CONFIG GET) runs with differently from its file.

    A setting this Redis version does not know (no CONFIG GET answer) cannot differ; an instance that
    could not be read has no mismatch here (the access check reports it).
    """
    if state is None or not state.reachable or not state.config:
        return []
    out: list[Mismatch] = []
    for name, want in runtime_settings(config).items():
        have = state.config.get(name)
        if have is not None and have != want:
            shown = REDACTED if name in SECRET_DIRECTIVES else want
            out.append(Mismatch(name, shown, have))
    return out


def by_instance(
    configs: Mapping[str, Sequence[InstanceConfig]], observation: ClusterObservation
) -> dict[str, list[Mismatch]]:
    """Instance label -> its mismatches, for every instance of ``configs`` (host -> instances)."""
    out: dict[str, list[Mismatch]] = {}
    for host_configs in configs.values():
        for c in host_configs:
            found = mismatches(c, observation.get(format_endpoint(c.address, c.port)))
            if found:
                out[f"{c.host}:{c.port}"] = found
    return out
