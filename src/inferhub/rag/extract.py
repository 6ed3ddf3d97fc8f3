"""Text out of documents, keeping their structure: sections (headings) and pages.

Plain text and Markdown (``#`` headings), HTML (``h1`` to ``h3``; scripts and styles
dropped; stdlib ``html.parser``), PDF (pypdf, one section per page) and DOCX
(python-docx, ``Heading`` styles start sections).
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass(slots=True)
class Section:
    heading: str | None
    text: str
    page: int | None = None


class UnsupportedFormat(ValueError):
    pass


MIME_BY_SUFFIX = {
    ".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}  # fmt: skip
SUPPORTED = sorted(set(MIME_BY_SUFFIX.values()))


def detect_mime(filename: str | None, declared: str | None, content: bytes) -> str:
    if content.startswith(b"%PDF"):
        return "application/pdf"
    if content.startswith(b"PK") and (filename or "").lower().endswith(".docx"):
        return MIME_BY_SUFFIX[".docx"]
    name = (filename or "").lower()
    for suffix, mime in MIME_BY_SUFFIX.items():
        if name.endswith(suffix):
            return mime
    declared_type = (declared or "").split(";")[0].strip().lower()
    if declared_type in SUPPORTED:
        return declared_type
    head = content[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    # Anything else is plain text only if it is text: an image, a spreadsheet or a zip declared as such
    # (or binary content under any name) keeps its own type, which the caller answers with 415.
    generic = ("", "application/octet-stream")
    if declared_type not in generic and not declared_type.startswith("text/"):
        return declared_type
    if _binary(content):
        return declared_type or "application/octet-stream"
    return "text/plain"


def _binary(content: bytes) -> bool:
    sample = content[:8192]
    if b"\x00" in sample:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(content) <= len(sample))
    except UnicodeDecodeError:
        return True
    return False


def extract(content: bytes, mime: str) -> list[Section]:
    if mime == "application/pdf":
        return _pdf(content)
    if mime == MIME_BY_SUFFIX[".docx"]:
        return _docx(content)
    text = content.decode("utf-8", errors="replace")
    if mime == "text/html":
        return _html(text)
    if mime in ("text/markdown", "text/plain"):
        return _markdown(text)
    raise UnsupportedFormat(f"unsupported document type {mime}; supported: {', '.join(SUPPORTED)}")


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _markdown(text: str) -> list[Section]:
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            if "".join(lines).strip():
                sections.append(Section(heading, "\n".join(lines).strip()))
            heading, lines = match.group(2), []
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections.append(Section(heading, "\n".join(lines).strip()))
    return sections


class _HTMLText(HTMLParser):
    _BLOCKS = {"p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._heading: str | None = None
        self._text: list[str] = []
        self._in_heading = False
        self._heading_text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in ("h1", "h2", "h3"):
            self._flush()
            self._in_heading, self._heading_text = True, []
        elif tag in self._BLOCKS:
            self._text.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("h1", "h2", "h3") and self._in_heading:
            self._in_heading = False
            self._heading = " ".join("".join(self._heading_text).split())

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        (self._heading_text if self._in_heading else self._text).append(data)

    def _flush(self) -> None:
        text = re.sub(r"\n{3,}", "\n\n", "".join(self._text)).strip()
        if text:
            self.sections.append(Section(self._heading, text))
        self._text = []

    def close(self) -> None:
        super().close()
        self._flush()


def _html(text: str) -> list[Section]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return parser.sections


def _pdf(content: bytes) -> list[Section]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").strip()
        if text:
            sections.append(Section(f"Page {number}", text, page=number))
    return sections


def _docx(content: bytes) -> list[Section]:
    import docx

    document = docx.Document(io.BytesIO(content))
    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    for paragraph in document.paragraphs:
        style = (paragraph.style.name or "") if paragraph.style is not None else ""
        if style.lower().startswith(("heading", "title")) and paragraph.text.strip():
            if paragraphs:
                sections.append(Section(heading, "\n\n".join(paragraphs)))
            heading, paragraphs = paragraph.text.strip(), []
        elif paragraph.text.strip():
            paragraphs.append(paragraph.text.strip())
    if paragraphs:
        sections.append(Section(heading, "\n\n".join(paragraphs)))
    return sections
