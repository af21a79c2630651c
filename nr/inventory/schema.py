"""What an inventory may contain: the fields of hosts, groups and defaults, and the engine's own keys.

The ``data`` keys of components and their role groups are not listed here: each component declares
them in its :class:`~nr.contract.Contract`, and :func:`nr.registry.registry` composes them with
:data:`COMMON_DATA` into the schema the validator checks. A key no contract declares is a typo
until proven otherwise.
"""

from __future__ import annotations

from nr import formats
from nr.contract import Field, Kind

HOST_KEYS = {"hostname", "port", "username", "password", "platform", "groups", "data", "connection_options"}
GROUP_KEYS = HOST_KEYS
DEFAULTS_KEYS = HOST_KEYS - {"groups"}
CONNECTION_KEYS = {"hostname", "port", "username", "password", "platform", "extras"}
CONNECTION_PLUGINS = {"fabric"}

# connection_options.fabric.extras
SSH_EXTRAS: dict[str, Field] = {
    "key_filename": Field(Kind.PATH, "private key file used for SSH authentication"),
    "known_hosts": Field(Kind.PATH, "known_hosts file checked before ~/.ssh/known_hosts"),
    "accept_new": Field(Kind.BOOL, "accept and record keys of hosts not yet known (never changed keys)"),
    "connect_timeout": Field(Kind.INT, "seconds to wait for the SSH connection"),
    "command_timeout": Field(Kind.INT, "seconds a remote command may run"),
    "keepalive_interval": Field(Kind.INT, "seconds between SSH keepalives while a command runs (default 5)"),
    "keepalive_count": Field(
        Kind.INT, "keepalive intervals without an answer after which the host counts as lost (default 3)"
    ),
    "sudo_password": Field(Kind.SECRET, "password for sudo when the user is not root"),
    "ssh_config": Field(Kind.PATH, "ssh_config file to read instead of ~/.ssh/config"),
}

# data keys every component may read: who the host is on the network, what the site is called.
COMMON_DATA: dict[str, Field] = {
    "node_ip": Field(Kind.IP, "address the services bind and advertise (default: hostname, if an IP)"),
    "site_name": Field(
        Kind.STR, "name of the site: kubeconfig context, labels (a DNS label)", formats.dns_label
    ),
    "drift_result": Field(
        Kind.STR,
        "file where `nr drift` keeps its last result and `nr status` reads it (JSON; relative to the "
        "inventory folder; default .nr-drift.json there)",
    ),
}
