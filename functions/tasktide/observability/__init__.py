"""Prometheus metrics and the one JSON logging setup (with redaction) every entrypoint uses."""
