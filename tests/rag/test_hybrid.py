"""Hybrid search earns its keep: a paraphrase that keyword search cannot find, an exact error code that the
embeddings cannot tell from its look-alikes, and hybrid (reciprocal rank fusion) ranking both first.

The corpus is designed for it and the outcomes are asserted exactly, against the embedded all-MiniLM-L6-v2:

* "Should I refuel the automobile before I bring it back?" shares no word (after English stemming and
  stop words) with the fleet policy ("company car ... full tank of petrol"): keyword search returns nothing,
  vector search ranks the fleet policy first.
* "ERR-7731-QX" is one of five codes that differ by a character or two; four of them share one short
  description, so their embeddings sit closer to a bare code than the right, wordy one: vector search ranks
  a look-alike first. Full-text search indexes the code's parts ("err", "-7731", "qx") and matches the phrase
  exactly: keyword search ranks the right document first (and only it).
* Hybrid ranks the right document first for both, and its scores are exactly RRF (k = 60) of the two
  rankings: score(chunk) = sum over rankings of 1 / (60 + rank).
"""

from __future__ import annotations

import pytest

RRF_K = 60
PARAPHRASE = "Should I refuel the automobile before I bring it back?"
CODE = "ERR-7731-QX"

CORPUS = {
    "fleet": "Fleet policy. The company car must be returned with a full tank of petrol, and the keys go to reception.",
    "vacation": "Leave policy. Every employee receives twenty-five days of paid vacation per calendar year.",
    "expenses": "Expense policy. Receipts for meals and hotels are submitted within thirty days through the "
    "finance portal.",
    "laptops": "Equipment policy. Laptops are replaced every three years; lost devices are reported to the IT "
    "service desk.",
    "ERR-7731-QX": "ERR-7731-QX: the nightly archive job stopped because the storage volume ran out of free "
    "space; the storage team must extend the volume.",
    "ERR-7731-QZ": "ERR-7731-QZ: the license server did not answer.",
    "ERR-7731-OX": "ERR-7731-OX: the license server did not answer.",
    "ERR-7713-QX": "ERR-7713-QX: the license server did not answer.",
    "ERR-7781-QX": "ERR-7781-QX: the license server did not answer.",
}


@pytest.fixture(scope="module")
def corpus(inferhub, ragkit):
    """One collection with the designed corpus; yields (client, collection name, {document id: label})."""
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag")) as client:
        name = client.create_collection()["name"]
        labels = {}
        for label, text in CORPUS.items():
            response = client.add_text(name, text, title=label)
            assert response.status_code == 202, response.text
            labels[response.json()["id"]] = label
        client.wait_all_ready(name, len(CORPUS))
        yield client, name, labels


def _ranked(corpus, query: str, mode: str, top_k: int = 5) -> tuple[list[str], list[dict]]:
    client, name, labels = corpus
    hits = client.search(name, query, mode=mode, top_k=top_k)
    return [labels[h["document_id"]] for h in hits], hits


def test_keyword_search_misses_the_paraphrase(corpus) -> None:
    labels, _ = _ranked(corpus, PARAPHRASE, "keyword")
    assert labels == []


def test_vector_search_finds_the_paraphrase(corpus) -> None:
    labels, hits = _ranked(corpus, PARAPHRASE, "vector")
    assert labels[0] == "fleet", labels
    assert hits[0]["vector_score"] == hits[0]["score"] and hits[0]["keyword_score"] is None


def test_vector_search_confuses_the_error_code_with_its_look_alikes(corpus) -> None:
    labels, _ = _ranked(corpus, CODE, "vector", top_k=len(CORPUS))
    assert labels[0] != CODE, labels
    assert labels[0].startswith("ERR-"), labels  # a look-alike, not something unrelated
    print(f"vector ranks {CODE} at position {labels.index(CODE) + 1}: {labels}")


def test_keyword_search_finds_the_exact_error_code(corpus) -> None:
    labels, hits = _ranked(corpus, CODE, "keyword")
    assert labels == [CODE]  # the code's phrase matches only its own document
    assert hits[0]["keyword_score"] > 0 and hits[0]["vector_score"] is None
    assert _ranked(corpus, f"What does {CODE} mean?", "keyword")[0][0] == CODE


@pytest.mark.parametrize(
    ("query", "expected"), [(PARAPHRASE, "fleet"), (CODE, CODE), (f"What does {CODE} mean?", CODE)]
)
def test_hybrid_search_gets_both_right(corpus, query: str, expected: str) -> None:
    labels, hits = _ranked(corpus, query, "hybrid")
    assert labels[0] == expected, labels
    assert hits[0]["vector_score"] is not None


