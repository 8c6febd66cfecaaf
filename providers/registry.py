"""Which backend serves a provider. A new backend is one file and one line in BACKENDS."""

from __future__ import annotations

from config import LOCAL, Settings
from providers.base import ChatBackend
from providers.local import LocalLlama
from providers.openai_compatible import OpenAICompatible

# Providers not listed here are presets (providers/presets.py), all served through the openai SDK.
BACKENDS: dict[str, type[ChatBackend]] = {
    LOCAL: LocalLlama,
}


def create_backend(settings: Settings) -> ChatBackend:
    return BACKENDS.get(settings.provider, OpenAICompatible)(settings)
