"""Numbers written as text (CSV cells, query parameters), read strictly.

Python's ``float()`` is lenient in ways a request format must not be: it takes ``1_000``,
full-width ``８``, Arabic-Indic ``٣`` and other Unicode digits, and surrounding Unicode spaces.
A service that reads those turns a typo or an attack into a price. ``strict_float`` takes only
what every CSV reader agrees on: optional sign, ASCII digits, an optional point and exponent
(``nan`` and ``inf`` parse, and are then refused by the validators' finiteness checks, which
name the field). Everything else is a ValueError.
"""

from __future__ import annotations

import re

# Sign, digits with an optional fraction (or a bare fraction), optional exponent; or the
# IEEE names float() knows, so the validators (not this parser) refuse them with the field.
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))"
)


def strict_float(text: str) -> float:
    """``text`` (already stripped of ASCII spaces) as a float; ValueError unless it is a plain
    ASCII number."""
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"{text[:40]!r} is not a number")
    return float(text)
