"""The committed stubs are up to date, and protos/vuelos.proto keeps the tutorial's wire contract."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from aeroalpes_testdata import FIXTURES
from google.protobuf import descriptor_pb2

from services.vuelos_pb import generate

grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) generates the stubs")
from grpc_tools import protoc  # noqa: E402

STUBS = Path(generate.__file__).parent


def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    generated = generate.generate(tmp_path)
    assert [p.name for p in generated] == list(generate.GENERATED)
    for path in generated:
        committed = STUBS / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run `python -m services.vuelos_pb.generate` and commit the result"
        )


def test_grpc_module_imports_the_package_path() -> None:
    text = (STUBS / "vuelos_pb2_grpc.py").read_text()
    assert "from services.vuelos_pb import vuelos_pb2" in text


def compile_descriptor(proto_dir: Path, name: str, out: Path) -> descriptor_pb2.FileDescriptorProto:
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--descriptor_set_out={out}",
        str(proto_dir / name),
    ]
    assert protoc.main(args) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return next(f for f in files if f.name == name)


def test_wire_compatible_with_the_tutorial_contract(tmp_path: Path) -> None:
    ours = compile_descriptor(generate.PROTO_DIR, "vuelos.proto", tmp_path / "ours.pb")
    theirs = compile_descriptor(FIXTURES, "tutorial_vuelos.proto", tmp_path / "theirs.pb")
    assert ours.package == theirs.package == "vuelos"
    our_messages = {m.name: m for m in ours.message_type}
    for message in theirs.message_type:
        assert message.name in our_messages, f"message {message.name} missing"
        our_fields = {f.number: f for f in our_messages[message.name].field}
        for field in message.field:
            mine = our_fields.get(field.number)
            assert mine is not None, f"{message.name}.{field.name} (= {field.number}) missing"
            assert (mine.name, mine.type, mine.label, mine.type_name, mine.proto3_optional) == (
                field.name,
                field.type,
                field.label,
                field.type_name,
                field.proto3_optional,
            ), f"{message.name}.{field.name} changed"
    (their_service,) = theirs.service
    our_service = next(s for s in ours.service if s.name == their_service.name == "Vuelos")
    our_methods = {m.name: (m.input_type, m.output_type) for m in our_service.method}
    for method in their_service.method:
        assert our_methods.get(method.name) == (method.input_type, method.output_type), method.name
