"""Symbolization shared by local mode and the server: native ELF files and the running kernel.

Native: `NativeSymbolizer.symbolize(NativeFile, addresses)` -> frames per ELF address, outermost first.
Kernel: `KernelSymbols.load()` then `.lookup(addr)` / `.name(addr)`.
"""

from fleetprof.symbolize.demangle import demangle
from fleetprof.symbolize.kernel import KernelSymbol, KernelSymbols
from fleetprof.symbolize.modelframes import kernel_model_frame, native_model_frames, symbolize_mapping
from fleetprof.symbolize.native import NativeFile, NativeFrame, NativeSymbolizer, fallback_frame

__all__ = [
    "KernelSymbol",
    "KernelSymbols",
    "NativeFile",
    "NativeFrame",
    "NativeSymbolizer",
    "demangle",
    "fallback_frame",
    "kernel_model_frame",
    "native_model_frames",
    "symbolize_mapping",
]
