"""The components and plays of this project, as the engine finds them (:mod:`nr.registry`).

To add a component: write its package (``contract.py`` with a ``CONTRACT``, a module with the
component object), add an :class:`Entry` here and name it in the plays that should run it.
"""

from nr.registry import Catalog, Entry

CATALOG = Catalog(
    entries=[
        Entry("base", "hostnames, packages, kernel modules, sysctls; swap and time checks",
              "tasks.base.contract:CONTRACT", "tasks.base.play:component"),
        Entry("redis", "Redis Cluster: 2 instances per host, rotated replicas, exact placement",
              "tasks.redis.contract:CONTRACT", "tasks.redis.play:component"),
        Entry("k3s", "k3s servers and agents: config, units, binary, ordered rollout, readiness, kubeconfig",
              "tasks.k3s.contract:CONTRACT", "tasks.k3s.play:component"),
        Entry("k3s-reset", "uninstall k3s (agents first, then servers); not part of site",
              "tasks.k3s.contract:CONTRACT", "tasks.k3s.reset:reset_component"),
        Entry("deploy", "AeroAlpes and its gRPC adapter on k3s (images pushed to the nodes, manifests applied)",
              "tasks.deploy.contract:CONTRACT", "tasks.deploy.play:component"),
        Entry("checks", "the app works: Deployments available, gRPC round trips through every node",
              "tasks.checks.contract:CONTRACT", "tasks.checks.play:component"),
        Entry("patch", "OS updates and reboots one host at a time, the site in service; not part of site",
              "tasks.patch.contract:CONTRACT", "tasks.patch.play:component"),
    ],
    # base prepares the hosts; redis builds the Redis Cluster the services keep their data in; k3s
    # forms the cluster; deploy ships the images and applies k3s/; checks proves nodes and routing.
    plays={"site": ("base", "redis", "k3s", "deploy", "checks")},
)  # fmt: skip
