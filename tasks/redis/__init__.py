"""The ``redis`` component: a Redis Cluster with two instances per host and rotated replicas."""
