"""Keyword ranking for RAG search: PostgreSQL full-text matching, weighted like BM25.

``ts_rank_cd`` alone counts every occurrence of every query term the same: for "Which team is in
charge of Quillfeather?" a chunk that says "team" twice outranks the only chunk that names
Quillfeather, once. Here each query term (a lexeme or a quoted phrase, as ``websearch_to_tsquery``
parses them) is weighted by its inverse document frequency in the collection,
``ln(1 + (N - df + 0.5) / (df + 0.5))`` over its N chunks, and its occurrences saturate as in BM25
(k1 = 1, no length normalisation): ``2 r / (r + 0.1)``, where ``r`` is ``ts_rank_cd`` of the term alone
(0.1 per occurrence in the text, 1.0 in the title, 0.4 in the section heading). A chunk's keyword score
is the sum over the terms it contains; any term counts (OR semantics); ``-word`` excludes chunks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

_KEYWORD_SQL = """
WITH terms AS (
    SELECT CAST(t AS tsquery) AS tq FROM unnest(CAST(:terms AS text[])) AS t
), size AS (
    SELECT count(*) AS n FROM chunks WHERE collection_id = :cid
), weighted AS (
    SELECT tq, ln(1 + (size.n - df + 0.5) / (df + 0.5)) AS idf
    FROM (SELECT tq, (SELECT count(*) FROM chunks WHERE collection_id = :cid AND tsv @@ tq) AS df FROM terms) s,
         size
)
SELECT c.id, c.document_id, d.title, c.section, c.page, c.text, c.metadata,
       sum(w.idf * 2 * r.rank / (r.rank + 0.1)) AS score
FROM chunks c
JOIN documents d ON d.id = c.document_id
JOIN weighted w ON c.tsv @@ w.tq
CROSS JOIN LATERAL (SELECT ts_rank_cd(c.tsv, w.tq) AS rank) r
WHERE c.collection_id = :cid {exclude} {where}
GROUP BY c.id, d.title
ORDER BY score DESC, c.id
LIMIT :limit
"""


def query_terms(tsquery: str) -> tuple[list[str], list[str]]:
    """The operands of a ``websearch_to_tsquery`` result, split into (terms, excluded terms).

    ``'team' & 'charg' | !'x' & 'err' <-> '-7731'`` gives ``["'team'", "'charg'", "'err' <-> '-7731'"]``
    and ``["'x'"]``: ``&`` and ``|`` at the top level (outside quotes and parentheses) separate operands.
    """
    operands: list[str] = []
    current: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(tsquery):
        char = tsquery[i]
        if quoted:
            current.append(char)
            if char == "'":
                if tsquery[i + 1 : i + 2] == "'":  # an escaped quote inside a lexeme
                    current.append("'")
                    i += 1
                else:
                    quoted = False
        elif char == "'":
            quoted = True
            current.append(char)
        elif char in "()":
            depth += 1 if char == "(" else -1
            current.append(char)
        elif char in "&|" and depth == 0:
            operands.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    operands.append("".join(current).strip())
    terms, excluded = [], []
    for operand in filter(None, operands):
        if operand.startswith("!"):
            excluded.append(operand[1:].strip())
        else:
            terms.append(operand)
    return list(dict.fromkeys(terms)), list(dict.fromkeys(excluded))


def keyword_rows(session, collection_id: int, query: str, where: str, params: dict[str, Any], limit: int) -> list:
    """Chunks of the collection that contain any term of ``query``, best first (see the module docstring)."""
    parsed = session.execute(text("SELECT websearch_to_tsquery('english', :q)::text"), {"q": query}).scalar() or ""
    terms, excluded = query_terms(parsed)
    if not terms:
        return []
    exclude = "AND NOT c.tsv @@ CAST(:excluded AS tsquery)" if excluded else ""
    sql = _KEYWORD_SQL.format(exclude=exclude, where=where)
    values = {"terms": terms, "cid": collection_id, "limit": limit, **params}
    if excluded:
        values["excluded"] = " | ".join(f"({term})" for term in excluded)
    return session.execute(text(sql), values).all()
