"""OTLP profiles request bytes → `ColumnarProfile`s, the server's fast decode: the same profiles as
fleetprof.wire.otlp_decode.from_otlp_request (same host split, labels, counts, timestamps, and the same
canonical frame and stack objects), without a Python object or call per sample.

The request is parsed with samples, locations, stacks and functions left as bytes
(fleetprof.wire.rawmessages) and those are read in bulk (fleetprof.wire.protoscan). Python work is per
distinct thing: per OTLP profile and resource, per attribute set, per function, per location and stack
content not met in an earlier request (each location and stack of a request costs a dict lookup by a bytes
key of interned numbers, each distinct (process, stack) pair one by a pair of them).

Several requests decode together (`columns_from_many`, what the server's group commit does): their tables
are read as one, each entry's indices rebased to the concatenation, so the per-call numpy costs are paid
once per group rather than once per request.

Anything unusual — malformed or truncated bytes, an index out of range, a negative or huge value, a field
in an unexpected wire type — makes `columns_from_bytes` answer None: the caller then decodes with
from_otlp_request, which gives the exact profiles or the exact one-line error. In a group, such a request
is found by decoding the group's requests one by one.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fleetprof.output.otlp import ATTR_FRAME_TYPE, ATTR_HOST_NAME, ATTR_OS_VERSION
from fleetprof.profile.columns import ColumnarProfile, Labels, Stack
from fleetprof.profile.model import Frame
from fleetprof.wire import protoscan
from fleetprof.wire.intern import SHARED, Interner, mapping_content
from fleetprof.wire.otlp_decode import (
    PROCESS_PREFIXES,
    Scalar,
    _Dictionary,
    _frames,
    _HostProfile,
    _key_values,
    _labels,
    _Named,
    profile_kind,
    take_profile,
)
from fleetprof.wire.rawmessages import RawRequest

_MAX_VALUE = 1 << 40  # per sample value; beyond it sums could leave int64 (the exact path takes those)
_MAX_LIST = 64  # attribute indices per sample or location taken here
_SAMPLE_FIELDS = {(1, 0), (2, 0), (2, 2), (3, 0), (4, 0), (4, 2), (5, 1), (5, 2)}
_LOCATION_FIELDS = {(1, 0), (2, 0), (3, 2), (4, 0), (4, 2)}
_LINE_FIELDS = {(1, 0), (2, 0), (3, 0)}
_STACK_FIELDS = {(1, 0), (1, 2)}
_FUNCTION_FIELDS = {(1, 0), (2, 0), (3, 0), (4, 0)}


class _Unsupported(Exception):
    """The request needs the exact decoder (from_otlp_request)."""


def columns_from_bytes(data: bytes, interner: Interner = SHARED) -> list[ColumnarProfile] | None:
    """The profiles (one per host and frequency) of a serialized ExportProfilesServiceRequest (not
    gzipped), as columns; None when the request is one for from_otlp_request (see the module docstring)."""
    return columns_from_many([data], interner)[0]


def columns_from_many(
    bodies: Sequence[bytes], interner: Interner = SHARED
) -> list[list[ColumnarProfile] | None]:
    """`columns_from_bytes` of each body, decoded together; a group the joint decode refuses is decoded
    one body at a time, so one unusual request costs the others nothing but time."""
    parsed: list[object | None] = []
    for data in bodies:
        request = RawRequest()
        try:
            request.ParseFromString(data)
        except Exception:  # DecodeError and the like: the exact decoder gives the reason
            request = None
        parsed.append(request)
    out: list[list[ColumnarProfile] | None] = [None] * len(bodies)
    good = [i for i, r in enumerate(parsed) if r is not None]
    try:
        for i, profiles in zip(good, _decode([parsed[i] for i in good], interner), strict=True):
            out[i] = profiles
    except Exception:  # _Unsupported, WireError, OtlpDecodeError, ...: find which request it was
        if len(good) == 1:
            return out
        for i in good:
            try:
                out[i] = _decode([parsed[i]], interner)[0]
            except Exception:
                out[i] = None
    return out


def _signed(values: np.ndarray) -> np.ndarray:
    """uint64 wire values as the int64 (or sign-extended int32) they encode."""
    return values.view(np.int64)


def _distinct_lists(
    owner: np.ndarray, values: np.ndarray, n: int, first: np.ndarray
) -> tuple[list[tuple[int, tuple[int, ...]]], np.ndarray]:
    """The distinct (first[i], values of message i) over n messages (`owner` sorted), and each message's."""
    lengths = np.bincount(owner, minlength=n)
    width = int(lengths.max()) if n else 0
    if width > _MAX_LIST:
        raise _Unsupported
    matrix = np.full((n, width + 2), -1, np.int64)
    matrix[:, 0] = first
    matrix[:, 1] = lengths
    if len(values):
        matrix[owner, 2 + protoscan.ranks(lengths)] = values
    order = np.lexsort(matrix.T[::-1])
    ordered = matrix[order]
    new = np.ones(n, bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(n, np.int64)
    inverse[order] = np.cumsum(new) - 1
    rows = ordered[new].tolist()
    return [(r[0], tuple(r[2 : 2 + r[1]])) for r in rows], inverse


@dataclass(slots=True)
class _Part:
    """The samples of one OTLP profile: where they go and how their values count."""

    target: int  # host index over the group
    resource: int  # resource index over the group
    scale: int
    samples: list[bytes]
    request: int


class _Tables:
    """The dictionaries of a group's requests read as one: each table the concatenation of theirs, an index
    of request k's entry i being i plus k's base. Where OTLP lets index 0 stand for "none" in an empty
    table (mappings, functions, links), each request keeps one slot for it."""

    def __init__(self, dictionaries: list[_Dictionary], interner: Interner) -> None:
        self.parts = dictionaries
        self.interner = interner
        self.strings = [s for d in dictionaries for s in d.strings]
        sizes = {
            "string": [len(d.strings) for d in dictionaries],
            "attribute": [len(d.d.attribute_table) for d in dictionaries],
            "mapping": [max(len(d.d.mapping_table), 1) for d in dictionaries],
            "function": [max(len(d.d.function_table), 1) for d in dictionaries],
            "location": [len(d.d.location_table) for d in dictionaries],
            "stack": [len(d.d.stack_table) for d in dictionaries],
            "link": [max(len(d.d.link_table), 1) for d in dictionaries],
        }
        self.size = {k: np.asarray(v, np.int64) for k, v in sizes.items()}
        self.base = {k: np.concatenate([[0], np.cumsum(v)]).astype(np.int64) for k, v in self.size.items()}
        self._bases = {k: v.tolist() for k, v in self.base.items()}

    def rebase(self, table: str, local: np.ndarray, request: np.ndarray) -> np.ndarray:
        """Indices `local` into `table` of the requests `request` (one each), checked against their own
        request's table and rebased onto the group's."""
        if len(local) and ((local < 0).any() or (local >= self.size[table][request]).any()):
            raise _Unsupported
        return local + self.base[table][request]

    def _find(self, table: str, index: int) -> tuple[_Dictionary, int]:
        """The request holding group index `index` of `table`, and the index in its own table."""
        bases = self._bases[table]
        k = bisect.bisect_right(bases, index) - 1
        return self.parts[k], index - bases[k]

    def attributes(self, indices: Sequence[int]) -> dict[str, Scalar]:
        """The attributes at group indices `indices` (all of one request) as a dict."""
        if not indices:
            return {}
        d, first = self._find("attribute", indices[0])
        return d.attributes([i - indices[0] + first for i in indices])

    def mapping(self, index: int) -> object:
        """The Mapping at group index `index` (None for a request's zero mapping)."""
        d, local = self._find("mapping", index)
        return d.mapping(local)

    def functions(self, used: list[int]) -> dict[int, tuple[str, str, str, int]]:
        """(name, system name, file, start line) of the function table entries `used` (group indices), read
        in bulk; ("", "", "", 0) for a request's zero slot of an empty table."""
        raw: list[bytes] = []
        empty = np.zeros(len(self.parts), bool)
        for k, d in enumerate(self.parts):
            if d.d.function_table:
                raw += d.d.function_table
            else:
                raw.append(b"")
                empty[k] = True
        data, starts, ends = protoscan.buffer(raw)
        fields = protoscan.scan(data, starts, ends)
        if fields.other_than(_FUNCTION_FIELDS):
            raise _Unsupported
        at = np.asarray(used, np.int64)
        request = np.searchsorted(self.base["function"], at, side="right") - 1
        real = ~empty[request]
        strings = [*self.strings, ""]  # the last one for the zero slot of an empty table
        columns = []
        for number in (1, 2, 3):
            indices = np.full(len(at), len(strings) - 1, np.int64)
            indices[real] = self.rebase("string", _signed(fields.scalar(number))[at[real]], request[real])
            columns.append(map(strings.__getitem__, indices.tolist()))
        start_lines = np.where(real, _signed(fields.scalar(4))[at], 0).tolist()
        return dict(zip(used, zip(*columns, start_lines, strict=True), strict=True))


class _Locations:
    """The group's location table as canonical frames: each location's content key (interned numbers
    of frame type, mapping, address and lines), looked up across requests, built only when new."""

    def __init__(self, tables: _Tables, raw: list[bytes], request: np.ndarray) -> None:
        """`raw`: the group's location messages, `request`: the request of each."""
        self.d = tables
        self.interner = tables.interner
        data, starts, ends = protoscan.buffer(raw)
        fields = protoscan.scan(data, starts, ends)
        if fields.other_than(_LOCATION_FIELDS):
            raise _Unsupported
        n = fields.count
        self.mapping = tables.rebase("mapping", _signed(fields.scalar(1)), request)
        self.address = fields.scalar(2)
        line_owner, line_start, line_end = fields.spans(3)
        lines = protoscan.scan(data, line_start, line_end)
        if lines.other_than(_LINE_FIELDS):
            raise _Unsupported
        self.function_index = tables.rebase("function", _signed(lines.scalar(1)), request[line_owner])
        self.line = _signed(lines.scalar(2))
        self.line_owner = line_owner
        self.line_bounds = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(line_owner, minlength=n), out=self.line_bounds[1:])
        attr_owner, attrs = fields.repeated_varint(4)
        attrs = tables.rebase("attribute", _signed(attrs), request[attr_owner])
        sets, self.attr_set = _distinct_lists(attr_owner, attrs, n, np.zeros(n, np.int64))
        self.frame_types = [str(tables.attributes(a).get(ATTR_FRAME_TYPE, "")) for _, a in sets]
        self.n = n
        self._keys: list[bytes] | None = None
        self._functions: dict[int, tuple[str, str, str, int]] = {}  # filled by `keys`

    def function(self, index: int) -> tuple[str, str, str, int]:
        """(name, system name, file, start line) of function table entry `index` ("" when there is none)."""
        return self._functions[index]

    def _function_numbers(self, used: list[int]) -> list[int]:
        """Interned numbers of the contents of function table entries `used` (read in bulk)."""
        self._functions = self.d.functions(used)
        return list(map(self.interner.number, self._functions.values()))

    def keys(self) -> list[bytes]:
        """Each location's content key: int64 numbers of (frame type, mapping, address, lines, then
        function and line per Line) as bytes."""
        if self._keys is None:
            number = self.interner.number
            type_ids = np.asarray([number(("type", t)) for t in self.frame_types], np.int64)
            used_maps = np.unique(self.mapping).tolist()
            map_ids = np.zeros(max(used_maps, default=0) + 1, np.int64)
            for m in used_maps:
                map_ids[m] = number(("mapping", mapping_content(self.d.mapping(m))))
            used_functions = np.unique(self.function_index).tolist()
            fn_ids = np.zeros(max(used_functions, default=0) + 1, np.int64)
            fn_ids[used_functions] = self._function_numbers(used_functions)
            n_lines = np.diff(self.line_bounds)
            sizes = 4 + 2 * n_lines
            bounds = np.zeros(self.n + 1, np.int64)
            np.cumsum(sizes, out=bounds[1:])
            flat = np.zeros(int(bounds[-1]), np.int64)
            head = bounds[:-1]
            flat[head] = type_ids[self.attr_set] if self.n else 0
            flat[head + 1] = map_ids[self.mapping]
            flat[head + 2] = self.address.view(np.int64)
            flat[head + 3] = n_lines
            at = head[self.line_owner] + 4 + 2 * protoscan.ranks(n_lines)
            flat[at] = fn_ids[self.function_index]
            flat[at + 1] = self.line
            raw = flat.tobytes()
            ends = (8 * bounds).tolist()
            self._keys = list(map(raw.__getitem__, map(slice, ends[:-1], ends[1:])))
        return self._keys

    def frames(self, index: int) -> tuple[Frame, ...]:
        """The canonical frames (outermost first) of location `index`, as from_otlp_request makes them."""
        frame_type = self.frame_types[int(self.attr_set[index])]
        mapping = self.d.mapping(int(self.mapping[index]))
        address = int(self.address[index])
        a, b = int(self.line_bounds[index]), int(self.line_bounds[index + 1])
        named = [
            _Named(*self.function(f), line)
            for f, line in zip(
                self.function_index[a:b].tolist()[::-1], self.line[a:b].tolist()[::-1], strict=True
            )
        ]
        key = (
            frame_type,
            mapping_content(mapping),
            address,
            *[(n.function, n.system_name, n.file, n.start_line, n.line) for n in named],
        )
        return self.interner.location(key, lambda: _frames(frame_type, mapping, address, named))


