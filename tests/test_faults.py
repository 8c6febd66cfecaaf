"""Every provider fault, as a user sees it through the app: a readable line, the partial
reply kept, no key, and the next turn works."""

import asyncio

import pytest
from gradio_client import Client

from core.errors import NOTICE
from core.events import GenerationParams
from providers.openai_compatible import OpenAICompatible
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import free_port
from testkit.support import SENTINEL_KEY, ask, launched, remote_settings

PARTIAL = "The first three"  # what the server sends before a mid-stream fault
BEFORE_FAULT = dict(text=PARTIAL + " words and then more", fault_after=3)

FAULTS = {
    "401": (
        Reply(status=401, error_message="Invalid key"),
        "refused the API key (401 Unauthorized). Check OPENAI_API_KEY.",
    ),
    "403": (Reply(status=403), "denied access (403 Forbidden)"),
    "404": (
        Reply(status=404, error_message="model not found"),
        "The model fake-model was not found at http://127.0.0.1",
    ),
    "400 context": (
        Reply(status=400, error_message="maximum context length is 8192 tokens", error_code="context_length_exceeded"),
        "too long for the model's context window",
    ),
    "400 naming only the context length": (
        Reply(status=400, error_message="This model's maximum context length is 8192 tokens. Reduce the length."),
        "too long for the model's context window",
    ),
    "400 from llama.cpp, context size": (
        Reply(status=400, error_message="request (9000 tokens) exceeds the available context size (8192 tokens)"),
        "too long for the model's context window",
    ),
    "400 generic": (
        Reply(status=400, error_message="temperature out of range"),
        "The provider rejected the request (400): temperature out of range. Check the settings.",
    ),
    "429": (
        Reply(status=429, headers={"Retry-After": "3"}),
        "rate-limiting requests (429). Wait 3 s, then press retry.",
    ),
    "500": (Reply(status=500), "server error (500)"),
    "503": (Reply(status=503), "server error (503)"),
    "drop mid-stream": (Reply(fault="drop", **BEFORE_FAULT), "The connection to the provider was lost"),
    "error event": (
        Reply(fault="error_event", error_message="model overloaded", **BEFORE_FAULT),
        "The provider reported an error mid-reply: model overloaded",
    ),
    "bad JSON chunk": (Reply(fault="bad_json", **BEFORE_FAULT), "malformed chunk (not JSON)"),
    "stall": (Reply(fault="stall", **BEFORE_FAULT), "The provider sent nothing for 2 s"),
    "truncated": (Reply(fault="truncate", **BEFORE_FAULT), "stream ended without saying it was finished"),
    "max tokens": (Reply(finish_reason="length", text=PARTIAL), "cut off at the max-tokens limit"),
    "empty reply": (Reply(tokens=[]), "The model sent an empty reply"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_fault_gives_a_readable_line_and_the_chat_goes_on(case: str, client: Client, server: FakeOpenAI):
    reply, sentence = FAULTS[case]
    server.enqueue(reply)
    answer = ask(client, "Question one")
    assert sentence in answer
    assert NOTICE in answer
    assert "Traceback" not in answer and SENTINEL_KEY not in answer
    mid_stream = reply.fault is not None or reply.finish_reason == "length"
    if mid_stream:
        assert answer.startswith(PARTIAL + "\n\n")  # the partial reply is kept...
        # ...and marked: broken off, or cut at the limit, which offers to continue
        assert ("Press Continue" if reply.finish_reason == "length" else "The reply above is incomplete.") in answer
    # The next turn works. The provider gets the partial text back, never our notice; a
    # question that got no reply at all stays, merged into the next user turn.
    assert ask(client, "Question two").endswith("Question two")
    history = server.chat_requests[-1].body["messages"]
    if mid_stream:
        assert history[1:] == [
            {"role": "user", "content": "Question one"},
            {"role": "assistant", "content": PARTIAL},
            {"role": "user", "content": "Question two"},
        ]
    else:
        assert history[1:] == [{"role": "user", "content": "Question one\n\nQuestion two"}]


def test_connection_refused(server: FakeOpenAI):
    settings = remote_settings(server, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with launched(settings) as url:
        answer = ask(Client(url, verbose=False), "Hello?")
    assert answer == (
        f"{NOTICE}Could not connect to the provider at {settings.base_url}. "
        "Check that it is running and the URL is right."
    )


def test_total_deadline(server: FakeOpenAI):
    server.default = Reply(text="one two three four five six", delay=0.3)
    with launched(remote_settings(server, deadline=1.0)) as url:
        answer = ask(Client(url, verbose=False), "Slowly, please")
    assert answer.startswith("one two")
    assert answer.endswith(
        "The reply took longer than 1 s and was stopped. The reply above is incomplete. "
        "Raise --deadline for long replies."
    )
    assert server.wait_for(lambda: server.open_streams == 0)


def test_retries_before_the_first_token_are_invisible(server: FakeOpenAI):
    server.enqueue(Reply(status=503, headers={"Retry-After": "0"}), Reply(status=429, headers={"Retry-After": "0"}))
    backend = OpenAICompatible(remote_settings(server, max_retries=2))

    async def reply() -> str:
        return "".join(
            [
                event
                async for event in backend.stream([{"role": "user", "content": "hi"}], GenerationParams())
                if isinstance(event, str)
            ]
        )

    assert asyncio.run(reply()) == "Echo: hi"
    assert len(server.chat_requests) == 3
