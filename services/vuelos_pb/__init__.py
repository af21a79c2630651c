"""Generated protobuf/gRPC stubs for protos/vuelos.proto (do not edit; see ``generate``)."""
