"""Secrets and access: the key never leaves for anywhere but the provider; optional login."""

import contextlib

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from testkit.fake_openai import FakeOpenAI, Reply
from testkit.processes import base_env, free_port, spawn, wait_until_serving
from testkit.support import SENTINEL_KEY, ask


@contextlib.contextmanager
def running_app(env: dict[str, str]):
    output: list[str] = []
    proc, lines = spawn(env)
    try:
        wait_until_serving(proc, lines, output)
        yield output
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        while not lines.empty():
            output.append(lines.get())


def test_the_key_is_in_no_page_api_answer_error_or_log(fake_server: FakeOpenAI):
    fake_server.reset()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = base_env(port) | {"OPENAI_API_KEY": SENTINEL_KEY, "OPENAI_BASE_URL": fake_server.base_url,
                            "CHAT_MODEL": "fake-model", "CHAT_MAX_RETRIES": "0"}  # fmt: skip
    seen: list[str] = []
    with running_app(env) as logs:
        for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json", "theme.css"):
            seen.append(httpx.get(url + path, timeout=10).text)
        client = Client(url, verbose=False)
        seen.append(ask(client, "hello"))
        # Providers that echo the key back in their errors, before and during a stream.
        fake_server.enqueue(
            Reply(status=401, error_message=f"Incorrect API key provided: {SENTINEL_KEY}"),
            Reply(status=400, error_message=f"bad header Authorization: Bearer {SENTINEL_KEY}"),
            Reply(fault="error_event", error_message=f"upstream rejected {SENTINEL_KEY}", text="a b c d"),
            Reply(status=500),
            Reply(fault="bad_json", text="a b c d"),
        )
        for turn in range(5):
            seen.append(ask(client, f"turn {turn}"))
        assert fake_server.chat_requests[-1].headers["authorization"] == f"Bearer {SENTINEL_KEY}"  # it was used
    seen += logs
    assert any("refused the API key" in text for text in seen)
    assert any("[redacted]" in text for text in seen)  # an echoed key was caught, not just absent
    assert [text for text in seen if SENTINEL_KEY in text] == []


def test_login_is_required_when_auth_is_set(fake_server: FakeOpenAI, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = base_env(port) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server.base_url,
                            "CHAT_MODEL": "fake-model", "CHAT_AUTH": "alice:wonderland-42",
                            "CHAT_LOG_DB": str(tmp_path / "log.db")}  # fmt: skip
    with running_app(env) as logs:
        assert httpx.get(url + "config", timeout=10).status_code == 401
        # The workbench pages are apps of their own, behind the same login: the chat's opens them.
        assert httpx.get(url + "compare/config", timeout=10).status_code == 401
        signed_in = httpx.post(url + "login", data={"username": "alice", "password": "wonderland-42"}, timeout=10)
        assert httpx.get(url + "compare/config", cookies=signed_in.cookies, timeout=10).status_code == 200
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):  # Gradio refuses the wrong password
            Client(url, auth=("alice", "wrong"), verbose=False)
        assert ask(Client(url, auth=("alice", "wonderland-42"), verbose=False), "hi") == "Echo: hi"
    assert not [line for line in logs if "wonderland-42" in line]


def test_a_secret_split_across_chunks_is_never_shown_even_in_part():
    from core.redaction import Redactor

    redactor = Redactor(["sk-test-SENTINEL-0123456789abcdef", "pw-review-1"])
    assert redactor.text("key: sk-test-SENT", streaming=True) == "key: "  # could be the key: held back
    assert redactor.text("key: sk-test-SENTINEL-0123456789abcdef!", streaming=True) == "key: [redacted]!"
    assert redactor.text("a password pw-review-1 here") == "a password [redacted] here"
    assert redactor.text("nothing like it, sk-", streaming=False) == "nothing like it, sk-"  # the end: all shown


def test_a_reply_that_echoes_a_secret_shows_it_nowhere(fake_server: FakeOpenAI, tmp_path):
    """The provider (or a model) repeats the key and the review password: the chat, its updates and the log
    show [redacted], even where the key arrives in two pieces."""
    from dataclasses import replace

    from storage.logs import LogStore, database_url
    from testkit.support import answer_text, launched, remote_settings, submit

    target = str(tmp_path / "chats.db")
    settings = replace(remote_settings(fake_server, log_db=target), review_auth=(("lead", "pw-review-1"),))
    store = LogStore(database_url(target)).open()
    half = len(SENTINEL_KEY) // 2
    fake_server.enqueue(
        Reply(
            tokens=["Your key is ", SENTINEL_KEY[:half], SENTINEL_KEY[half:], " and pw-review-1.", " Done."], delay=0.1
        )
    )
    try:
        with launched(settings, store=store) as url:
            job = submit(Client(url, verbose=False), "Tell me the secrets")
            updates = [answer_text(update) for update in job]
            final = answer_text(job.result())
        store.flush()
        [logged] = store.find()
    finally:
        store.close()
    assert final == "Your key is [redacted] and [redacted]. Done."
    assert len(updates) >= 2 and all(SENTINEL_KEY[:6] not in text and "pw-review" not in text for text in updates)
    assert logged["reply"] == final


def test_a_conversation_belongs_to_the_login_then_the_hugging_face_account_then_the_visitor_cookie():
    from pages.owners import COOKIE, hf_account, issue, owner

    cookie = f"{COOKIE}={issue()}"
    signed_in = {"session": {"oauth_info": {"userinfo": {"sub": "61a0f1", "preferred_username": "ada"}}}}
    assert hf_account(signed_in) == "61a0f1"  # the account's id: a rename keeps its conversations
    assert owner(cookie, "ada", hf_account(signed_in)) == "user-ada"  # an --auth login first
    assert owner(cookie, None, hf_account(signed_in)) == "hf-61a0f1"  # then the Hugging Face account
    assert owner(cookie, None, None).startswith("visitor-")  # then the cookie's visitor
    expired = {"session": {"oauth_info": {"userinfo": {"sub": "61a0f1"}, "expires_at": 1}}}
    for nobody in ({}, {"session": {}}, expired, {"session": {"oauth_info": {"userinfo": {}}}}):
        assert hf_account(nobody) is None
