"""Files attached to a message: images go to the model as image_url parts, text files inline."""

from __future__ import annotations

import base64
import mimetypes
import os
import tempfile
from pathlib import Path

from core.errors import UnreadableAttachment

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # providers refuse larger images (OpenAI: 20 MB, others less)
MAX_TEXT_BYTES = 1024 * 1024


def is_image(path: str) -> bool:
    return mimetypes.guess_type(path)[0] in IMAGE_TYPES


def upload_folder() -> Path:
    """Where Gradio puts the files users attach: gradio.utils.get_upload_folder()'s rule, which a test
    holds this to (the core does not import gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def is_uploaded(path: str) -> bool:
    """Whether the path is inside Gradio's upload folder, where the files users attach go."""
    return Path(path).resolve().is_relative_to(upload_folder())


def read_part(path: str) -> dict:
    """An OpenAI content part for the file at `path`: image_url for an image, text otherwise.

    Only files uploaded to this app are read: a client can put any path in a
    history it sends, and /etc/passwd must not reach the model.
    """
    file = Path(path).resolve()
    name = file.name
    if not is_uploaded(path) or not file.is_file():
        raise UnreadableAttachment(name, "it is not a file uploaded to this app")
    size = file.stat().st_size
    if (mime := mimetypes.guess_type(path)[0]) in IMAGE_TYPES:
        if size > MAX_IMAGE_BYTES:
            raise UnreadableAttachment(name, f"images may be up to {MAX_IMAGE_BYTES // 2**20} MB")
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if size > MAX_TEXT_BYTES:
        raise UnreadableAttachment(name, f"text files may be up to {MAX_TEXT_BYTES // 2**20} MB")
    try:
        text = file.read_text("utf-8")
    except UnicodeDecodeError:
        raise UnreadableAttachment(name, "it is neither an image (PNG, JPEG, GIF, WebP) nor UTF-8 text") from None
    return {"type": "text", "text": f"{name}:\n```\n{text}\n```"}
