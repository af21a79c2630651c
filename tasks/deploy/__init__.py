"""The ``deploy`` component: the AeroAlpes services and their gRPC adapter on k3s."""