class _Stacks:
    """The group's stack table: per entry, the canonical frames (root first, no PROCESS frame) by a
    bytes key of its locations' keys' numbers, looked up across requests."""

    def __init__(self, tables: _Tables, raw: list[bytes], request: np.ndarray, locations: _Locations) -> None:
        """`raw`: the group's stack messages, `request`: the request of each."""
        data, starts, ends = protoscan.buffer(raw)
        fields = protoscan.scan(data, starts, ends)
        if fields.other_than(_STACK_FIELDS):
            raise _Unsupported
        owner, indices = fields.repeated_varint(1)
        self.indices = tables.rebase("location", _signed(indices), request[owner])
        self.bounds = np.zeros(fields.count + 1, np.int64)
        np.cumsum(np.bincount(owner, minlength=fields.count), out=self.bounds[1:])
        self.locations = locations
        self.n = fields.count

    def frames_of(self, used: list[int]) -> list[tuple[Frame, ...]]:
        """The canonical frames of stack table entries `used`."""
        locations = self.locations
        interner = locations.interner
        loc_keys = locations.keys()
        is_used = np.zeros(self.n, bool)
        is_used[used] = True
        is_needed = np.zeros(locations.n, bool)
        is_needed[self.indices[np.repeat(is_used, np.diff(self.bounds))]] = True
        needed = np.flatnonzero(is_needed).tolist()
        entries: list[tuple[int, tuple[Frame, ...]] | None] = list(
            map(interner.memo("location").get, map(loc_keys.__getitem__, needed))
        )  # type: ignore[arg-type]
        for i, entry in enumerate(entries):
            if entry is None:
                frames = locations.frames(needed[i])
                entries[i] = interner.remember(  # type: ignore[assignment]
                    "location", loc_keys[needed[i]], (interner.fresh(), frames)
                )
        loc_numbers = np.zeros(locations.n, np.int64)
        loc_numbers[needed] = np.fromiter(map(operator.itemgetter(0), entries), np.int64, len(entries))  # type: ignore[arg-type]
        raw = loc_numbers[self.indices].tobytes()
        ends = (8 * self.bounds).tolist()
        keys = [raw[ends[s] : ends[s + 1]] for s in used]
        out: list[tuple[Frame, ...] | None] = list(map(interner.memo("stack").get, keys))  # type: ignore[arg-type]
        known = dict(zip(needed, entries, strict=True))
        for i, found in enumerate(out):
            if found is None:
                s = used[i]
                frames_list: list[Frame] = []
                for loc in reversed(self.indices[self.bounds[s] : self.bounds[s + 1]].tolist()):
                    frames_list += known[loc][1]  # type: ignore[index]
                out[i] = interner.remember("stack", keys[i], tuple(frames_list))  # type: ignore[assignment]
        return out  # type: ignore[return-value]


