"""The chat service without a page: a turn, a refusal, the rate limit, an answer, a compare side, export and
import, against the loopback provider and no Gradio server."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import json
import re
import weakref
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat.service import INTERRUPTED, Caller, ChatService, Listing, Refused
from core.errors import with_notice
from core.turn import RUN, SKIP
from providers.registry import create_backend
from storage.logs import LogStore, conversations, database_url
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.support import answer_text, remote_settings, stdio_server
from tools.hub import ToolHub

ME = Caller("session-1", "127.0.0.1")


def service_for(server: FakeOpenAI, **overrides) -> ChatService:
    settings = remote_settings(server, **overrides)
    return ChatService(settings, create_backend(settings), ["fake-model", "fake-model-2"])


async def turn(service: ChatService, text: str, caller: Caller = ME, model: str = "fake-model", **chosen) -> list:
    """Every update of one turn. (One event loop per test: the backend's HTTP client belongs to its loop.)"""
    message = {"text": text, "files": []}
    return [turn.messages() async for turn in service.turn(message, [], model, chosen, caller)]


def test_a_turn_streams_the_reply_with_the_settings_by_name(server: FakeOpenAI):
    server.default = Reply(text="one two three", delay=0.01)
    updates = asyncio.run(turn(service_for(server), "Count", temperature=0.2, system_prompt="Be brief."))
    assert answer_text(updates[-1]) == "one two three" and len(updates) >= 2
    body = server.chat_requests[-1].body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 1.0, 1024)  # the rest: configured
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_a_refusal_is_one_sentence_and_reaches_no_provider(server: FakeOpenAI):
    service = service_for(server)
    with pytest.raises(Refused, match=re.escape("Type a message first.")):
        asyncio.run(turn(service, "   "))
    with pytest.raises(Refused, match=re.escape("The model gpt-5 is not offered here: choose one of fake-model, ")):
        asyncio.run(turn(service, "hi", model="gpt-5"))
    assert server.chat_requests == []


def test_the_rate_limit_answers_in_the_chat_and_sends_nothing(server: FakeOpenAI):
    service = service_for(server, rate_limit_session=1)

    async def three() -> tuple:
        return await turn(service, "first"), await turn(service, "second"), await turn(service, "x", Caller("2", "b"))

    _, [refused], other = asyncio.run(three())
    assert "faster than this demo allows" in json.dumps(refused)
    assert len(server.chat_requests) == 2 and answer_text(other[-1]) == "Echo: x"  # another session goes on


def test_answer_and_compare_side_use_the_same_chat(server: FakeOpenAI):
    service = service_for(server)

    async def both() -> tuple[str, list]:
        chosen = {"system_prompt": "Side A.", "temperature": 1.1}
        answer = await service.answer("Ping")
        return answer, [side async for side in service.compare_side("Hello", [], "fake-model-2", chosen, ME)]

    answer, turns = asyncio.run(both())
    assert answer == "Echo: Ping"
    assert turns[-1].ended and turns[-1].text == "Echo: Hello"
    body = server.chat_requests[-1].body
    assert (body["model"], body["temperature"], body["messages"][0]["content"]) == ("fake-model-2", 1.1, "Side A.")


def test_export_and_load_carry_the_conversation_and_its_settings(server: FakeOpenAI):
    service = service_for(server)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Echo: Hi"}]
    markdown, document = service.export(history, "fake-model-2", {"temperature": 0.3, "max_tokens": 10**9})
    assert "## User" in markdown and "Temperature 0.3" in markdown
    loaded = service.load(document.encode())
    assert (loaded.history, loaded.model, loaded.notice) == (history, "fake-model-2", None)
    assert loaded.chosen == {"system_prompt": "You are a helpful assistant.", "temperature": 0.3,
                             "max_tokens": 4096, "top_p": 1.0}  # fmt: skip
    elsewhere = json.loads(document)
    elsewhere["config"]["model"] = "model-from-elsewhere"
    assert service.load(json.dumps(elsewhere).encode()).notice == (
        "model-from-elsewhere is not available here, so the chat continues with fake-model."
    )
    with pytest.raises(Refused, match="The file is not JSON"):
        service.load(b"\x00 not json")


