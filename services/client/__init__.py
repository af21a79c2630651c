"""Client of the gRPC adapter: :mod:`services.client.roundtrip`, the create-then-read round trip the
site's checks rely on, and :mod:`services.client.probe`, the read-only probe (``nr drift`` and ``nr
status`` load that one alone: it needs no reservation model). Import from the module you use."""
