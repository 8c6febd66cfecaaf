"""Who the client is: X-Forwarded-For is believed only from trusted proxies, tested from real sockets."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from config import ConfigError, load_settings, parse_networks
from pages.proxies import client_address
from testkit.fake_openai import FakeOpenAI
from testkit.processes import base_env, free_port, spawn, wait_until_serving
from testkit.support import launched, remote_settings

TOO_FAST = "faster than this demo allows"


def chat_from(url: str, source: str, text: str, forwarded_for: str | None = None) -> str:
    """Send one message in a new session from the loopback address `source`; the reply's text."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=url, headers=headers, timeout=30) as http:
        config = http.get("config").json()
        chat = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        session = uuid.uuid4().hex[:10]
        data = [{"text": text, "files": []}, None, "You are a helpful assistant.", 0.7, 100, 1.0, "fake-model"]
        join = {"data": data, "fn_index": chat, "session_hash": session, "event_data": None, "trigger_id": None}
        http.post("gradio_api/queue/join", json=join).raise_for_status()
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                    return json.dumps(message["output"])
    raise AssertionError("the reply never completed")


@pytest.fixture
def limited_app(server: FakeOpenAI):
    """At most 3 messages a minute per client address; the proxy at 127.0.0.2 is trusted."""
    settings = remote_settings(server, rate_limit_ip=3, forwarded_allow_ips=parse_networks("127.0.0.2"))
    with launched(settings) as url:
        yield url


def test_a_client_rotating_forged_headers_is_limited_all_the_same(limited_app: str, server: FakeOpenAI):
    replies = [chat_from(limited_app, "127.0.0.3", f"m{n}", f"203.0.113.{n}") for n in range(6)]
    assert [TOO_FAST in reply for reply in replies] == [False, False, False, True, True, True]
    assert [r.body["messages"][-1]["content"] for r in server.chat_requests] == ["m0", "m1", "m2"]


def test_a_trusted_proxy_gets_one_bucket_per_real_client_whatever_they_forge(limited_app: str, server: FakeOpenAI):
    outcomes: dict[str, list[bool]] = {}
    for n in range(4):
        for real in ("198.51.100.1", "198.51.100.2"):
            reply = chat_from(limited_app, "127.0.0.2", f"{real}#{n}", f"10.9.9.{n}, {real}")  # forged, then real
            outcomes.setdefault(real, []).append(TOO_FAST in reply)
    assert outcomes == {"198.51.100.1": [False, False, False, True], "198.51.100.2": [False, False, False, True]}
    assert len(server.chat_requests) == 6


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy of ours: its header means nothing
        ("127.0.0.1", "", "127.0.0.1"),  # a trusted peer that forwards nothing
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the proxy appended the real address last
        ("127.0.0.1", "198.51.100.7, 10.0.0.5", "198.51.100.7"),  # through two proxies of ours (10/8 trusted)
        ("127.0.0.1", "junk, 10.0.0.5", "junk"),  # what our proxy saw, even if it is no address
        ("127.0.0.1", "10.0.0.6, 10.0.0.5", "10.0.0.6"),  # only proxies: the farthest one
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_the_client_is_the_rightmost_address_no_trusted_proxy_added(peer, forwarded_for, client):
    assert client_address(peer, forwarded_for, parse_networks("127.0.0.1, 10.0.0.0/8")) == client


def test_the_trusted_proxies_default_to_this_host_and_on_spaces_the_private_ranges():
    assert load_settings([], {}).forwarded_allow_ips == parse_networks("127.0.0.1")
    on_spaces = load_settings([], {"SPACE_ID": "team/demo"}).forwarded_allow_ips
    assert client_address("10.16.4.2", "6.6.6.6, 198.51.100.7", on_spaces) == "198.51.100.7"
    assert client_address("203.0.113.9", "198.51.100.7", on_spaces) == "203.0.113.9"
    chosen = load_settings(["--forwarded-allow-ips", "192.0.2.0/24,*"], {"SPACE_ID": "x"}).forwarded_allow_ips
    assert client_address("203.0.113.9", "198.51.100.7", chosen) == "198.51.100.7"  # * trusts anyone
    assert load_settings([], {"CHAT_FORWARDED_ALLOW_IPS": "192.0.2.1"}).forwarded_allow_ips == parse_networks(
        "192.0.2.1"
    )


def test_a_bad_proxy_list_stops_startup_with_one_sentence():
    with pytest.raises(ConfigError, match=r"--forwarded-allow-ips takes .*: 'nginx' is not an IP address"):
        load_settings(["--forwarded-allow-ips", "127.0.0.1,nginx"], {})


def test_the_web_server_trusts_no_proxy_the_app_does_not(fake_server: FakeOpenAI):
    """Gradio's uvicorn would otherwise resolve X-Forwarded-For from 127.0.0.1 by its own default list."""
    fake_server.reset()
    port = free_port()
    env = base_env(port) | {"OPENAI_BASE_URL": fake_server.base_url, "CHAT_MODEL": "fake-model"}
    proc, lines = spawn(env, "--rate-limit-ip", "2", "--forwarded-allow-ips", "127.0.0.2")
    try:
        wait_until_serving(proc, lines, [])
        url = f"http://127.0.0.1:{port}/"
        replies = [chat_from(url, "127.0.0.1", f"m{n}", f"203.0.113.{n}") for n in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert [TOO_FAST in reply for reply in replies] == [False, False, True]
