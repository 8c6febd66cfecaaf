"""Measure our app next to the plain openai SDK and gr.load_chat, in one run, against the
same loopback OpenAI-compatible server, and write bench/RESULTS.md.

    python -m bench            # every scenario, 5 runs each (35-45 minutes on 2 cores)
    python -m bench --quick    # 1 run of small sizes: checks that the benchmark works

Every app runs as its own process, as does the loopback server; the client is
gradio_client, as a user's program would be, except in the capacity scenario, whose
hundreds of users speak Gradio's queue protocol, each through a minimal asyncio client of their own.
Figures are medians with min-max.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.common import OUR_SETTINGS, ROOT, App, Report, process
from bench.scenarios.browser import browser_render
from bench.scenarios.capacity import capacity
from bench.scenarios.conversations import conversation_list
from bench.scenarios.log_cost import logging_cost
from bench.scenarios.memory import memory
from bench.scenarios.model import embedded_model
from bench.scenarios.relay import relay_and_first_token
from bench.scenarios.replicas import replicas
from bench.scenarios.resume import resume
from bench.scenarios.stop import stop
from bench.scenarios.store_cost import store_cost
from bench.scenarios.tools import tool_steps
from bench.scenarios.tracing_cost import tracing_cost
from bench.scenarios.users import many_users
from chat.service import LISTED
from testkit.processes import PostgresMissing, free_port, postgres_server


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("gradio", "gradio-client", "openai", "xllamacpp", "playwright")
    )
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB; Python {platform.python_version()}; {versions}"


SCENARIOS = (  # what --only picks from; all by default
    "relay",
    "users",
    "stop",
    "memory",
    "browser",
    "model",
    "capacity",
    "tools",
    "logging",
    "resume",
    "store",
    "conversations",
    "tracing",
    "replicas",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 run of small sizes, to check the benchmark works")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run (default: all)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that every process block's cleanup runs
    runs = 1 if args.quick else args.runs
    only = set(args.only.split(","))
    sizes = (
        dict(
            relay=100,
            users=[4],
            peer_users=2,
            user_tokens=20,
            model_tokens=48,
            model_users=[2],
            browser=200,
            capacity=[4],
            steps=2,
            resume=4,
            conversations=(LISTED + 10, 30),  # more than a list shows, longer than one opens
            replicas=[4],
            hop=4,
        )
        if args.quick
        else dict(
            relay=1000,
            users=[16, 32],
            peer_users=16,
            user_tokens=200,
            model_tokens=200,
            model_users=[4, 8],
            browser=4000,
            capacity=[32, 64, 128, 256],
            steps=3,
            resume=32,
            conversations=(1000, 200),
            replicas=[64, 128, 256],
            hop=32,
        )
    )
    command = "python -m bench" + (" --quick" if args.quick else f" --runs {runs}" if runs != 5 else "")
    command += f" --only {args.only}" if only != set(parser.get_default("only").split(",")) else ""
    report = Report()
    started = time.monotonic()

    ports = [free_port() for _ in range(13)]
    server_port, ours_port, echo_port, peer_port, local_port, relay_port, wide_port, tools_port, log_port = ports[:9]
    store_off_port, receiver_port, traced_port, relay_two_port = ports[9:]
    server_url = f"http://127.0.0.1:{server_port}/v1"
    # Every simulated user comes from 127.0.0.1, so the rate limits (public-demo guards) are off.
    no_limits = {"CHAT_RATE_LIMIT": "0", "CHAT_RATE_LIMIT_IP": "0"}
    remote_env = {
        "OPENAI_BASE_URL": server_url,
        "OPENAI_API_KEY": "bench-key",
        "CHAT_MODEL": "bench-model",
        **no_limits,
    }
    with (
        process(["-m", "testkit.fake_openai", "--port", str(server_port)], server_port),
        process(["app.py", "--port", str(ours_port)], ours_port, remote_env) as ours_proc,
        process(["-m", "bench.apps", "echo", "--port", str(echo_port)], echo_port) as echo_proc,
        process(
            ["-m", "bench.apps", "load_chat", "--port", str(peer_port), "--base-url", server_url], peer_port
        ) as peer_proc,
    ):
        apps = {
            "ours": App(f"http://127.0.0.1:{ours_port}/", pid=ours_proc.pid, settings=OUR_SETTINGS),
            "echo": App(f"http://127.0.0.1:{echo_port}/", multimodal=False, pid=echo_proc.pid),
            "gr.load_chat": App(f"http://127.0.0.1:{peer_port}/", "/open_api_stream", pid=peer_proc.pid),
        }
        for app in apps.values():
            app.client = app.new_client()
        if "relay" in only:
            relay_and_first_token(report, apps, server_url, runs, sizes["relay"])
        if "users" in only:
            many_users(report, apps, runs, sizes["users"], sizes["user_tokens"], sizes["peer_users"])
        if "stop" in only:
            stop(report, apps, server_url, runs)
        if "memory" in only:
            memory(report, apps, max(sizes["users"]), sizes["user_tokens"])
        if "browser" in only:
            browser_render(report, apps["ours"], server_url, runs, sizes["browser"])
        if "capacity" in only:
            most = max(sizes["capacity"])
            wide_env = {**remote_env, "CHAT_CONCURRENCY": str(most), "CHAT_QUEUE_SIZE": str(2 * most)}
            with (
                process(["app.py", "--port", str(wide_port)], wide_port, wide_env) as wide_proc,
                process(
                    ["-m", "bench.apps", "relay", "--port", str(relay_port), "--base-url", server_url], relay_port
                ) as relay_proc,
            ):
                apps["capacity"] = App(f"http://127.0.0.1:{wide_port}/", pid=wide_proc.pid, settings=OUR_SETTINGS)
                apps["relay"] = App(
                    f"http://127.0.0.1:{relay_port}/", multimodal=False, pid=relay_proc.pid, plain_relay=True
                )
                capacity(report, apps, server_url, runs, sizes["capacity"], sizes["user_tokens"])
        if "resume" in only:
            resume(report, apps["ours"], server_url, runs, sizes["resume"])
        if "tools" in only:
            with tempfile.TemporaryDirectory(prefix="bench-mcp-") as folder:
                times = Path(folder) / "times"
                mcp_file = Path(folder) / "mcp.json"
                test_server = {"command": sys.executable, "args": ["-m", "testkit.mcp_tools_server"], "cwd": str(ROOT)}
                mcp_file.write_text(
                    json.dumps({"mcpServers": {"test": {**test_server, "env": {"MCP_TEST_TIMES": str(times)}}}})
                )
                with process(
                    ["app.py", "--port", str(tools_port), "--mcp", str(mcp_file)], tools_port, remote_env
                ) as proc:
                    tools_app = App(f"http://127.0.0.1:{tools_port}/", pid=proc.pid, settings=OUR_SETTINGS)
                    tools_app.client = tools_app.new_client()
                    tool_steps(report, tools_app, server_url, times, runs, sizes["steps"])
        if "logging" in only:
            with tempfile.TemporaryDirectory(prefix="bench-log-") as folder:
                log_db = Path(folder) / "chats.db"
                log_env = {**remote_env, "CHAT_LOG_DB": str(log_db)}
                with process(["app.py", "--port", str(log_port)], log_port, log_env) as proc:
                    logged = App(f"http://127.0.0.1:{log_port}/", pid=proc.pid, settings=OUR_SETTINGS)
                    logged.client = logged.new_client()
                    users = min(sizes["users"][-1], 32)
                    logging_cost(report, apps["ours"], logged, log_db, runs, users, sizes["user_tokens"])
        if "store" in only:
            with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
                store_db = Path(folder) / "chats.db"
                on_env, off_env = {**remote_env, "CHAT_STORE": str(store_db)}, {**remote_env, "CHAT_STORE": "off"}
                with (
                    process(["app.py", "--port", str(log_port)], log_port, on_env) as on_proc,
                    process(["app.py", "--port", str(store_off_port)], store_off_port, off_env) as off_proc,
                ):
                    on = App(f"http://127.0.0.1:{log_port}/", pid=on_proc.pid, settings=OUR_SETTINGS)
                    off = App(f"http://127.0.0.1:{store_off_port}/", pid=off_proc.pid, settings=OUR_SETTINGS)
                    users = min(sizes["users"][-1], 32)
                    store_cost(report, on, off, store_db, runs, users, sizes["user_tokens"])
        if "conversations" in only:
            with tempfile.TemporaryDirectory(prefix="bench-list-") as folder:
                store_db = Path(folder) / "chats.db"
                with process(
                    ["app.py", "--port", str(log_port)], log_port, {**remote_env, "CHAT_STORE": str(store_db)}
                ) as proc:
                    kept = App(f"http://127.0.0.1:{log_port}/", pid=proc.pid, settings=OUR_SETTINGS)
                    conversation_list(report, kept, store_db, runs, *sizes["conversations"])
        if "tracing" in only:
            traced_env = {**remote_env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
            with (
                process(["-m", "testkit.otlp_receiver", "--port", str(receiver_port)], receiver_port),
                process(["app.py", "--port", str(traced_port)], traced_port, traced_env) as on_proc,
                process(["app.py", "--port", str(log_port)], log_port, remote_env) as off_proc,
            ):
                on = App(f"http://127.0.0.1:{traced_port}/", pid=on_proc.pid, settings=OUR_SETTINGS)
                off = App(f"http://127.0.0.1:{log_port}/", pid=off_proc.pid, settings=OUR_SETTINGS)
                receiver = traced_env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                tracing_cost(report, on, off, receiver, runs, min(sizes["users"][-1], 32), sizes["user_tokens"])
        if "replicas" in only:
            relay_args = ["-m", "bench.apps", "relay", "--port", str(relay_two_port), "--base-url", server_url]
            try:
                with postgres_server() as store, process(relay_args, relay_two_port) as relay_proc:
                    relay = App(
                        f"http://127.0.0.1:{relay_two_port}/", multimodal=False, pid=relay_proc.pid, plain_relay=True
                    )
                    levels, hop, tokens = sizes["replicas"], sizes["hop"], sizes["user_tokens"]
                    replicas(report, store, remote_env, relay, runs, levels, hop, tokens)
            except PostgresMissing as exc:
                report.add("15. Replicas", f"Not measured: {exc}.")
    if "model" in only:
        with process(
            ["app.py", "--provider", "local", "--port", str(local_port)], local_port, remote_env
        ) as local_proc:
            local = App(f"http://127.0.0.1:{local_port}/", pid=local_proc.pid)
            local.client = local.new_client()
            embedded_model(report, local, runs, sizes["model_tokens"], sizes["model_users"])

    elapsed = time.monotonic() - started
    header = (
        f"# Benchmark results\n\nMeasured {date.today().isoformat()} with `{command}` "
        f"({runs} run{'s' if runs > 1 else ''} per figure after a warm-up, {elapsed / 60:.1f} minutes in all).\n\n"
        f"Machine: {machine()}.\n\n"
        "Every app and the loopback OpenAI-compatible server (`testkit/fake_openai.py`) run as separate processes on "
        "this machine; the client is `gradio_client`; our app's rate limits are off, since every simulated user "
        "comes from one address. Figures are medians, with min-max in brackets. Ratios "
        "compare figures from this same run; absolute times are context.\n\n"
        "Reproduce: `bash tests/install.sh && python -m bench` (Debian's `chromium` for scenario 7; "
        "`pip install llama-cpp-python` too for scenario 4's old path).\n"
    )
    sections = sorted(report.sections, key=lambda text: int(text.split(".")[0].removeprefix("## ")))
    args.output.write_text(header + "\n" + "\n".join(sections))
    print(f"\nWrote {args.output} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
