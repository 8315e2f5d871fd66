"""HTTP routes: FastAPI routers, one per module, and the bare ASGI hot path (``predict``)."""

from fastapi import APIRouter

from app.api import health, metrics, models, oip, sagemaker

api_router = APIRouter()
for module in (health, sagemaker, oip, models, metrics):
    api_router.include_router(module.router)
