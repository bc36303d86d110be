"""One interval's profile as the unit the reporter spools and sends: an id and a gzip'd OTLP request body."""

from __future__ import annotations

import gzip
import uuid
from dataclasses import dataclass

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Profile

GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Batch:
    """A serialized ExportProfilesServiceRequest, gzip'd, and the id the collector deduplicates it by."""

    batch_id: str  # 32 hex digits, unique per batch, kept across retries and restarts
    body: bytes  # gzip of the serialized request

    def request_bytes(self) -> bytes:
        """The serialized request, uncompressed (gRPC compresses on its own)."""
        return gzip.decompress(self.body)


def new_batch_id() -> str:
    """A fresh unique batch id."""
    return uuid.uuid4().hex


def encode_batch(profile: Profile, batch_id: str | None = None) -> Batch:
    """Encode one profile (raw or symbolized) as a gzip'd OTLP request with its own batch id."""
    body = gzip.compress(to_otlp_request(profile).SerializeToString(), compresslevel=GZIP_LEVEL, mtime=0)
    return Batch(batch_id or new_batch_id(), body)


def valid_batch_id(text: str) -> bool:
    """Whether `text` has the shape of a batch id (32 lowercase hex digits)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
