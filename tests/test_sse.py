"""The stream parser: Server-Sent Events framing corners that the fake server does not produce."""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest

from core.events import Finish, Reasoning, Usage
from providers.openai_compatible import events


def parse(body: bytes) -> list:
    response = httpx2.Response(200, content=body, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat"))

    async def collect() -> list:
        return [event async for event in events(response)]

    return asyncio.run(collect())


def chunk(delta: dict, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_comments_event_names_and_unspaced_data_lines_are_read_as_the_standard_says():
    body = (
        ": keep-alive\n\n"
        f"event: message\ndata: {chunk({'role': 'assistant', 'content': 'Hel'})}\n\n"
        f"data:{chunk({'content': 'lo'})}\r\n\r\n"
        f"data: {chunk({'reasoning': 'hm'})}\n\n"
        f"data: {chunk({}, 'stop')}\n\n"
        'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
        "data: [DONE]\n\n"
    )
    assert parse(body.encode()) == ["Hel", "lo", Reasoning("hm"), Finish("stop"), Usage(3, 2)]


def test_an_event_split_over_several_data_lines_is_joined():
    body = 'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "joined"}, "finish_reason": "stop"}]}\n\n'
    assert parse(body.encode()) == ["joined", Finish("stop")]  # the lines join with a newline, valid in JSON


def test_a_last_event_without_its_blank_line_still_counts():
    assert parse(f"data: {chunk({'content': 'end'}, 'stop')}".encode()) == ["end", Finish("stop")]


def test_an_error_payload_raises_the_sdk_error_with_the_providers_message():
    with pytest.raises(openai.APIError, match="overloaded") as error:
        parse(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
    assert error.value.body == {"message": "overloaded", "type": "server_error"}


@pytest.mark.parametrize("payload", [b'{"choices": [', b"[1, 2]", b'"text"'])
def test_a_chunk_that_is_not_a_json_object_is_malformed(payload: bytes):
    with pytest.raises(json.JSONDecodeError):
        parse(b"data: " + payload + b"\n\n")
