"""The HTTP door: the bare ASGI prediction endpoints (``endpoint`` and its routes), the FastAPI
routes (probes, metadata, metrics, docs), and the connection rules (``connections``)."""
