"""The review page's sign-in (a server-issued cookie that expires, slowed after failures) and its exports,
as an attacker and an API client meet them; and the chat export's private, short-lived folder."""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from gradio_client import Client

from pages.review import LOCKED
from pages.signin import COOKIE, FREE_FAILURES, LIFETIME_SECONDS, WRONG, SignIns, hashed
from storage.logs import LogStore, database_url, signins
from testkit.fake_openai import FakeOpenAI
from testkit.support import ask, emptied, launched, remote_settings

LOGIN = ("lead", "pw-review-7")


@pytest.fixture(scope="module")
def review_app(fake_server: FakeOpenAI, tmp_path_factory) -> Iterator[str]:
    target = str(tmp_path_factory.mktemp("review") / "chats.db")
    store = LogStore(database_url(target)).open()
    settings = remote_settings(fake_server, log_db=target, review_auth=(LOGIN,))
    try:
        with launched(settings, store=store) as url:
            ask(Client(url, verbose=False), "Where is Lisbon?")
            store.flush()
            yield url
    finally:
        store.close()


def sign_in(url: str, user: str, password: str, address: str) -> httpx.Response:
    # Each test signs in from an address of its own (the app trusts X-Forwarded-For only from loopback
    # proxies, which the tests are), so one test's failures do not slow another's.
    return httpx.post(
        url + "review/sign-in", data={"user": user, "password": password}, headers={"X-Forwarded-For": address}
    )


def test_only_the_cookie_the_server_issued_opens_the_review_not_a_copied_session(review_app: str):
    # Before, the sign-in belonged to a session_hash the client picks: one copied from a query string
    # read every logged conversation. Now a client without the cookie gets one sentence, whatever its hash.
    stranger = Client(review_app + "review/", verbose=False)  # the page is an app of its own
    with pytest.raises(Exception, match=re.escape(LOCKED)):
        stranger.predict(False, "Any model", "", "", "", api_name="/review_search")

    answer = sign_in(review_app, *LOGIN, "198.51.100.1")
    assert answer.status_code == 200
    set_cookie = answer.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in set_cookie and "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert f"max-age={LIFETIME_SECONDS}" in set_cookie  # it expires
    cookie = answer.cookies[COOKIE]
    assert len(cookie) >= 40  # 256 random bits

    reviewer = Client(review_app + "review/", verbose=False, headers={"Cookie": f"{COOKIE}={cookie}"})
    rows = reviewer.predict(False, "Any model", "lisbon", "", "", api_name="/review_search")[0]
    assert [row[4] for row in rows["value"]["data"]] == ["Where is Lisbon?"]
    stranger.session_hash = reviewer.session_hash  # copied from a query string: worth nothing
    with pytest.raises(Exception, match=re.escape(LOCKED)):
        stranger.predict(False, "Any model", "", "", "", api_name="/review_search")

    exported = httpx.get(review_app + "review/export.jsonl", params={"text": "lisbon"}, cookies={COOKIE: cookie})
    assert exported.status_code == 200 and exported.headers["x-export-count"] == "1 turn"
    assert exported.headers["content-disposition"].startswith('attachment; filename="chats-')
    [line] = exported.text.splitlines()
    assert json.loads(line)["messages"][-2] == {"role": "user", "content": "Where is Lisbon?"}
    for stolen in ({}, {COOKIE: "made-up"}):  # no cookie, or a guessed one
        refused = httpx.get(review_app + "review/export.jsonl", cookies=stolen)
        assert (refused.status_code, refused.json()) == (401, {"error": "Log in on the review page to export."})

    assert httpx.post(review_app + "review/sign-out", cookies={COOKIE: cookie}).status_code == 204
    assert httpx.get(review_app + "review/export.jsonl", cookies={COOKIE: cookie}).status_code == 401
    with pytest.raises(Exception, match=re.escape(LOCKED)):
        reviewer.predict(False, "Any model", "", "", "", api_name="/review_search")


def test_failed_sign_ins_slow_their_address_down_with_one_sentence_and_no_traceback(
    review_app: str, capfd: pytest.CaptureFixture
):
    address = "198.51.100.2"
    for _ in range(FREE_FAILURES):  # typos cost nothing
        answer = sign_in(review_app, "lead", "guess", address)
        assert (answer.status_code, answer.json()) == (401, {"error": WRONG})
    answer = sign_in(review_app, "lead", "guess", address)
    assert (answer.status_code, answer.json()) == (401, {"error": f"{WRONG} Wait 1 s before trying again."})
    # Meanwhile not even the right password is checked: a guess in the wait tells nothing.
    answer = sign_in(review_app, *LOGIN, address)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert answer.json() == {"error": "Too many failed sign-ins from your address: try again in 1 s."}
    assert sign_in(review_app, *LOGIN, "198.51.100.3").status_code == 200  # another address is not slowed
    time.sleep(1.1)
    assert sign_in(review_app, *LOGIN, address).status_code == 200
    assert "Traceback" not in "".join(capfd.readouterr())


def test_the_wait_doubles_with_each_failure_and_a_sign_in_expires():
    now = [1000.0]
    signins = SignIns([LOGIN], lifetime=60, clock=lambda: now[0])
    waits = []
    for _ in range(FREE_FAILURES + 5):
        attempt = signins.attempt("a", "lead", "guess")
        waits.append(attempt.wait)
        now[0] += attempt.wait
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16]
    for _ in range(12):  # and at most five minutes
        now[0] += signins.attempt("a", "lead", "guess").wait
    assert signins.attempt("a", "lead", "guess").wait == 300
    now[0] += 300
    token = signins.attempt("a", *LOGIN).token
    assert signins.valid(token) and signins.attempt("a", "lead", "guess").wait == 0  # success starts afresh
    now[0] += 59
    assert signins.valid(token)
    now[0] += 1
    assert not signins.valid(token)


def test_a_chat_export_is_private_and_deleted_soon(tmp_path: Path):
    from pages.exports import private_folder

    folder = private_folder("chat-export-", seconds=0.3)
    (folder / "chat.json").write_text("{}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # other users of the machine cannot open it
    deadline = time.monotonic() + 5
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists()


def test_replicas_on_one_postgresql_share_sign_ins_and_sign_outs(postgres_url: str):
    """Two replicas' SignIns on one PostgreSQL store: a reviewer signed in on one is signed in on the other, a
    sign-out on either holds on both, and the database keeps a hash of the token, not the token."""
    url = database_url(emptied(postgres_url))
    one, two = (LogStore(url, replica=name).open() for name in ("one", "two"))
    try:
        here, there = SignIns([LOGIN], shared=one), SignIns([LOGIN], shared=two)
        token = here.attempt("192.0.2.1", *LOGIN).token
        assert here.valid(token) and there.valid(token)
        assert not there.valid(token[:-1] + "x")
        there.sign_out(token)
        assert not there.valid(token) and not here.valid(token)
        another = here.attempt("192.0.2.1", *LOGIN).token
        one.flush()
        with one.engine.connect() as connection:
            kept = list(connection.execute(sa.select(signins.c.token)).scalars())
        assert kept == [hashed(another)] and another not in kept
    finally:
        one.close()
        two.close()
