"""The ``checks`` component: proves the app works (Deployments available, gRPC round trips)."""
