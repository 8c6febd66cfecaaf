"""Pages served as Gradio apps of their own beside the chat (the workbench's): a chat session carries only the chat."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from starlette.routing import Mount

Route = tuple[str, Callable, list[str]]  # path, endpoint, methods


@dataclass
class Page:
    """A page's app, and the plain routes under its path (a sign-in, an export)."""

    blocks: gr.Blocks
    routes: list[Route] = field(default_factory=list)
    served: Any = None  # Gradio's app serving it, once mounted


def end_heartbeats(pages: dict[str, Page]) -> None:
    """The app stops: the heartbeat streams of the pages' open tabs end (demo.close() ends the chat's), rather than
    holding the server's shutdown. On the server's event loop."""
    for page in pages.values():
        if page.served is not None:
            page.served.stop_event.set()


@contextlib.asynccontextmanager
async def mounted(app, pages: dict[str, Page], max_file_size: str, max_threads: int) -> AsyncIterator[None]:
    """Mount each page on the running chat `app` (Gradio's) at its path and start its queue, for the block.
    Inside the server's lifespan: a mounted app's queue starts on the server's event loop, and Gradio's
    own mount starts it only for an app not yet running. One login (--auth) holds on every page, and each
    page's queue has the chat's room for events at once (launch's max_threads, which mounting does not set)."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            for path, page in pages.items():
                gr.mount_gradio_app(app, page.blocks, path, max_file_size=max_file_size, ssr_mode=False)
                sub = next(r.app for r in reversed(app.router.routes) if isinstance(r, Mount) and r.path == path)
                sub.auth, sub.tokens, sub.cookie_id = app.auth, app.tokens, app.cookie_id
                page.served = sub
                for route, endpoint, methods in page.routes:
                    sub.add_api_route(route, endpoint, methods=methods, include_in_schema=False)
                await stack.enter_async_context(sub.router.lifespan_context(sub))
                page.blocks.max_threads = page.blocks._queue.max_thread_count = max_threads
                page.blocks.run_startup_events()
                await page.blocks.run_extra_startup_events()
            yield
    finally:
        for page in pages.values():
            page.blocks.close(verbose=False)