def _decode(requests: list[object], interner: Interner) -> list[list[ColumnarProfile]]:
    """The fast decode of parsed raw requests, each one's profiles (raises _Unsupported, WireError or
    OtlpDecodeError for the group)."""
    dictionaries = [_Dictionary(request.dictionary, interner) for request in requests]  # type: ignore[attr-defined]
    hosts: list[_HostProfile] = []
    parts: list[_Part] = []
    processes: list[dict[str, Scalar]] = []
    spans: list[tuple[int, int]] = []  # each request's hosts
    skipped: list[bytes] = []
    for k, (request, d) in enumerate(zip(requests, dictionaries, strict=True)):
        first_host = len(hosts)
        by_key: dict[tuple[object, ...], int] = {}
        for r, rp in enumerate(request.resource_profiles):  # type: ignore[attr-defined]
            resource = len(processes)
            attributes = _key_values(rp.resource.attributes)
            processes.append({k: v for k, v in attributes.items() if k.startswith(PROCESS_PREFIXES)})
            host = {k: v for k, v in attributes.items() if not k.startswith(PROCESS_PREFIXES)}
            host_key = tuple(sorted(host.items(), key=lambda item: item[0]))
            for sp in rp.scope_profiles:
                for p, prof in enumerate(sp.profiles):
                    where = f"resource {r} profile {p}"
                    samples = list(prof.samples)
                    if samples and not d.strings:
                        raise _Unsupported
                    sample_type, frequency = profile_kind(d, prof, where)
                    at = by_key.get((*host_key, frequency))
                    if at is None:
                        at = by_key[(*host_key, frequency)] = len(hosts)
                        hosts.append(_HostProfile(dict(host), frequency))
                    target = hosts[at]
                    scale = take_profile(target, d, prof, sample_type, where)
                    if scale is None:
                        skipped += samples  # not counted, but well-formed, as the exact parse requires
                        continue
                    if samples:
                        parts.append(_Part(at, resource, scale, samples, k))
        spans.append((first_host, len(hosts)))
    if skipped and protoscan.scan(*protoscan.buffer(skipped)).other_than(_SAMPLE_FIELDS):
        raise _Unsupported
    tables = _Tables(dictionaries, interner)
    if not parts:  # nothing counted: the tables must still be well-formed, as the exact parse requires
        _stack_table(tables)
        tables.functions([])
    columns = _samples(tables, parts, processes) if parts else {}
    profiles = [_columnar(host, columns.get(i)) for i, host in enumerate(hosts)]
    return [profiles[a:b] for a, b in spans]


