"""A TCP relay on loopback that a test can cut, as a phone losing its network cuts a page's connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttingProxy:
    """Relays 127.0.0.1:<its port> to 127.0.0.1:`target`. cut() ends every connection and refuses new ones
    (each is closed as it arrives) until restore(). Use it as a context manager: it stops at the end."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_forever, name="cutting-proxy", daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None):
        self._stopped = True
        self._listener.close()
        self._close_all()
        self._thread.join(timeout=5)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
        self._close_all()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def _close_all(self) -> None:
        with self._lock:
            live, self._open = self._open, set()
        for sock in live:
            _end(sock)

    def _accept_forever(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed: the proxy stops
            with self._lock:
                refused = self._cut
            if refused:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side ended: so does the other
            with self._lock:
                self._open -= {source, sink}
            _end(source)
            _end(sink)


def _end(sock: socket.socket) -> None:
    """Close a connection at once, whichever way it is (shutdown wakes a thread blocked reading it)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
