"""AeroAlpes: the flight-reservation REST service.

Layers: ``domain`` (dataclasses and rules, pure), ``codec`` (JSON mapping, pure), ``repository``
(Redis Cluster, asyncio), ``retry`` (deadlines, backoff), ``http`` (routes and JSON errors), ``server``
(the HTTP/1.1 server and its limits), ``workers`` (event-loop processes), ``config`` (environment),
``__main__`` (``aeroalpes-api``). This ``__init__`` stays import-free so the adapter and the client can
use the domain and codec without the server's libraries or Redis.
"""
