"""The Nornir plugins of a run, found without scanning every installed package.

``InitNornir`` registers plugins by loading the entry points of every installed distribution (and
importing each plugin's module: our SSH stack among them) on every start. nr builds its Nornir object
itself (:func:`nr.config.init_nornir`): an inventory plugin is looked up among this distribution's own
entry points, the ``threaded`` and ``serial`` runners are Nornir's classes, and only a name nr does not
know falls back to Nornir's registers (the scan), so a third-party plugin named in ``config.yaml``
still works. The ``fabric`` connection plugin registers itself when :mod:`nr.connection` is imported,
which happens on the first connection (:meth:`nr.play.PlayContext.remote`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from nr.registry import load, own_entry_points

if TYPE_CHECKING:
    from nornir.core.configuration import Config
    from nornir.core.inventory import Host, Inventory
    from nornir.core.plugins.runners import RunnerPlugin
    from nornir.core.task import AggregatedResult, Task

INVENTORY_GROUP = "nornir.plugins.inventory"
POLL = 0.2  # seconds: how often the main thread looks up from waiting (Ctrl-C is handled there)


class ThreadedRunner:
    """Nornir's ``threaded`` runner, but the main thread waits for the hosts in short slices.

    Nornir's waits for its workers without a timeout. A Ctrl-C (SIGINT, sent to the process) may be
    delivered to a worker thread by the kernel; Python then runs the handler only when the main
    thread next executes bytecode, which a waiting main thread does not do until every host is done.
    Waiting in slices lets the KeyboardInterrupt through within POLL seconds, and the workers are then
    left to :mod:`nr.runner` (which tells them to stop), not waited for.
    """

    def __init__(self, num_workers: int = 20) -> None:
        self.num_workers = num_workers

    def run(self, task: Task, hosts: list[Host]) -> AggregatedResult:
        from nornir.core.task import AggregatedResult

        result = AggregatedResult(task.name)
        pool = ThreadPoolExecutor(self.num_workers)
        try:
            futures = [pool.submit(task.copy().start, host) for host in hosts]
            pending = set(futures)
            while pending:
                pending = wait(pending, timeout=POLL).not_done
        finally:
            pool.shutdown(wait=False)
        for future in futures:
            done = future.result()
            result[done.host.name] = done
        return result


def inventory_plugin(name: str) -> Any:
    """The inventory plugin class named ``name`` (raises Nornir's ``PluginNotRegistered``)."""
    own = own_entry_points(INVENTORY_GROUP)
    if name in own:
        return load(own[name])
    from nornir.core.plugins.inventory import InventoryPluginRegister

    InventoryPluginRegister.auto_register()
    return InventoryPluginRegister.get_plugin(name)


def load_inventory(config: Config) -> Inventory:
    """What ``InitNornir`` does to load the inventory, with :func:`inventory_plugin` for the lookup."""
    inv: Inventory = inventory_plugin(config.inventory.plugin)(**config.inventory.options).load()
    if config.inventory.transform_function:
        from nornir.core.plugins.inventory import TransformFunctionRegister

        TransformFunctionRegister.auto_register()
        transform = TransformFunctionRegister.get_plugin(config.inventory.transform_function)
        for host in inv.hosts.values():
            transform(host, **(config.inventory.transform_function_options or {}))
    return inv


def runner(name: str, options: dict[str, Any]) -> RunnerPlugin:
    """Nornir's runner ``name`` (``threaded``, ``serial``, or a registered plugin) with ``options``."""
    from nornir.plugins.runners import SerialRunner

    known: dict[str, Any] = {"threaded": ThreadedRunner, "serial": SerialRunner}
    if name in known:
        cls = known[name]
    else:
        from nornir.core.plugins.runners import RunnersPluginRegister

        RunnersPluginRegister.auto_register()
        cls = RunnersPluginRegister.get_plugin(name)
    plugin: RunnerPlugin = cls(**options)
    return plugin
