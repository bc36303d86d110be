"""Container id of a process from its /proc/PID/cgroup (cgroup v1 and v2).

Runtimes name a container's cgroup after its 64-hex id: `/docker/ID` (v1), `docker-ID.scope`,
`cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope[/container]`, kubepods
`.../pod<uid>/ID` or `...pod<uid>.slice/cri-containerd-ID.scope`. The innermost match wins (docker in
docker); conmon scopes (`crio-conmon-ID`, `libpod-conmon-ID`) are the runtime's monitor, not the
container, and do not match.
"""

from __future__ import annotations

import re

_COMPONENT = re.compile(r"(?:(?![\w.-]*conmon-)[A-Za-z][\w.-]*-)?([0-9a-f]{64})(?:\.scope)?")


def container_id_from_cgroup(text: str) -> str:
    """The 64-hex container id named in a cgroup file's content, or "" when there is none."""
    found = ""
    for line in text.splitlines():
        _, _, path = line.partition(":")
        _, _, path = path.partition(":")
        for component in reversed(path.split("/")):
            match = _COMPONENT.fullmatch(component)
            if match:
                if line.startswith("0::"):
                    return match.group(1)
                found = found or match.group(1)
                break
    return found
