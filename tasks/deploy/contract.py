"""What the deploy play reads from the inventory (it runs on the k3s hosts and reads the redis settings)."""

from __future__ import annotations

from nr.contract import Contract, Field, Kind

CONTRACT = Contract(
    data={
        "adapter_node_port": Field(Kind.PORT, "NodePort of the gRPC adapter (default 30051)"),
        "image_registry": Field(Kind.STR, "registry to pull the service images from instead of pushing them"),
        "image_base": Field(
            Kind.STR, "base image for building the service images (default python:3.11-slim)"
        ),
    },
    lab_data={"image_base": "{lab_image}"},  # the lab builds the images offline on its own base image
)
