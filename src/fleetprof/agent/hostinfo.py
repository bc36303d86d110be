"""The host's OpenTelemetry resource attributes (host.*, os.*, agent version), read once per agent.

Names follow the OTel semantic conventions; `host.cpu.count` and `fleetprof.agent.version` are our own
(semconv has no core count). Every read degrades to leaving the attribute out, never to an error.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from fleetprof import __version__

# platform.machine() -> semconv host.arch values
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "x86",
    "i686": "x86",
    "ppc64le": "ppc64",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "armv7l": "arm32",
}
ATTR_HOST_NAME = "host.name"
ATTR_HOST_ID = "host.id"
ATTR_OS_VERSION = "os.version"
ATTR_CPU_COUNT = "host.cpu.count"
ATTR_AGENT_VERSION = "fleetprof.agent.version"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def machine_id(root: str = "/") -> str:
    """The host's /etc/machine-id (dbus' copy as a fallback), "" when there is none."""
    for path in ("etc/machine-id", "var/lib/dbus/machine-id"):
        text = _read(os.path.join(root, path)).strip()
        if text:
            return text
    return ""


def os_description(root: str = "/") -> str:
    """PRETTY_NAME from os-release (e.g. "Debian GNU/Linux 12 (bookworm)"), else `uname -srm`."""
    for path in ("etc/os-release", "usr/lib/os-release"):
        for line in _read(os.path.join(root, path)).splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "PRETTY_NAME" and value.strip():
                return value.strip().strip("\"'")
    uname = platform.uname()
    return f"{uname.system} {uname.release} {uname.machine}"


def cpu_model(root: str = "/") -> str:
    """The first `model name` of /proc/cpuinfo, "" when it has none (e.g. some arm64 kernels)."""
    for line in _read(os.path.join(root, "proc/cpuinfo")).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return ""


def host_resource(host_name: str | None = None, root: str = "/") -> dict[str, str | int]:
    """Resource attributes of this host; `host_name` overrides the kernel's host name."""
    machine = platform.machine()
    out: dict[str, str | int] = {
        ATTR_HOST_NAME: host_name or socket.gethostname(),
        "os.type": platform.system().lower() or "linux",
        "os.description": os_description(root),
        ATTR_OS_VERSION: platform.release(),
        "host.arch": _ARCH.get(machine, machine),
        ATTR_CPU_COUNT: os.cpu_count() or 0,
        ATTR_AGENT_VERSION: __version__,
    }
    host_id = machine_id(root)
    if host_id:
        out[ATTR_HOST_ID] = host_id
    model = cpu_model(root)
    if model:
        out["host.cpu.model.name"] = model
    return out
