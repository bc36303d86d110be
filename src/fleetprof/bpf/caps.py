"""Check, before loading anything, that this host and process can run the sampler; name what is missing."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
MIN_KERNEL = (5, 17)  # bpf_loop (5.17), bpf_task_pt_regs (5.15), ring buffers (5.8), BTF tracepoints (5.5)
BTF_PATH = "/sys/kernel/btf/vmlinux"


@dataclass(frozen=True, slots=True)
class MissingCapability:
    """One missing requirement and its one-line explanation."""

    name: str
    message: str


def _effective_caps(status_path: str = "/proc/self/status") -> int:
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _kernel_version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def check_privileges(caps: int | None = None, euid: int | None = None) -> MissingCapability | None:
    """Root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN also covers both)."""
    caps = _effective_caps() if caps is None else caps
    euid = os.geteuid() if euid is None else euid
    has = lambda bit: bool(caps >> bit & 1)  # noqa: E731
    if euid == 0 and has(CAP_SYS_ADMIN):
        return None
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return None
    return MissingCapability(
        "privileges",
        "needs root (or CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo",
    )


def check_btf(path: str = BTF_PATH) -> MissingCapability | None:
    """The kernel's own BTF, which CO-RE relocations and BTF tracepoints need."""
    if Path(path).is_file():
        return None
    return MissingCapability(
        "btf", f"the kernel has no BTF ({path} is missing; needs CONFIG_DEBUG_INFO_BTF=y)"
    )


def check_kernel(release: str | None = None) -> MissingCapability | None:
    """A kernel new enough for the helpers the sampler uses."""
    release = release or platform.release()
    if _kernel_version(release) >= MIN_KERNEL:
        return None
    want = ".".join(map(str, MIN_KERNEL))
    return MissingCapability("kernel", f"kernel {release} is too old: fleetprof needs Linux {want} or newer")


def check_perf_events(
    paranoid_path: str = "/proc/sys/kernel/perf_event_paranoid",
) -> MissingCapability | None:
    """perf events must exist (perf_event_paranoid is there) — CAP_PERFMON overrides the paranoia level."""
    if Path(paranoid_path).exists():
        return None
    return MissingCapability("perf_events", "the kernel has no perf events (CONFIG_PERF_EVENTS is off)")


def check_bpf_syscall() -> MissingCapability | None:
    """The bpf() syscall exists (CONFIG_BPF_SYSCALL)."""
    if Path("/sys/fs/bpf").exists() or Path("/proc/sys/kernel/unprivileged_bpf_disabled").exists():
        return None
    return MissingCapability("bpf", "the kernel has no BPF support (CONFIG_BPF_SYSCALL is off)")


def missing_capabilities() -> list[MissingCapability]:
    """Everything missing, most fundamental first; empty when the sampler can run."""
    checks = (check_kernel, check_bpf_syscall, check_btf, check_perf_events, check_privileges)
    return [m for m in (check() for check in checks) if m is not None]
