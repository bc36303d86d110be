"""table.py mirrors unwind_table.h: constants, struct sizes and offsets; plus the UnwindTable accessors."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from array import array
from pathlib import Path

import pytest

from fleetprof.nativeunwind import table as t

HEADER = Path(t.__file__).with_name("unwind_table.h")


def test_constants_match_the_header_text():
    defines = dict(re.findall(r"#define (UW_\w+) (\d+)", HEADER.read_text()))
    assert defines, "the header defines UW_* constants"
    for name, value in defines.items():
        assert getattr(t, name) == int(value), name


def test_struct_layouts():
    assert ctypes.sizeof(t.UnwindRule) == t.RULE_STRUCT.size == 16
    assert ctypes.sizeof(t.UnwindRow) == t.ROW_STRUCT.size == 8
    assert [(n, getattr(t.UnwindRule, n).offset) for n, _ in t.UnwindRule._fields_] == [
        ("cfa_kind", 0), ("rbp_kind", 1), ("rbx_off", 2), ("cfa_off", 4), ("cfa_aux", 8), ("rbp_off", 12),
    ]  # fmt: skip
    rule = t.UnwindRule.from_buffer_copy(t.RULE_STRUCT.pack(4, 1, -56, -8, 11, -16))
    got = (rule.cfa_kind, rule.rbp_kind, rule.rbx_off, rule.cfa_off, rule.cfa_aux, rule.rbp_off)
    assert got == (4, 1, -56, -8, 11, -16)


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_header_compiles_to_the_same_layout(tmp_path):
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <linux/types.h>\n#include <stddef.h>\n#include <stdio.h>\n"
        f'#include "{HEADER}"\n'
        "int main(void) {\n"
        '  printf("%zu %zu %zu %zu %zu %zu\\n", sizeof(struct unwind_rule), sizeof(struct unwind_row),\n'
        "         offsetof(struct unwind_rule, cfa_off), offsetof(struct unwind_rule, cfa_aux),\n"
        "         offsetof(struct unwind_rule, rbp_off), offsetof(struct unwind_row, rule));\n"
        "  return 0;\n}\n"
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(src)], check=True)
    out = subprocess.run(
        [str(tmp_path / "layout")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [int(v) for v in out] == [16, 8, 4, 8, 12, 4]


def test_rule_set_reserves_invalid_and_gap_rules():
    rules = t.RuleSet()
    assert rules.rules[0] == t.INVALID_RULE
    assert rules.rules[t.GAP_RULE_INDEX] == t.FRAME_POINTER_RULE
    a = rules.add(t.STOP_RULE)
    assert rules.add(t.STOP_RULE) == a == 2
    assert rules.add(t.INVALID_RULE) == 0


def test_table_accessors():
    rules = [
        t.INVALID_RULE,
        (t.UW_CFA_RSP, t.UW_RBP_SAME, 8, 0, 0, 0),
        (t.UW_CFA_RBP, t.UW_RBP_AT_CFA, 16, 0, -16, 0),
    ]
    rows = array("Q", [1 << 32 | 0x1000, 2 << 32 | 0x1004, 0x1020])
    stats = t.UnwindStats(fde_count=1)
    table = t.UnwindTable(rows, rules, stats)
    assert table.iter_rows() == [(0x1000, 1), (0x1004, 2), (0x1020, 0)]
    assert table.lookup(0xFFF) is None
    assert table.lookup(0x1000) == rules[1] and table.lookup(0x1003) == rules[1]
    assert table.lookup(0x101F) == rules[2] and table.lookup(0x5000) == t.INVALID_RULE
    assert table.rows_bytes()[:8] == bytes.fromhex("0010000001000000")
    assert table.rules_bytes()[16:32] == t.RULE_STRUCT.pack(0, 0, 0, 8, 0, 0)
    assert table.table_bytes == 3 * 8 + 3 * 16 and table.bytes_per_fde == 72.0
    assert t.describe_rule(rules[2]) == "cfa=rbp+16 rbp=c-16"
    assert t.describe_rule((t.UW_CFA_RBX, t.UW_RBP_SAME, 56, 0, 0, -56)) == "cfa=rbx+56 rbp=same rbx=c-56"
    assert (
        t.describe_rule((t.UW_CFA_REG, t.UW_RBP_SAME, 0, 10, 0, t.UW_RBX_LOST))
        == "cfa=r10+0 rbp=same rbx=lost"
    )
    assert t.describe_rule(t.SIGNAL_RULE) == "signal"
    assert t.UnwindStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(TypeError):
        t.UnwindTable(array("I"), rules, stats)
