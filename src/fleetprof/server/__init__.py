"""The fleet backend's server: OTLP ingest (HTTP and gRPC), symbol upload, central symbolization and the
query API (`fleetprof.server.app.create_app`); kept import-light so CLI clients can use its helpers."""
