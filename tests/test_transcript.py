"""Export a conversation as Markdown and JSON with its config; import the JSON and carry on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from config import VERSION
from testkit.fake_openai import FakeOpenAI, Reply
from testkit.support import SENTINEL_KEY, ask

SETTINGS = ("You are a pirate.", 0.4, 300, 0.9, "fake-model")


def export(client: Client, *settings) -> tuple[str, dict]:
    markdown, document = client.predict(*settings, api_name="/export_chat")
    assert markdown.endswith(".md") and document.endswith(".json")
    return Path(markdown).read_text(encoding="utf-8"), json.loads(Path(document).read_text(encoding="utf-8"))


def test_export_holds_the_conversation_and_the_exact_config_but_never_the_key(client: Client, server: FakeOpenAI):
    server.enqueue(Reply(reasoning=["Arr, a greeting."], tokens=["Ahoy", "!"]))
    ask(client, "Hello", *SETTINGS)
    ask(client, "Bye", *SETTINGS)
    markdown, document = export(client, *SETTINGS)

    assert document["format"] == "gradio-stream-chat" and document["app_version"] == VERSION
    assert document["config"] == {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "fake-model",
        "system_prompt": "You are a pirate.",
        "temperature": 0.4,
        "max_tokens": 300,
        "top_p": 0.9,
    }
    roles_and_text = [(m["role"], m["content"], (m.get("metadata") or {}).get("title")) for m in document["messages"]]
    assert roles_and_text == [
        ("user", "Hello", None),
        ("assistant", "Arr, a greeting.", "Thinking"),
        ("assistant", "Ahoy!", None),
        ("assistant", "", "Stats"),
        ("user", "Bye", None),
        ("assistant", "Echo: Bye", None),
        ("assistant", "", "Stats"),
    ]
    assert "## User\n\nHello" in markdown and "## Assistant\n\nAhoy!" in markdown
    assert "<details><summary>Thinking (" in markdown and "Arr, a greeting." in markdown
    assert f"- Provider: openai ({server.base_url})" in markdown and "- System prompt: You are a pirate." in markdown
    assert "finish: stop" in markdown  # the stats line, in italics
    assert SENTINEL_KEY not in markdown + json.dumps(document)


def test_importing_the_json_continues_the_conversation(client: Client, app_url: str, server: FakeOpenAI, tmp_path):
    ask(client, "Remember the word apple", *SETTINGS)
    _, document = export(client, *SETTINGS)
    saved = tmp_path / "chat.json"
    saved.write_text(json.dumps(document), encoding="utf-8")

    newcomer = Client(app_url, verbose=False)  # another session, with an empty chat
    chatbot, system_prompt, temperature, max_tokens, top_p, model = newcomer.predict(
        handle_file(str(saved)), api_name="/import_chat"
    )
    assert (system_prompt, temperature, max_tokens, top_p, model) == SETTINGS
    assert [m["role"] for m in chatbot] == ["user", "assistant", "assistant"]
    assert ask(newcomer, "Which word?", system_prompt, temperature, max_tokens, top_p, model) == "Echo: Which word?"
    assert server.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Remember the word apple"},
        {"role": "assistant", "content": "Echo: Remember the word apple"},
        {"role": "user", "content": "Which word?"},
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG not json", "The file is not JSON."),
        (b'{"messages": []}', "The file is not a conversation exported from this app."),
        (b'{"format": "gradio-stream-chat", "config": {"model": "m"}}', "The file's config is incomplete or damaged."),
    ],
)
def test_a_bad_file_is_refused_clearly_and_the_chat_stays(
    client: Client, server: FakeOpenAI, tmp_path, content, problem
):
    ask(client, "Keep me")
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(Exception, match=problem.replace(".", r"\.")):
        client.predict(handle_file(str(bad)), api_name="/import_chat")
    ask(client, "Still here?")
    assert [m["content"] for m in server.chat_requests[-1].body["messages"][1:]] == [
        "Keep me",
        "Echo: Keep me",
        "Still here?",
    ]


def test_an_imported_model_that_is_not_offered_falls_back_to_the_configured_one(client: Client, tmp_path):
    _, document = export(client, *SETTINGS)
    document["config"]["model"] = "model-from-elsewhere"
    document["config"]["max_tokens"] = 10**9  # beyond this app's limit
    saved = tmp_path / "chat.json"
    saved.write_text(json.dumps(document), encoding="utf-8")
    *_, max_tokens, _, model = client.predict(handle_file(str(saved)), api_name="/import_chat")
    assert (model, max_tokens) == ("fake-model", 4096)


def test_an_export_from_before_a_setting_existed_imports_with_that_settings_default(client: Client, tmp_path):
    _, document = export(client, *SETTINGS)
    del document["config"]["top_p"]  # as if top-p had been added since
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps(document), encoding="utf-8")
    _, system_prompt, temperature, _, top_p, _ = client.predict(handle_file(str(saved)), api_name="/import_chat")
    assert (system_prompt, temperature, top_p) == ("You are a pirate.", 0.4, 1.0)  # 1.0: --top-p's default
