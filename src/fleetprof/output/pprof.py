"""pprof: a gzipped perftools.profiles.Profile, complete enough for `go tool pprof` and Go's PGO.

Choices: the PROCESS root frame becomes the `process_name` label (use `go tool pprof -tagroot=process_name`
to group by process); native frames keep their ELF file as a Mapping and an estimated runtime address
(see frames.runtime_address); kernel frames share one pseudo mapping `[kernel.kallsyms]` with kernel
addresses; Python and error frames belong to no mapping (mapping_id 0, address 0 for Python).
"""

from __future__ import annotations

import gzip
from typing import BinaryIO

from fleetprof.output.frames import KERNEL_MAPPING_NAME, LocationTables, runtime_address
from fleetprof.output.interning import StringTable
from fleetprof.output.proto import profile_pb2 as pb
from fleetprof.profile.model import Mapping, Profile, Sample

SAMPLE_TYPES = (("samples", "count"), ("cpu", "nanoseconds"))
PERIOD_TYPE = ("cpu", "nanoseconds")
LABEL_PID = "pid"
LABEL_TID = "tid"
LABEL_THREAD = "thread_name"
LABEL_PROCESS = "process_name"
LABEL_CONTAINER = "container_id"


class _PprofBuilder:
    """Accumulates the tables of one pprof Profile while samples are added."""

    def __init__(self) -> None:
        self.strings = StringTable()
        self.tables = LocationTables()
        self.out = pb.Profile()

    def add_sample(self, sample: Sample, period: int) -> None:
        """Append one pprof Sample (leaf-first location ids, both values, the labels)."""
        out = self.out.sample.add(
            location_id=self.tables.stack(sample.stack), value=[sample.count, sample.count * period]
        )
        out.label.add(key=self.strings.add(LABEL_PID), num=sample.pid)
        out.label.add(key=self.strings.add(LABEL_TID), num=sample.tid)
        for key, text in (
            (LABEL_THREAD, sample.thread_name),
            (LABEL_PROCESS, sample.process_name),
            (LABEL_CONTAINER, sample.container_id),
        ):
            if text:  # pprof reads a string label pointing at "" as no label at all
                out.label.add(key=self.strings.add(key), str=self.strings.add(text))
        for (
            key,
            text,
        ) in sample.custom_labels:  # the program's own (Go pprof labels), as Go's profiler writes them
            out.label.add(key=self.strings.add(key), str=self.strings.add(text))

    def finish(self) -> pb.Profile:
        """Emit the mapping, location and function tables and the string table."""
        tables = self.tables
        for index, key in enumerate(tables.mappings.keys, start=1):
            facts = tables.facts[key]
            mapping = self.out.mapping.add(id=index, has_functions=facts.functions)
            if isinstance(key, Mapping):
                mapping.memory_start = key.start
                mapping.memory_limit = key.limit
                mapping.file_offset = key.offset
                mapping.filename = self.strings.add(key.path)
                mapping.build_id = self.strings.add(key.build_id)
                mapping.has_filenames = facts.filenames
                mapping.has_line_numbers = facts.line_numbers
                mapping.has_inline_frames = facts.inline_frames or facts.line_numbers
            else:
                mapping.memory_start = facts.low
                mapping.memory_limit = facts.high
                mapping.filename = self.strings.add(KERNEL_MAPPING_NAME)
        for index, location in enumerate(tables.locations.keys, start=1):
            out = self.out.location.add(
                id=index, mapping_id=tables.mapping_number(location), address=runtime_address(location.head)
            )
            for function_id, line in location.lines:
                out.line.add(function_id=function_id, line=line)
        for index, (name, system_name, filename, start_line) in enumerate(tables.functions.keys, start=1):
            self.out.function.add(
                id=index,
                name=self.strings.add(name),
                system_name=self.strings.add(system_name),
                filename=self.strings.add(filename),
                start_line=start_line,
            )
        self.out.string_table.extend(self.strings.keys)
        return self.out


def to_pprof(profile: Profile) -> pb.Profile:
    """Convert a Profile to an (uncompressed) pprof Profile message."""
    builder = _PprofBuilder()
    strings = builder.strings
    out = builder.out
    for type_name, unit in SAMPLE_TYPES:
        out.sample_type.add(type=strings.add(type_name), unit=strings.add(unit))
    out.period_type.type = strings.add(PERIOD_TYPE[0])
    out.period_type.unit = strings.add(PERIOD_TYPE[1])
    out.period = profile.period_ns
    out.time_nanos = profile.start_time_ns
    out.duration_nanos = profile.duration_ns
    out.default_sample_type = strings.add(SAMPLE_TYPES[1][0])
    notes = [f"frequency_hz={profile.frequency_hz}"]
    if profile.hostname:
        notes.append(f"host={profile.hostname}")
    if profile.kernel_release:
        notes.append(f"kernel={profile.kernel_release}")
    notes.extend(f"{name}={value}" for name, value in sorted(profile.stats.items()))
    out.comment.extend(strings.add(note) for note in notes)
    for sample in profile.samples:
        if sample.count > 0:
            builder.add_sample(sample, profile.period_ns)
    return builder.finish()


class PprofFormat:
    """pprof's profile.proto, gzipped: for `go tool pprof`, Go PGO (`default.pgo`), Pyroscope, Parca."""

    name = "pprof"
    suffix = ".pb.gz"
    binary = True

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write the gzipped profile; the gzip header carries no name or time, so output is reproducible."""
        data = to_pprof(profile).SerializeToString()
        with gzip.GzipFile(filename="", mode="wb", fileobj=stream, compresslevel=6, mtime=0) as gz:
            gz.write(data)
