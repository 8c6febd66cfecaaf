"""Files handed to the browser (chat exports): a private folder in Gradio's cache, deleted soon after."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from gradio.utils import get_upload_folder

EXPORT_SECONDS = 600  # long enough to click the file, short enough not to keep conversations on disk


def private_folder(prefix: str, *, seconds: float = EXPORT_SECONDS) -> Path:
    """A new folder only the app's user can open (0700), removed after `seconds`. It is inside Gradio's
    cache, so Gradio serves its files as they are instead of copying them to a folder others can read."""
    root = Path(get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))  # mkdtemp: mode 0700
    timer = threading.Timer(seconds, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True})
    timer.daemon = True  # an app that stops sooner leaves it to Gradio's cache cleanup
    timer.start()
    return folder
