"""Line splitting of SSE / NDJSON byte streams."""

from __future__ import annotations

import asyncio

import pytest

from inferhub.backends.sse import iter_lines, iter_sse_data


async def _chunks(parts):
    for part in parts:
        yield part


def _collect(func, parts):
    async def run():
        return [item async for item in func(_chunks(parts))]

    return asyncio.run(run())


def test_lines_split_across_chunk_boundaries():
    parts = [b'{"a":', b' 1}\n{"b"', b": 2}\n", b'{"c": 3}\n']
    assert _collect(iter_lines, parts) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_one_chunk_many_lines():
    assert _collect(iter_lines, [b"x\ny\nz\n"]) == [b"x", b"y", b"z"]


def test_byte_at_a_time():
    data = b"first\r\nsecond\nthird"
    assert _collect(iter_lines, [data[i : i + 1] for i in range(len(data))]) == [b"first", b"second", b"third"]


def test_crlf_is_stripped():
    assert _collect(iter_lines, [b"a\r\nb\r\n"]) == [b"a", b"b"]


def test_crlf_split_between_chunks():
    assert _collect(iter_lines, [b"a\r", b"\nb\r", b"\n"]) == [b"a", b"b"]


def test_only_one_trailing_cr_is_removed_and_inner_cr_kept():
    assert _collect(iter_lines, [b"a\rb\r\n"]) == [b"a\rb"]


def test_blank_lines_are_yielded_as_empty():
    assert _collect(iter_lines, [b"a\n\nb\n"]) == [b"a", b"", b"b"]


def test_trailing_data_without_newline_is_yielded():
    assert _collect(iter_lines, [b"a\n", b"tail"]) == [b"a", b"tail"]


def test_trailing_whitespace_only_is_dropped():
    assert _collect(iter_lines, [b"a\n", b"  "]) == [b"a"]


def test_empty_stream_and_empty_chunks():
    assert _collect(iter_lines, []) == []
    assert _collect(iter_lines, [b"", b"x", b"", b"\n", b""]) == [b"x"]


def test_non_ascii_bytes_are_not_reencoded():
    text = "héllo 🌍".encode()
    assert _collect(iter_lines, [text[:3], text[3:] + b"\n"]) == [text]


def test_sse_data_payloads():
    stream = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\ndata: [DONE]\n\n']
    assert _collect(iter_sse_data, stream) == [b'{"n": 1}', b'{"n": 2}', b"[DONE]"]


def test_sse_stops_at_done_and_ignores_later_data():
    stream = [b"data: a\n\ndata: [DONE]\n\ndata: b\n\n"]
    assert _collect(iter_sse_data, stream) == [b"a", b"[DONE]"]  # [DONE] is reported, then nothing more


def test_sse_done_without_space_and_with_crlf():
    assert _collect(iter_sse_data, [b"data:x\r\n\r\ndata:[DONE]\r\n\r\ndata: y\r\n"]) == [b"x", b"[DONE]"]


def test_sse_ignores_comments_and_other_fields():
    stream = [
        b": keep-alive\n",
        b"event: message\n",
        b"id: 7\n",
        b"retry: 1000\n",
        b"data: payload\n\n",
        b":data: not-data\n",
        b"  data: indented\n",
    ]
    assert _collect(iter_sse_data, stream) == [b"payload"]


def test_sse_ignores_empty_data():
    assert _collect(iter_sse_data, [b"data:\n\ndata:   \n\ndata: z\n\n"]) == [b"z"]


def test_sse_data_split_across_chunks():
    assert _collect(iter_sse_data, [b"da", b'ta: {"k"', b": 1}", b"\n\n"]) == [b'{"k": 1}']


def test_sse_trailing_event_without_newline():
    assert _collect(iter_sse_data, [b"data: a\n\n", b"data: last"]) == [b"a", b"last"]


@pytest.mark.parametrize("done", [b"data: [DONE]", b"data: [DONE]\n"])
def test_sse_done_at_end_yields_only_the_done_marker(done):
    assert _collect(iter_sse_data, [done]) == [b"[DONE]"]
