"""HTTP routes: FastAPI routers, one per module, and the bare ASGI hot path (``predict``)."""

from fastapi import APIRouter

from app.api import health

api_router = APIRouter()
api_router.include_router(health.router)
