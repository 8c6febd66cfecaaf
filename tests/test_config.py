"""Configuration: flags, environment, presets, and misconfiguration messages."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import DEFAULT_PROVIDER, ConfigError, chat_controls, declared, load_settings, parser
from providers.local import default_gguf
from providers.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent


def test_no_key_and_no_url_means_the_embedded_model():
    settings = load_settings([], {})
    assert settings.provider == DEFAULT_PROVIDER == "local"
    assert settings.gguf_path == default_gguf()
    assert settings.gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_openai_key_selects_openai():
    settings = load_settings([], {"OPENAI_API_KEY": "sk-x"})
    assert (settings.provider, settings.base_url, settings.model) == (
        "openai",
        "https://api.openai.com/v1",
        "gpt-4o-mini",
    )


def test_openai_base_url_selects_any_compatible_server_without_a_key():
    settings = load_settings(["--model", "qwen"], {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert (settings.provider, settings.base_url, settings.model, settings.api_key) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        "qwen",
        None,
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_from_its_own_key_variable(name):
    preset = PRESETS[name]
    env = {preset.key_env: "key-123"} if preset.key_env else {}
    settings = load_settings(["--provider", name, "--model", "m"], env)
    assert (settings.base_url, settings.model, settings.key_env) == (preset.base_url, "m", preset.key_env)
    assert settings.api_key == ("key-123" if preset.key_env else None)


def test_flags_override_the_environment():
    env = {"CHAT_PROVIDER": "groq", "GROQ_API_KEY": "k", "CHAT_MODEL": "a", "CHAT_SYSTEM_PROMPT": "env prompt"}
    settings = load_settings(["--model", "b", "--system-prompt", "flag prompt", "--port", "9000"], env)
    assert (settings.provider, settings.model, settings.system_prompt, settings.port) == (
        "groq",
        "b",
        "flag prompt",
        9000,
    )


def test_model_list_comes_from_flags_or_environment():
    assert load_settings([], {"CHAT_MODELS": "a, b,,c "}).models == ("a", "b", "c")
    assert load_settings(["--models", "x"], {}).models == ("x",)


def test_base_url_overrides_a_preset():
    settings = load_settings(["--provider", "ollama", "--base-url", "http://gpu:11434/v1", "--model", "m"], {})
    assert settings.base_url == "http://gpu:11434/v1"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--provider", "nope"], {}, "Unknown provider 'nope'"),
        (["--provider", "groq"], {}, "needs an API key: set GROQ_API_KEY"),
        (["--provider", "huggingface"], {}, "set HF_TOKEN"),
        (["--provider", "vllm"], {}, "pass --model NAME"),
        ([], {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, "pass --model NAME"),
        (["--gguf", "/no/such/file.gguf"], {}, "Cannot read the GGUF file /no/such/file.gguf"),
        (["--concurrency", "0"], {}, "--concurrency must be at least 1"),
        ([], {"CHAT_TIMEOUT": "soon"}, "--timeout must be a number"),
    ],
)
def test_misconfiguration_is_one_clear_sentence(argv, env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(argv, env)


def test_the_key_is_not_in_the_settings_repr_or_startup_line():
    settings = load_settings([], {"OPENAI_API_KEY": "sk-SECRET"})
    assert "sk-SECRET" not in repr(settings)
    assert "sk-SECRET" not in settings.describe()
    assert settings.describe() == "Provider: openai | model: gpt-4o-mini | URL: https://api.openai.com/v1"


def run_app(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "nope"], "Error: Unknown provider 'nope'"),
        (["--provider", "openai"], "Error: The openai provider needs an API key: set OPENAI_API_KEY."),
        (["--gguf", "/no/such.gguf"], "Error: Cannot read the GGUF file /no/such.gguf"),
        (["--port", "x"], "Error: argument --port: --port must be a number"),
    ],
)
def test_the_app_exits_with_one_sentence_and_a_nonzero_code(args, message, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    result = run_app(*args, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1  # no traceback
    assert result.stdout == ""


def test_an_unreadable_gguf_is_refused_at_startup(tmp_path):
    fake = tmp_path / "broken.gguf"
    fake.write_bytes(b"not a model")
    result = run_app("--gguf", str(fake), env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: Cannot load {fake}: it is not a GGUF file."


def test_a_gguf_cut_short_is_refused_at_startup_in_one_sentence(tmp_path):
    whole = default_gguf().read_bytes()
    header_only = tmp_path / "header-only.gguf"  # the header reads, the weights are missing
    header_only.write_bytes(whole[: 4 * 2**20])
    cut_in_header = tmp_path / "cut.gguf"
    cut_in_header.write_bytes(whole[:5000])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for path, why in (
        (header_only, "llama.cpp could not load it as a chat model."),
        (cut_in_header, "it is not a readable GGUF file (the file ends inside its header)."),
    ):
        result = run_app("--gguf", str(path), env=env)
        assert (result.returncode, result.stderr.strip()) == (1, f"Error: Cannot load {path}: {why}")


def test_the_readme_settings_table_is_the_declarations():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| Flag | Environment | Default | Meaning |\n| --- | --- | --- | --- |\n")[1].split("\n\n")[0]
    assert table.splitlines() == [setting.readme_row() for setting in declared()]
    api = readme.split("## Using the API")[1].split("```")[0]
    assert all(f"`{control.name}`" in api for control in chat_controls())  # the API's parameters, by name


def test_help_lists_every_declared_flag_with_its_variable_and_default():
    shown = " ".join(parser({}).format_help().split())  # argparse wraps lines
    for setting in declared():
        assert setting.option in shown
        assert " ".join(setting.help_text().split()) in shown, setting.name


def test_the_sampling_settings_come_from_flags_and_variables_checked_like_the_rest():
    settings = load_settings(["--temperature", "0.2"], {"CHAT_TOP_P": "0.9", "CHAT_MAX_TOKENS": "300"})
    assert (settings.temperature, settings.top_p, settings.max_tokens) == (0.2, 0.9, 300)
    assert (load_settings([], {}).temperature, load_settings([], {}).max_tokens) == (0.7, 1024)
    for argv, env, says in [
        (["--top-p", "2"], {}, "argument --top-p: --top-p must be at most 1, not '2'"),
        ([], {"CHAT_TEMPERATURE": "hot"}, "argument --temperature: --temperature must be a number, not 'hot'"),
        (["--max-tokens", "5000"], {}, "--max-tokens (5000) must be at most --max-tokens-limit (4096)."),
    ]:
        with pytest.raises(ConfigError) as refused:
            load_settings(argv, env)
        assert str(refused.value) == says


def test_conversations_are_kept_by_default_in_the_users_data_folder_or_where_store_says(tmp_path: Path):
    data = tmp_path / "data"
    assert load_settings([], {"XDG_DATA_HOME": str(data)}).store == str(data / "streaming-chat" / "chats.db")
    on_a_space = {"XDG_DATA_HOME": str(data), "SPACE_ID": "me/chat"}  # without persistent storage (/data)
    assert load_settings([], on_a_space).store == (
        "/data/chats.db" if Path("/data").is_dir() else str(data / "streaming-chat" / "chats.db")
    )
    assert load_settings(["--store", "off"], {}).store is None
    assert load_settings(["--store", str(tmp_path / "mine.db")], {}).store == str(tmp_path / "mine.db")
    log = str(tmp_path / "log.db")
    assert load_settings(["--log-db", log], {}).store == log  # one database: the log keeps them
    for argv, says in [
        (["--log-db", log, "--store", str(tmp_path / "other.db")], "--store and --log-db name two databases"),
        (["--store", str(tmp_path / "missing" / "x.db")], f"--store the folder {tmp_path / 'missing'} does not exist"),
        (["--store", "mysql://db/x"], "--store takes a file path (SQLite) or a postgresql:// URL"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_settings(argv, {})


def test_sign_in_with_hugging_face_is_on_only_in_a_space_with_hf_oauth():
    space = {"SYSTEM": "spaces", "SPACE_ID": "me/chat"}
    assert load_settings([], space | {"OAUTH_CLIENT_ID": "an-oauth-app"}).hf_sign_in  # hf_oauth: true
    assert not load_settings([], space).hf_sign_in  # a Space without hf_oauth
    # Outside a Space, Gradio would sign everyone in as the machine's own Hugging Face account: not for us.
    assert not load_settings([], {"SPACE_ID": "me/chat", "OAUTH_CLIENT_ID": "an-oauth-app"}).hf_sign_in
