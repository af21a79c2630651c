"""What ``systemctl show -p Id,ActiveState,UnitFileState U1 U2 …`` prints (nr.ops.systemd.units), for
facts fixtures: one block per unit in the order given, ``Id`` first, empty values printed."""

from __future__ import annotations


def show(*units: tuple[str, str, str]) -> str:
    """``(unit, ActiveState, UnitFileState)`` for each unit asked, in order ("" for no unit file)."""
    blocks = []
    for unit, active, enabled in units:
        unit_id = unit if "." in unit else f"{unit}.service"
        blocks.append(f"Id={unit_id}\nActiveState={active}\nUnitFileState={enabled}")
    return "\n\n".join(blocks) + "\n"
