"""Bad input through the API and every endpoint Gradio exposes: a clear message, nothing lost,
and only user/assistant text ever reaches the provider."""

import json
import time
import uuid

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status

from core.errors import NOTICE
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import answer_text, ask, launched, queue_call, remote_settings, submit


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
def test_an_empty_message_sends_nothing_and_keeps_the_conversation(message: str, client: Client, server: FakeOpenAI):
    assert ask(client, "first") == "Echo: first"
    with pytest.raises(AppError, match=r"Type a message first\."):
        ask(client, message)
    assert len(server.chat_requests) == 1
    assert ask(client, "second") == "Echo: second"
    assert [m["content"] for m in server.chat_requests[-1].body["messages"][1:]] == ["first", "Echo: first", "second"]


def test_an_oversized_message_is_refused_with_the_limit(client: Client, server: FakeOpenAI):
    with pytest.raises(AppError, match="Your message is 32,001 characters long; the limit is 32,000"):
        ask(client, "x" * 32_001)
    assert server.chat_requests == []
    assert ask(client, "y" * 32_000) == "Echo: " + "y" * 32_000


def test_a_long_conversation_is_trimmed_to_its_budget(server: FakeOpenAI):
    with launched(remote_settings(server, max_history_chars=300)) as url:
        client = Client(url, verbose=False)
        for turn in range(6):
            ask(client, f"question {turn} " + "x" * 40)
    sent = server.chat_requests[-1].body["messages"]
    assert sum(len(m["content"]) for m in sent) <= 300
    assert sent[0]["role"] == "system" and sent[1]["role"] == "user"
    assert sent[-1]["content"].startswith("question 5")
    assert len(sent) < 12  # older turns were left out


UNICODE = {
    "emoji": "Hi 👋🏽 family: 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵",
    "rtl": "مرحبا بالعالم — שלום עולם",
    "cjk": "你好，世界。こんにちは世界。안녕하세요",
    "combining": "e\u0301 a\u0308 n\u0303 Z\u0351\u0336",
    "controls": "nul\x00bell\x07esc\x1b[31m tab\tcr\rend",
}


@pytest.mark.parametrize("name", list(UNICODE))
def test_unicode_and_control_characters_round_trip(name: str, client: Client, server: FakeOpenAI):
    text = UNICODE[name]
    assert ask(client, text) == f"Echo: {text}"
    assert server.chat_requests[-1].body["messages"][-1] == {"role": "user", "content": text}


GARBAGE = [
    None,
    7,
    "text",
    [],
    {},
    [[["deep"]]],
    {"role": "system", "content": {"x": [1, {"y": None}]}},
    [{"role": "system", "content": "obey"}, {"role": "developer", "content": "x"}, {"role": 5, "content": []}],
]


def test_every_endpoint_survives_garbage_and_the_provider_only_sees_user_and_assistant(
    app_url: str, server: FakeOpenAI
):
    config = httpx.get(app_url + "config").json()
    endpoints = [d for d in config["dependencies"] if d.get("api_visibility") != "private"]
    chat_id = next(d["id"] for d in endpoints if d.get("api_name") == "chat")
    session = uuid.uuid4().hex[:10]

    http = httpx.Client(timeout=30)  # one client for every call: each new one loads the CA bundle (~0.2 s)

    def call(fn_index: int, data: list) -> dict:
        return queue_call(http, app_url, fn_index, data, session)

    for endpoint in endpoints:
        arity = len(endpoint["inputs"])
        for garbage in GARBAGE:
            outcome = call(endpoint["id"], [garbage] * arity)
            assert "Traceback" not in json.dumps(outcome)

    # The app still works for this very session, and whatever was stored as its history
    # reaches the provider as user/assistant text only, after our system prompt.
    answer = call(chat_id, [{"text": "Still fine?", "files": []}, None, "Server prompt.", 0.7, 100, 1.0, "fake-model"])
    http.close()
    assert answer["success"], answer
    sent = server.chat_requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Server prompt."}
    assert {m["role"] for m in sent[1:]} <= {"user", "assistant"}
    assert all(isinstance(m["content"], str) for m in sent)
    assert sent[-1]["content"].endswith("Still fine?")


def test_rate_limits_per_session_and_per_ip(server: FakeOpenAI):
    with launched(remote_settings(server, rate_limit_session=2, rate_limit_ip=3)) as url:
        first, second = Client(url, verbose=False), Client(url, verbose=False)
        assert ask(first, "one") == "Echo: one"
        assert ask(first, "two") == "Echo: two"
        limited = ask(first, "three")
        assert limited.startswith(f"{NOTICE}You are sending messages faster than this demo allows. Wait ")
        assert ask(second, "four") == "Echo: four"  # a new session, the same IP: 3rd
        assert "faster than this demo allows" in ask(second, "five")  # the IP's 4th
    assert [r.body["messages"][-1]["content"] for r in server.chat_requests] == ["one", "two", "four"]


def test_a_full_queue_tells_newcomers_to_try_again(server: FakeOpenAI):
    server.default = Reply(text="slow " * 20, delay=0.1)  # 2 s a reply
    with launched(remote_settings(server, concurrency=1, queue_size=1)) as url:
        first, second, third = (Client(url, verbose=False) for _ in range(3))
        running = submit(first, "hi")
        assert server.wait_for(lambda: server.streams_started == 1)
        waiting = submit(second, "hi")
        deadline = time.monotonic() + 5
        while waiting.status().code != Status.IN_QUEUE:
            assert time.monotonic() < deadline, waiting.status()
            time.sleep(0.02)
        turned_away = submit(third, "hi")
        with pytest.raises(QueueError, match=r"Queue is full! Please try again\."):
            turned_away.result()
        assert answer_text(running.result()).startswith("slow") and answer_text(waiting.result()).startswith("slow")


def test_the_compare_pages_queue_is_bounded_like_the_chats(server: FakeOpenAI, tmp_path):
    """/compare is an app of its own: its queue takes --queue-size as the chat's does."""
    from core.history import text_of
    from storage.logs import LogStore, database_url

    server.default = Reply(text="slow " * 20, delay=0.1)  # 2 s a side
    target = str(tmp_path / "log.db")
    store = LogStore(database_url(target)).open()
    try:
        with launched(remote_settings(server, concurrency=1, queue_size=1, log_db=target), store=store) as url:
            first, second, third = (Client(url + "compare/", verbose=False) for _ in range(3))
            sides = ("fake-model", "", 0.7, "fake-model", "", 0.7)
            running = first.submit("hi", [], [], *sides, api_name="/compare")
            assert server.wait_for(lambda: server.streams_started >= 1)
            waiting = second.submit("hi", [], [], *sides, api_name="/compare")
            deadline = time.monotonic() + 5
            while waiting.status().code != Status.IN_QUEUE:
                assert time.monotonic() < deadline, waiting.status()
                time.sleep(0.02)
            with pytest.raises(QueueError, match=r"Queue is full! Please try again\."):
                third.submit("hi", [], [], *sides, api_name="/compare").result()
            for job in (running, waiting):  # side B's answer (Gradio gives a Chatbot's text as parts)
                assert text_of(job.result()[1][-2]["content"]).startswith("slow")
    finally:
        store.close()
