"""The few facts the local backend needs from a GGUF file's header, read without loading the model.

The `gguf` package (llama.cpp's own reader) parses every tensor and takes seconds on
SmolLM2's 93 MB file (measured: 3-6 s); this reads only the key-value header, in ~0.1 s.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
CONTROL = 3  # tokenizer.ggml.token_type of a control token (<|im_start|>, ...)
# Value types of the GGUF format: fixed-size scalars by their struct code; 8 is a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_WANTED = {"general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type"}


class NotGGUF(ValueError):
    """The file is not a GGUF model (or is cut short)."""


@dataclass(frozen=True)
class Header:
    architecture: str
    context_length: int  # the context the model was trained for, in tokens
    control_tokens: tuple[str, ...]  # the text of each control token, longest first


def read_header(path: Path) -> Header:
    """The model's architecture, trained context length and control tokens; NotGGUF if it is none."""
    try:
        with path.open("rb") as file:
            if file.read(4) != MAGIC:
                raise NotGGUF("it is not a GGUF file")
            _version, _tensors, count = struct.unpack("<IQQ", _exactly(file, 20))
            values: dict[str, object] = {}
            for _ in range(count):
                key = _string(file)
                values[key] = _value(file, struct.unpack("<I", _exactly(file, 4))[0])
                if values.keys() >= _WANTED and f"{values['general.architecture']}.context_length" in values:
                    break  # the merges and the chat template that follow are not needed
    except (struct.error, UnicodeDecodeError, KeyError, EOFError) as exc:
        raise NotGGUF(f"it is not a readable GGUF file ({exc})") from None
    architecture = str(values.get("general.architecture", ""))
    tokens = values.get("tokenizer.ggml.tokens") or []
    types = values.get("tokenizer.ggml.token_type") or []
    control = {token for token, kind in zip(tokens, types, strict=False) if kind == CONTROL and str(token).strip()}
    return Header(
        architecture,
        int(values.get(f"{architecture}.context_length") or 0),
        tuple(sorted(map(str, control), key=len, reverse=True)),
    )


def _exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside its header")
    return data


def _string(file: BinaryIO) -> str:
    (size,) = struct.unpack("<Q", _exactly(file, 8))
    return _exactly(file, size).decode("utf-8")


def _value(file: BinaryIO, kind: int) -> object:
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item, count = struct.unpack("<IQ", _exactly(file, 12))
        if item in _SCALARS:  # read all at once: token types are 49,152 numbers for SmolLM2
            code = _SCALARS[item]
            return list(struct.unpack(f"<{count}{code}", _exactly(file, count * struct.calcsize(code))))
        return [_value(file, item) for _ in range(count)]
    code = _SCALARS[kind]
    return struct.unpack(f"<{code}", _exactly(file, struct.calcsize(code)))[0]
