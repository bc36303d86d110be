"""deploy/: the systemd unit and the DaemonSet parse, run `fleetprof agent` with the capabilities, host pid
and mounts their comment blocks document, and keep the token out of the command line."""

from __future__ import annotations

import configparser
import json
from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "SYS_ADMIN", "DAC_READ_SEARCH"}


def _scalar(text: str) -> Any:
    """A YAML scalar of the subset the manifest uses."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("["):
        return json.loads(text)
    if text[:1] in "\"'":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return text


def _parse(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    """Block mappings and sequences of the subset the manifest uses (PyYAML may not be installed)."""
    if lines[i][1].startswith("- "):
        seq: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            rest = lines[i][1][2:]
            if ":" in rest and not rest.startswith(("[", '"')):
                lines[i] = (indent + 2, rest)  # "- key: value" opens a mapping two columns in
                item, i = _parse(lines, i, indent + 2)
            else:
                item, i = _scalar(rest), i + 1
            seq.append(item)
        return seq, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        key, _, value = lines[i][1].partition(":")
        value = value.strip()
        i += 1
        if value:
            mapping[key] = _scalar(value)
        elif i < len(lines) and lines[i][0] >= indent and (lines[i][0] > indent or lines[i][1][:2] == "- "):
            mapping[key], i = _parse(lines, i, lines[i][0])
        else:
            mapping[key] = None
    return mapping, i


def load_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    lines = []
    for raw in text.splitlines():
        assert "\t" not in raw, "tabs in YAML"
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            lines.append((len(raw) - len(raw.lstrip(" ")), stripped))
    doc, end = _parse(lines, 0, 0)
    assert end == len(lines), f"unparsed YAML from line {lines[end]}"
    return doc


@pytest.fixture(scope="module")
def daemonset() -> dict[str, Any]:
    return load_yaml((DEPLOY / "daemonset.yaml").read_text())


def test_daemonset_runs_the_agent_on_the_host_pid_namespace(daemonset: dict[str, Any]) -> None:
    assert daemonset["kind"] == "DaemonSet" and daemonset["apiVersion"] == "apps/v1"
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    [agent] = spec["containers"]
    assert agent["command"] == ["fleetprof", "agent"]
    assert any(a.startswith("--collector=") for a in agent["args"])
    assert not any("token" in a for a in agent["args"])
    env = {e["name"]: e for e in agent["env"]}
    assert "secretKeyRef" in env["FLEETPROF_TOKEN"]["valueFrom"]
    labels = daemonset["spec"]["selector"]["matchLabels"]
    assert daemonset["spec"]["template"]["metadata"]["labels"] == labels


def test_daemonset_capabilities_exactly(daemonset: dict[str, Any]) -> None:
    [agent] = daemonset["spec"]["template"]["spec"]["containers"]
    ctx = agent["securityContext"]
    if not ctx.get("privileged"):
        assert set(ctx["capabilities"]["add"]) == CAPS
        assert ctx["capabilities"]["drop"] == ["ALL"]


def test_daemonset_mounts_are_declared_and_documented(daemonset: dict[str, Any]) -> None:
    spec = daemonset["spec"]["template"]["spec"]
    [agent] = spec["containers"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert set(mounts) == set(volumes)
    assert {
        "/sys/kernel/btf",
        "/sys/fs/cgroup",
        "/proc",
        "/var/cache/fleetprof",
        "/var/lib/fleetprof",
    } <= set(volumes.values())
    comments = "\n".join(
        line for line in (DEPLOY / "daemonset.yaml").read_text().splitlines() if line.startswith("#")
    )
    for path in volumes.values():
        assert path in comments, f"{path} is not documented in the comment block"
    for cap in CAPS:
        assert f"CAP_{cap}" in comments
    assert "hostPID" in comments and "/sys/kernel/debug" in comments


def test_systemd_unit() -> None:
    text = (DEPLOY / "fleetprof-agent.service").read_text()
    unit = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    exec_start = service["ExecStart"].split()
    assert exec_start[1:3] == ["agent", "--collector"]
    assert "--token" not in exec_start
    assert set(service["CapabilityBoundingSet"].split()) == {f"CAP_{c}" for c in CAPS}
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert "--spool-dir" in exec_start and service["StateDirectory"] == "fleetprof"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for key in ("CapabilityBoundingSet", "FLEETPROF_TOKEN", "CacheDirectory", "StateDirectory", "KillSignal"):
        assert key in comments, f"{key} is not documented"
