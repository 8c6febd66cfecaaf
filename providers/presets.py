"""OpenAI-compatible hosts as data: add a host by adding one line here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    base_url: str
    key_env: str | None  # the environment variable holding the key; None: the host needs no key
    default_model: str | None  # None: the user must say which model the server serves


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
    "huggingface": Preset("https://router.huggingface.co/v1", "HF_TOKEN", "meta-llama/Llama-3.1-8B-Instruct"),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", "llama-3.1-8b-instant"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "openai/gpt-4o-mini"),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "deepseek-chat"),
    "gemini": Preset("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY", "gemini-2.5-flash"),
    "ollama": Preset("http://localhost:11434/v1", None, "llama3.2"),
    "vllm": Preset("http://localhost:8000/v1", None, None),
    "llamacpp": Preset("http://localhost:8080/v1", None, "default"),
    "lmstudio": Preset("http://localhost:1234/v1", None, None),
}
