"""The redis component's errors: every message names the host, instance or field, never the password."""

from __future__ import annotations


class PlanError(ValueError):
    """The requested layout or change cannot be planned; the message says which host/field and why."""


class ClusterError(RuntimeError):
    """A cluster command failed; the message names the instance and never contains the password."""


class AccessError(ClusterError):
    """Instances of the layout are unreachable, reject the password or are not in cluster mode."""


class ClusterParseError(ValueError):
    """Unexpected CLUSTER NODES / INFO / SHARDS output."""
