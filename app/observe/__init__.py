"""Observability: metrics, logs, request ids."""
