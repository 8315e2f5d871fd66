"""The service's identity, in one place: its name, its model's name, its version.

The version is the installed package's (``pyproject.toml``), read once; a source tree that is
not installed reports ``0+unknown`` rather than a made-up number.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

SERVER_NAME = "housing-inference"
MODEL_NAME = "housing"
SUMMARY = "California house prices from census block-group features, on Inferentia2"
# The Open Inference Protocol extensions both doors support.
EXTENSIONS = ("binary_tensor_data",)


@cache
def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0+unknown"
