"""Reusable operations, pyinfra-style: a fact (command + parser) and a pure plan that returns changes.

* :mod:`nr.ops.files`: files from content or local files (atomic writes, SFTP uploads with sha256);
* :mod:`nr.ops.apt`: Debian packages (names validated, ``--`` before the list);
* :mod:`nr.ops.systemd`: units enabled and running, daemon-reload, restarts;
* :mod:`nr.ops.release`: release binaries downloaded once and checked against a sha256;
* :mod:`nr.ops.kubectl`: ``kubectl get -o json`` reads, diff, apply and rollout status (stdout parsed, stderr kept
  apart, exit codes as kubectl documents them);
* :mod:`nr.ops.kubediff`: ``kubectl diff`` output parsed per object, every Secret masked by structure.

Components use these instead of their own copies; each is unit-tested with facts fixtures.
"""
