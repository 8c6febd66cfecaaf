"""The README's recipes, followed word for word: adding a backend (in a copy of the app) and the API snippet."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from chat.service import LISTED, OPENED, SAVE_EVERY, TITLE_CHARS, UNREACHABLE
from config import ConfigError, load_settings
from providers.base import ChatBackend
from providers.registry import BACKENDS, backend_class, provider_names
from storage.logs import HEARTBEAT, SILENT, newest_schema
from testkit.fake_openai import FakeOpenAI, Reply, ToolCall
from testkit.processes import ROOT, base_env, free_port, spawn, wait_until_serving
from testkit.support import answer_text, launched, message


def readme_snippet(after: str) -> str:
    """The first ```python block after the sentence `after` in the README."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(re.escape(after) + r".*?```python\n(.*?)```", readme, re.S)
    assert found, f"the README no longer says {after!r}"
    return found.group(1)


@pytest.fixture(scope="module")
def app_with_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the app with the README's echo backend added as the README says."""
    copy = tmp_path_factory.mktemp("recipe") / "app"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".git", "tests", "bench", "docs", "__pycache__", ".*cache", ".gradio")
    )
    (copy / "providers" / "echo.py").write_text(readme_snippet("Save this as `providers/echo.py`:"))
    registry = copy / "providers" / "registry.py"
    line = readme_snippet("Then add this line to `BACKENDS` in `providers/registry.py`:")
    opening = "BACKENDS: dict[str, str] = {\n"
    assert opening in registry.read_text()
    registry.write_text(registry.read_text().replace(opening, opening + line))
    return copy


def test_the_readme_backend_passes_the_check(app_with_echo: Path):
    result = subprocess.run(
        [sys.executable, "app.py", "--provider", "echo", "--check"],
        cwd=app_with_echo, env=base_env(free_port()), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Checking echo (in this process), model echo:" in output
    assert "✓ Loaded: echo, in this process, in " in output and "✓ Streaming: " in output
    assert "None" not in output


def test_the_readme_backend_chats_through_the_api(app_with_echo: Path):
    port = free_port()
    proc, lines = spawn(base_env(port), "--provider", "echo", cwd=app_with_echo)
    seen: list[str] = []
    try:
        wait_until_serving(proc, lines, seen)
        assert "Provider: echo | model: echo | runs in this process\n" in seen
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        reply = client.predict(message("hello brave new world"), api_name="/chat")
        assert answer_text(reply).strip() == "hello brave new world"
        stats = [m["metadata"]["log"] for m in reply if (m.get("metadata") or {}).get("title") == "Stats"]
        assert stats and "finish: stop" in stats[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config") as page:
            config = page.read().decode()
        assert "Runs in this process." in config  # the model picker says where the model runs
        assert "None" not in config
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "None" not in "".join(seen) and "Traceback" not in "".join(seen)


def test_every_registered_backend_imports_and_is_a_chat_backend():
    for name in BACKENDS:
        assert issubclass(backend_class(name), ChatBackend)
    assert provider_names()[:1] == ["local"] and "openai" in provider_names()


def test_an_unknown_provider_lists_every_choice():
    with pytest.raises(ConfigError) as error:
        load_settings(["--provider", "nope"], {})
    assert str(error.value) == f"Unknown provider 'nope': choose one of {', '.join(provider_names())}."


def test_a_remote_backend_without_a_preset_needs_a_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(BACKENDS, "custom", "providers.openai_compatible:OpenAICompatible")
    with pytest.raises(ConfigError, match=r"Say where the custom provider is: pass --base-url URL\."):
        load_settings(["--provider", "custom"], {})
    settings = load_settings(["--provider", "custom", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], {})
    assert (settings.base_url, settings.api_key, settings.model) == ("http://127.0.0.1:9/v1", None, "m")


def test_the_readme_api_snippet_runs_as_written_against_the_quick_starts_app(tmp_path: Path):
    """Only the address changes; the app is the Quick start's: `python app.py`, the embedded model."""
    snippet = readme_snippet("This runs as it is against the app the Quick start starts:")
    with launched(load_settings(["--rate-limit", "0", "--rate-limit-ip", "0"], {})) as url:
        (tmp_path / "snippet.py").write_text(snippet.replace("http://127.0.0.1:7860/", url))
        result = subprocess.run(
            [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.replace("Loaded as API:", "")
    assert re.search(r"\d\.\d\d s to first token · .* · finish: (stop|length)\n", printed)  # the first reply's stats
    streamed = [line for line in printed.splitlines() if line.strip()]
    assert len(streamed) >= 3  # the first answer and its stats, then the second reply as it streamed


def test_a_model_not_offered_is_one_sentence_for_the_client_and_no_traceback_in_the_console(server: FakeOpenAI):
    port = free_port()
    env = base_env(port) | {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}
    proc, lines = spawn(env, "--model", "fake-model")
    output: list[str] = []
    try:
        wait_until_serving(proc, lines, output)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        refused = "The model gpt-4o-mini is not offered here: choose one of fake-model, fake-model-2."
        with pytest.raises(AppError, match=re.escape(refused)):
            client.predict(message=message("hi"), model="gpt-4o-mini", api_name="/chat")
        assert server.chat_requests == []  # nothing reached the provider
        assert answer_text(client.predict(message=message("hi"), api_name="/chat")) == "Echo: hi"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    time.sleep(0.2)  # the reader thread hands over the last lines
    while not lines.empty():
        output.append(lines.get())
    assert "Traceback" not in "".join(output), "".join(output)


def copy_of_the_app(where: Path) -> Path:
    copy = where / "app"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".git", "tests", "bench", "docs", "__pycache__", ".*cache", ".gradio")
    )
    return copy


@contextlib.contextmanager
def serving(copy: Path, *flags: str, provider: FakeOpenAI | None = None) -> Iterator[tuple[str, list[str]]]:
    """The copied app started as a user would, against `provider` or the embedded model; yields its URL and
    the lines it printed until it served."""
    port = free_port()
    remote = {"OPENAI_API_KEY": "sk-recipe", "OPENAI_BASE_URL": provider.base_url} if provider else {}
    proc, lines = spawn(base_env(port) | remote, *(("--model", "fake-model") if provider else ()), *flags, cwd=copy)
    seen: list[str] = []
    try:
        wait_until_serving(proc, lines, seen)
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_readme_python_tool_recipe_is_offered_and_called(tmp_path: Path, fake_server: FakeOpenAI):
    """The README's word_count added as it says, in a copy of the app; a model calls it in a chat."""
    copy = copy_of_the_app(tmp_path)
    tools_file = copy / "tools" / "python_tools.py"
    snippet = readme_snippet("at the end of `tools/python_tools.py`:")
    tools_file.write_text(tools_file.read_text() + "\n\n" + snippet)
    fake_server.enqueue(
        Reply(text="", tool_calls=[ToolCall("word_count", '{"text": "one two three"}', "w")]),
        Reply(text="Three."),
    )
    with serving(copy, "--tools", "word_count", provider=fake_server) as (url, seen):
        assert "  ✓ MCP server python: word_count\n" in seen
        reply = Client(url, verbose=False).predict(message("Count them"), api_name="/chat")
    [step] = [m for m in reply if (m.get("metadata") or {}).get("title", "").startswith("Tool: word_count")]
    assert "3 words" in step["content"] and answer_text(reply) == "Three."
    # As the Quick start runs it, with the embedded model: listed, and the model said to take no tools.
    check = subprocess.run(
        [sys.executable, "app.py", "--tools", "word_count", "--check"], cwd=copy, env=base_env(free_port()),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "✓ MCP server python: word_count" in check.stdout


def insert(path: Path, snippet: str, *, before: str = "", after: str = "") -> None:
    text = path.read_text()
    mark = before or after
    assert text.count(mark) == 1, f"{path.name} no longer has exactly one {mark!r}"
    path.write_text(text.replace(mark, snippet + mark if before else mark + snippet))


def test_the_readme_setting_recipe_gives_a_flag_a_slider_and_an_api_parameter(tmp_path: Path, fake_server: FakeOpenAI):
    """The README's presence penalty added as it says: its three snippets, nothing else."""
    copy = copy_of_the_app(tmp_path)
    insert(copy / "config.py", readme_snippet("Declare it in `Settings`, right before `gguf_path`:"),
           before="    gguf_path: Annotated[")  # fmt: skip
    insert(copy / "core" / "events.py", readme_snippet("(`core/events.py`), right before `model`:"),
           before="    model: str | None = None")  # fmt: skip
    insert(copy / "providers" / "openai_compatible.py", readme_snippet("after `top_p=params.top_p,`:"),
           after="            top_p=params.top_p,\n")  # fmt: skip
    with serving(copy, "--presence-penalty", "0.5", provider=fake_server) as (url, _):
        client = Client(url, verbose=False)
        client.predict(message={"text": "an existing caller", "files": []}, temperature=0.1, api_name="/chat")
        client.predict(message={"text": "a new one", "files": []}, presence_penalty=-1.0, api_name="/chat")
        with urllib.request.urlopen(url + "config") as page:
            config = page.read().decode()
    first, second = (request.body for request in fake_server.chat_requests[-2:])
    assert (first["presence_penalty"], first["temperature"]) == (0.5, 0.1)
    assert second["presence_penalty"] == -1.0
    [slider] = [c["props"] for c in json.loads(config)["components"] if c["props"].get("label") == "Presence penalty"]
    assert (slider["minimum"], slider["maximum"], slider["value"]) == (-2, 2, 0.5)  # in Model settings, at the flag
    help_text = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=copy, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    assert "--presence-penalty" in help_text and "CHAT_PRESENCE_PENALTY" in help_text
    # As the Quick start runs it, with the embedded model: llama.cpp's server takes the new parameter.
    with serving(copy, "--presence-penalty", "0.5") as (url, _):
        asked = message("Write a long story about the sea.")  # longer than 8 tokens, however it is sampled
        reply = Client(url, verbose=False).predict(asked, max_tokens=8, api_name="/chat")
    [stats] = [m["metadata"]["log"] for m in reply if (m.get("metadata") or {}).get("title") == "Stats"]
    assert "finish: length" in stats  # it answered, up to the 8 tokens asked for: not an error


def test_the_readmes_migration_command_writes_a_revision_the_log_is_migrated_to(tmp_path: Path):
    """The README's command for a schema change, run in a copy of the app; the log then opens at it."""
    copy = copy_of_the_app(tmp_path)
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"this writes it from the template, to fill in:\n\s*`(python -c [^`]*)`", readme)
    assert found, "the README no longer gives the migration command"
    newest = newest_schema()
    following = f"{int(newest) + 1:04d}"
    assert f"rev_id='{following}'" in found.group(1), "the README's command names the next revision"
    command = shlex.split(found.group(1))
    subprocess.run([sys.executable, *command[1:]], cwd=copy, check=True, capture_output=True, timeout=60)
    [written] = (copy / "storage" / "migrations" / "versions").glob(f"{following}_*.py")
    assert f"down_revision = '{newest}'" in written.read_text()
    probe = (
        "import sys; from storage.logs import LogStore, database_url, newest_schema; "
        "store = LogStore(database_url(sys.argv[1])).open(); print(store.problem, newest_schema()); store.close()"
    )
    opened = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "chats.db")], cwd=copy, capture_output=True, text=True, timeout=60
    )
    assert opened.stdout.split() == ["None", following], opened.stderr


def test_the_readmes_figures_for_kept_conversations_are_the_apps():
    """What the README says of the list, a long conversation, a title, the saves and an unreachable store,
    against chat.service."""
    readme = " ".join((ROOT / "README.md").read_text().split())  # its lines joined: a phrase may wrap
    for phrase in (
        f"the newest {LISTED}, and **Show more** lists {LISTED} more",
        f"a long one opens with its newest {OPENED} messages",
        f"its first message's first {TITLE_CHARS} characters",
        f"saved every {SAVE_EVERY:g} s as it streams",
        f'the sidebar says "{UNREACHABLE}"',
        f"partial text (saved every {SAVE_EVERY:g} s) and Retry, once that replica has been silent for {SILENT:g} s",
        f"Each replica says it is alive every {HEARTBEAT:g} s in the database",
    ):
        assert phrase in readme, phrase
