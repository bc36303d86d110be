"""Container id of a process from its /proc/PID/cgroup (cgroup v1 and v2).

Runtimes name a container's cgroup after its 64-hex id: `/docker/ID` (v1), `docker-ID.scope`,
`cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope[/container]`, kubepods
`.../pod<uid>/ID` or `...pod<uid>.slice/cri-containerd-ID.scope`. The innermost match wins (docker in
docker); conmon scopes (`crio-conmon-ID`, `libpod-conmon-ID`) are the runtime's monitor, not the
container, and do not match. Kubernetes pod uids come from the `pod<uid>` component kubelet creates
(cgroupfs driver: dashes; systemd driver: `kubepods-<qos>-pod<uid>.slice` with underscores).
"""

from __future__ import annotations

import re

_COMPONENT = re.compile(r"(?:(?![\w.-]*conmon-)[A-Za-z][\w.-]*-)?([0-9a-f]{64})(?:\.scope)?")
_POD = re.compile(
    r"(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
    r"(?:\.slice)?"
)


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


def pod_uid_from_cgroup(text: str) -> str:
    """The Kubernetes pod uid (dashed, lower case) named in a cgroup file's content under kubepods, or ""."""
    found = ""
    for line in text.splitlines():
        _, _, path = line.partition(":")
        _, _, path = path.partition(":")
        if "kubepods" not in path:
            continue
        for component in reversed(path.split("/")):
            match = _POD.fullmatch(component)
            if match:
                uid = match.group(1).replace("_", "-")
                if line.startswith("0::"):
                    return uid
                found = found or uid
                break
    return found
