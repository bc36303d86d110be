"""The agent's way to the collector: batches encoded as gzip'd OTLP, an on-disk spool that survives restarts,
HTTP and gRPC senders with backoff, and a background symbol uploader."""
