"""A real ``python -m app`` process (the helper lives with the reliability scripts, which use it
too), and reading one sample of a server's /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from reliability.server import ServerProcess, free_port, serve

__all__ = ["ServerProcess", "free_port", "sample", "serve"]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` in a /metrics text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
