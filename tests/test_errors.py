"""Error mapping: readable, specific, never the key."""

import json
import logging

import httpx2
import openai
import pytest

from config import load_settings
from core.errors import NOTICE, ContextTooLong, describe, with_notice, without_notice

KEY = "sk-unit-SECRET-key-000"
SETTINGS = load_settings(["--provider", "groq", "--model", "m1"], {"GROQ_API_KEY": KEY})
REQUEST = httpx2.Request("POST", "https://api.groq.com/openai/v1/chat/completions")


def status_error(cls, status: int, body: dict, headers: dict | None = None):
    response = httpx2.Response(status, request=REQUEST, headers=headers or {}, json=body)
    return cls(body.get("error", {}).get("message", "error"), response=response, body=body.get("error"))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (status_error(openai.AuthenticationError, 401, {"error": {"message": "bad key"}}), "Check GROQ_API_KEY"),
        (status_error(openai.NotFoundError, 404, {"error": {"message": "nope"}}), "model m1 was not found"),
        (status_error(openai.RateLimitError, 429, {"error": {"message": "slow"}}, {"retry-after": "7"}), "Wait 7 s"),
        (
            status_error(openai.BadRequestError, 400, {"error": {"message": "x", "code": "context_length_exceeded"}}),
            "too long for the model's context window",
        ),
        # a 400 naming only the context length, and a generic 400: test_faults.py, from the loopback server
        (status_error(openai.InternalServerError, 503, {"error": {"message": "x"}}), "server error (503)"),
        (openai.APIError("overloaded", REQUEST, body={"message": "overloaded"}), "error mid-reply: overloaded"),
        (json.JSONDecodeError("Expecting value", "{", 1), "malformed chunk"),
        (ContextTooLong(), "too long for the model's context window"),
    ],
)
def test_each_failure_has_its_own_sentence(exc, expected):
    assert expected in describe(exc, SETTINGS, partial=False)


def test_connection_refused_and_connection_lost_are_told_apart():
    try:
        raise openai.APIConnectionError(request=REQUEST) from httpx2.ConnectError("refused")
    except openai.APIConnectionError as exc:
        assert "Could not connect to the provider at https://api.groq.com" in describe(exc, SETTINGS, partial=False)
    try:
        raise openai.APIConnectionError(request=REQUEST) from httpx2.RemoteProtocolError("peer closed")
    except openai.APIConnectionError as exc:
        assert "connection to the provider was lost" in describe(exc, SETTINGS, partial=True)


def test_partial_replies_are_marked_incomplete():
    assert describe(ContextTooLong(), SETTINGS, partial=True) == (
        "The conversation is too long for the model's context window. The reply above is incomplete. "
        "Undo some turns or clear the chat."
    )


def test_the_key_is_redacted_even_when_a_provider_echoes_it():
    exc = status_error(openai.BadRequestError, 400, {"error": {"message": f"invalid header Bearer {KEY}"}})
    text = describe(exc, SETTINGS, partial=False)
    assert KEY not in text
    assert "[redacted]" in text


def test_unexpected_errors_are_logged_without_the_key(caplog):
    with caplog.at_level(logging.ERROR, logger="chat"):
        text = describe(RuntimeError(f"weird {KEY}"), SETTINGS, partial=False)
    assert text == "Something went wrong (RuntimeError). The server log has the details."
    assert "RuntimeError" in caplog.text
    assert KEY not in caplog.text


def test_notices_round_trip():
    assert with_notice("", "Oops.") == f"{NOTICE}Oops."
    assert without_notice(with_notice("", "Oops.")) == ""
    assert without_notice(with_notice("Some text\n\nmore", "Oops.")) == "Some text\n\nmore"
    assert without_notice("Text that merely mentions ⚠️ a warning sign") == "Text that merely mentions ⚠️ a warning sign"
    reply = f"{NOTICE}Careful: three things.\n\n1. Gloves\n2. Goggles"  # the model's own, not a notice
    assert without_notice(reply) == reply
