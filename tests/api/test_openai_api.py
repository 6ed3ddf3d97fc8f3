"""The official openai SDK against the default install (embedded SmolLM2 and MiniLM), unchanged."""

from __future__ import annotations

import math

import openai


def test_models_list_shows_the_embedded_models(openai_client: openai.OpenAI) -> None:
    ids = {model.id for model in openai_client.models.list()}
    assert {"smollm2", "all-minilm-l6-v2"} <= ids


def test_chat_completion_answers_with_usage(openai_client: openai.OpenAI) -> None:
    response = openai_client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        temperature=0,
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 12
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_streamed_chat_matches_and_ends_with_a_usage_chunk(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert text.strip()
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.completion_tokens == content_chunks
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    # Only the last chunk carries usage.
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_chat_without_include_usage_has_no_usage_chunk(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        )
    )
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_temperature_zero_is_deterministic_through_the_gateway(openai_client: openai.OpenAI) -> None:
    def ask() -> str:
        return openai_client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=10,
            temperature=0,
        ).choices[0].message.content

    assert ask() == ask()


def test_completion(openai_client: openai.OpenAI) -> None:
    response = openai_client.completions.create(model="smollm2", prompt="The sky is", max_tokens=6, temperature=0)
    assert response.choices[0].text
    assert response.usage.completion_tokens <= 6


def test_streamed_completion(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.completions.create(model="smollm2", prompt="One, two,", max_tokens=5, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


def test_embeddings_are_384_dimensional_and_semantic(openai_client: openai.OpenAI) -> None:
    response = openai_client.embeddings.create(
        model="all-minilm-l6-v2",
        input=["A cat sits on the mat.", "A kitten is resting on a rug.", "Quarterly tax filing deadlines."],
    )
    vectors = [item.embedding for item in response.data]
    assert [item.index for item in response.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3  # normalised
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.2
    assert response.usage.prompt_tokens > 0


def test_single_string_embedding(openai_client: openai.OpenAI) -> None:
    response = openai_client.embeddings.create(model="all-minilm-l6-v2", input="hello")
    assert len(response.data) == 1 and len(response.data[0].embedding) == 384
