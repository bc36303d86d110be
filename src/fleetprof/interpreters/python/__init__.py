"""CPython support: discovery, the per-process struct for the BPF walker, symbolization, reference walker.

Start at `inspect_python_binary` (per ELF file), `proc_info` (per process, for the BPF map),
`PythonSymbolizer` (sampled frames to Frame) and `walk_thread_stacks` (userspace reference walk).
"""

from fleetprof.interpreters.python.debug_offsets import DebugOffsetsError, parse_debug_offsets
from fleetprof.interpreters.python.discovery import PythonBinary, UnsupportedPython, inspect_python_binary
from fleetprof.interpreters.python.evalloop import EvalRange
from fleetprof.interpreters.python.process import PythonProcess, find_python, proc_info
from fleetprof.interpreters.python.procinfo import PyFrameRecord, PyProcInfo, code_checksum
from fleetprof.interpreters.python.symbolizer import ProcessSymbolizer, PythonSymbolizer
from fleetprof.interpreters.python.walker import ThreadStack, walk_thread_stacks

__all__ = [
    "DebugOffsetsError",
    "EvalRange",
    "ProcessSymbolizer",
    "PyFrameRecord",
    "PyProcInfo",
    "PythonBinary",
    "PythonProcess",
    "PythonSymbolizer",
    "ThreadStack",
    "UnsupportedPython",
    "code_checksum",
    "find_python",
    "inspect_python_binary",
    "parse_debug_offsets",
    "proc_info",
    "walk_thread_stacks",
]
