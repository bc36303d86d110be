"""OTLP profiles ingest shared by the HTTP and gRPC endpoints: bytes in, samples stored or a one-line refusal.

A request is decoded whole before anything is written (malformed or truncated input writes nothing), the
profiles it holds are merged per host, and each host's part is stored under a batch id derived from the
client's (or, without one, from the request's content), so a retried request is a no-op.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from fleetprof.profile.columns import ColumnarProfile, as_columns, concat
from fleetprof.profile.model import Profile
from fleetprof.server.groupcommit import Batch, GroupCommit

AnyProfile = Profile | ColumnarProfile

MAX_BATCH_ID = 128
# A decoded request: its batches, and its (profiles, hosts) counts.
_Prepared = tuple[list[Batch], tuple[int, int]]
_PROTOBUF_TYPES = ("", "application/x-protobuf", "application/protobuf", "application/octet-stream")
# Resource attributes that describe one process, not the host: profiles differing only in these merge.
_PER_PROCESS_PREFIXES = ("process.", "container.", "thread.", "k8s.pod.", "service.")


class IngestError(Exception):
    """A refused request: an HTTP status (400, 401, 413, 503) and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason.splitlines()[0][:500] if reason else "refused"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one request stored: samples written (0 for a repeated batch) and the profiles it held."""

    samples: int
    profiles: int
    hosts: int


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate or none), refused past `limit` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise IngestError(415, f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    out = bytearray()
    rest = data
    while True:  # gzip allows several members one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise IngestError(400, f"body is not valid {encoding}: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise IngestError(413, f"decompressed body exceeds {limit} bytes")
        if not inflater.eof:
            raise IngestError(400, f"body is truncated {encoding} data")
        rest = inflater.unused_data
        if encoding == "deflate" or not rest.strip(b"\0"):
            return bytes(out)


def parse_request(data: bytes, content_type: str = "application/x-protobuf") -> ExportProfilesServiceRequest:
    """An ExportProfilesServiceRequest from protobuf (or OTLP JSON) bytes; 400 when it doesn't parse."""
    request = ExportProfilesServiceRequest()
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json":
        from google.protobuf import json_format

        try:
            json_format.Parse(data.decode("utf-8"), request)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            raise IngestError(400, f"body is not an OTLP JSON profiles request: {exc}") from None
        return request
    if kind not in ("", "application/x-protobuf", "application/protobuf", "application/octet-stream"):
        raise IngestError(
            415, f"unsupported Content-Type {kind!r} (application/x-protobuf or application/json)"
        )
    try:
        request.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise IngestError(
            400, f"body is not an OTLP profiles request (protobuf: {exc or 'truncated'})"
        ) from None
    return request


