"""What travels between agents and the server: OTLP profiles decoding (encoding is fleetprof.output.otlp)."""
