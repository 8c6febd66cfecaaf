"""Every provider the app offers: backends (code, listed here) and presets (hosts, as data).

A new backend is one file in providers/ and one line in BACKENDS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from providers.presets import PRESETS

if TYPE_CHECKING:
    from config import Settings
    from providers.base import ChatBackend

# Provider name -> "module:Class". Imported only when chosen, so configuration can list the
# providers without importing every backend (and the backends can import configuration).
BACKENDS: dict[str, str] = {
    "local": "providers.local:LocalModel",
}
# The presets' backend: any OpenAI-compatible server through the openai SDK.
PRESET_BACKEND = "providers.openai_compatible:OpenAICompatible"


def provider_names() -> list[str]:
    return [*BACKENDS, *(name for name in PRESETS if name not in BACKENDS)]


def backend_class(provider: str) -> type[ChatBackend]:
    """The class serving `provider`; KeyError if there is no such provider."""
    path = BACKENDS.get(provider) or (PRESET_BACKEND if provider in PRESETS else None)
    if path is None:
        raise KeyError(provider)
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def create_backend(settings: Settings) -> ChatBackend:
    return backend_class(settings.provider)(settings)
