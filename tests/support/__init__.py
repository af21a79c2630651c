"""Helpers for the tests and benchmarks on one machine: a throwaway Redis Cluster on loopback and
service processes started on free ports (never used by the services themselves)."""
