"""The chat service without a page: a turn, a refusal, the rate limit, an answer, a compare side, export and
import, against the loopback provider and no Gradio server."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from chat.service import Caller, ChatService, Refused
from providers.registry import create_backend
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import answer_text, remote_settings

ME = Caller("session-1", "127.0.0.1")


def service_for(server: FakeOpenAI, **overrides) -> ChatService:
    settings = remote_settings(server, **overrides)
    return ChatService(settings, create_backend(settings), ["fake-model", "fake-model-2"])


async def turn(service: ChatService, text: str, caller: Caller = ME, model: str = "fake-model", **chosen) -> list:
    """Every update of one turn. (One event loop per test: the backend's HTTP client belongs to its loop.)"""
    message = {"text": text, "files": []}
    return [turn.messages() async for turn in service.turn(message, [], model, chosen, caller)]


def test_a_turn_streams_the_reply_with_the_settings_by_name(server: FakeOpenAI):
    server.default = Reply(text="one two three", delay=0.01)
    updates = asyncio.run(turn(service_for(server), "Count", temperature=0.2, system_prompt="Be brief."))
    assert answer_text(updates[-1]) == "one two three" and len(updates) >= 2
    body = server.chat_requests[-1].body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 1.0, 1024)  # the rest: configured
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_a_refusal_is_one_sentence_and_reaches_no_provider(server: FakeOpenAI):
    service = service_for(server)
    with pytest.raises(Refused, match=re.escape("Type a message first.")):
        asyncio.run(turn(service, "   "))
    with pytest.raises(Refused, match=re.escape("The model gpt-5 is not offered here: choose one of fake-model, ")):
        asyncio.run(turn(service, "hi", model="gpt-5"))
    assert server.chat_requests == []


def test_the_rate_limit_answers_in_the_chat_and_sends_nothing(server: FakeOpenAI):
    service = service_for(server, rate_limit_session=1)

    async def three() -> tuple:
        return await turn(service, "first"), await turn(service, "second"), await turn(service, "x", Caller("2", "b"))

    _, [refused], other = asyncio.run(three())
    assert "faster than this demo allows" in json.dumps(refused)
    assert len(server.chat_requests) == 2 and answer_text(other[-1]) == "Echo: x"  # another session goes on


def test_answer_and_compare_side_use_the_same_chat(server: FakeOpenAI):
    service = service_for(server)

    async def both() -> tuple[str, list]:
        chosen = {"system_prompt": "Side A.", "temperature": 1.1}
        answer = await service.answer("Ping")
        return answer, [side async for side in service.compare_side("Hello", [], "fake-model-2", chosen, ME)]

    answer, turns = asyncio.run(both())
    assert answer == "Echo: Ping"
    assert turns[-1].ended and turns[-1].text == "Echo: Hello"
    body = server.chat_requests[-1].body
    assert (body["model"], body["temperature"], body["messages"][0]["content"]) == ("fake-model-2", 1.1, "Side A.")


def test_export_and_load_carry_the_conversation_and_its_settings(server: FakeOpenAI):
    service = service_for(server)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Echo: Hi"}]
    markdown, document = service.export(history, "fake-model-2", {"temperature": 0.3, "max_tokens": 10**9})
    assert "## User" in markdown and "Temperature 0.3" in markdown
    loaded = service.load(document.encode())
    assert (loaded.history, loaded.model, loaded.notice) == (history, "fake-model-2", None)
    assert loaded.chosen == {"system_prompt": "You are a helpful assistant.", "temperature": 0.3,
                             "max_tokens": 4096, "top_p": 1.0}  # fmt: skip
    elsewhere = json.loads(document)
    elsewhere["config"]["model"] = "model-from-elsewhere"
    assert service.load(json.dumps(elsewhere).encode()).notice == (
        "model-from-elsewhere is not available here, so the chat continues with fake-model."
    )
    with pytest.raises(Refused, match="The file is not JSON"):
        service.load(b"\x00 not json")
