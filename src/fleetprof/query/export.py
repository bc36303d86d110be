"""Export a selection as a `Profile`, so every output/ writer (pprof, folded, speedscope, OTLP) applies."""

from __future__ import annotations

from typing import Any

from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import query_frames, query_stacks

_FRAME_FIELDS = set(Frame.__dataclass_fields__)
_SAMPLE_FIELDS = set(Sample.__dataclass_fields__)


def _model_frames(row: dict[str, Any]) -> tuple[Frame, ...]:
    """Model frames of one stored frame: raw native ones through their symbols or as `module+0xADDR`."""
    kind = FrameKind(row["kind"]) if row["kind"] in FrameKind._value2member_map_ else FrameKind.NATIVE
    mapping = (
        Mapping(file_id=row["file_id"], path=row["module"], build_id=row["build_id"])
        if row["file_id"]
        else None
    )
    if kind is FrameKind.NATIVE and not row["function"]:
        names = row["sym_functions"] or []
        if not names:
            base = row["module"].rsplit("/", 1)[-1] or row["module"]
            return (Frame(kind, f"{base}+0x{row['address']:x}", mapping=mapping, address=row["address"]),)
        return tuple(
            Frame(
                kind,
                fn,
                file=row["sym_files"][i],
                line=row["sym_lines"][i],
                mapping=mapping,
                address=row["address"],
                inlined=bool(row["sym_inlined"][i]),
                start_line=row["sym_start_lines"][i],
                system_name=row["sym_system_names"][i],
            )
            for i, fn in enumerate(names)
        )
    return (
        Frame(
            kind,
            row["function"],
            file=row["file"],
            line=row["line"],
            mapping=mapping,
            address=row["address"],
            inlined=bool(row["inlined"]),
            start_line=row["start_line"],
            system_name=row["system_name"],
            **({"runtime": row["runtime"]} if "runtime" in _FRAME_FIELDS else {}),
        ),
    )


def export_profile(store: Any, sel: Selection, max_rows: int = 5_000_000) -> Profile:
    """All samples of `sel` as one symbolized Profile (per stack and thread, with their timestamps)."""
    where, params = sel.where(store)
    params["max_rows"] = max(int(max_rows), 1)
    samples = store.t("samples")
    groups = store.query(
        "SELECT stack_id, host, process, pid, tid, thread, container, executable, pod_uid, labels, "
        "sum(count) AS c, groupArray(toUnixTimestamp64Milli(ts)) AS ts_ms, groupArray(count) AS counts, "
        "max(frequency) AS freq "
        f"FROM {samples} WHERE {where} "
        "GROUP BY stack_id, host, process, pid, tid, thread, container, executable, pod_uid, labels "
        "LIMIT {max_rows:UInt64}",
        params,
    )
    rows = groups.to_pylist()
    ids_sub = f"SELECT DISTINCT stack_id FROM {samples} WHERE {where}"
    frame_rows = query_frames(store, ids_sub, params).to_pylist() if rows else []
    stack_table = query_stacks(store, ids_sub, params) if rows else None
    frames = {r["frame_id"]: _model_frames(r) for r in frame_rows}
    stacks: dict[int, tuple[Frame, ...]] = {}
    if stack_table is not None:
        for sid, fids in zip(
            stack_table.column("stack_id").to_pylist(),
            stack_table.column("frame_ids").to_pylist(),
            strict=True,
        ):
            stacks[sid] = tuple(f for fid in fids for f in frames.get(fid, ()))
    out: list[Sample] = []
    hosts: set[str] = set()
    first = last = None
    frequency = 0
    for row in rows:
        hosts.add(row["host"])
        stamps = sorted(
            t * 1_000_000 for t, n in zip(row["ts_ms"], row["counts"], strict=True) for _ in range(n)
        )
        first = min(first, stamps[0]) if first is not None else stamps[0]
        last = max(last, stamps[-1]) if last is not None else stamps[-1]
        frequency = max(frequency, row["freq"])
        extra = {k: row[k] for k in ("executable", "pod_uid") if k in _SAMPLE_FIELDS}
        out.append(
            Sample(
                stack=stacks.get(row["stack_id"], (Frame(FrameKind.ERROR, "[missing stack]"),)),
                pid=row["pid"],
                tid=row["tid"],
                process_name=row["process"],
                thread_name=row["thread"],
                count=row["c"],
                timestamps_ns=stamps,
                container_id=row["container"],
                custom_labels=tuple(sorted(row["labels"])),
                **extra,
            )
        )
    start = first if first is not None else sel.start_ns
    end = (last + 1) if last is not None else sel.end_ns
    extra_profile: dict[str, Any] = {}
    if "resource" in Profile.__dataclass_fields__ and len(hosts) == 1:
        extra_profile["resource"] = {"host.name": next(iter(hosts))}
    return Profile(
        **extra_profile,
        samples=out,
        frequency_hz=frequency or 20,
        start_time_ns=start,
        duration_ns=max(end - start, 0),
        hostname=next(iter(hosts)) if len(hosts) == 1 else "",
    )
