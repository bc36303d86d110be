"""The hand-written CRuby layouts table against the compiler: offsetof() over every Ruby internal header
on the machine (rb_mjit_min_header-X.Y.Z.h from rubyX.Y-dev; more in FLEETPROF_RUBY_MIN_HEADERS,
`:`-separated)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fleetprof.interpreters.ruby import layouts
from fleetprof.interpreters.ruby.layouts import SUPPORTED, RubyLayout, layout_for, supported_text
from tests.conftest import compile_c

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "ruby" / "offsets_probe.c"
# Probe name -> the module constant it must equal.
CONSTANTS = {
    "FL_USHIFT": layouts.FL_USHIFT,
    "FL_SINGLETON": layouts.FL_SINGLETON,
    "T_MASK": layouts.T_MASK,
    "T_STRING": layouts.T_STRING,
    "T_ARRAY": layouts.T_ARRAY,
    "T_CLASS": layouts.T_CLASS,
    "T_MODULE": layouts.T_MODULE,
    "T_ICLASS": layouts.T_ICLASS,
    "T_IMEMO": layouts.T_IMEMO,
    "imemo_svar": layouts.IMEMO_SVAR,
    "imemo_ment": layouts.IMEMO_MENT,
    "imemo_iseq": layouts.IMEMO_ISEQ,
    "VM_METHOD_TYPE_ISEQ": layouts.VM_METHOD_TYPE_ISEQ,
    "VM_METHOD_TYPE_CFUNC": layouts.VM_METHOD_TYPE_CFUNC,
    "VM_FRAME_MAGIC_MASK": layouts.VM_FRAME_MAGIC_MASK,
    "VM_FRAME_MAGIC_CFUNC": layouts.VM_FRAME_MAGIC_CFUNC,
    "VM_FRAME_MAGIC_DUMMY": layouts.VM_FRAME_MAGIC_DUMMY,
    "VM_FRAME_FLAG_FINISH": layouts.VM_FRAME_FLAG_FINISH,
    "VM_FRAME_FLAG_CFRAME": layouts.VM_FRAME_FLAG_CFRAME,
    "VM_ENV_FLAG_LOCAL": layouts.VM_ENV_FLAG_LOCAL,
    "ISEQ_TYPE_METHOD": layouts.ISEQ_TYPE_METHOD,
    "ISEQ_TYPE_BLOCK": layouts.ISEQ_TYPE_BLOCK,
    "ID_SCOPE_SHIFT": layouts.ID_SCOPE_SHIFT,
    "tLAST_OP_ID": layouts.LAST_OP_ID,
    "Qnil": layouts.QNIL,
}
# Probe name -> RubyLayout field, for the flag masks the row carries.
FLAG_FIELDS = {
    "RSTRING_NOEMBED": "str_noembed",
    "RSTRING_EMBED_LEN_MASK": "str_embed_len_mask",
    "RSTRING_EMBED_LEN_SHIFT": "str_embed_len_shift",
    "RARRAY_EMBED_FLAG": "ary_embed_flag",
    "RARRAY_EMBED_LEN_MASK": "ary_embed_len_mask",
    "RARRAY_EMBED_LEN_SHIFT": "ary_embed_len_shift",
}
# Fields the headers cannot show: st.c keeps st_table_entry opaque, symbol.h's rb_symbols_t is internal.
UNPROBED = {"version", "source", "st_entry_size", "st_entry_key", "st_entry_record", "symbols_ids"}


def _min_headers() -> list[Path]:
    """Every CRuby internal header (rb_mjit_min_header-X.Y.Z.h) known to this machine."""
    extra = [Path(p) for p in os.environ.get("FLEETPROF_RUBY_MIN_HEADERS", "").split(os.pathsep) if p]
    found = sorted(Path("/usr/include").glob("*/ruby-*/rb_mjit_min_header-*.h"))
    return [path for path in extra + found if path.exists()]


def _version(header: Path) -> tuple[int, int]:
    found = re.search(r"rb_mjit_min_header-(\d+)\.(\d+)\.\d+\.h$", header.name)
    assert found is not None, f"{header}: no version in the name"
    return int(found.group(1)), int(found.group(2))


HEADERS = _min_headers()


@pytest.mark.skipif(not HEADERS, reason="no CRuby internal headers installed (apt-get install ruby3.1-dev)")
@pytest.mark.parametrize("header", HEADERS, ids=str)
def test_layout_rows_match_offsetof(header: Path, build_dir: Path) -> None:
    """Each probed field of the version's row, and each constant, equals the interpreter's own value."""
    version = _version(header)
    layout = layout_for(*version)
    assert layout is not None, f"Ruby {version} headers installed but no layout row"
    name = f"ruby_probe_{version[0]}{version[1]}"
    binary = compile_c(PROBE.read_text(), build_dir / name, "-O2", f'-DRUBY_MIN_HEADER="{header}"')
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    probed = {key: int(value) for key, value in (line.split() for line in output.splitlines())}
    fields = {key: probed[key] for key in RubyLayout.__dataclass_fields__ if key in probed}
    assert fields == {key: getattr(layout, key) for key in fields}
    assert set(RubyLayout.__dataclass_fields__) - set(fields) - set(FLAG_FIELDS.values()) == UNPROBED
    assert {key: probed[key] for key in FLAG_FIELDS} == {
        key: getattr(layout, field) for key, field in FLAG_FIELDS.items()
    }
    assert {key: probed[key] for key in CONSTANTS} == CONSTANTS
    assert layout.source == "headers", "a row checked against headers should say so"


def test_rows_cover_the_documented_versions() -> None:
    """3.1 has a row whose reads cover its fields; other versions have none."""
    assert SUPPORTED == ((3, 1),)
    assert supported_text() == "3.1"
    assert layout_for(3, 0) is None and layout_for(3, 3) is None
    layout = layout_for(3, 1)
    assert layout is not None
    assert layout.ec_read_size == 24 and layout.cfp_read_size == 40
