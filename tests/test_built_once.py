"""Each component's config built once (pages/built_once.py): a new session gets exactly what Gradio would have
built for it, and what one session writes into its config stays its own."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
from gradio.state_holder import SessionState

from app import build_app
from pages.built_once import build_configs_once
from storage.logs import LogStore, database_url
from testkit.fake_openai import FakeOpenAI
from testkit.support import remote_settings


def session_config(blocks: gr.Blocks) -> str:
    """A new session's config of every component, as JSON (what the page is sent)."""
    return json.dumps(SessionState(blocks).config_values, sort_keys=True, default=repr)


def test_a_new_sessions_config_is_what_gradio_builds(server: FakeOpenAI, tmp_path: Path):
    """On the chat (with its conversation list) and on the workbench's pages."""
    target = str(tmp_path / "chats.db")
    store = LogStore(database_url(target)).open()
    try:
        chat = build_app(remote_settings(server, log_db=target), ["fake-model", "other-model"], store=store)
        pages = [page.blocks for page in chat.workbench.values()]
        assert len(pages) == 2
        for blocks in (chat, *pages):
            built_by_gradio = session_config(blocks)
            build_configs_once(blocks)
            assert session_config(blocks) == built_by_gradio
            assert session_config(blocks) == built_by_gradio  # and again: nothing was used up
    finally:
        store.close()


def test_what_a_session_writes_into_its_config_stays_its_own(server: FakeOpenAI):
    chat = build_app(remote_settings(server), ["fake-model"])
    build_configs_once(chat)
    before = session_config(chat)
    visitor = SessionState(chat)
    for key in visitor.config_values:
        visitor._update_value_in_config(key, "a value of this visitor's")  # as an event's input or output does
    assert "a value of this visitor's" in json.dumps(visitor.config_values, default=repr)
    assert session_config(chat) == before
