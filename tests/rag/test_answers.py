"""Cited answers: /v1/rag/query (plain and streamed) and the chat extension ("collections" on
/v1/chat/completions), with the embedded SmolLM2 answering from an HR handbook collection.

The tests check what Inferhub is responsible for (retrieval, citations, the event order of the stream, the
grounding reaching the model, the no-answer path), not the wording of a 135M-parameter model's answer.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

NO_ANSWER = "I could not find anything relevant to this question in the selected collections."
QUESTION = "How many days of paid vacation do employees get per year?"
UNRELATED = "What is the role of gluons in quantum chromodynamics?"
MAX_TOKENS = 16

HANDBOOK = {
    "Vacation": "Every employee receives twenty-five days of paid vacation per calendar year. Unused vacation "
    "days can be carried over until the end of March.",
    "Sick leave": "Employees who are ill must notify their manager before nine in the morning. A doctor's note "
    "is needed from the third day of absence.",
    "Expenses": "Travel expenses are reimbursed within thirty days. Receipts must be uploaded to the finance portal.",
    "Working hours": "Core hours are from ten to three. Overtime must be approved in advance by the team lead.",
}


@pytest.fixture(scope="module")
def handbook(inferhub, ragkit):
    """An HR handbook collection; yields (client, collection name, {section title: document id})."""
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag", "inference")) as client:
        name = client.create_collection(description="HR handbook")["name"]
        ids = {}
        for title, text in HANDBOOK.items():
            response = client.add_text(name, f"# {title}\n\n{text}", title=title, format="markdown")
            assert response.status_code == 202, response.text
            ids[title] = response.json()["id"]
        client.wait_all_ready(name, len(HANDBOOK))
        yield client, name, ids


def _sse(response: httpx.Response) -> list[Any]:
    """The stream's data payloads in order: parsed JSON objects, and the literal "[DONE]"."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    events: list[Any] = []
    for line in response.iter_lines():
        if not line.startswith("data: "):
            assert line == "" or line.startswith(":"), line
            continue
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def _split_stream(events: list[Any]) -> tuple[list[dict], dict]:
    """Chunks, then one rag.citations event, then [DONE] and nothing after it."""
    assert events and events[-1] == "[DONE]", events[-3:]
    assert events.count("[DONE]") == 1
    citations = events[-2]
    assert citations["object"] == "rag.citations", citations
    chunks = events[:-2]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
    return chunks, citations


def _check_citations(citations: list[dict], ids: dict[str, str], first: str) -> None:
    assert citations, "no citations"
    top = citations[0]
    assert top["document_id"] == ids[first] and top["title"] == first and top["section"] == first
    assert top["chunk"] == HANDBOOK[first] and top["page"] is None and top["index"] == 1
    assert [c["index"] for c in citations] == list(range(1, len(citations) + 1))
    scores = [c["score"] for c in citations]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert set(top) >= {"document_id", "title", "section", "page", "chunk", "score"}


def test_rag_query_answers_with_citations(handbook) -> None:
    client, name, ids = handbook
    response = client.http.post(
        "/v1/rag/query", json={"collections": [name], "query": QUESTION, "max_tokens": MAX_TOKENS}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "rag.answer" and body["model"] == "smollm2"
    assert isinstance(body["answer"], str) and body["answer"].strip() and body["answer"] != NO_ANSWER
    _check_citations(body["citations"], ids, "Vacation")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS
    assert usage["prompt_tokens"] > 60  # the numbered sources went into the prompt


def test_rag_query_streams_chunks_then_citations_then_done(handbook) -> None:
    client, name, ids = handbook
    body = {"collections": [name], "query": QUESTION, "stream": True, "max_tokens": MAX_TOKENS}
    with client.http.stream("POST", "/v1/rag/query", json=body) as response:
        events = _sse(response)
    chunks, citations = _split_stream(events)
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text.strip() and text != NO_ANSWER
    assert any(c.get("usage") for c in chunks)  # the usage chunk comes before the citations
    _check_citations(citations["citations"], ids, "Vacation")


@pytest.mark.parametrize("stream", [False, True])
def test_unrelated_question_gets_the_no_answer_text_and_no_citations(handbook, stream: bool) -> None:
    client, name, _ = handbook
    # Nothing in the handbook is near it: no keyword in common, every cosine similarity below the threshold.
    hits = client.search(name, UNRELATED, top_k=10)
    assert all(h["keyword_score"] is None and h["vector_score"] < 0.25 for h in hits), hits
    body = {"collections": [name], "query": UNRELATED, "stream": stream}
    if not stream:
        response = client.http.post("/v1/rag/query", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["answer"] == NO_ANSWER and response.json()["citations"] == []
        return
    with client.http.stream("POST", "/v1/rag/query", json=body) as response:
        chunks, citations = _split_stream(_sse(response))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == NO_ANSWER
    assert citations["citations"] == []


def test_chat_extension_with_the_openai_sdk(inferhub, handbook) -> None:
    client, name, ids = handbook
    sdk = openai.OpenAI(base_url=f"{inferhub.url}/v1", api_key=client.key, max_retries=0, timeout=300)
    messages = [{"role": "user", "content": QUESTION}]
    grounded = sdk.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=MAX_TOKENS, extra_body={"collections": [name]}
    )
    assert isinstance(grounded.choices[0].message.content, str)
    assert grounded.object == "chat.completion" and grounded.model == "smollm2"
    _check_citations(grounded.model_extra["citations"], ids, "Vacation")
    # The sources reached the model as a system message in front of the user's messages.
    plain = sdk.chat.completions.create(model="smollm2", messages=messages, max_tokens=1)
    assert "citations" not in (plain.model_extra or {})
    assert grounded.usage.prompt_tokens > plain.usage.prompt_tokens + 40


def test_chat_extension_streams_with_citations_before_done(handbook) -> None:
    client, name, ids = handbook
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": QUESTION}],
        "collections": [name],
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    with client.http.stream("POST", "/v1/chat/completions", json=body) as response:
        chunks, citations = _split_stream(_sse(response))
    assert "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"]).strip()
    _check_citations(citations["citations"], ids, "Vacation")


