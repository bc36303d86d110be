"""Python mirror of php_offsets.h: the per-process struct the BPF PHP walker reads, and its frame cookie.

Field names and constants are identical to the C header; tests/unit/test_layouts.py compiles the header and
compares.
"""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.php.layouts import PhpLayout

PHP_CALL_TOP = 1 << 17
PHP_FN_INTERNAL = 1
PHP_FN_USER = 2
PHP_FN_EVAL = 4
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


class PhpProcInfo(ctypes.Structure):
    """`struct php_proc_info`: where one process's PHP stack starts and the offsets its walk reads."""

    _fields_ = (
        ("current_execute_data", ctypes.c_uint64),
        ("ex_opline", ctypes.c_uint8),
        ("ex_func", ctypes.c_uint8),
        ("ex_call_info", ctypes.c_uint8),
        ("ex_prev", ctypes.c_uint8),
        ("fn_type", ctypes.c_uint8),
        ("fn_name", ctypes.c_uint8),
        ("fn_scope", ctypes.c_uint8),
        ("op_lineno", ctypes.c_uint8),
        ("version", ctypes.c_uint16),
        ("reserved0", ctypes.c_uint16),
        ("jit_probed", ctypes.c_uint32),
        ("jit_start", ctypes.c_uint64),
        ("jit_end", ctypes.c_uint64),
        ("jit_dispatch", ctypes.c_uint64),
    )


def php_proc_info(
    layout: PhpLayout, current_execute_data: int, jit: tuple[int, int] = (0, 0), jit_dispatch: int = 0
) -> PhpProcInfo:
    """The BPF walker's info for a process whose &EG(current_execute_data) is at `current_execute_data`;
    `jit` is its opcache JIT buffer [start, end) ((0, 0) while unknown: BPF then looks for it itself) and
    `jit_dispatch` the runtime pc JIT'd code is unwound as (execute_ex's dispatch jump + 1; 0: none)."""
    return PhpProcInfo(
        current_execute_data=current_execute_data,
        ex_opline=layout.ex_opline,
        ex_func=layout.ex_func,
        ex_call_info=layout.ex_call_info,
        ex_prev=layout.ex_prev,
        fn_type=layout.fn_type,
        fn_name=layout.fn_name,
        fn_scope=layout.fn_scope,
        op_lineno=layout.op_lineno,
        version=layout.version[0] << 8 | layout.version[1],
        jit_start=jit[0],
        jit_end=jit[1],
        jit_dispatch=jit_dispatch,
    )


def php_func_cookie(name: int, scope: int, fn_type: int) -> int:
    """The frame's aux: the zend_function's name and scope pointers and type folded to 32 bits (as
    php_unwind.bpf.h computes it), so a freed and reused zend_function address is not named wrongly."""
    scope31 = (scope * 31) & _U64
    return (name ^ (name >> 32) ^ scope31 ^ (scope31 >> 32) ^ fn_type) & _U32
