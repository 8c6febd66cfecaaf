"""The AI SDK's own client, run by Node from tests/js: a useChat request as its transport sends it."""

from __future__ import annotations

import json
import shutil
import subprocess

from testkit.processes import ROOT
from testkit.support import missing

JS = ROOT / "tests" / "js"  # package.json pins the AI SDK; tests/install.sh runs npm ci there
CLIENT = JS / "chat_client.mjs"


def node_ready() -> None:
    if not shutil.which("node"):
        missing("no node: `apt-get install -y nodejs npm` to run the useChat tests")
    if not (JS / "node_modules" / "ai").is_dir():
        missing("the AI SDK is not installed: `bash tests/install.sh` (npm ci in tests/js)")


def use_chat(url: str, messages: list[dict], **request) -> dict:
    """One useChat request through the AI SDK's transport: the chunks, the message they build, the error."""
    node_ready()
    asked = {"api": url + "api/chat", "messages": messages, **request}
    if request.get("protocol") == "text":
        asked["api"] += "?protocol=text"
    done = subprocess.run(["node", str(CLIENT), json.dumps(asked)], capture_output=True, text=True, timeout=60, cwd=JS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
