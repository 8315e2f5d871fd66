"""The XLA suite runs in .venv-xla (torch 2.9 + torch-xla, PJRT_DEVICE=CPU): `make test-xla`."""

import pytest

pytest.importorskip(
    "torch_xla",
    reason="torch-xla is not installed in this environment; run `make test-xla`",
    exc_type=ImportError,
)
