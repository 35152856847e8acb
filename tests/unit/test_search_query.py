"""websearch_query: runs of negations that would overflow PostgreSQL's tsquery stack become one or two signs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_todo.domain.search_query import websearch_query


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("-" * 33, "-"),
        ("- " * 40, "-- "),
        ("-(" * 40, "--("),
        ("a" + " -" * 32, "a --"),
        ("run ---marathon", "run -marathon"),
        ("run -(-(-!marathon", "run -!marathon"),
        ("run - - - - marathon", "run -- marathon"),
        ("well-known --- no", "well-known - no"),
        ('"post office" ---bank', '"post office" -bank'),
    ],
)
def test_long_runs_keep_their_parity(query: str, expected: str) -> None:
    assert websearch_query(query) == expected


@pytest.mark.parametrize(
    "query",
    ["", "run -marathon", "run --marathon", "- -x", "foo-bar", "a----b", "x---", "'---'", "*:*"],
)
def test_everything_else_is_left_alone(query: str) -> None:
    # A sign inside a word is part of it ("a----b", "x---", "'---'"), and one or two signs stay as written.
    assert websearch_query(query) == query


@given(st.text(alphabet="-()!&|< \t\"'ax", max_size=300))
def test_no_long_run_is_left_and_rewriting_twice_changes_nothing(query: str) -> None:
    rewritten = websearch_query(query)
    assert websearch_query(rewritten) == rewritten
    assert not re.search(r'(?:^|(?<=[\s!&|()<"]))-(?:[\s!&|()<]*-){2,}', rewritten)
    assert rewritten.count("-") <= query.count("-")
