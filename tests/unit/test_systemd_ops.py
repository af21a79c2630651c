"""nr.ops.systemd.units: one ``systemctl show`` for many units, read back by the order they were asked in."""

from __future__ import annotations

from nr.facts import Output
from nr.ops import systemd

# systemd 252 (Debian 12) on a lab host: `systemctl show -p Id,ActiveState,UnitFileState -- redis-server.service
# redis-server@7000.service nope.service k3s redis.service` (redis.service: an alias not loaded)
SHOWN = """Id=redis-server.service
ActiveState=inactive
UnitFileState=disabled

Id=redis-server@7000.service
ActiveState=active
UnitFileState=enabled

Id=nope.service
ActiveState=inactive
UnitFileState=

Id=k3s.service
ActiveState=active
UnitFileState=enabled

Id=redis.service
ActiveState=inactive
UnitFileState=
"""


def test_one_systemctl_show_gives_each_unit_its_state_in_the_order_asked() -> None:
    names = ["redis-server.service", "redis-server@7000.service", "nope.service", "k3s", "redis.service"]
    fact = systemd.units(names, "units")
    assert fact.command == (
        "systemctl show -p Id,ActiveState,UnitFileState -- "
        "redis-server.service redis-server@7000.service nope.service k3s redis.service"
    )
    states = fact.parse(Output(0, SHOWN))
    assert states == {
        "redis-server.service": systemd.UnitState("inactive", "disabled"),
        "redis-server@7000.service": systemd.UnitState("active", "enabled"),
        "nope.service": systemd.UnitState("inactive", ""),
        "k3s": systemd.UnitState("active", "enabled"),  # asked as k3s, shown as Id=k3s.service
        "redis.service": systemd.UnitState("inactive", ""),
    }
    assert states["k3s"].running and states["k3s"].is_enabled and not states["nope.service"].is_enabled


def test_without_systemd_no_unit_has_a_state() -> None:
    out = Output(1, "", "System has not been booted with systemd as init system (PID 1). Can't operate.")
    assert systemd.units(["k3s"]).parse(out) == {}
