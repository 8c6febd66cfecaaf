"""Replicas of the app behind nginx, on one database: one command starts them all and keeps them running.

    python deploy/replicas.py --replicas 2 --store postgresql://chat@localhost/chats [any app flags]

Each replica is `python app.py --host 127.0.0.1 --port PORT --store URL [the app flags]`, on the ports after
--port; nginx listens on --host:--port and sends each visitor to one of them (deploy/nginx.conf). A replica that
stops is started again; Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = Path(__file__).with_name("nginx.conf")
NGINX_MISSING = "nginx is not installed: apt-get install nginx (Debian's package), then run this again."


def nginx_conf(listen: str, ports: list[int], folder: Path) -> str:
    """deploy/nginx.conf for these replica ports, with its logs and temporary files in `folder`. Each replica is
    also an upstream of its own, named in the chat_replica cookie by its place (r1, r2, ...), not its address."""
    names = {port: f"r{place}" for place, port in enumerate(ports, start=1)}
    places = {
        "@LISTEN@": listen,
        "@FOLDER@": str(folder),
        "@REPLICAS@": "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in ports),
        "@PINNED@": "\n".join(f"        {name} replica_{name};" for name in names.values()),
        "@ANSWERED@": "\n".join(rf'        "~(^|\s)127\.0\.0\.1:{port}$" {name};' for port, name in names.items()),
        "@UPSTREAMS@": "\n".join(
            f"    upstream replica_{name} {{\n        server 127.0.0.1:{port} max_fails=0;\n"
            f"        keepalive 32;\n        keepalive_timeout 4s;\n    }}"
            for port, name in names.items()
        ),
    }
    conf = CONF.read_text()
    for place, text in places.items():
        conf = conf.replace(place, text)
    return conf


def start_replica(port: int, store: str, app_flags: list[str]) -> subprocess.Popen:
    command = [sys.executable, "app.py", *app_flags, "--host", "127.0.0.1", "--port", str(port), "--store", store]
    replica = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)
    print(f"Replica on 127.0.0.1:{port} started (pid {replica.pid}).", flush=True)
    return replica


def serving(port: int, timeout: float = 120.0, process: subprocess.Popen | None = None) -> bool:
    """Whether the app on `port` answers within `timeout` s; False at once if `process` (the app) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Other flags go to every replica.")
    parser.add_argument("--replicas", type=int, default=os.cpu_count() or 2, help="app processes (default: one a core)")
    parser.add_argument("--host", default="127.0.0.1", help="where nginx listens (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="nginx's port; the replicas take the next ones")
    parser.add_argument("--store", required=True, help="the database every replica keeps conversations in")
    parser.add_argument("--folder", type=Path, help="nginx's config, logs and temporary files (default: a new one)")
    args, app_flags = parser.parse_known_args(argv)
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")  # Debian's is in /usr/sbin
    if nginx is None:
        print(NGINX_MISSING, file=sys.stderr)
        return 1
    folder = args.folder or Path(tempfile.mkdtemp(prefix="chat-nginx-"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # nginx's workers (another user, when it runs as root) write their temporary files here
    ports = [args.port + i for i in range(1, args.replicas + 1)]
    (folder / "nginx.conf").write_text(nginx_conf(f"{args.host}:{args.port}", ports, folder))

    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    replicas = {port: start_replica(port, args.store, app_flags) for port in ports}
    command = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
    proxy = subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL)
    try:
        started = all(serving(port, process=replicas[port]) for port in ports)
        if stopping:  # Ctrl-C while they started
            return 0
        if not started:
            print("A replica did not start: its output above says why.", file=sys.stderr)
            return 1
        print(f"Serving {len(ports)} replicas behind nginx at http://{args.host}:{args.port}/", flush=True)
        while not stopping:
            if proxy.poll() is not None:
                print(f"nginx stopped (exit {proxy.returncode}): see {folder / 'error.log'}", file=sys.stderr)
                return 1
            for port, replica in replicas.items():
                if replica.poll() is not None and not stopping:
                    print(f"Replica on 127.0.0.1:{port} stopped (exit {replica.returncode}).", flush=True)
                    replicas[port] = start_replica(port, args.store, app_flags)
            time.sleep(0.5)
        return 0
    finally:
        for process in (proxy, *replicas.values()):
            if process.poll() is None:
                process.terminate()
        for process in (proxy, *replicas.values()):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
