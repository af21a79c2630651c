"""The ``site`` play: every component, in the order the site needs them.

base prepares the hosts; redis builds the Redis Cluster the services keep their data in; k3s forms
the cluster; deploy ships the images and applies ``k3s/``; checks proves nodes and routing.
Registered under the entry-point group ``nr.plays``; ``nr run site`` runs it.
"""

SITE: tuple[str, ...] = ("base", "redis", "k3s", "deploy", "checks")
