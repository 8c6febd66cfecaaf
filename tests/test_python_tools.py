"""Tools that are plain Python functions (tools/python_tools.py): the shipped calculator, --tools, and a
chat whose model calls one, through the same hub as MCP servers' tools."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from gradio_client import Client

from app import tool_hub
from config import ConfigError, load_settings
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.support import answer_text, launched, remote_settings, submit
from tools.hub import ToolHub
from tools.python_tools import calculate, python_server, tool_names


@pytest.mark.parametrize(
    ("expression", "result"),
    [("(17 * 23) / 4", "97.75"), ("2 ** 64 % 1000", "616"), ("-2 ** 3", "-8"), ("7 // 2 + 0.5", "3.5")],
)
def test_the_calculator_works_out_arithmetic_exactly(expression: str, result: str):
    assert calculate(expression) == result


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("__import__('os').system('id')", "Only numbers, + - * / // % ** and parentheses are allowed."),
        ("(1).__class__", "Only numbers, + - * / // % ** and parentheses are allowed."),
        ("True + 1", "Only numbers, + - * / // % ** and parentheses are allowed."),
        ("9 ** 9 ** 9", "The result is too large to work out here."),  # refused before it is worked out
        ("1e308 * 10", "The result is too large to work out here."),
        ("1 / 0", "It divides by zero."),
        ("(-8) ** 0.5", "The result is not a real number."),
        ("2 +", "'2 +' is not an arithmetic expression."),
        ("1+" * 150 + "1", "The expression is too long: at most 200 characters."),
    ],
)
def test_the_calculator_runs_nothing_but_arithmetic_and_says_why_not(expression: str, says: str):
    with pytest.raises(ValueError) as refused:
        calculate(expression)
    assert str(refused.value) == says


def test_python_tools_go_through_the_hub_like_an_mcp_servers(caplog: pytest.LogCaptureFixture):
    hub = ToolHub([python_server(("calculate",))], timeout=5.0)
    [status] = hub.start()
    try:
        assert status.line() == "✓ MCP server python: calculate"
        [tool] = hub.tools
        assert tool.description == "Work out an arithmetic expression exactly, such as (17 * 23) / 4 or 2 ** 64 % 1000."
        assert tool.schema["properties"]["expression"]["description"].startswith("Numbers with")
        caplog.set_level(logging.INFO)
        worked = asyncio.run(hub.call("calculate", json.dumps({"expression": "6 * 7"})))
        refused = asyncio.run(hub.call("calculate", json.dumps({"expression": "1/0"})))
        unchecked = asyncio.run(hub.call("calculate", json.dumps({"expression": 42})))
    finally:
        hub.close()
    assert (worked.text, worked.is_error) == ("42", False)
    assert (refused.text, refused.is_error) == ("Error executing tool calculate: It divides by zero.", True)
    assert unchecked.is_error and "do not fit the tool's schema" in unchecked.text  # checked before it runs
    assert "Traceback" not in caplog.text


def test_tools_names_python_tools_and_refuses_an_unknown_one():
    env = {"OPENAI_API_KEY": "k", "CHAT_TOOLS": "calculate"}
    assert load_settings([], env).python_tools == ("calculate",)
    assert load_settings(["--tools", "all"], env).python_tools == tuple(tool_names())
    assert load_settings([], {"OPENAI_API_KEY": "k"}).python_tools == ()
    with pytest.raises(ConfigError) as refused:
        load_settings(["--tools", "calculate,shell"], env)
    assert str(refused.value) == "--tools: there is no Python tool 'shell'; there are: calculate."


def test_a_model_calls_the_calculator_in_a_chat(fake_server: FakeOpenAI):
    settings = remote_settings(fake_server, python_tools=("calculate",))
    hub = tool_hub(settings)
    assert hub is not None
    hub.start()
    fake_server.enqueue(
        Reply(text="", tool_calls=[ToolCall("calculate", '{"expression": "1234 * 5678"}', "c1")]),
        Reply(text="It is 7006652."),
    )
    try:
        with launched(settings, hub=hub) as url:
            job = submit(Client(url, verbose=False), "What is 1234 times 5678?")
            final = job.result()
    finally:
        hub.close()
    [step] = [m for m in final if (m.get("metadata") or {}).get("title", "").startswith("Tool:")]
    assert step["metadata"]["title"].startswith("Tool: calculate") and "7006652" in step["content"]
    assert answer_text(final) == "It is 7006652."
    first, second = (request.body for request in fake_server.chat_requests)
    assert [tool["function"]["name"] for tool in first["tools"]] == ["calculate"]
    assert {"role": "tool", "tool_call_id": "c1", "content": "7006652"} in second["messages"]
