"""Operator lists the compile and placement tests share."""

from __future__ import annotations

# What the derived features need and AWS's operator list does not name.
FEATURE_OPERATORS = [
    "aten::cat",
    "aten::clamp",
    "aten::frac",
    "aten::log1p",
    "aten::sin",
    "aten::sub",
]
