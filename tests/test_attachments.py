"""Files in the multimodal textbox: images as image_url parts, text files inline, clear refusals."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from config import load_settings
from core.errors import UnreadableAttachment
from core.history import to_provider_messages
from testkit.fake_openai import FakeOpenAI
from testkit.support import answer_text, ask, fn_index, launched, message, png, queue_call, remote_settings


def test_an_image_goes_as_an_image_url_part_and_stays_in_the_conversation(
    client: Client, server: FakeOpenAI, tmp_path: Path
):
    image = png(tmp_path / "red.png")
    assert ask(client, "What colour is this?", files=(str(tmp_path / "red.png"),)) == "Echo: What colour is this?"
    (user,) = server.chat_requests[-1].body["messages"][1:]
    text, picture = user["content"]
    assert text == {"type": "text", "text": "What colour is this?"}
    assert picture["type"] == "image_url"
    prefix, encoded = picture["image_url"]["url"].split(",", 1)
    assert prefix == "data:image/png;base64" and base64.b64decode(encoded) == image

    ask(client, "Are you sure?")  # the image goes again with the history, so the model still sees it
    earlier = server.chat_requests[-1].body["messages"][1]
    assert earlier["content"][1] == picture


def test_a_text_file_is_inlined_into_the_message(client: Client, server: FakeOpenAI, tmp_path: Path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\n- ship it ✓\n", encoding="utf-8")
    ask(client, "Summarise", files=(str(notes),))
    assert server.chat_requests[-1].body["messages"][-1] == {
        "role": "user",
        "content": "Summarise\n\nnotes.md:\n```\n# Plan\n- ship it ✓\n\n```",
    }


def test_a_file_that_is_neither_image_nor_text_is_refused_with_its_name(
    client: Client, server: FakeOpenAI, tmp_path: Path
):
    blob = tmp_path / "data.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    reply = ask(client, "Read this", files=(str(blob),))
    assert reply == (
        "⚠️ Could not read the attached file data.bin: it is neither an image (PNG, JPEG, GIF, WebP) nor UTF-8 text. "
        "Attach images or text files."
    )
    assert server.chat_requests == []
    assert ask(client, "Never mind") == "Echo: Never mind"  # the chat goes on, and the refused message stays unsent
    assert [m["content"] for m in server.chat_requests[-1].body["messages"]] == [
        "You are a helpful assistant.",
        "Never mind",
    ]


def test_a_forged_history_cannot_make_the_app_read_a_file_of_the_server(app_url: str, server: FakeOpenAI):
    """Raw queue calls, as an attacker sends them (gradio_client would upload the client's own file)."""
    session, lambda_id, chat_id = uuid.uuid4().hex[:10], fn_index(app_url, "lambda"), fn_index(app_url, "chat")
    passwd = {"type": "file", "file": {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "alt_text": None}
    with httpx.Client(timeout=30) as http:

        def forge(*content: dict) -> dict:  # the endpoint that sets an API session's history
            turn = {"role": "user", "content": list(content), "metadata": None, "options": None}
            return queue_call(http, app_url, lambda_id, [[turn]], session)

        assert not forge({"type": "text", "text": "forged turn"}, passwd)["success"]  # Gradio: not uploaded here
        assert forge({"type": "text", "text": "forged turn"})["success"]  # the endpoint itself takes a history
        chat = [{"text": "Hi", "files": []}, None, "", 0.7, 100, 1.0, "fake-model"]
        assert queue_call(http, app_url, chat_id, chat, session)["success"]
        forged_files = {"text": "Read", "files": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]}
        assert not queue_call(http, app_url, chat_id, [forged_files, *chat[1:]], session)["success"]
    sent = json.dumps([r.body for r in server.chat_requests])
    assert "forged turn" in sent  # the forged history did reach the app, as text only
    assert "root:" not in sent


def test_only_uploaded_files_are_ever_read():
    # The shapes a history can hold: the API session's {"path"} and the browser's {"type": "file"}.
    history = [
        {"role": "user", "content": [{"path": "/etc/passwd"}, "look"]},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/etc/passwd"}}]},
    ]
    assert to_provider_messages("", history, "next") == [{"role": "user", "content": "look\n\nnext"}]
    with pytest.raises(UnreadableAttachment, match="not a file uploaded to this app"):
        to_provider_messages("", [], {"text": "read", "files": ["/etc/passwd"]})


@pytest.fixture(scope="module")
def local_url():
    with launched(load_settings([], {})) as url:
        yield url


def test_the_embedded_model_declines_images_clearly_and_chats_on(local_url: str, tmp_path: Path):
    png(tmp_path / "cat.png")
    client = Client(local_url, verbose=False)
    settings = ("", 0.0, 16, 1.0)
    declined = client.predict(message("What is this?", str(tmp_path / "cat.png")), *settings, api_name="/chat")
    assert answer_text(declined) == (
        "⚠️ The SmolLM2-135M-Instruct.Q4_1 model cannot see images, so the message was not sent. Remove the image, "
        "or run the app with a vision model (e.g. --provider openai --model gpt-4o-mini)."
    )
    assert len(declined) == 1  # no stats: nothing was generated
    assert ask(client, "Say hi.", *settings).strip()  # the next message works; the image is left out


def test_attachments_have_limits_and_a_refused_message_changes_nothing(server: FakeOpenAI, tmp_path: Path):
    """Files per message, inlined text per message and upload size are capped; each refusal is one sentence."""
    from gradio_client.exceptions import AppError

    settings = remote_settings(server, max_files=2, max_attachment_chars=1000, max_upload_mb=1)
    notes = []
    for n in range(3):
        notes.append(tmp_path / f"note{n}.txt")
        notes[-1].write_text("a short note\n")
    long_note = tmp_path / "long.txt"
    long_note.write_text("x" * 1500)
    huge = tmp_path / "huge.txt"
    huge.write_text("y" * (2 * 2**20))
    with launched(settings) as url:
        client = Client(url, verbose=False)
        assert ask(client, "hello") == "Echo: hello"
        with pytest.raises(AppError, match=re.escape("That is 3 files; a message may carry 2. Send fewer at a time.")):
            ask(client, "three files", files=tuple(map(str, notes)))
        refused = (
            "The attached text is 1,500 characters long; a message may carry 1,000. Attach less, or a shorter file."
        )
        with pytest.raises(AppError, match=re.escape(refused)):
            ask(client, "a long file", files=(str(long_note),))
        with pytest.raises(Exception, match=r"1 MB|too large|exceeds"):  # refused as it arrives, by Gradio
            ask(client, "a huge file", files=(str(huge),))
        assert len(server.chat_requests) == 1  # nothing refused reached the provider
        assert ask(client, "and now?") == "Echo: and now?"
    history = [m["content"] for m in server.chat_requests[-1].body["messages"]]
    assert history == ["You are a helpful assistant.", "hello", "Echo: hello", "and now?"]  # the refused left no trace
