"""HotSpot discovery from libjvm.so files (the installed JDKs when present) and layouts from table values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetprof.interpreters.hotspot.discovery import (
    HotSpotBinary,
    HotSpotUnsupported,
    inspect_hotspot_binary,
    is_hotspot_name,
)
from fleetprof.interpreters.hotspot.layouts import HotSpotLayout, VMValues, layout_from

JDKS = {
    17: Path("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"),
    25: Path("/usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so"),
}


def test_names() -> None:
    assert is_hotspot_name("/usr/lib/jvm/x/lib/server/libjvm.so")
    assert not is_hotspot_name("/usr/lib/libjvm.so.1")
    assert not is_hotspot_name("/usr/bin/java")


def test_not_hotspot_is_none(tmp_path: Path) -> None:
    assert inspect_hotspot_binary(os.path.realpath("/bin/true")) is None
    junk = tmp_path / "libjvm.so"
    junk.write_bytes(b"\x7fELF" + b"\0" * 100)
    assert inspect_hotspot_binary(junk) is None


@pytest.mark.parametrize("major", sorted(JDKS))
def test_tables_from_file(major: int) -> None:
    path = JDKS[major]
    if not path.exists():
        pytest.skip(f"{path} not installed")
    binary = inspect_hotspot_binary(path)
    assert isinstance(binary, HotSpotBinary)
    assert binary.version[0] == major
    assert inspect_hotspot_binary(path) is binary  # cached per file id
    keys = {f"{e.type_name}::{e.field_name}": e for e in binary.tables.structs}
    assert keys["CodeCache::_heaps"].address  # a static: its ELF address from the relocations
    assert keys["CodeHeap::_segmap"].type_string == "VirtualSpace"
    assert keys["Method::_constMethod"].address == 0
    assert {"HeapBlock", "ConstMethod", "PcDesc", "nmethod"} <= set(binary.tables.types)
    assert "frame::interpreter_frame_sender_sp_offset" in binary.tables.int_constants


def _values(**overrides: int) -> VMValues:
    """Table values shaped like JDK 17's (the numbers are what a JDK 17 process reports)."""
    fields = {
        "GrowableArrayBase::_len": 0,
        "GrowableArray<int>::_data": 8,
        "CodeHeap::_memory": 8,
        "CodeHeap::_segmap": 120,
        "CodeHeap::_log2_segment_size": 256,
        "VirtualSpace::_low_boundary": 0,
        "VirtualSpace::_high_boundary": 8,
        "VirtualSpace::_low": 16,
        "VirtualSpace::_high": 24,
        "HeapBlock::_header": 0,
        "HeapBlock::Header::_length": 0,
        "HeapBlock::Header::_used": 8,
        "CodeBlob::_name": 96,
        "CodeBlob::_size": 12,
        "CodeBlob::_frame_size": 28,
        "CodeBlob::_frame_complete_offset": 20,
        "CodeBlob::_data_offset": 24,
        "CodeBlob::_code_begin": 32,
        "CodeBlob::_code_end": 40,
        "CompiledMethod::_method": 112,
        "CompiledMethod::_scopes_data_begin": 120,
        "CompiledMethod::_deopt_handler_begin": 128,
        "nmethod::_compile_id": 304,
        "nmethod::_entry_bci": 192,
        "nmethod::_orig_pc_offset": 300,
        "nmethod::_scopes_pcs_offset": 268,
        "nmethod::_dependencies_offset": 272,
        "nmethod::_metadata_offset": 260,
        "Method::_constMethod": 8,
        "ConstMethod::_constants": 8,
        "ConstMethod::_flags": 28,
        "ConstMethod::_code_size": 32,
        "ConstMethod::_name_index": 34,
        "ConstMethod::_signature_index": 36,
        "ConstMethod::_constMethod_size": 16,
        "ConstantPool::_pool_holder": 24,
        "ConstantPool::_source_file_name_index": 54,
        "Klass::_name": 24,
        "Symbol::_length": 4,
        "Symbol::_body": 6,
        "PcDesc::_pc_offset": 0,
        "PcDesc::_scope_decode_offset": 4,
    }
    fields.update(overrides)
    return VMValues(
        fields=fields,
        field_types={"HeapBlock::Header::_length": "size_t", "ConstMethod::_flags": "u2"},
        statics={"CodeCache::_heaps": 0x131C600},
        sizes={"HeapBlock": 16, "ConstMethod": 48, "ConstantPool": 72, "PcDesc": 16},
        constants={
            "ConstMethod::_has_linenumber_table": 1,
            "frame::interpreter_frame_sender_sp_offset": -1,
            "frame::interpreter_frame_last_sp_offset": -2,
        },
    )


def test_layout_from_values() -> None:
    layout = layout_from(_values(), (17, 0, 15, 6))
    assert isinstance(layout, HotSpotLayout)
    assert layout.nmethod_method == 112
    assert layout.heapblock_used == 8 and layout.heapblock_length_width == 8
    assert layout.blob_code_offset == -1 and layout.blob_code_begin == 32
    assert layout.nmethod_scopes_pcs_end == 272
    assert (layout.fp_method, layout.fp_bcp, layout.fp_sender_sp) == (-3, -8, -1)
    assert not layout.unsigned5_excludes_zero


def test_layout_refusals() -> None:
    values = _values()
    assert "JDK 23 is not covered" in str(layout_from(values, (23, 0, 1, 1)))
    del values.fields["Method::_constMethod"]
    assert layout_from(values, (17, 0, 1, 1)) == "JDK 17: VMStructs lacks Method::_constMethod"


def test_unsupported_marker() -> None:
    assert (
        HotSpotUnsupported("JDK 8 is older than JDK 11").marker == "[unwind: jvm: JDK 8 is older than JDK 11]"
    )


def test_layout_older_names() -> None:
    """JDK 11-14 names: GenericGrowableArray::_len, the source file index in InstanceKlass."""
    values = _values()
    values.fields["GenericGrowableArray::_len"] = values.fields.pop("GrowableArrayBase::_len")
    values.fields["InstanceKlass::_source_file_name_index"] = 470
    del values.fields["ConstantPool::_source_file_name_index"]
    layout = layout_from(values, (11, 0, 20, 8))
    assert isinstance(layout, HotSpotLayout)
    assert layout.growable_len == 0
    assert (layout.constantpool_source_file_name_index, layout.instanceklass_source_file_name_index) == (
        -1,
        470,
    )
    del values.fields["InstanceKlass::_source_file_name_index"]
    assert layout_from(values, (11, 0, 20, 8)) == "JDK 11: VMStructs has no _source_file_name_index"
