"""Sign in with Hugging Face on a Space (hf_oauth: true): the signed-in account's conversations follow it to
another browser, and nobody else's page lists them. The Space's OAuth provider is played by a real OpenID
Connect provider on loopback (oidc-provider-mock, from PyPI), and the app runs as on a Space: SPACE_ID and the
OAUTH_* variables that Spaces set, so Gradio's own sign-in routes do the work, in Debian's chromium."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import oidc_provider_mock._app
import pytest
import sqlalchemy as sa
import werkzeug.serving
from oidc_provider_mock import User
from oidc_provider_mock import app as oidc_provider

from storage.logs import conversations
from testkit.browser import Chat, browser, expect  # noqa: F401 - fixtures used here
from testkit.fake_openai import FakeOpenAI
from testkit.processes import app_running, base_env, free_port
from testkit.support import SENTINEL_KEY

CLIENT = "chat-space"  # the Space's OAuth app, as Spaces name it in OAUTH_CLIENT_ID
ADA = User(
    sub="61a0f1e0c3d2b5a4e7f60001",  # a Hugging Face account's id: what the app keeps conversations by
    claims={"preferred_username": "ada", "name": "Ada", "picture": "", "profile": "https://huggingface.co/ada"},
)


@pytest.fixture
def like_hugging_face(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's ID tokens name their audience as Hugging Face's do: one string, not authlib's list
    (Gradio's sign-in button cannot read a session holding a list)."""
    jwt_config = oidc_provider_mock._app.OpenIDCode.get_jwt_config
    monkeypatch.setattr(
        oidc_provider_mock._app.OpenIDCode,
        "get_jwt_config",
        lambda self, grant, client=None: jwt_config(self, grant, client) | {"aud": CLIENT},
    )


@contextlib.contextmanager
def identity_provider() -> Iterator[str]:
    """An OpenID Connect provider on loopback that knows Ada; yields its URL."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider(user_claims=[ADA]), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@contextlib.contextmanager
def space_app(fake_server: FakeOpenAI, provider: str, tmp_path: Path) -> Iterator[str]:
    """`python app.py` as a Space with hf_oauth runs it; yields its URL, ended (by its id) after."""
    port = free_port()
    env = base_env(port) | {
        "OPENAI_API_KEY": SENTINEL_KEY,
        "OPENAI_BASE_URL": fake_server.base_url,
        "SYSTEM": "spaces",
        "SPACE_ID": "tester/chat",
        "OAUTH_CLIENT_ID": CLIENT,
        "OAUTH_CLIENT_SECRET": "not-a-real-secret",
        "OAUTH_SCOPES": "openid profile",
        "OPENID_PROVIDER_URL": provider,
        "AUTHLIB_INSECURE_TRANSPORT": "1",  # the provider on loopback speaks plain HTTP
    }
    with app_running(env, "--model", "fake-model", "--rate-limit", "0", "--store", str(tmp_path / "chats.db")):
        yield f"http://127.0.0.1:{port}/"


def sign_in(chat: Chat) -> None:
    """Through the sidebar's button (the sidebar open), the provider's page (Ada, one click) and back."""
    chat.page.get_by_role("button", name="Sign in with Hugging Face").click()
    chat.page.get_by_role("button", name=ADA.sub).click()  # the provider's page: sign in as Ada
    chat.page.wait_for_url(chat.url)
    chat.page.get_by_label("Toggle Sidebar").click()
    expect(chat.page.get_by_role("button", name="Logout (ada)")).to_be_visible()


@pytest.mark.timeout(180)
def test_a_hugging_face_account_sees_its_conversations_in_another_browser_and_nobody_else_does(
    browser, fake_server: FakeOpenAI, tmp_path: Path, like_hugging_face: None
):
    fake_server.reset()
    with identity_provider() as provider, space_app(fake_server, provider, tmp_path) as url:
        laptop = Chat(browser, url, watch_requests=False)
        laptop.page.get_by_label("Toggle Sidebar").click()
        sign_in(laptop)
        laptop.send("Sailing in Lisbon")
        laptop.wait_for_reply()
        expect(laptop.page.locator("#conversations label")).to_have_text(["Sailing in Lisbon"])

        phone = Chat(browser, url, watch_requests=False)  # another browser: its own cookies
        phone.page.get_by_label("Toggle Sidebar").click()
        expect(phone.page.locator("#conversations label")).to_have_count(0)  # not signed in: nothing of Ada's
        sign_in(phone)
        expect(phone.page.locator("#conversations label")).to_have_text(["Sailing in Lisbon"])
        phone.page.locator("#conversations label", has_text="Sailing in Lisbon").click()
        expect(phone.users).to_have_text(["Sailing in Lisbon"])
        expect(phone.bots).to_have_text(["Echo: Sailing in Lisbon"])

        phone.page.get_by_role("button", name="Logout (ada)").click()  # signed out: a visitor again
        phone.page.wait_for_url(url)
        phone.page.get_by_label("Toggle Sidebar").click()
        expect(phone.page.get_by_role("button", name="Sign in with Hugging Face")).to_be_visible()
        expect(phone.page.locator("#conversations label")).to_have_count(0)
        for tab in (laptop, phone):
            tab.close()
    with sa.create_engine(f"sqlite:///{tmp_path / 'chats.db'}").connect() as db:
        kept = db.execute(sa.select(conversations.c.owner, conversations.c.title)).all()
    assert kept == [(f"page:hf-{ADA.sub}", "Sailing in Lisbon")]  # by the account's id, not its name
