"""Name PHP frames from process memory: a zend_function pointer plus a line becomes a Frame.

What the walk sends per frame (zend_function *, line, call info) is what the BPF walker will send; the
zend_function is read here, once per address, into its name (`Class::method`, `function`, `<main>` for a
file's top-level code, `<eval'd code>`), file and first line. Internal functions (`usleep`, `array_map`,
`ArrayIterator::current`) have no file. Nothing here raises for bad memory: it returns a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.interpreters.php.layouts import (
    ZEND_EVAL_CODE,
    ZEND_INTERNAL_FUNCTION,
    PhpLayout,
)
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

RUNTIME = "php"  # Frame.runtime: OTel's profile.frame.type for PHP frames
MAIN = "<main>"  # a file's top-level code (the script, or an included file)
EVAL = "<eval'd code>"
MAX_NAME = 1024  # longest function or class name read; longer is a corrupt length
MAX_PATH = 4096
CACHE_SIZE = 16384  # functions per process


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What a zend_function contributes to a frame."""

    name: str
    file: str  # "" for internal functions
    line_start: int
    internal: bool


def _read(mem: MemoryReader, addr: int, size: int) -> bytes | None:
    return mem.read(addr, size) if addr else None


class FunctionReader:
    """Reads zend_functions of one process, cached by address (they live as long as their script)."""

    def __init__(self, mem: MemoryReader, layout: PhpLayout) -> None:
        self.mem = mem
        self.layout = layout
        self._functions: BoundedLru[int, FunctionInfo] = BoundedLru(CACHE_SIZE)

    def string(self, addr: int, limit: int) -> str | None:
        """A zend_string's text, None when unreadable or longer than `limit`."""
        lay = self.layout
        length = self.mem.u64(addr + lay.str_len) if addr else None
        if length is None or length > limit:
            return None
        data = self.mem.read(addr + lay.str_val, length) if length else b""
        return None if data is None else data.decode("utf-8", "replace")

    def function(self, func: int) -> FunctionInfo | str:
        """The named function at `func`, or why it cannot be read."""
        found = self._functions.get(func)
        if found is None:
            found = self._read_function(func)
            if isinstance(found, str):
                return found
            self._functions.put(func, found)
        return found

    def _read_function(self, func: int) -> FunctionInfo | str:
        lay = self.layout
        data = _read(self.mem, func, lay.fn_read_size)
        if data is None:
            return "zend_function unreadable"
        fn_type = data[lay.fn_type]

        def pointer(offset: int) -> int:
            return int.from_bytes(data[offset : offset + 8], "little")

        name_ptr, scope = pointer(lay.fn_name), pointer(lay.fn_scope)
        internal = fn_type == ZEND_INTERNAL_FUNCTION
        if name_ptr:
            name = self.string(name_ptr, MAX_NAME)
            if name is None:
                return "function name unreadable"
        else:
            name = EVAL if fn_type == ZEND_EVAL_CODE else MAIN
        if scope and name_ptr:
            class_name = self.string(self.mem.u64(scope + lay.ce_name) or 0, MAX_NAME)
            if class_name is None:
                return "class name unreadable"
            name = f"{class_name}::{name}"
        if internal:
            return FunctionInfo(name, "", 0, True)
        filename = self.string(pointer(lay.fn_filename), MAX_PATH)
        if filename is None:
            return "file name unreadable"
        line_start = int.from_bytes(data[lay.fn_line_start : lay.fn_line_start + 4], "little")
        return FunctionInfo(name, filename, line_start, False)

    def frame(self, func: int, line: int) -> Frame | str:
        """The Frame of `func` at `line`, or why it cannot be named."""
        info = self.function(func)
        if isinstance(info, str):
            return info
        return Frame(
            kind=FrameKind.INTERPRETED,
            function=info.name,
            file=info.file,
            line=line,
            start_line=info.line_start,
            runtime=RUNTIME,
        )
