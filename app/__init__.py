"""The FastAPI inference service: ``python -m app``. Build apps with ``app.main.create_app``."""
