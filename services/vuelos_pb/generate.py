"""Regenerate the committed stubs of ``protos/vuelos.proto``.

Usage (from a source checkout, with the dev extra installed)::

    python -m services.vuelos_pb.generate            # rewrites services/vuelos_pb/*
    python -m services.vuelos_pb.generate --out DIR  # writes DIR/services/vuelos_pb/*

The proto is compiled under the virtual include path ``services/vuelos_pb``, so the generated
``vuelos_pb2_grpc`` imports ``from services.vuelos_pb import vuelos_pb2`` with no post-processing.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

PACKAGE_PATH = "services/vuelos_pb"
PROTO_NAME = "vuelos.proto"
GENERATED = ("vuelos_pb2.py", "vuelos_pb2.pyi", "vuelos_pb2_grpc.py")

_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parents[1]
PROTO_DIR = REPO_ROOT / "protos"


class GenerationError(RuntimeError):
    """protoc failed or is not installed."""


def protoc_args(proto_dir: Path, out_root: Path) -> list[str]:
    """The protoc command line (without argv[0]) that writes the stubs under ``out_root``."""
    from grpc_tools import protoc  # noqa: F401  (fails early when grpcio-tools is missing)

    well_known = resources.files("grpc_tools") / "_proto"
    return [
        f"-I{PACKAGE_PATH}={proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(proto_dir / PROTO_NAME),
    ]


def generate(out_root: Path = REPO_ROOT, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Compile the proto; returns the generated files (under ``out_root/services/vuelos_pb``)."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GenerationError("grpcio-tools is not installed (pip install -e '.[dev]')") from exc
    if not (proto_dir / PROTO_NAME).is_file():
        raise GenerationError(f"{proto_dir / PROTO_NAME} not found (run from a source checkout)")
    target = out_root / PACKAGE_PATH
    target.mkdir(parents=True, exist_ok=True)
    code = protoc.main(["grpc_tools.protoc", *protoc_args(proto_dir, out_root)])
    if code != 0:
        raise GenerationError(f"protoc exited with status {code}")
    return [target / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="output root (default: the checkout)")
    args = parser.parse_args(argv)
    try:
        for path in generate(args.out):
            print(path)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
