"""The app in process, through its factory: a ``TestClient`` on the session's artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings


@pytest.fixture
def client(artifacts: Path) -> Iterator[TestClient]:
    app = create_app(Settings(artifacts=artifacts, device="cpu", max_instances=300))
    with TestClient(app) as c:
        yield c
