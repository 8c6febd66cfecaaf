"""The model picker: filled from GET /v1/models, switchable mid-conversation, limited to what is offered."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import preflight
from app import model_choices
from testkit.fake_openai import FakeOpenAI
from testkit.support import ask, launched, remote_settings


def listed(server: FakeOpenAI, **overrides) -> tuple:
    settings = remote_settings(server, **overrides)
    return settings, preflight.run(settings, stream=False).models


def test_the_picker_offers_what_the_provider_lists_with_the_configured_model_first(server: FakeOpenAI):
    server.models = ["alpha", "fake-model", "zeta"]
    settings, models = listed(server)
    assert model_choices(settings, models) == ["fake-model", "alpha", "zeta"]


def test_when_listing_fails_the_picker_offers_the_configured_model(server: FakeOpenAI):
    server.models_status = 500
    settings, models = listed(server)
    assert models == []
    assert model_choices(settings, models) == ["fake-model"]


def test_models_limits_the_picker_to_listed_models(server: FakeOpenAI):
    settings, models = listed(server, models=("fake-model-2", "gpt-huge"))
    assert model_choices(settings, models) == ["fake-model", "fake-model-2"]  # gpt-huge is not served here
    assert model_choices(settings, []) == ["fake-model", "fake-model-2", "gpt-huge"]  # no list: trust the flag


def test_switching_models_mid_conversation_keeps_the_conversation(server: FakeOpenAI):
    settings, models = listed(server)
    with launched(settings, models) as url:
        client = Client(url, verbose=False)
        defaults = ("You are a helpful assistant.", 0.7, 256, 1.0)
        assert ask(client, "one", *defaults, "fake-model") == "Echo: one"
        assert ask(client, "two", *defaults, "fake-model-2") == "Echo: two"
        first, second = server.chat_requests
        assert (first.body["model"], second.body["model"]) == ("fake-model", "fake-model-2")
        assert [m["content"] for m in second.body["messages"][1:]] == ["one", "Echo: one", "two"]

        # A model the picker does not offer is refused before anything reaches the provider.
        refused = "The model gpt-4-expensive is not offered here: choose one of fake-model, fake-model-2."
        with pytest.raises(AppError, match=re.escape(refused)):
            ask(client, "three", *defaults, "gpt-4-expensive")
        assert len(server.chat_requests) == 2
