"""What a stream that ends early is billed, and which max_tokens a declared context refuses (pure logic)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from inferhub.backends.base import Backend
from inferhub.errors import APIError
from inferhub.gateway.context_limit import check_max_tokens
from inferhub.gateway.pipeline import StreamOutcome


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_dropped_stream_takes_the_prompt_counted_beside_the_engine_and_the_chunks_seen(loop) -> None:
    counted = loop.create_future()
    counted.set_result(31)
    outcome = StreamOutcome(output_chunks=5, prompt_count=counted, estimate_prompt=lambda: 999)
    outcome.count_unreported()
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (31, 5)


def test_without_a_finished_count_the_prompt_is_counted_on_the_spot(loop) -> None:
    outcome = StreamOutcome(output_chunks=2, prompt_count=loop.create_future(), estimate_prompt=lambda: 31)
    outcome.count_unreported()
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (31, 2)


def test_usage_the_engine_reported_is_kept() -> None:
    outcome = StreamOutcome(prompt_tokens=40, completion_tokens=7, usage_seen=True, output_chunks=9,
                            estimate_prompt=lambda: 1)  # fmt: skip
    outcome.count_unreported()
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (40, 7)


def _backend(context: int | None) -> Backend:
    return Backend(id="b", model_name="m", backend_type="llamacpp", endpoint_url="http://x", context_tokens=context)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_above_the_largest_declared_context_is_refused(field: str) -> None:
    with pytest.raises(APIError) as raised:
        check_max_tokens([_backend(2048), _backend(4096)], "m", {field: 4097})
    assert raised.value.code == "max_tokens_too_large" and raised.value.param == field
    assert "4096" in raised.value.message
    check_max_tokens([_backend(2048), _backend(4096)], "m", {field: 4096})


def test_a_backend_without_a_declared_context_leaves_it_to_the_engine() -> None:
    check_max_tokens([_backend(2048), _backend(None)], "m", {"max_tokens": 1_000_000})
    check_max_tokens([], "m", {"max_tokens": 1_000_000})