def _stack_table(tables: _Tables) -> _Stacks:
    """The group's stack and location tables, read."""
    dictionaries = [t.d for t in tables.parts]
    location_request = np.repeat(np.arange(len(dictionaries), dtype=np.int64), tables.size["location"])
    stack_request = np.repeat(np.arange(len(dictionaries), dtype=np.int64), tables.size["stack"])
    return _Stacks(
        tables,
        [st for dd in dictionaries for st in dd.stack_table],
        stack_request,
        _Locations(tables, [loc for dd in dictionaries for loc in dd.location_table], location_request),
    )


def _columnar(host: _HostProfile, columns: ColumnarProfile | None) -> ColumnarProfile:
    """The finished ColumnarProfile of one host (its window and counters, and its samples if any)."""
    out = columns if columns is not None else ColumnarProfile(0, 0, 0)
    out.frequency_hz = host.frequency_hz
    out.start_time_ns = host.start
    out.duration_ns = max(host.end - host.start, 0)
    out.hostname = str(host.resource.get(ATTR_HOST_NAME, ""))
    out.kernel_release = str(host.resource.get(ATTR_OS_VERSION, ""))
    out.stats = host.stats
    out.resource = host.resource
    return out


def _samples(
    tables: _Tables, parts: list[_Part], processes: list[dict[str, Scalar]]
) -> dict[int, ColumnarProfile]:
    """The samples of every part, read in bulk, as columns per host index."""
    raw = [s for part in parts for s in part.samples]
    sizes = [len(part.samples) for part in parts]
    data, starts, ends = protoscan.buffer(raw)
    fields = protoscan.scan(data, starts, ends)
    if fields.other_than(_SAMPLE_FIELDS):
        raise _Unsupported
    n = fields.count
    request = np.repeat(np.asarray([part.request for part in parts], np.int64), sizes)
    stack_index = tables.rebase("stack", _signed(fields.scalar(1)), request)
    tables.rebase("link", _signed(fields.scalar(3)), request)
    attr_owner, attrs = fields.repeated_varint(2)
    attrs = tables.rebase("attribute", _signed(attrs), request[attr_owner])
    value_owner, values = fields.repeated_varint(4)
    values = _signed(values)
    if len(values) and (values.min() < 0 or values.max() >= _MAX_VALUE):
        raise _Unsupported
    stamp_owner, stamps = fields.repeated_fixed64(5)
    if len(stamps) and stamps.max() >= np.uint64(1 << 63):
        raise _Unsupported
    n_values = np.bincount(value_owner, minlength=n)
    n_stamps = np.bincount(stamp_owner, minlength=n)
    cumulative = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=cumulative[1:])
    value_bounds = np.zeros(n + 1, np.int64)
    np.cumsum(n_values, out=value_bounds[1:])
    total = cumulative[value_bounds[1:]] - cumulative[value_bounds[:-1]]
    scale = np.repeat(np.asarray([part.scale for part in parts], np.int64), sizes)
    total = np.where(scale > 1, total // scale, total)
    count = np.where(
        n_values > 0, np.where(n_values == n_stamps, total, np.maximum(total, n_stamps)), n_stamps
    )
    keep = np.flatnonzero(count > 0)
    part_of = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
    resource = np.asarray([part.resource for part in parts], np.int64)[part_of]
    label_sets, label_of = _distinct_lists(attr_owner, attrs, n, resource)
    for _, indices in label_sets:  # every sample's, counted or not: the exact decoder reads them all
        tables.attributes(indices)
    used_labels, label_kept = np.unique(label_of[keep], return_inverse=True)
    memo = tables.interner.memo("labels")  # a sample's attributes (its process ones first) -> labels
    labels: list[Labels] = []
    roots: list[str] = []
    for i in used_labels.tolist():
        r, indices = label_sets[i]
        own = tables.attributes(indices)
        process = processes[r]
        merged = {**process, **own} if process else own
        key = tuple(merged.items())
        hit = memo.get(key)
        if hit is None:
            found = _labels(merged, f"resource {r}", own)
            hit = tables.interner.remember(
                "labels",
                key,
                (
                    Labels(
                        pid=found.pid,
                        tid=found.tid,
                        process_name=found.process_name,
                        thread_name=found.thread_name,
                        cpus=frozenset((found.cpu,)) if found.cpu is not None else frozenset(),
                        container_id=found.container_id,
                        executable=found.executable,
                        pod_uid=found.pod_uid,
                        custom_labels=found.custom_labels,
                    ),
                    found.process_name or f"pid {found.pid}",
                ),
            )
        labels.append(hit[0])  # type: ignore[index]
        roots.append(hit[1])  # type: ignore[index]
    label_kept = label_kept.reshape(-1).astype(np.int64)
    stacks_used, stack_kept = np.unique(stack_index[keep], return_inverse=True)
    stack_kept = stack_kept.reshape(-1).astype(np.int64)
    table = _stack_table(tables)
    frames = table.frames_of(stacks_used.tolist())
    pairs, pair_kept = np.unique(label_kept * len(frames) + stack_kept, return_inverse=True)
    interner = tables.interner
    # (root name, id of a stack body) -> (that body, whole stack); the entry holds the body, so its id
    # stays its own
    full = interner.memo("sample stack")
    root_of, body_of = np.divmod(pairs, len(frames))
    roots_used = list(map(roots.__getitem__, root_of.tolist()))
    bodies = list(map(frames.__getitem__, body_of.tolist()))
    keys = list(zip(roots_used, map(id, bodies), strict=True))
    entries = list(map(full.get, keys))
    for i, entry in enumerate(entries):
        if entry is None:
            whole = interner.stack((interner.root(roots_used[i]), *bodies[i]))
            entries[i] = interner.remember("sample stack", keys[i], (bodies[i], whole))
    stacks: list[Stack] = list(map(operator.itemgetter(1), entries))  # type: ignore[arg-type]
    timed = n_stamps == count
    kept_stamps = timed[stamp_owner] & (count[stamp_owner] > 0)
    stamp_counts = np.where(timed, n_stamps, 0)[keep]
    host_of = np.asarray([part.target for part in parts], np.int64)[part_of][keep]
    return _split(
        ColumnarProfile(
            0,
            0,
            0,
            stacks=stacks,
            labels=labels,
            stack=pair_kept.reshape(-1).astype(np.int64),
            label=label_kept,
            count=count[keep],
            stamp_bounds=np.concatenate([[0], np.cumsum(stamp_counts)]).astype(np.int64),
            stamps=stamps[kept_stamps].astype(np.int64),
        ),
        host_of,
    )


def _split(columns: ColumnarProfile, host_of: np.ndarray) -> dict[int, ColumnarProfile]:
    """The rows of `columns` per host index (each with only the stacks its rows use)."""
    present = np.unique(host_of).tolist()
    if len(present) <= 1:
        return {present[0]: columns} if present else {}
    out = {}
    order = np.argsort(host_of, kind="stable")  # each host's rows in their order
    cuts = np.searchsorted(host_of[order], [*present, present[-1] + 1]).tolist()
    lens = np.diff(columns.stamp_bounds)
    for h, host in enumerate(present):
        rows = order[cuts[h] : cuts[h + 1]]
        used, stack = np.unique(columns.stack[rows], return_inverse=True)
        row_lens = lens[rows]
        stamp_at = np.repeat(columns.stamp_bounds[rows], row_lens) + protoscan.ranks(row_lens)
        out[host] = ColumnarProfile(
            0,
            0,
            0,
            stacks=[columns.stacks[i] for i in used.tolist()],
            labels=columns.labels,
            stack=stack.reshape(-1).astype(np.int64),
            label=columns.label[rows],
            count=columns.count[rows],
            stamp_bounds=np.concatenate([[0], np.cumsum(row_lens)]).astype(np.int64),
            stamps=columns.stamps[stamp_at],
        )
    return out
