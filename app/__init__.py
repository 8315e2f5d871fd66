"""The FastAPI inference service: ``python -m app``. Build apps with ``app.http.app.create_app``."""