def decode_profiles(request: ExportProfilesServiceRequest) -> list[Profile]:
    """The request's profiles (fleetprof.wire.otlp_decode); 400 with the decoder's reason when malformed."""
    from fleetprof.wire.otlp_decode import OtlpDecodeError, from_otlp_request

    try:
        decoded = from_otlp_request(request)
    except OtlpDecodeError as exc:
        raise IngestError(400, f"malformed OTLP profiles: {exc}") from None
    except (IndexError, KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise IngestError(400, f"malformed OTLP profiles: {type(exc).__name__}: {exc}") from None
    return list(decoded) if isinstance(decoded, list | tuple) else [decoded]


def decode_body(data: bytes, content_type: str = "application/x-protobuf") -> list[AnyProfile]:
    """The request's profiles: protobuf bytes through the columnar decoder (fleetprof.wire.otlp_columns,
    no object per sample), and what it leaves (JSON, anything unusual or malformed) through `parse_request`
    and `decode_profiles`, which give the exact profiles or the exact refusal."""
    (result,) = decode_bodies([(data, content_type)])
    if isinstance(result, IngestError):
        raise result
    return result


def decode_bodies(bodies: list[tuple[bytes, str]]) -> list[list[AnyProfile] | IngestError]:
    """`decode_body` of each (bytes, content type), the protobuf ones decoded together (one scan of their
    tables: fleetprof.wire.otlp_columns.columns_from_many); a refused body gets its IngestError in its
    place and costs the others nothing."""
    from fleetprof.wire.otlp_columns import columns_from_many

    protobuf = [i for i, (_, kind) in enumerate(bodies) if _is_protobuf(kind)]
    out: list[list[AnyProfile] | IngestError | None] = [None] * len(bodies)
    for i, columns in zip(protobuf, columns_from_many([bodies[i][0] for i in protobuf]), strict=True):
        if columns is not None:
            out[i] = list(columns)
    for i, (data, kind) in enumerate(bodies):
        if out[i] is None:
            try:
                out[i] = list(decode_profiles(parse_request(data, kind)))
            except IngestError as exc:
                out[i] = exc
    return out  # type: ignore[return-value]


def _is_protobuf(content_type: str) -> bool:
    """Whether a Content-Type names protobuf (or nothing, which means protobuf)."""
    return (content_type or "").split(";")[0].strip().lower() in _PROTOBUF_TYPES


def _has_samples(profile: AnyProfile) -> bool:
    """Whether a profile (objects or columns) holds any sample."""
    return bool(profile.samples) if isinstance(profile, Profile) else len(profile) > 0


def host_key(profile: AnyProfile) -> tuple[Any, ...]:
    """What profiles of one host share: host identity and sampling frequency."""
    resource = profile.resource or {}
    host = tuple(sorted((k, str(v)) for k, v in resource.items() if not k.startswith(_PER_PROCESS_PREFIXES)))
    return (profile.hostname, profile.kernel_release, profile.frequency_hz, host)


def merge_by_host(profiles: list[AnyProfile]) -> list[AnyProfile]:
    """One profile per host (in first-seen order): samples joined, the window spanning all of them (as
    columns when any of them is)."""
    groups: dict[tuple[Any, ...], list[AnyProfile]] = {}
    for profile in profiles:
        groups.setdefault(host_key(profile), []).append(profile)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        first = group[0]
        start = min(p.start_time_ns for p in group)
        end = max(p.start_time_ns + p.duration_ns for p in group)
        stats: dict[str, int] = {}
        for p in group:
            for name, value in p.stats.items():
                stats[name] = max(stats.get(name, 0), value)
        resource = {
            k: v for k, v in (first.resource or {}).items() if not k.startswith(_PER_PROCESS_PREFIXES)
        }
        if not all(isinstance(p, Profile) for p in group):
            columns = concat([as_columns(p) for p in group], as_columns(first))
            columns.start_time_ns, columns.duration_ns = start, end - start
            columns.stats, columns.resource = stats, resource
            merged.append(columns)
            continue
        merged.append(
            Profile(
                samples=[s for p in group if isinstance(p, Profile) for s in p.samples],
                frequency_hz=first.frequency_hz,
                start_time_ns=start,
                duration_ns=end - start,
                hostname=first.hostname,
                kernel_release=first.kernel_release,
                stats=stats,
                resource=resource,
            )
        )
    return merged


def check_batch_id(batch_id: str | None) -> str | None:
    """The client's batch id when usable; 400 for an oversized or non-printable one."""
    if batch_id is None or batch_id == "":
        return None
    if len(batch_id) > MAX_BATCH_ID or not batch_id.isprintable() or not batch_id.isascii():
        raise IngestError(400, f"X-Fleetprof-Batch must be at most {MAX_BATCH_ID} printable ASCII characters")
    return batch_id


class Ingestor:
    """Decodes and stores OTLP requests into a store; calls `on_ingest` after each stored request.
    Requests arriving together are decoded together and stored by one group commit
    (fleetprof.server.groupcommit)."""

    def __init__(
        self, store: Any, on_ingest: Callable[[], None] | None = None, commit_interval_s: float = 0.0
    ) -> None:
        self.store = store
        self.on_ingest = on_ingest
        self.group = GroupCommit(store, prepare=self._prepare, min_interval_s=commit_interval_s)

    def ingest_bytes(
        self, data: bytes, batch_id: str | None, content_type: str = "application/x-protobuf"
    ) -> IngestResult:
        """Decode, merge per host and store, with the requests arriving at the same time; returns once
        stored. Bad input raises IngestError and writes nothing. One batch per host: the client's batch id
        (or, without one, the body's hash), then `#N` after it for further hosts."""
        from fleetprof.store import StoreError

        batch_id = check_batch_id(batch_id)
        base = batch_id or "sha256:" + hashlib.sha256(data).hexdigest()
        try:
            written, (profiles, hosts) = self.group.submit_raw((data, content_type, base), len(data))
        except StoreError as exc:
            raise IngestError(503, f"the store could not take the batch: {exc}") from None
        total = sum(written)
        if total and self.on_ingest is not None:
            self.on_ingest()
        return IngestResult(total, profiles, hosts)

    def _prepare(self, raws: list[tuple[bytes, str, str]]) -> list[_Prepared | BaseException]:
        """A group's requests decoded together, each merged per host into its batches (with its profile
        and host counts), or the error that refuses it."""
        out: list[_Prepared | BaseException] = []
        for (_, _, base), profiles in zip(raws, decode_bodies([(d, k) for d, k, _ in raws]), strict=True):
            if isinstance(profiles, BaseException):
                out.append(profiles)
                continue
            try:
                hosts = merge_by_host([p for p in profiles if _has_samples(p)])
            except Exception as exc:  # one request's failure is its own, not its group's
                out.append(exc)
                continue
            batches = [(p, base if i == 0 else f"{base}#{i}") for i, p in enumerate(hosts)]
            out.append((batches, (len(profiles), len(hosts))))
        return out
