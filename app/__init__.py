"""The FastAPI inference service: ``python -m app``. Build apps with ``app.compose.create_app``."""
