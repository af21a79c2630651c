"""Client of the gRPC adapter: the create-then-read round trip the site's checks rely on."""

from services.client.roundtrip import RoundTripResult, lookup_probe, roundtrip, sample_reserva

__all__ = ["RoundTripResult", "lookup_probe", "roundtrip", "sample_reserva"]
