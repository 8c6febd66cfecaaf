"""Preflight: can this configuration chat? `python app.py --check`, and a short check at startup."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import openai

from config import ConfigError, Settings
from core.errors import IncompleteReply, describe
from core.events import GenerationParams
from core.reply import Reply
from providers.openai_compatible import TOOLS_REFUSED
from providers.registry import backend_class, create_backend
from storage.logs import LogStore, newest_schema, where
from tools.hub import ToolHub

PROBE = [{"role": "user", "content": "Reply with one word: ready"}]
MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}


@dataclass(frozen=True)
class Finding:
    status: Literal["ok", "warn", "fail"]
    check: str
    detail: str  # for a failure: what happened, then the fix


@dataclass
class Report:
    settings: Settings
    findings: list[Finding] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # what the provider lists; empty if it did not say

    @property
    def ok(self) -> bool:
        return all(finding.status != "fail" for finding in self.findings)

    def add(self, status: Literal["ok", "warn", "fail"], check: str, detail: str) -> None:
        self.findings.append(Finding(status, check, detail))

    def render(self) -> str:
        s = self.settings
        lines = [f"Checking {s.provider} ({s.location}), model {s.model}:"]
        lines += [f"  {MARKS[f.status]} {f.check}: {f.detail}" for f in self.findings]
        problems = sum(f.status == "fail" for f in self.findings)
        lines.append("  All checks passed." if not problems else f"  {problems} problem(s): fix them and run again.")
        return "\n".join(lines)


def run(settings: Settings, *, stream: bool, hub: ToolHub | None = None, store: LogStore | None = None) -> Report:
    """Check the provider, the MCP servers in `hub` and the conversation log in `store` (both
    started). stream=False is the short startup check: no generation, nothing billed."""
    report = Report(settings)
    if store is not None:
        if store.problem:
            why = f"cannot write to {where(store.url)} now ({store.problem}); the chat goes on, and retries each turn"
            report.add("fail", "Conversation log", why)
        else:
            report.add("ok", "Conversation log", f"recording to {where(store.url)} (schema {newest_schema()})")
    for server in hub.status() if hub else []:
        detail = server.line().split(": ", 1)[1]
        report.add("fail" if server.error else "ok", f"MCP server {server.name}", detail)
    tools = hub.openai_tools() if hub else ()
    in_process = backend_class(settings.provider).in_process
    if in_process and not stream:
        report.models = [settings.model]  # creating the backend at startup is the check
        return report
    asyncio.run(_run(report, stream, tools))
    return report


def _without_tools(report: Report, backend) -> None:
    """Say that the MCP servers' tools go unused with this backend (a local model's template may take none)."""
    s = report.settings
    why = f"{s.model}'s chat template takes no tools" if backend.in_process else f"{s.provider} is offered no tools"
    report.add("warn", "Tools", f"{why}; the MCP servers' tools go unused")


async def _run(report: Report, stream: bool, tools: tuple[dict, ...] = ()) -> None:
    started = time.monotonic()
    # No retries: a check reports what happened the first time. At startup, wait at most 5 s for an answer.
    timeout = report.settings.timeout if stream else min(report.settings.timeout, 5.0)
    s = report.settings = replace(report.settings, max_retries=0, timeout=timeout)
    try:
        backend = create_backend(s)  # its own client: an async client belongs to the event loop it first ran on
    except ConfigError as exc:
        report.add("fail", "Loaded", str(exc))
        return
    try:
        if tools and not backend.accepts_tools:
            _without_tools(report, backend)
            tools = ()
        if backend.in_process:
            report.add("ok", "Loaded", f"{s.model}, in this process, in {time.monotonic() - started:.1f} s")
        elif not await _check_listing(report, backend):
            return
        if stream:
            await _check_stream(report, backend, tools)
    finally:
        await backend.aclose()  # in this event loop, which ends with the check


async def _check_listing(report: Report, backend) -> bool:
    """Reachability, the key and the model, from GET /models. False: no point going on."""
    s = report.settings
    try:
        report.models = await backend.list_models()
    except openai.NotFoundError:
        report.add("warn", "Reachable", f"{s.base_url} answers but lists no models (404 on /models)")
        report.add("warn", "Model", f"cannot tell whether {s.model} exists until the first reply")
        return True
    except Exception as exc:
        check = "Key" if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)) else "Reachable"
        report.add("fail", check, describe(exc, s, partial=False))
        return False
    key = f"key from {s.key_env} accepted" if s.api_key else "no key sent"
    report.add("ok", "Reachable", f"{s.base_url} answered; {key}; {len(report.models)} models listed")
    if s.model in report.models:
        report.add("ok", "Model", f"{s.model} is listed")
    else:  # a warning: some servers serve a model they do not list (llama.cpp's lists its file's path)
        sample = ", ".join(report.models[:8]) + (", …" if len(report.models) > 8 else "")
        said = f"{s.model} is not among the models listed ({sample}); some servers answer to any name"
        report.add("warn", "Model", f"{said}, so the first reply will tell. If it fails, pass --model with one.")
    if unknown := [model for model in s.models if model not in report.models]:
        report.add("warn", "Model picker", f"not listed by the provider, so left out: {', '.join(unknown)}")
    return True


async def _check_stream(report: Report, backend, tools: tuple[dict, ...]) -> None:
    s = report.settings
    reply = Reply()
    try:
        async with asyncio.timeout(s.deadline):
            async for event in backend.stream(PROBE, GenerationParams(temperature=0, max_tokens=16, tools=tools)):
                reply.add(event)
        reply.finish()
        if reply.finish_reason is None:
            raise IncompleteReply
    except Exception as exc:
        report.add("fail", "Streaming", describe(exc, s, partial=False))
        return
    if tools:
        if reply.notice == TOOLS_REFUSED:
            report.add("warn", "Tools", f"{s.model} refused them (400/422), so it chats without tools")
        else:
            called = f"; it called {reply.tool_calls[min(reply.tool_calls)].name}" if reply.tool_calls else ""
            report.add("ok", "Tools", f"{s.model} accepts them ({len(tools)} offered{called})")
    if not (reply.text or reply.reasoning or reply.tool_calls):
        report.add("fail", "Streaming", f"The stream ended with no text. Check that {s.model} is a chat model.")
        return
    first = (reply.first_token or reply.started) - reply.started
    report.add("ok", "Streaming", f"first token after {first:.2f} s; finish reason {reply.finish_reason}")
    if reply.usage:
        usage = reply.usage
        report.add("ok", "Usage", f"reported ({usage.prompt_tokens} prompt + {usage.completion_tokens} completion)")
    else:
        report.add("warn", "Usage", "not reported; token counts under each reply are estimates, marked ≈")
