"""Zend engine struct layouts (x86-64, NTS builds): the offsets the PHP walker reads, one row per minor.

Rows 7.4, 8.2 and 8.4 were checked with `offsetof` against Debian's php7.4-dev, php8.2-dev and php8.4-dev
headers (tests/unit/test_php_layouts.py re-checks every header tree on the machine); 8.0, 8.1 and 8.3 come
from reading those branches' zend_op_array definitions (only op_array.filename and line_start move) and
agree with the OpenTelemetry eBPF profiler's table, which its per-version core dumps test. The installed
8.2 is also checked by behaviour: the walker must reproduce a known chain (tests/unit/test_php_walker.py);
so was a Debian 7.4.33 by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

# zend_function.type (Zend/zend_compile.h), the same in every supported version.
ZEND_INTERNAL_FUNCTION = 1
ZEND_USER_FUNCTION = 2
ZEND_EVAL_CODE = 4
FUNCTION_TYPES = (ZEND_INTERNAL_FUNCTION, ZEND_USER_FUNCTION, ZEND_EVAL_CODE)

# Call info flags: the top 16 bits of Z_TYPE_INFO(execute_data->This) (7.3+).
ZEND_CALL_CODE = 1 << 16  # top-level code of a file (main script, include/require) or eval
ZEND_CALL_TOP = 1 << 17  # entered from C (zend_execute, zend_call_function): last frame of its execute_ex
ZEND_CALL_CLOSURE = 1 << 22

ZEND_VM_KIND_HYBRID = 4  # zend_vm_kind(): the default VM, the one the opcache JIT works with
MIN_VERSION = (7, 4)
MAX_VERSION = (8, 4)


@dataclass(frozen=True, slots=True)
class PhpLayout:
    """Every offset the walker and symbolizer read in one PHP minor version."""

    version: tuple[int, int]
    source: str  # how the row was established: "headers" (offsetof checked) or "source" (read by hand)
    eg_current_execute_data: int  # zend_executor_globals.current_execute_data
    ex_opline: int  # zend_execute_data.opline (const zend_op *)
    ex_func: int  # zend_execute_data.func (zend_function *)
    ex_call_info: int  # zend_execute_data.This.u1.type_info (u32; call info in the top 16 bits)
    ex_prev: int  # zend_execute_data.prev_execute_data
    fn_type: int  # zend_function.type (u8)
    fn_name: int  # zend_function.common.function_name (zend_string *, NULL for top-level code)
    fn_scope: int  # zend_function.common.scope (zend_class_entry *)
    fn_filename: int  # zend_function.op_array.filename (zend_string *), user and eval code only
    fn_line_start: int  # zend_function.op_array.line_start (u32)
    ce_name: int  # zend_class_entry.name (zend_string *)
    op_lineno: int  # zend_op.lineno (u32)
    str_len: int  # zend_string.len (size_t)
    str_val: int  # zend_string.val (char[], the bytes follow the header)

    @property
    def ex_read_size(self) -> int:
        """Bytes of zend_execute_data one read must cover to get opline, func, call info and prev."""
        return max(self.ex_opline, self.ex_func, self.ex_prev) + 8

    @property
    def fn_read_size(self) -> int:
        """Bytes of zend_function one read must cover for type, name, scope, filename and line_start."""
        return max(self.fn_filename + 8, self.fn_line_start + 4)


# zend_executor_globals, zend_execute_data, zend_function.common, zend_class_entry, zend_op and
# zend_string heads are the same in 7.4-8.4; only op_array's own fields move.
_COMMON = {
    "eg_current_execute_data": 488,
    "ex_opline": 0,
    "ex_func": 24,
    "ex_call_info": 40,
    "ex_prev": 48,
    "fn_type": 0,
    "fn_name": 8,
    "fn_scope": 16,
    "ce_name": 8,
    "op_lineno": 24,
    "str_len": 16,
    "str_val": 24,
}

# (filename, line_start, source) per minor. 8.0 adds common.attributes (+8; 8.1 adds fields only after
# line_start); 8.2 moves T and run_time_cache into common (T, run_time_cache: +8 with padding); 8.3 swaps
# them (run_time_cache, T: T packs with cache_size, -8); 8.4 adds common.doc_comment and prop_info (+24).
_OP_ARRAY: dict[tuple[int, int], tuple[int, int, str]] = {
    (7, 4): (136, 144, "headers"),
    (8, 0): (144, 152, "source"),
    (8, 1): (144, 152, "source"),
    (8, 2): (152, 160, "headers"),
    (8, 3): (144, 152, "source"),
    (8, 4): (168, 176, "headers"),
}

SUPPORTED = tuple(sorted(_OP_ARRAY))


def layout_for(major: int, minor: int) -> PhpLayout | None:
    """The layout of PHP `major.minor`, None when fleetprof has no row for it."""
    row = _OP_ARRAY.get((major, minor))
    if row is None:
        return None
    filename, line_start, source = row
    return PhpLayout(
        version=(major, minor),
        source=source,
        fn_filename=filename,
        fn_line_start=line_start,
        **_COMMON,
    )


def supported_text() -> str:
    """The covered versions as a short phrase for reasons: "7.4, 8.0-8.4"."""
    eights = [minor for major, minor in SUPPORTED if major == 8]
    return f"7.4, 8.{eights[0]}-8.{eights[-1]}"
