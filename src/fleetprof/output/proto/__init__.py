"""pprof's profile.proto (our own copy) and the module protoc generates from it.

Regenerate after editing profile.proto, from the project root:
    .venv/bin/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
        src/fleetprof/output/proto/profile.proto
"""