def test_chat_extension_without_relevant_hits_is_a_plain_chat(inferhub, handbook) -> None:
    client, name, _ = handbook
    sdk = openai.OpenAI(base_url=f"{inferhub.url}/v1", api_key=client.key, max_retries=0, timeout=300)
    reply = sdk.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": UNRELATED}],
        max_tokens=1,
        extra_body={"collections": [name]},
    )
    assert reply.model_extra["citations"] == []
    plain = sdk.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": UNRELATED}], max_tokens=1
    )
    assert reply.usage.prompt_tokens == plain.usage.prompt_tokens  # nothing was added to the prompt


# -- answer_mode: "extractive" answers with the passages themselves, no model involved ---------------------


def test_extractive_answer_quotes_the_best_passages_and_calls_no_model(handbook) -> None:
    client, name, ids = handbook
    body = {"collections": [name], "query": QUESTION, "answer_mode": "extractive", "top_k": 2}
    response = client.http.post("/v1/rag/query", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "rag.answer" and answer["answer_mode"] == "extractive"
    assert answer["model"] is None and answer["usage"] is None
    _check_citations(answer["citations"], ids, "Vacation")
    # The answer is the cited passages, best first, each quoted and numbered like its citation.
    expected = "\n\n".join(f'"{c["chunk"]}" [{c["index"]}]' for c in answer["citations"])
    assert answer["answer"] == expected and answer["answer"].startswith(f'"{HANDBOOK["Vacation"]}" [1]')
    # No model is called: a model that does not exist changes nothing, where generating answers 404.
    unknown = {**body, "model": "no-such-model"}
    assert client.http.post("/v1/rag/query", json=unknown).json() == answer
    generate = client.http.post("/v1/rag/query", json={**unknown, "answer_mode": "generate"})
    assert generate.status_code == 404, generate.text


def test_extractive_answer_streams_one_chunk_then_citations(handbook) -> None:
    client, name, ids = handbook
    body = {"collections": [name], "query": QUESTION, "answer_mode": "extractive", "stream": True}
    with client.http.stream("POST", "/v1/rag/query", json=body) as response:
        chunks, citations = _split_stream(_sse(response))
    plain = client.http.post("/v1/rag/query", json={**body, "stream": False}).json()
    assert len(chunks) == 1 and chunks[0]["choices"][0]["delta"]["content"] == plain["answer"]
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert citations["citations"] == plain["citations"]
    _check_citations(citations["citations"], ids, "Vacation")


def test_extractive_answer_without_relevant_passages(handbook) -> None:
    client, name, _ = handbook
    body = {"collections": [name], "query": UNRELATED, "answer_mode": "extractive"}
    answer = client.http.post("/v1/rag/query", json=body).json()
    assert (answer["answer"], answer["citations"], answer["model"]) == (NO_ANSWER, [], None)


def test_generate_is_the_default_answer_mode(handbook) -> None:
    client, name, ids = handbook
    for extra in ({}, {"answer_mode": "generate"}, {"answer_mode": None}):
        body = {"collections": [name], "query": QUESTION, "max_tokens": 4, **extra}
        answer = client.http.post("/v1/rag/query", json=body).json()
        assert answer["answer_mode"] == "generate" and answer["model"] == "smollm2", answer
        assert answer["usage"]["completion_tokens"] > 0  # the model wrote it
        _check_citations(answer["citations"], ids, "Vacation")


@pytest.mark.parametrize("value", ["summarize", "", "EXTRACTIVE", 1, True, ["extractive"], {"mode": "extractive"}])
def test_a_bad_answer_mode_is_400(handbook, ragkit, value: Any) -> None:
    client, name, _ = handbook
    body = {"collections": [name], "query": QUESTION, "answer_mode": value}
    error = ragkit.assert_openai_error(client.http.post("/v1/rag/query", json=body), 400)
    assert error["param"] == "answer_mode" and "extractive" in error["message"], error


def test_answer_mode_is_in_the_openapi_document(inferhub) -> None:
    schema = httpx.get(f"{inferhub.url}/openapi.json", timeout=30).json()
    body = schema["paths"]["/v1/rag/query"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    answer_mode = body["properties"]["answer_mode"]
    assert answer_mode["enum"] == ["generate", "extractive"] and answer_mode["default"] == "generate"
    assert "no model is called" in answer_mode["description"]


@pytest.mark.parametrize("path", ["/v1/rag/query", "/v1/collections/{name}/search"])
def test_a_nul_character_in_the_query_is_400(handbook, ragkit, path: str) -> None:
    client, name, _ = handbook
    body = {"collections": [name], "query": "vacation\u0000days", "answer_mode": "extractive"}
    response = client.http.post(path.format(name=name), json=body)
    assert ragkit.assert_openai_error(response, 400)["param"] == "query"