def test_a_reply_runs_apart_from_its_followers_and_stops_when_unwatched_if_the_host_says_so(server: FakeOpenAI):
    slow = " ".join(f"w{i}" for i in range(200))  # 4 s

    async def leave_after_a_few(service: ChatService, caller: Caller) -> tuple:
        run = service.start({"text": "Talk", "files": []}, [], "fake-model", {}, caller)
        async for turn in service.follow(run, caller):
            if len(turn.text) > 10:
                break  # the page went away
        await asyncio.sleep(0.5)
        left_running = run.running
        again = [turn.text async for turn in service.follow(service.latest(caller), caller)]  # a reload
        return left_running, again[-1], run.stopped

    server.default = Reply(text=slow, delay=0.02)
    returning = Caller("page:visitor-1", "127.0.0.1", returns=True, owner="page:visitor-1")
    running, text, stopped = asyncio.run(leave_after_a_few(service_for(server), returning))
    assert (running, text, stopped) == (True, slow, False)  # the whole reply, from one request
    assert len(server.chat_requests) == 1 and not server.closed_early

    server.reset()
    server.default = Reply(text=slow, delay=0.02)
    gone = asyncio.run(leave_after_a_few(service_for(server), ME))  # a caller who cannot come back
    assert gone[0] is False and gone[2] is True and server.wait_for(lambda: server.closed_early, timeout=1.0)

    server.reset()
    server.default = Reply(text=slow, delay=0.02)

    async def unwatched() -> bool:
        service = service_for(server, stop_unwatched=0.3)
        run = service.start({"text": "Talk", "files": []}, [], "fake-model", {}, returning)
        async for turn in service.follow(run, returning):
            if turn.text:
                break
        await asyncio.sleep(1.0)
        return run.stopped

    assert asyncio.run(unwatched()) is True  # --stop-unwatched 0.3: nobody watched, so it stopped
    assert server.wait_for(lambda: server.closed_early, timeout=1.0)


def test_an_ended_reply_keeps_its_conversation_and_lets_go_of_the_request_it_ran_with(
    server: FakeOpenAI, tmp_path: Path
):
    """A process keeps thousands of ended replies for followers who come back (a reload after the end): each
    keeps what a follower sees, not its task and the context the task ran in (Gradio's request is in it), nor the
    caller the store's saver held."""
    store = LogStore(database_url(str(tmp_path / "chats.db"))).open()
    settings = remote_settings(server)
    service = ChatService(settings, create_backend(settings), ["fake-model"], store=store)
    server.default = Reply(text="Hello there")
    request: contextvars.ContextVar[object] = contextvars.ContextVar("request")

    class Request:  # stands for Gradio's, which its queue puts in the context each event runs in
        pass

    async def scenario() -> tuple[list, list[weakref.ref]]:
        caller = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
        request.set(Request())
        conversation = service.conversation_for(caller, "tab", [])
        run = service.start({"text": "Hi", "files": []}, [], "fake-model", {}, caller, conversation=conversation)
        held = [weakref.ref(request.get()), weakref.ref(caller)]
        request.set(None)
        async for _ in run.follow():
            pass
        await asyncio.sleep(0.1)  # the task is done with
        again = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
        return [turn.text async for turn in service.follow(service.latest(again, conversation), again)], held

    followed, held = asyncio.run(scenario())
    gc.collect()
    assert followed == ["Hello there"]  # a follower who comes back sees the reply
    assert [ref() for ref in held] == [None, None]  # and nothing else of the turn is kept
    store.close()


