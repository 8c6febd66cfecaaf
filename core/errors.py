"""Every way a reply can fail, mapped once to a sentence a person understands.

A failed reply keeps whatever text arrived and ends with one notice line:
"⚠️ <what happened>. <what to do>." The notice is for the person reading, so
core/history.py strips it before the conversation goes back to the provider.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Protocol

import httpx2
import openai

from core.redaction import Redactor

NOTICE = "⚠️ "
_SEPARATOR = "\n\n"
log = logging.getLogger("chat")


class Setup(Protocol):
    """What a message about a failure names of the app's setup (config.Settings is one)."""

    model: str
    base_url: str | None
    key_env: str | None
    deadline: float
    timeout: float

    @property
    def secrets(self) -> tuple[str, ...]: ...


class ReplyError(Exception):
    """A reply that ended abnormally although the provider raised nothing."""


class IncompleteReply(ReplyError):
    """The stream ended without a finish reason."""


class ReplyCutOff(ReplyError):
    """The provider stopped at the max-tokens limit (finish_reason "length")."""


class ContextTooLong(ReplyError):
    """The conversation does not fit the model's context window."""


class DeadlineExceeded(ReplyError):
    """The whole reply took longer than the configured deadline."""


class ImagesNotSupported(ReplyError):
    """The backend cannot take images (the embedded model)."""


class UnreadableAttachment(ReplyError):
    """An attached file that cannot be sent: not uploaded here, too big, or neither an image nor text."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name, self.reason = name, reason


REFUSED = "refused"  # the metadata id of a notice answering a message the app refused to send on


def refusal(notice: str) -> list[dict]:
    """The chat's answer to a message it refused (the rate limit, an attachment it cannot read): the notice,
    marked, so that core/history.py never sends the refused message to the provider, then or later."""
    return [{"role": "assistant", "content": with_notice("", notice), "metadata": {"id": REFUSED}}]


def with_notice(text: str, notice: str) -> str:
    """The reply text followed by a notice line."""
    return f"{text}{_SEPARATOR}{NOTICE}{notice}" if text else f"{NOTICE}{notice}"


def without_notice(text: str) -> str:
    """The reply text with a trailing notice line (ours) removed.

    A notice is one line, so a model's own multi-line reply that starts with the
    marker is kept; a one-line reply that starts with it cannot be told apart."""
    if text.startswith(NOTICE) and "\n" not in text:
        return ""
    head, sep, tail = text.rpartition(_SEPARATOR + NOTICE)
    return head if sep and "\n" not in tail else text


def _provider_message(exc: openai.APIError) -> str:
    """The provider's own explanation, short."""
    message = exc.message
    if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
        message = exc.body["message"]
    message = " ".join(str(message).split())
    return message if len(message) <= 200 else message[:197] + "..."


def _is_context_error(exc: openai.APIStatusError) -> bool:
    text = f"{exc.code or ''} {_provider_message(exc)}".lower()
    return exc.status_code == 413 or any(
        marker in text
        for marker in (
            "context_length",
            "context length",
            "context window",
            "context size",  # llama.cpp: "exceeds the available context size"
            "too many tokens",
            "maximum context",
            "prompt is too long",
        )
    )


def describe(exc: BaseException, settings: Setup, *, partial: bool) -> str:
    """What happened and what to do, in a sentence or two; never the key."""
    what, todo = _describe(exc, settings)
    incomplete = " The reply above is incomplete." if partial and not isinstance(exc, ReplyCutOff) else ""
    return Redactor(settings.secrets).text(f"{what}.{incomplete} {todo}.")


RETRY = "Press retry to try again"


def _describe(exc: BaseException, s: Setup) -> tuple[str, str]:
    match exc:
        case ReplyCutOff():
            return (
                "The reply was cut off at the max-tokens limit",
                "Press Continue for the rest, or raise “Max tokens” in Model settings",
            )
        case ImagesNotSupported():
            return (
                f"The {s.model} model cannot see images, so the message was not sent",
                "Remove the image, or run the app with a vision model (e.g. --provider openai --model gpt-4o-mini)",
            )
        case UnreadableAttachment():
            return f"Could not read the attached file {exc.name}: {exc.reason}", "Attach images or text files"
        case ContextTooLong():
            return "The conversation is too long for the model's context window", "Undo some turns or clear the chat"
        case IncompleteReply():
            return "The provider's stream ended without saying it was finished", RETRY
        case DeadlineExceeded():
            return f"The reply took longer than {s.deadline:g} s and was stopped", "Raise --deadline for long replies"
        case openai.AuthenticationError():
            key = f"check {s.key_env}" if s.key_env else "check the server's key settings"
            return "The provider refused the API key (401 Unauthorized)", key[0].upper() + key[1:]
        case openai.PermissionDeniedError():
            return "The provider denied access (403 Forbidden)", f"Check that this key may use {s.model}"
        case openai.NotFoundError():
            return f"The model {s.model} was not found at {s.base_url} (404)", "Check --model"
        case openai.RateLimitError():
            wait = exc.response.headers.get("retry-after", "")
            return "The provider is rate-limiting requests (429)", (
                f"Wait {wait} s, then press retry" if wait.isdigit() else "Wait a moment, then press retry"
            )
        case openai.APIStatusError() if exc.status_code in (400, 413, 422) and _is_context_error(exc):
            return _describe(ContextTooLong(), s)
        case openai.APIStatusError() if exc.status_code >= 500:
            return f"The provider had a server error ({exc.status_code})", "Press retry in a moment"
        case openai.APIStatusError():
            return (
                f"The provider rejected the request ({exc.status_code}): {_provider_message(exc)}",
                "Check the settings",
            )
        case openai.APITimeoutError():
            return f"The provider sent nothing for {s.timeout:g} s, so the request timed out", RETRY
        case openai.APIConnectionError() if isinstance(exc.__cause__, httpx2.ConnectError):
            return f"Could not connect to the provider at {s.base_url}", "Check that it is running and the URL is right"
        case openai.APIConnectionError():
            return "The connection to the provider was lost", RETRY
        case openai.APIError():  # an error event inside the stream carries no status code
            return f"The provider reported an error mid-reply: {_provider_message(exc)}", RETRY
        case json.JSONDecodeError():
            return "The provider sent a malformed chunk (not JSON)", RETRY
    trace = "".join(traceback.format_exception(exc))
    log.error("Unexpected error in a reply:\n%s", Redactor(s.secrets).text(trace))
    return f"Something went wrong ({type(exc).__name__})", "The server log has the details"
