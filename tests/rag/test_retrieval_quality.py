"""Retrieval quality on a designed corpus: recall@5 of hybrid search with the embedded all-MiniLM-L6-v2.

240 generated documents (product sheets, staff profiles, handbook summaries, project briefs; see
``bench/corpus/retrieval.py``) are ingested through the API, then 100 paraphrased questions, each answered by
exactly one document, are searched. A question is a hit when its document is among the top 5 results.
Hybrid must reach 0.9; recall@5, recall@1 and MRR of all three modes are printed (``-s`` shows them).

Beside the pasted corpus, five files are uploaded (Markdown, plain text, HTML, PDF, DOCX), each naming a word
no other document has, once, in a passage that shares little else with its question; every other word of the
question ("team", "people", "days", "euros", "office") is all over the corpus. A question naming that word must
rank the file first, in keyword and in hybrid search. Ranking by ``ts_rank_cd`` alone counted a pasted profile
saying "team" twice above the file naming "Quillfeather" once: keyword ranks now weigh each term by how rare it
is in the collection (BM25-style, ``inferhub.store.rag_fulltext``).
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

DOCUMENTS, QUESTIONS, TOP_K = 240, 100, 5


def _pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def _docx(heading: str, text: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# label: (filename, content type, build the file, a question naming the file's unique word)
UPLOADS = {
    "upload-quillfeather": (
        "handover.md",
        "text/markdown",
        lambda: (
            b"# Service handover\n\nFrom March the note-taking service Quillfeather belongs to the platform "
            b"group, which takes over its pager and its tickets.\n\nThe previous owners keep read access for a quarter."
        ),
        "Which team is in charge of Quillfeather?",
    ),
    "upload-brambleworth": (
        "rooms.txt",
        "text/plain",
        lambda: (
            b"Meeting rooms on the fourth floor.\n\nThe Brambleworth room seats fourteen and has a ceiling "
            b"projector; it is booked through reception."
        ),
        "How many people fit in Brambleworth?",
    ),
    "upload-orvandel": (
        "suppliers.html",
        "text/html",
        lambda: (
            b"<html><body><h1>Suppliers</h1><p>Chairs and standing desks come from Orvandel, usually ten "
            b"working days after the order.</p></body></html>"
        ),
        "How many days does Orvandel need for a delivery?",
    ),
    "upload-tessaline": (
        "parking.pdf",
        "application/pdf",
        lambda: _pdf("The parking scheme Tessaline costs forty a month and is renewed every January."),
        "How many euros per month does Tessaline cost staff?",
    ),
    "upload-zembrook": (
        "visitors.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        lambda: _docx(
            "Visitor badges",
            "Guests of the Zembrook site collect a badge at the gate and hand it back when they leave.",
        ),
        "Where do people visiting Zembrook pick up a badge?",
    ),
}


@pytest.fixture(scope="module")
def ingested(inferhub, ragkit):
    from bench.corpus import build

    documents, questions = build(seed=7, documents=DOCUMENTS, questions=QUESTIONS)
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag")) as client:
        name = client.create_collection(description="retrieval quality corpus")["name"]
        started = time.perf_counter()

        def upload(document):
            response = client.add_text(
                name, document.text, title=document.title, metadata={"key": document.key, "kind": document.kind}
            )
            assert response.status_code == 202, response.text
            return response.json()["id"], document.key

        with ThreadPoolExecutor(4) as pool:
            keys = dict(pool.map(upload, documents))
        for label, (filename, content_type, build_file, _) in UPLOADS.items():
            response = client.upload(name, filename, build_file(), content_type)
            assert response.status_code == 202, response.text
            keys[response.json()["id"]] = label
        ready = client.wait_all_ready(name, len(documents) + len(UPLOADS), timeout=240)
        elapsed = time.perf_counter() - started
        chunks = sum(d["chunk_count"] for d in ready)
        print(
            f"\ningested {len(documents)} documents ({chunks} chunks) in {elapsed:.1f}s "
            f"({chunks / elapsed:.0f} chunks/s, upload to ready)"
        )
        yield client, name, keys, questions


def _ranks(ingested, mode: str) -> dict[str, int | None]:
    """Each question's rank of its document in the top ``TOP_K`` (None when it is not there)."""
    client, name, keys, questions = ingested

    def rank(question) -> tuple[str, int | None]:
        ranked = [keys[h["document_id"]] for h in client.search(name, question.text, mode=mode, top_k=TOP_K)]
        return question.text, ranked.index(question.document_key) + 1 if question.document_key in ranked else None

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(rank, questions))


def test_the_corpus_is_deterministic_and_every_answer_is_in_one_document() -> None:
    from bench.corpus import build

    documents, questions = build(seed=7, documents=DOCUMENTS, questions=QUESTIONS)
    assert (documents, questions) == build(seed=7, documents=DOCUMENTS, questions=QUESTIONS)
    assert len(documents) == DOCUMENTS and len(questions) == QUESTIONS
    by_key = {d.key: d for d in documents}
    assert len({q.document_key for q in questions}) == QUESTIONS  # one question per document
    for question in questions:
        document = by_key[question.document_key]
        assert question.answer in document.text
        assert [d.key for d in documents if document.entity in d.text] == [document.key]
        # A paraphrase, not a copy: no sentence of the document is in the question.
        assert not any(s.strip() and s.strip() in question.text for s in document.text.split("."))


def test_hybrid_recall_at_5(ingested) -> None:
    lines, recall = [], {}
    for mode in ("vector", "keyword", "hybrid"):
        ranks = _ranks(ingested, mode)
        recall[mode] = sum(r is not None for r in ranks.values()) / len(ranks)
        at_1 = sum(r == 1 for r in ranks.values()) / len(ranks)
        mrr = sum(1 / r for r in ranks.values() if r) / len(ranks)
        lines.append(f"{mode:8} recall@{TOP_K} {recall[mode]:.2f}  recall@1 {at_1:.2f}  MRR@{TOP_K} {mrr:.3f}")
        if mode == "hybrid":
            misses = [q for q, r in ranks.items() if r is None]
    print("\n" + "\n".join(lines))
    assert recall["hybrid"] >= 0.9, f"hybrid recall@{TOP_K} {recall['hybrid']:.2f}; missed: {misses}"


@pytest.mark.parametrize("label", list(UPLOADS))
@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_an_uploaded_file_ranks_first_for_its_unique_word(ingested, label: str, mode: str) -> None:
    client, name, keys, _ = ingested
    question = UPLOADS[label][3]
    ranked = [keys[h["document_id"]] for h in client.search(name, question, mode=mode, top_k=TOP_K)]
    assert ranked and ranked[0] == label, f"{question!r} ({mode}): {ranked}"
