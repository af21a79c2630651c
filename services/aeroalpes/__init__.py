"""AeroAlpes: the flight-reservation REST service.

Layers: ``domain`` (dataclasses and rules, pure), ``codec`` (JSON mapping, pure), ``repository``
(Redis Cluster), ``http`` (Flask), ``config`` (environment), ``__main__`` (gunicorn).
This ``__init__`` stays import-free so the adapter can use the domain and codec without Flask or Redis.
"""
