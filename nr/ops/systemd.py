"""systemd units: their state (one command for many units) and the script that enables/starts them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from shlex import quote

from nr.facts import Fact, Output


@dataclass(frozen=True)
class UnitState:
    active: str  # active, inactive, failed, activating, ... ("unknown" when not listed)
    enabled: str  # enabled, disabled, static, "" (no unit file)

    @property
    def running(self) -> bool:
        return self.active == "active"

    @property
    def is_enabled(self) -> bool:
        return self.enabled == "enabled"


UNKNOWN = UnitState("unknown", "")


def _parse(out: Output) -> dict[str, UnitState]:
    states: dict[str, UnitState] = {}
    for line in out.text.splitlines():
        parts = line.split()
        if parts:
            states[parts[0]] = UnitState(
                parts[1] if len(parts) > 1 else "unknown", parts[2] if len(parts) > 2 else ""
            )
    return states


def units(names: Iterable[str], fact_name: str = "units") -> Fact[dict[str, UnitState]]:
    """``unit active enabled`` for each unit (``systemctl is-active/is-enabled``), one line each."""
    listed = " ".join(quote(n) for n in names)
    command = (
        f"for u in {listed}; do "
        'printf "%s %s %s\\n" "$u" "$(systemctl is-active "$u" 2>/dev/null | head -n1)" '
        '"$(systemctl is-enabled "$u" 2>/dev/null | head -n1)"; done'
    )
    return Fact(fact_name, command, _parse)


def start_script(names: Sequence[str], *, reload: bool = True) -> str:
    """Enable and start ``names`` (a running unit is not restarted: ``enable --now``)."""
    if not names:
        return ""
    listed = " ".join(quote(n) for n in names)
    lines = ["systemctl daemon-reload"] if reload else []
    lines.append(f"systemctl enable --now {listed} >/dev/null 2>&1")
    return "\n".join(lines)


def stop_script(names: Sequence[str]) -> str:
    """Stop and disable ``names`` (missing units are fine)."""
    if not names:
        return ""
    listed = " ".join(quote(n) for n in names)
    return f"systemctl disable --now {listed} >/dev/null 2>&1 || true"


def restart_script(names: Sequence[str]) -> str:
    if not names:
        return ""
    listed = " ".join(quote(n) for n in names)
    return f"systemctl enable {listed} >/dev/null 2>&1\nsystemctl restart {listed}"
