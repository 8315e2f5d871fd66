"""Dependency aliases for route handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.runtime import ModelRuntime


def get_runtime(request: Request) -> ModelRuntime:
    """The runtime the lifespan created (lifespan state, typed here, not hung on ``app``)."""
    runtime = request.state.runtime
    assert isinstance(runtime, ModelRuntime)
    return runtime


RuntimeDep = Annotated[ModelRuntime, Depends(get_runtime)]
