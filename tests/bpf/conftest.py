"""The tier that runs BPF for real: it needs root (or CAP_BPF + CAP_PERFMON), BTF and perf events.

Missing capabilities fail these tests (CI runs as root); set FLEETPROF_SKIP_BPF=1 to skip them knowingly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from zoo.programs import Profiler

from fleetprof.bpf.caps import missing_capabilities
from fleetprof.tracer.sampler import object_path

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this tier `bpf`."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.bpf)


@pytest.fixture(autouse=True)
def _bpf_capable() -> None:
    missing = [m.message for m in missing_capabilities()]
    if not object_path().is_file():
        missing.append(f"{object_path()} is not built (make setup)")
    if missing:
        if os.environ.get("FLEETPROF_SKIP_BPF") == "1":
            pytest.skip("; ".join(missing))
        pytest.fail("; ".join(missing))


@pytest.fixture(scope="module")
def zoo(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Profiler:
    """Profiles of the zoo programs a test module uses, recorded on first use, with that module's own
    unwind-table cache (so each module also sees first-run behaviour)."""
    return Profiler(build_dir, tmp_path_factory.mktemp("profiles"), tmp_path_factory.mktemp("cache"))
