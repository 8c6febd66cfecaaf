"""Telemetry under each reply, thinking shown folded, and Continue after a cut, through gradio_client."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client

from core.reply import CONTINUE, STATS, THINKING
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import answer_text, launched, message, remote_settings


def titled(messages: list[dict], title: str) -> list[dict]:
    return [m for m in messages if (m.get("metadata") or {}).get("title") == title]


def test_stats_show_time_to_first_token_rate_reported_usage_and_finish(client: Client, server: FakeOpenAI):
    server.enqueue(Reply(tokens=[f"t{i} " for i in range(20)], delay=0.02))
    result = client.predict(message("Count"), api_name="/chat")
    assert answer_text(result) == "".join(f"t{i} " for i in range(20))
    (stats,) = titled(result, STATS)
    assert stats is result[-1] and stats["content"] == ""  # a folded line under the answer
    log = stats["metadata"]["log"]
    # The server counts the prompt's words (system prompt + "Count" = 6) and sends 20 tokens.
    assert re.fullmatch(
        r"(\d\.\d\d) s to first token · ([\d.]+) tokens/s · 6 prompt \+ 20 completion tokens · finish: stop", log
    ), log
    first, rate = (float(x) for x in re.match(r"([\d.]+) s.*?· ([\d.]+) tokens/s", log).groups())
    assert first > 0.0  # how long it takes is the benchmark's to measure, not a test's
    # 19 tokens after the first, each at least 20 ms apart: at most 50 tokens/s, however slow the machine.
    assert 0.0 < rate <= 50.5
    assert server.chat_requests[-1].body["stream_options"] == {"include_usage": True}


def test_without_reported_usage_the_counts_are_marked_as_estimates(client: Client, server: FakeOpenAI):
    server.enqueue(Reply(text="four score and seven years ago", usage=False))
    log = titled(client.predict(message("Quote"), api_name="/chat"), STATS)[0]["metadata"]["log"]
    assert "≈8 completion tokens (estimated: the provider sent no usage)" in log  # 31 characters / 4
    assert "prompt" not in log


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_deltas_show_as_folded_thinking_and_never_go_back(field: str, client: Client, server: FakeOpenAI):
    server.enqueue(Reply(reasoning=["The user ", "says hi."], reasoning_field=field, tokens=["Hello!"], delay=0.05))
    job = client.submit(message("hi"), api_name="/chat")
    updates = list(job)
    thinking, answer, stats = job.result()
    assert thinking == {
        "role": "assistant",
        "content": "The user says hi.",
        "metadata": {"title": THINKING, "status": "done", "duration": thinking["metadata"]["duration"]},
    }
    assert answer == {"role": "assistant", "content": "Hello!"}
    assert stats["metadata"]["title"] == STATS
    # While it thought, the page showed the thought open, with a spinner (status "pending").
    assert any(u[0]["metadata"]["status"] == "pending" and len(u) == 1 for u in updates), updates

    client.predict(message("And?"), api_name="/chat")
    assert server.chat_requests[-1].body["messages"][1:] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And?"},
    ]


def test_think_tags_in_the_text_are_shown_as_thinking_too(client: Client, server: FakeOpenAI):
    server.enqueue(Reply(tokens=["<think>", "Two and two", " is four.</think>", "\n\n4"]))
    thinking, answer, _ = client.predict(message("2+2?"), api_name="/chat")
    assert (thinking["content"], thinking["metadata"]["title"]) == ("Two and two is four.", THINKING)
    assert answer["content"] == "4"
    client.predict(message("Thanks"), api_name="/chat")
    assert server.chat_requests[-1].body["messages"][2] == {"role": "assistant", "content": "4"}


def test_a_cut_reply_says_so_and_continue_picks_up_from_it(client: Client, server: FakeOpenAI):
    server.enqueue(Reply(text="Once upon a", finish_reason="length"))
    result = client.predict(message("A story"), api_name="/chat")
    assert answer_text(result) == (
        "Once upon a\n\n⚠️ The reply was cut off at the max-tokens limit. "
        "Press Continue for the rest, or raise “Max tokens” in Model settings."
    )
    assert "finish: length" in result[-1]["metadata"]["log"]
    assert result[-1]["options"] == [{"value": CONTINUE, "label": "Continue"}]  # a button under the reply

    # The button sends its value as the next message; the model sees its cut reply without the notice.
    server.enqueue(Reply(text=" time, there was a fox."))
    assert answer_text(client.predict(message(CONTINUE), api_name="/chat")) == " time, there was a fox."
    assert server.chat_requests[-1].body["messages"][-2:] == [
        {"role": "assistant", "content": "Once upon a"},
        {"role": "user", "content": CONTINUE},
    ]


def test_a_server_that_refuses_stream_options_still_chats_with_estimated_counts(server: FakeOpenAI):
    server.refuse_stream_options = True  # as Mistral's API does, with a 422
    with launched(remote_settings(server)) as url:  # an app of its own: the backend remembers the refusal
        client = Client(url, verbose=False)
        for text in ("one", "two"):
            result = client.predict(message(text), api_name="/chat")
            assert answer_text(result) == f"Echo: {text}"
            assert "(estimated: the provider sent no usage)" in result[-1]["metadata"]["log"]
    asked = ["stream_options" in request.body for request in server.chat_requests]
    assert asked == [True, False, False]  # refused once, then never asked again
