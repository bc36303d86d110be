"""`fleetprof` with every sample record's ring-buffer bytes counted, for benches that report what the
sampler really sent: the record sizes libbpf hands over, plus the ring's 8-byte header and 8-byte
alignment per record. The counts go to stderr as one line after the command's own output."""

from __future__ import annotations

import sys

from fleetprof.cli.main import main
from fleetprof.tracer import aggregate

RINGBUF_HEADER = 8  # BPF_RINGBUF_HDR_SZ; records are padded to 8 bytes
_counted = {"records": 0, "bytes": 0, "ring_bytes": 0}
_add_record = aggregate.Aggregator.add_record


def _counting_add_record(self: aggregate.Aggregator, address: int, size: int) -> None:
    """Count the record, then aggregate it as usual."""
    _counted["records"] += 1
    _counted["bytes"] += size
    _counted["ring_bytes"] += RINGBUF_HEADER + (size + 7) // 8 * 8
    _add_record(self, address, size)


def parse_counts(stderr: str) -> dict[str, int] | None:
    """The counts line of a run's stderr, None when absent."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("fleetprof-bench: "):
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return None


if __name__ == "__main__":
    aggregate.Aggregator.add_record = _counting_add_record  # type: ignore[method-assign]
    status = main(sys.argv[1:])
    print("fleetprof-bench: " + " ".join(f"{k}={v}" for k, v in _counted.items()), file=sys.stderr)
    sys.exit(status)
