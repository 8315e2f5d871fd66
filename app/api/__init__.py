"""HTTP routes, one router per module."""

from fastapi import APIRouter

from app.api import health, predict

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predict.router)
