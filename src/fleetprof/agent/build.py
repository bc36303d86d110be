"""Both stages on the host, as `record` and `top` run them: the raw stage (agent/raw.py: stacks -> raw
Profile) then the symbolizer (symbolize/profile.py) over the files this agent holds open."""

from __future__ import annotations

from collections.abc import Callable

from fleetprof.agent.core import ProfilerCore
from fleetprof.agent.raw import (
    GoroutineLabels,
    ProcessLabels,
    PythonResolver,
    RawCore,
    RawProfileBuilder,
    ThreadNamer,
)
from fleetprof.profile.model import Mapping, Profile
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.native import NativeSymbolizer
from fleetprof.symbolize.profile import HostLookup, symbolize_profile
from fleetprof.tracer.aggregate import StackKey


def host_lookup(core: RawCore, native: NativeSymbolizer | None = None) -> HostLookup:
    """The host-side symbol lookup over `core`'s files (a symbolizer caching under the core's cache dir)."""
    native = native or NativeSymbolizer(cache_dir=core.options.cache_dir / "symbols")  # type: ignore[attr-defined]
    tracker = getattr(core, "tracker", None)
    return HostLookup(native, core.files, tracker.open_path if tracker is not None else None)


class ProfileBuilder:
    """Raw stage + host-side symbolization of one ProfilerCore; reusable across windows (caches persist)."""

    def __init__(
        self,
        core: RawCore,
        native: NativeSymbolizer | None = None,
        kernel: KernelSymbols | None = None,
        python: PythonResolver | None = None,
        thread_names: ThreadNamer | None = None,
        python_problem: Callable[[int], str] | None = None,
        labels: ProcessLabels | None = None,
        goroutine_labels: GoroutineLabels | None = None,
    ) -> None:
        self.raw = RawProfileBuilder(
            core,
            kernel=kernel,
            python=python,
            thread_names=thread_names,
            python_problem=python_problem,
            labels=labels,
            goroutine_labels=goroutine_labels,
        )
        self.lookup = host_lookup(core, native)
        self.native = self.lookup.native

    def build(self, stacks: dict[StackKey, object] | None = None) -> Profile:
        """A symbolized Profile of `stacks` (default: everything the core's aggregator holds)."""
        return symbolize_profile(self.raw.build(stacks), self.lookup)


def builder_for(core: ProfilerCore, labels: ProcessLabels | None = None) -> ProfileBuilder:
    """A builder wired to the core's runtime support (Python frames, thread names, unwalkable CPython)."""
    py = core.python
    return ProfileBuilder(
        core,
        python=core.resolve_interpreted if py is not None else None,
        thread_names=py.thread_name if py is not None else None,
        python_problem=py.unsupported.get if py is not None else None,
        goroutine_labels=core.goroutine_labels,
        labels=labels,
    )


def build_profile(core: ProfilerCore, labels: ProcessLabels | None = None) -> Profile:
    """Symbolize everything the core has aggregated (`labels`: `ProcessLabels.attach`ed before scanning)."""
    builder = builder_for(core, labels)
    try:
        return builder.build()
    finally:
        builder.native.close()


__all__ = ["Mapping", "ProfileBuilder", "build_profile", "builder_for", "host_lookup"]
