"""Chunks that follow structure: a section's paragraphs are packed up to ``size`` tokens, with ``overlap``.

Tokens are counted as words and punctuation marks (``\\w+|[^\\w\\s]``), close to what
sub-word tokenizers give for English prose and cheap enough for large documents.
A paragraph longer than ``size`` is split by sentences, then by words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inferhub.rag.extract import Section

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass(slots=True)
class Chunk:
    text: str
    section: str | None
    page: int | None
    ordinal: int = 0


def chunk_sections(sections: list[Section], *, size: int = 256, overlap: int = 32) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in sections:
        pieces = [p for p in _paragraphs(section.text) for p in _fit(p, size)]
        current: list[str] = []
        tokens = 0
        for piece in pieces:
            n = count_tokens(piece)
            if current and tokens + n > size:
                chunks.append(Chunk("\n\n".join(current), section.heading, section.page))
                current, tokens = _tail(current, overlap)
            current.append(piece)
            tokens += n
        if current:
            chunks.append(Chunk("\n\n".join(current), section.heading, section.page))
    for ordinal, chunk in enumerate(chunks):
        chunk.ordinal = ordinal
    return chunks


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _fit(paragraph: str, size: int) -> list[str]:
    if count_tokens(paragraph) <= size:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(paragraph):
        if count_tokens(sentence) > size:
            words = sentence.split()
            step = max(1, size * 2 // 3)
            out.extend(" ".join(words[i : i + step]) for i in range(0, len(words), step))
            continue
        candidate = f"{current} {sentence}".strip()
        if current and count_tokens(candidate) > size:
            out.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        out.append(current)
    return out


def _tail(pieces: list[str], overlap: int) -> tuple[list[str], int]:
    """The last pieces (up to ``overlap`` tokens) start the next chunk, so a fact on a border is in both."""
    if overlap <= 0:
        return [], 0
    kept: list[str] = []
    tokens = 0
    for piece in reversed(pieces):
        n = count_tokens(piece)
        if tokens + n > overlap:
            if not kept:
                words = piece.split()
                tail = " ".join(words[-overlap:])
                return [tail], count_tokens(tail)
            break
        kept.insert(0, piece)
        tokens += n
    return kept, tokens
