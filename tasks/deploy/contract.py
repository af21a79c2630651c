"""What the deploy play reads from the inventory (it runs on the k3s hosts and reads the redis settings).

Values that end up in an image reference or a Service are checked up front (nr.formats): the
registry must make a valid image reference with our image names, the base image must be one, and
the adapter's NodePort must be in Kubernetes's NodePort range.
"""

from __future__ import annotations

from typing import Any

from nr import formats
from nr.contract import Contract, Field, Kind

NODE_PORT_RANGE = (30000, 32767)  # the API server's default --service-node-port-range


def registry(value: Any) -> str | None:
    """A registry (``host[:port]``) with an optional path, to which ``/<image>:<tag>`` is appended."""
    if not isinstance(value, str) or not value.strip("/"):
        return "must be a registry such as registry.example:5000 or registry.example/team"
    if "@" in value or formats.image_ref(f"{value.rstrip('/')}/aeroalpes-adapter:0.1.0") is not None:
        return (
            "must be a registry such as registry.example:5000 or registry.example/team (no tag, no digest): "
            "the images are pulled as <registry>/aeroalpes:<tag>"
        )
    return None


CONTRACT = Contract(
    data={
        "adapter_node_port": Field(
            Kind.PORT,
            "NodePort of the gRPC adapter (default 30051)",
            formats.port_range(*NODE_PORT_RANGE, "a NodePort"),
        ),
        "image_registry": Field(
            Kind.STR, "registry to pull the service images from instead of pushing them", registry
        ),
        "image_base": Field(
            Kind.STR,
            "base image for building the service images (default python:3.11-slim)",
            formats.image_ref,
        ),
    },
    lab_data={"image_base": "{lab_image}"},  # the lab builds the images offline on its own base image
)
