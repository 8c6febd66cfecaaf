"""The --mcp file: MCP servers in the `mcpServers` format of Claude Desktop, Cursor and VS Code."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ServerSpec:
    """One MCP server: a command run over stdio, a streamable-HTTP URL, or a server object in this process."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    approve: bool = False  # each call waits for the user's Run or Skip
    secrets: tuple[str, ...] = field(default=(), repr=False)  # values of env and headers: never shown
    in_process: object | None = field(default=None, repr=False, compare=False)  # an SDK server (Python tools)

    @property
    def where(self) -> str:
        if self.in_process is not None:
            return "in this process"
        return self.url or " ".join((self.command or "", *self.args)).strip()


def load_servers(path: Path, environ: Mapping[str, str]) -> tuple[ServerSpec, ...]:
    """The servers in an mcpServers file, ${VAR} taken from `environ`; ValueError with one sentence."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    servers = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(servers, dict):
        raise ValueError(f'{path} needs an object "mcpServers": {{"name": {{"command": ...}} or {{"url": ...}}}}')
    return tuple(_server(str(name), entry, path, environ) for name, entry in servers.items())


def _server(name: str, entry: object, path: Path, environ: Mapping[str, str]) -> ServerSpec:
    where = f"{path}, server {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: each server is an object with a command or a url")
    secrets: list[str] = []

    def expand(text: object, what: str, secret: bool = False) -> str:
        if not isinstance(text, str):
            raise ValueError(f"{where}: {what} must be a string")

        def value(match: re.Match) -> str:
            if match[1] not in environ:
                raise ValueError(f"{where}: {what} uses ${{{match[1]}}}, which is not set in the environment")
            if secret and environ[match[1]]:
                secrets.append(environ[match[1]])
            return environ[match[1]]

        expanded = VARIABLE.sub(value, text)
        if secret and expanded:
            secrets.append(expanded)
        return expanded

    def mapping(key: str) -> dict[str, str]:
        raw = entry.get(key) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: {key} must be an object of strings")
        return {str(k): expand(v, f"{key}.{k}", secret=True) for k, v in raw.items()}

    command, url = entry.get("command"), entry.get("url")
    if bool(command) == bool(url):
        raise ValueError(f"{where}: give either a command (stdio) or a url (streamable HTTP)")
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise ValueError(f"{where}: args must be a list of strings")
    approve = entry.get("approve", False)
    if not isinstance(approve, bool):
        raise ValueError(f"{where}: approve must be true or false")
    if url:
        url = expand(url, "url")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: url must start with http:// or https://")
        return ServerSpec(name, url=url, headers=mapping("headers"), approve=approve, secrets=tuple(secrets))
    cwd = entry.get("cwd")
    return ServerSpec(
        name,
        command=expand(command, "command"),
        args=tuple(expand(arg, "args") for arg in args),
        env=mapping("env"),
        cwd=expand(cwd, "cwd") if cwd else None,
        approve=approve,
        secrets=tuple(secrets),
    )
