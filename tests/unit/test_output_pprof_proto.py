"""The committed profile_pb2 module must be what protoc generates from the committed profile.proto."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fleetprof

SRC = Path(fleetprof.__file__).resolve().parent.parent
PROTO = Path("fleetprof/output/proto/profile.proto")
GENERATED = ("profile_pb2.py", "profile_pb2.pyi")
VERSION_LINE = re.compile(r"^# Protobuf Python Version: (.+)$", re.MULTILINE)
SERIALIZED = re.compile(r"AddSerializedFile\((b'.*?')\)\n")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("grpc_tools")
    out = tmp_path_factory.mktemp("protoc")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            str(SRC / PROTO),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / PROTO.parent


def test_generated_module_matches_proto(regenerated: Path) -> None:
    committed_py = (SRC / PROTO.parent / "profile_pb2.py").read_text()
    fresh_py = (regenerated / "profile_pb2.py").read_text()
    committed_version = VERSION_LINE.search(committed_py)
    fresh_version = VERSION_LINE.search(fresh_py)
    assert committed_version and fresh_version
    # The embedded descriptor is what the .proto means; it must match whatever protoc version runs.
    committed_descriptor = SERIALIZED.search(committed_py)
    fresh_descriptor = SERIALIZED.search(fresh_py)
    assert committed_descriptor and fresh_descriptor
    assert ast.literal_eval(committed_descriptor[1]) == ast.literal_eval(fresh_descriptor[1]), (
        "profile.proto changed: regenerate profile_pb2 (see fleetprof/output/proto/__init__.py)"
    )
    if committed_version[1] == fresh_version[1]:  # same protoc: the files must be identical
        for name in GENERATED:
            assert (SRC / PROTO.parent / name).read_text() == (regenerated / name).read_text(), name


def test_generated_module_describes_pprof() -> None:
    from fleetprof.output.proto import profile_pb2

    fields = {f.name: f.number for f in profile_pb2.Profile.DESCRIPTOR.fields}
    assert fields["string_table"] == 6
    assert fields["period"] == 12
    assert fields["doc_url"] == 15
    assert profile_pb2.Profile.DESCRIPTOR.full_name == "perftools.profiles.Profile"
    assert {f.name: f.number for f in profile_pb2.Function.DESCRIPTOR.fields}["start_line"] == 5
