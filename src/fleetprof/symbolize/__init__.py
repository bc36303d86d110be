"""Symbolization shared by local mode and the server: native ELF files and the running kernel.

Native: `NativeSymbolizer.symbolize(NativeFile, addresses)` -> frames per ELF address, outermost first.
Kernel: `KernelSymbols.load()` then `.lookup(addr)` / `.name(addr)`.
Central: `build_bundle(file)` on the host, `CentralSymbolizer(get_bundle, cache_dir).symbolize(file_id, …)`.
"""

from fleetprof.symbolize.bundle import BundleError, build_bundle, load_bundle
from fleetprof.symbolize.central import CentralSymbolizer
from fleetprof.symbolize.demangle import demangle
from fleetprof.symbolize.kernel import KernelSymbol, KernelSymbols
from fleetprof.symbolize.modelframes import kernel_model_frame, native_model_frames, symbolize_mapping
from fleetprof.symbolize.native import NativeFile, NativeFrame, NativeSymbolizer, fallback_frame

__all__ = [
    "BundleError",
    "CentralSymbolizer",
    "KernelSymbol",
    "KernelSymbols",
    "NativeFile",
    "NativeFrame",
    "NativeSymbolizer",
    "build_bundle",
    "demangle",
    "fallback_frame",
    "kernel_model_frame",
    "load_bundle",
    "native_model_frames",
    "symbolize_mapping",
]
