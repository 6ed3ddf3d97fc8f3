"""Synthetic corpora for the RAG retrieval check (tests/rag/test_retrieval_quality.py) and bench/rag_bench.py."""

from bench.corpus.retrieval import Document, Question, build, chunk_texts

__all__ = ["Document", "Question", "build", "chunk_texts"]
