"""A client generated from the tutorial's exact proto works unchanged against our adapter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from aeroalpes_testdata import FIXTURES

grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) compiles the tutorial proto")
from grpc_tools import protoc  # noqa: E402


@pytest.fixture(scope="module")
def tutorial_client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's proto compiled under its own name (vuelos.proto -> vuelos_pb2, vuelos_pb2_grpc)."""
    out = tmp_path_factory.mktemp("tutorial-client")
    shutil.copy(FIXTURES / "tutorial_vuelos.proto", out / "vuelos.proto")
    shutil.copy(FIXTURES / "tutorial_style_client.py", out / "client.py")
    well_known = resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{out}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    assert protoc.main([*args, str(out / "vuelos.proto")]) == 0
    assert (out / "vuelos_pb2_grpc.py").read_text().count("import vuelos_pb2 as vuelos__pb2") == 1
    return out


def test_tutorial_generated_client_against_our_adapter(tutorial_client_dir: Path, adapter: str) -> None:
    # A separate interpreter: its descriptor pool holds only the tutorial's vuelos.proto.
    run = subprocess.run(
        [sys.executable, "client.py", adapter],
        cwd=tutorial_client_dir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    created, fetched = report["created"], report["fetched"]
    assert created["mensaje"] == fetched["mensaje"] == "OK"
    assert created == fetched
    assert report["sent_itinerarios_equal"] is True
    leg = created["reserva"]["itinerarios"][0]["odos"][0]["segmentos"][0]["legs"][0]
    assert leg == {
        "fecha_salida": "2022-11-22T13:10:00Z",
        "fecha_llegada": "2022-11-22T22:10:00Z",
        "origen": {"codigo": "BOG", "nombre": "El Dorado"},
        "destino": {"codigo": "JFK", "nombre": "JFK"},
    }
    assert report["missing"] == "NOT_FOUND"
