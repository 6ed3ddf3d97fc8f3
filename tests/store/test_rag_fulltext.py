"""The operands of a websearch_to_tsquery result, as the keyword ranking weighs them one by one."""

from __future__ import annotations

import pytest

from inferhub.store.rag_fulltext import query_terms


@pytest.mark.parametrize(
    ("tsquery", "terms", "excluded"),
    [
        ("'team' & 'charg' & 'quillfeath'", ["'team'", "'charg'", "'quillfeath'"], []),
        ("'err' <-> '-7731' <-> 'qx' & 'mean'", ["'err' <-> '-7731' <-> 'qx'", "'mean'"], []),
        ("'b' & 'c' & !'d' & 'red' <-> 'fox'", ["'b'", "'c'", "'red' <-> 'fox'"], ["'d'"]),
        ("!( 'red' <-> 'fox' ) & 'dog'", ["'dog'"], ["( 'red' <-> 'fox' )"]),
        ("'team' | 'charg' & 'x'", ["'team'", "'charg'", "'x'"], []),
        ("'example.com/a?b&c' & 'x'", ["'example.com/a?b&c'", "'x'"], []),  # & inside a lexeme
        ("'o''brien' & 'team' & 'team'", ["'o''brien'", "'team'"], []),  # an escaped quote; duplicates once
        ("", [], []),
    ],
)
def test_query_terms(tsquery: str, terms: list[str], excluded: list[str]) -> None:
    assert query_terms(tsquery) == (terms, excluded)
