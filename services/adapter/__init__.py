"""The gRPC adapter: ``vuelos.Vuelos`` translated to the AeroAlpes REST API.

Modules: ``config`` (environment), ``proto_codec`` (proto <-> domain, pure), ``rest`` (pooled HTTP
client), ``servicer`` (RPC -> REST -> RPC, error codes), ``server`` (gRPC server, health, reflection,
graceful shutdown), ``healthcheck`` (container HEALTHCHECK), ``__main__`` (``aeroalpes-adapter``).
"""
