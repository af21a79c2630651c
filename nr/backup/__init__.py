"""Backups of a whole site: ``nr backup`` and ``nr restore``.

The engine's part: the commands (:mod:`nr.backup.cli`), the orchestration over the components of the
site play (:mod:`nr.backup.run`), the folder, manifest, checksums and retention (:mod:`nr.backup.folder`)
and the encrypted secrets file (:mod:`nr.backup.secretbox`). What a component implements to take part
is in :mod:`nr.backup.api`.
"""
