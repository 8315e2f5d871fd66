"""Request ids: a caller's plain id is kept; anything else gets a new, unique, plain one."""

from __future__ import annotations

import re

from app.observe.logs import request_id_from

PLAIN = re.compile(r"[0-9a-f]{32}")


def test_a_plain_caller_id_is_kept() -> None:
    assert request_id_from("trace-42.a:b_c") == "trace-42.a:b_c"


def test_a_missing_or_unsafe_id_is_replaced_by_a_new_one() -> None:
    for given in (None, "", "has space", "x" * 129, "new\nline", "é"):
        made = request_id_from(given)
        assert PLAIN.fullmatch(made), made


def test_new_ids_do_not_repeat() -> None:
    made = [request_id_from(None) for _ in range(10_000)]
    assert len(set(made)) == len(made)