@pytest.mark.parametrize("query", [PARAPHRASE, CODE, "Which policy covers paid vacation and laptops?"])
def test_hybrid_scores_are_reciprocal_rank_fusion_of_both_rankings(corpus, query: str) -> None:
    client, name, _ = corpus
    vector = client.search(name, query, mode="vector", top_k=50)
    keyword = client.search(name, query, mode="keyword", top_k=50)
    hybrid = client.search(name, query, mode="hybrid", top_k=50)
    expected: dict[int, float] = {}
    for ranking in (vector, keyword):
        for rank, hit in enumerate(ranking, start=1):
            expected[hit["chunk_id"]] = expected.get(hit["chunk_id"], 0.0) + 1 / (RRF_K + rank)
    assert {h["chunk_id"] for h in hybrid} == set(expected)
    scores = [h["score"] for h in hybrid]
    assert scores == sorted(scores, reverse=True)
    for hit in hybrid:
        assert hit["score"] == pytest.approx(expected[hit["chunk_id"]], abs=2e-6), hit
    # Each hit carries the scores it had in each ranking (None where that ranking did not have it).
    vector_scores = {h["chunk_id"]: h["vector_score"] for h in vector}
    keyword_scores = {h["chunk_id"]: h["keyword_score"] for h in keyword}
    for hit in hybrid:
        assert hit["vector_score"] == vector_scores.get(hit["chunk_id"])
        assert hit["keyword_score"] == keyword_scores.get(hit["chunk_id"])
    # A chunk both rankings put first beats any chunk only one ranking has: 2/61 > 1/61.
    if vector and keyword and vector[0]["chunk_id"] == keyword[0]["chunk_id"]:
        assert hybrid[0]["chunk_id"] == vector[0]["chunk_id"]
        assert hybrid[0]["score"] == pytest.approx(2 / (RRF_K + 1), abs=2e-6)
    # top_k cuts the fused list, not the rankings before fusion.
    top3 = client.search(name, query, mode="hybrid", top_k=3)
    assert [h["chunk_id"] for h in top3] == [h["chunk_id"] for h in hybrid[:3]]


# Ten pasted pages about teams (each says "team" twice, none says "charge"), and one uploaded file that names
# Quillfeather once and shares no other word with the question.
TEAM_PAGES = [
    f"The {unit} team meets on {day}. Every team member files a weekly status note before the meeting."
    for unit, day in [
        ("payroll", "Mondays"), ("legal", "Tuesdays"), ("design", "Wednesdays"), ("support", "Thursdays"),
        ("research", "Fridays"), ("sales", "Mondays"), ("facilities", "Tuesdays"), ("security", "Wednesdays"),
        ("finance", "Thursdays"), ("logistics", "Fridays"),
    ]
]  # fmt: skip
HANDOVER = b"# Service handover\n\nFrom March the note-keeping service Quillfeather belongs to the platform group.\n"


@pytest.fixture(scope="module")
def teams(inferhub, ragkit):
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag")) as client:
        name = client.create_collection()["name"]
        for text in TEAM_PAGES:
            assert client.add_text(name, text).status_code == 202
        response = client.upload(name, "handover.md", HANDOVER, "text/markdown")
        assert response.status_code == 202, response.text
        client.wait_all_ready(name, len(TEAM_PAGES) + 1)
        yield client, name, response.json()["id"]


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
@pytest.mark.parametrize("query", ["Which team is in charge of Quillfeather?", "Which team owns Quillfeather?"])
def test_a_rare_word_outweighs_common_ones(teams, query: str, mode: str) -> None:
    """Every page matches "team" (twice); only the uploaded file matches "Quillfeather" (once): it ranks first.

    ``ts_rank_cd`` alone scored each page 0.2 and the file 0.1; weighting terms by their rarity in the
    collection (BM25-style IDF) puts the file first by far.
    """
    client, name, file_id = teams
    hits = client.search(name, query, mode=mode, top_k=5)
    assert hits[0]["document_id"] == file_id, [h["text"][:40] for h in hits]
    if mode == "keyword":
        assert hits[0]["keyword_score"] > 3 * hits[1]["keyword_score"], hits[:2]


def test_a_minus_word_excludes_chunks(teams) -> None:
    client, name, _ = teams
    texts = [h["text"] for h in client.search(name, "team -payroll -legal", mode="keyword", top_k=50)]
    assert len(texts) == len(TEAM_PAGES) - 2 and not any("payroll" in t or "legal" in t for t in texts), texts