def test_a_reply_streaming_in_another_replica_shows_as_it_saves_it_and_as_interrupted_once_it_dies(
    server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two replicas on one store. The owner's page on the second (their other browser; or theirs, once the replica
    that served it died) shows a reply streaming in the first as the first saves it, to its end; and one whose
    replica died, interrupted once that replica has been silent for SILENT seconds, without a reload."""
    monkeypatch.setattr("storage.logs.HEARTBEAT", 0.3)
    monkeypatch.setattr("storage.logs.SILENT", 3.0)  # the app's 2 s and 6 s, shorter
    url = database_url(str(tmp_path / "chats.db"))
    stores = [LogStore(url, replica="one").open(), LogStore(url, replica="two").open()]
    settings = remote_settings(server)
    one, two = (ChatService(settings, create_backend(settings), ["fake-model"], store=store) for store in stores)
    ada = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
    long = " ".join(f"w{i}" for i in range(300))  # 6 s: saved at 2 s (with the first save, held till then) and 4 s
    server.default = Reply(text=long, delay=0.02)

    async def watched_from_two(conversation: str, tab: str) -> tuple[str, list[str]]:
        shown, run = await two.open(ada, tab, conversation)
        assert run is None  # it runs in the other replica
        reply = [answer_text(update[1:]) async for update in two.elsewhere(ada, tab, shown)]  # after "Talk"
        return answer_text(shown[1:]), reply

    async def scenario() -> tuple[tuple, tuple]:
        finishing = one.conversation_for(ada, "tab-1", [])
        one.start({"text": "Talk", "files": []}, [], "fake-model", {}, ada, conversation=finishing)
        await asyncio.sleep(2.8)  # past the first write
        finished = await watched_from_two(finishing, "tab-2")
        dying = one.conversation_for(ada, "tab-3", [])
        run = one.start({"text": "Again", "files": []}, [], "fake-model", {}, ada, conversation=dying)
        await asyncio.sleep(2.8)
        run.on_change = None  # replica "one" dies: it saves nothing more, and stops beating
        run.stop()
        await asyncio.to_thread(stores[0].close)
        started = asyncio.get_running_loop().time()
        cut = await watched_from_two(dying, "tab-4")
        waited = asyncio.get_running_loop().time() - started
        reloaded, _ = await two.open(ada, "tab-5", dying)
        return finished, (*cut, waited, answer_text(reloaded[1:]))

    try:
        (first, updates), (cut_first, cut_updates, waited, reloaded) = asyncio.run(scenario())
    finally:
        stores[1].close()
    assert long.startswith(first) and first != long  # opened mid-reply: what "one" had saved
    assert updates[-1] == long and len(updates) >= 2  # then each save, to the whole reply
    assert long.startswith(cut_first) and cut_first != long
    assert cut_updates == [with_notice(cut_first, INTERRUPTED)] and waited < 3.0 + 3.0  # one update: interrupted
    assert reloaded == cut_updates[0]  # as a reload shows it


def test_a_copied_session_hash_names_none_of_anothers_conversations(server: FakeOpenAI):
    service = service_for(server)
    ada = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
    eve = Caller("page:visitor-eve", "127.0.0.1", returns=True, owner="page:visitor-eve")
    mine = service.conversation_for(ada, "tab-1", [])
    earlier = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert service.conversation_for(ada, "tab-1", earlier) == mine  # the tab goes on with its conversation
    assert service.conversation_for(eve, "tab-1", earlier) != mine  # the same session_hash, another owner
    assert asyncio.run(service.reopen(eve, "tab-2")) is None  # and her new tab opens nothing of ada's


def test_conversations_are_listed_opened_and_deleted_for_their_owner_only(server: FakeOpenAI, tmp_path: Path):
    store = LogStore(database_url(str(tmp_path / "chats.db"))).open()
    settings = remote_settings(server)
    service = ChatService(settings, create_backend(settings), ["fake-model"], store=store)
    ada = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
    eve = Caller("page:visitor-eve", "127.0.0.1", returns=True, owner="page:visitor-eve")
    slow = " ".join(f"w{i}" for i in range(200))

    def written() -> list[dict]:  # what the database has, not what the store holds for this process's reads
        with store.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(conversations.c.id))]

    async def scenario() -> None:
        first = service.conversation_for(ada, "tab", [])
        run = service.start({"text": "Sailing", "files": []}, [], "fake-model", {}, ada, conversation=first)
        async for _ in run.follow():
            pass
        service.clear(ada, "tab")  # New chat
        server.default = Reply(text=slow, delay=0.02)
        second = service.conversation_for(ada, "tab", [])
        streaming = service.start({"text": "Baking", "files": []}, [], "fake-model", {}, ada, conversation=second)
        await asyncio.sleep(0.3)
        assert await service.listed(ada, "tab") == Listing([("Baking", second), ("Sailing", first)], second, False)
        store.flush()  # a reply's first save is held for this process's reads, and written SAVE_EVERY s in
        assert [row["id"] for row in await asyncio.to_thread(written)] == [first]
        assert await service.listed(ada, "tab", 1) == Listing([("Baking", second)], second, True)  # older: more
        assert await service.listed(eve, "tab") == Listing([], None, False)
        with pytest.raises(Refused, match="no such conversation of yours"):
            await service.open(eve, "tab", first)  # a foreign id opens nothing, in one sentence
        shown, ran = await service.open(ada, "tab", first)
        assert ran is not None and "Echo: Sailing" in json.dumps(shown)
        service.delete(ada, "tab", second)  # its reply stops, and no later save brings it back
        with contextlib.suppress(asyncio.CancelledError):
            await streaming.task
        assert streaming.stopped and server.wait_for(lambda: server.closed_early, timeout=1.0)
        await asyncio.sleep(0.2)
        store.flush()
        assert await service.listed(ada, "tab") == Listing([("Sailing", first)], first, False)
        with pytest.raises(Refused):
            await service.open(ada, "tab", second)

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_a_restart_keeps_a_conversations_tool_results_and_its_calls_waiting_for_run(server: FakeOpenAI, tmp_path: Path):
    """Two services on one store, one after the other: the second is the app after a restart."""
    tool_log, db = tmp_path / "calls.log", database_url(str(tmp_path / "chats.db"))
    hub = ToolHub([stdio_server(tool_log), stdio_server(tool_log, "careful", approve=True)], timeout=10.0)
    hub.start()
    ada = Caller("page:visitor-ada", "127.0.0.1", returns=True, owner="page:visitor-ada")
    eve = Caller("page:visitor-eve", "127.0.0.1", returns=True, owner="page:visitor-eve")

    async def reply(service: ChatService, caller: Caller, text: str, history: list, conversation: str) -> list:
        run = service.start({"text": text, "files": []}, history, "fake-model", {}, caller, conversation=conversation)
        async for _ in run.follow():
            pass
        return run.messages()

    def restarted(before: ChatService | None) -> ChatService:
        if before is not None:
            before.store.close()  # type: ignore[union-attr]
        settings = remote_settings(server)
        return ChatService(settings, create_backend(settings), ["fake-model"], hub, LogStore(db).open())

    def tool_messages() -> list[dict]:
        return [m for m in server.chat_requests[-1].body["messages"] if m["role"] == "tool"]

    async def scenario() -> None:
        service = restarted(None)
        chat = service.conversation_for(ada, "tab", [])
        server.enqueue(Reply(tool_calls=[ToolCall("echo", '{"text": "kept"}', "c1")]), Reply(text="Echoed."))
        shown = await reply(service, ada, "Echo kept", [], chat)
        service = restarted(service)
        shown, _ = await service.open(ada, "tab", chat)  # as the page shows it after the restart
        shown = await reply(service, ada, "What did it say?", shown, chat)
        assert tool_messages() == [{"role": "tool", "tool_call_id": "c1", "content": "kept"}]  # sent back

        server.enqueue(Reply(tool_calls=[ToolCall("careful__echo", '{"text": "approved"}', "c2")]))
        shown = await reply(service, ada, "Echo carefully", shown, chat)
        assert shown[-1]["options"] == [{"value": RUN, "label": RUN}, {"value": SKIP, "label": SKIP}]
        service = restarted(service)
        with pytest.raises(Refused):  # another owner cannot answer it (nor learn of it)
            await service.open(eve, "tab", chat)
        await reply(service, eve, RUN, shown, service.conversation_for(eve, "tab", shown))
        assert "echo approved" not in tool_log.read_text()
        requests = len(server.chat_requests)
        server.enqueue(Reply(text="All done."))
        shown, _ = await service.open(ada, "tab", chat)
        shown = await reply(service, ada, RUN, shown, chat)
        assert tool_log.read_text().splitlines() == ["echo kept", "echo approved"]
        assert "All done." in [m["content"] for m in shown] and len(server.chat_requests) == requests + 1
        assert tool_messages()[-1] == {"role": "tool", "tool_call_id": "c2", "content": "approved"}
        service.store.close()  # type: ignore[union-attr]

    try:
        asyncio.run(scenario())
    finally:
        hub.close()
