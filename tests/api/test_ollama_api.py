"""The official ollama client against the default install, unchanged."""

from __future__ import annotations

import httpx
import ollama


def test_list_shows_the_embedded_models(ollama_client: ollama.Client) -> None:
    names = {m.model for m in ollama_client.list().models}
    assert {"smollm2", "all-minilm-l6-v2"} <= names


def test_version_needs_no_key(inferhub) -> None:
    response = httpx.get(f"{inferhub.url}/api/version")
    assert response.status_code == 200
    assert response.json()["version"].count(".") == 2


def test_chat_non_streaming(ollama_client: ollama.Client) -> None:
    response = ollama_client.chat(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        options={"num_predict": 8, "temperature": 0},
    )
    assert response.done is True
    assert response.message.role == "assistant"
    assert response.message.content.strip()
    assert 0 < response.eval_count <= 8
    assert response.prompt_eval_count > 0
    assert response.done_reason in ("stop", "length")


def test_chat_streaming_is_ndjson_and_ends_done(ollama_client: ollama.Client) -> None:
    parts = list(
        ollama_client.chat(
            model="smollm2",
            messages=[{"role": "user", "content": "Count to three."}],
            options={"num_predict": 10},
            stream=True,
        )
    )
    assert len(parts) >= 2
    assert all(not p.done for p in parts[:-1])
    assert parts[-1].done is True
    text = "".join(p.message.content for p in parts)
    assert text.strip()
    assert parts[-1].eval_count == sum(1 for p in parts[:-1] if p.message.content)


def test_generate_non_streaming(ollama_client: ollama.Client) -> None:
    response = ollama_client.generate(model="smollm2", prompt="Why is the sky blue?", options={"num_predict": 10})
    assert response.done and response.response.strip()
    assert response.eval_count <= 10


def test_generate_streaming(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.generate(model="smollm2", prompt="Hello", options={"num_predict": 6}, stream=True))
    assert parts[-1].done is True
    assert "".join(p.response for p in parts).strip()


def test_embed(ollama_client: ollama.Client) -> None:
    response = ollama_client.embed(model="all-minilm-l6-v2", input=["first text", "second text"])
    assert len(response.embeddings) == 2
    assert all(len(v) == 384 for v in response.embeddings)
    assert response.embeddings[0] != response.embeddings[1]


def test_unknown_model_is_an_ollama_style_404(ollama_client: ollama.Client) -> None:
    try:
        ollama_client.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except ollama.ResponseError as exc:
        assert exc.status_code == 404
        assert "no-such-model" in exc.error
    else:
        raise AssertionError("expected a 404")


# -- the routes Open WebUI and other Ollama tools call beside chat --------------------------------


def test_show_describes_a_served_model_and_its_capabilities(ollama_client: ollama.Client) -> None:
    shown = ollama_client.show("smollm2")
    assert "completion" in (shown.capabilities or []) and "embedding" not in (shown.capabilities or [])
    assert shown.details is not None and shown.details.format == "gguf"
    assert (shown.modelinfo or {})["llamacpp.context_length"] > 0  # what Open WebUI reads the context from
    assert ollama_client.show("all-minilm-l6-v2").capabilities == ["embedding"]


def test_show_of_a_model_not_served_is_a_404_in_ollamas_shape(ollama_client: ollama.Client) -> None:
    try:
        ollama_client.show("no-such-model")
    except ollama.ResponseError as exc:
        assert exc.status_code == 404 and "no-such-model" in exc.error
    else:
        raise AssertionError("show of an unknown model answered")


def test_ps_lists_the_served_models(ollama_client: ollama.Client) -> None:
    served = {m.model for m in ollama_client.list().models}
    running = {m.model for m in ollama_client.ps().models}
    assert running == served and "smollm2" in running


def test_pull_of_a_served_model_succeeds_streamed_and_not(ollama_client: ollama.Client) -> None:
    assert ollama_client.pull("smollm2").status == "success"
    statuses = [part.status for part in ollama_client.pull("smollm2", stream=True)]
    assert statuses[-1] == "success" and len(statuses) > 1


def test_pull_of_a_model_not_served_says_inferhub_does_not_download(ollama_client: ollama.Client) -> None:
    try:
        ollama_client.pull("llama3:70b")
    except ollama.ResponseError as exc:
        assert exc.status_code == 404 and "llama3:70b" in exc.error and "serves" in exc.error
    else:
        raise AssertionError("pull of a model Inferhub does not serve answered")
