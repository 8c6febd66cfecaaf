"""A reply's parts: thinking split from the answer, telemetry, and the messages the chat shows."""

from __future__ import annotations

import pytest

from core.events import Finish, Reasoning, Usage
from core.history import to_provider_messages
from core.reply import CONTINUE, STATS, THINKING, Reply, ThinkTags, estimate_tokens, messages, stats


def split(*chunks: str) -> tuple[str, str]:
    """(reasoning, answer) after feeding the chunks through ThinkTags."""
    tags, reasoning, answer = ThinkTags(), "", ""
    for event in [e for chunk in chunks for e in tags.feed(chunk)] + tags.flush():
        if isinstance(event, Reasoning):
            reasoning += event.text
        else:
            answer += event
    return reasoning, answer


@pytest.mark.parametrize(
    "chunks",
    [
        ("<think>Plan it.</think>\n\nThe answer.",),
        ("<thi", "nk>Plan", " it.</th", "ink>", "\n\nThe answer."),
        ("\n<think>", "Plan it.", "<", "/think>The answer."),
        tuple("<think>Plan it.</think>The answer."),  # one character at a time
    ],
)
def test_think_tags_at_the_start_become_reasoning_even_when_split_across_chunks(chunks):
    assert split(*chunks) == ("Plan it.", "The answer.")


def test_think_tags_after_the_answer_began_are_part_of_the_answer():
    assert split("Use the ", "<think> tag, like <think>this</think>.") == (
        "",
        "Use the <think> tag, like <think>this</think>.",
    )


def test_a_reply_that_ends_while_thinking_keeps_the_thought():
    assert split("<think>I was about to") == ("I was about to", "")
    assert split("<th") == ("", "<th")  # not a tag after all


def test_reasoning_events_and_usage_and_finish_land_in_the_reply():
    reply = Reply()
    for event in (Reasoning("Hmm. "), Reasoning("Yes."), "Hello", " you", Usage(12, 5), Finish("stop")):
        reply.add(event)
    reply.finish()
    assert (reply.reasoning, reply.text) == ("Hmm. Yes.", "Hello you")
    assert (reply.usage, reply.finish_reason) == (Usage(12, 5), "stop")
    assert reply.started <= reply.first_token <= reply.answer_began <= reply.last_token <= reply.ended


def test_stats_use_reported_usage_or_say_they_are_estimates():
    reply = Reply(started=100.0, first_token=100.25, last_token=102.25, text="x" * 40, finish_reason="stop")
    reply.usage = Usage(30, 81)
    assert stats(reply) == "0.25 s to first token · 40.0 tokens/s · 30 prompt + 81 completion tokens · finish: stop"
    reply.usage = None
    assert estimate_tokens("x" * 40) == 10
    assert stats(reply) == (
        "0.25 s to first token · ≈4.5 tokens/s · ≈10 completion tokens (estimated: the provider sent no usage)"
        " · finish: stop"
    )


def test_messages_fold_the_thinking_put_stats_last_and_offer_continue_after_a_cut():
    reply = Reply(started=0.0)
    reply.add(Reasoning("Let me see."))
    assert messages(reply) == [
        {"role": "assistant", "content": "Let me see.", "metadata": {"title": THINKING, "status": "pending"}}
    ]
    reply.add("Cut sh")
    reply.add(Finish("length"))
    reply.finish()
    reply.notice, reply.continuable = "Cut off.", True
    thinking, answer, telemetry = messages(reply)
    assert thinking["metadata"]["status"] == "done" and thinking["metadata"]["duration"] >= 0
    assert answer == {"role": "assistant", "content": "Cut sh\n\n⚠️ Cut off."}
    assert telemetry["metadata"]["title"] == STATS and "finish: length" in telemetry["metadata"]["log"]
    assert telemetry["options"] == [{"value": CONTINUE, "label": "Continue"}]  # buttons under the reply's last message

    # What goes back to the model: the answer only, no thinking, stats or notice.
    sent = to_provider_messages("", [{"role": "user", "content": "Q"}, *messages(reply)], CONTINUE)
    assert sent == [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "Cut sh"},
        {"role": "user", "content": CONTINUE},
    ]
