"""fleetprof: zero-instrumentation, whole-system, multi-runtime eBPF profiler."""

__version__ = "0.1.0"
