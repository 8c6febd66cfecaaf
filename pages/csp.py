"""The Content-Security-Policy every response carries: what a reply's HTML can make the reader's browser do.

Replies are untrusted text. Gradio's sanitizer removes scripts and handlers but keeps images, forms
and links; this policy (a response header, so it covers every page and file) keeps them inside the app.
"""

from __future__ import annotations

from collections.abc import Sequence


def policy(frame_ancestors: Sequence[str]) -> str:
    """The policy: media only from the app (a remote image would tell its host the reply was read), forms
    and pings only to the app, no plugins, no <base> redirecting links, framed only by `frame_ancestors`."""
    return "; ".join(
        [
            "img-src 'self' data: blob:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",  # also <a ping>
            "form-action 'self'",
            "base-uri 'self'",
            "object-src 'none'",
            f"frame-ancestors {' '.join(frame_ancestors)}",
        ]
    )


class ContentSecurityPolicy:
    """ASGI middleware that adds the policy to every HTTP response."""

    def __init__(self, app, value: str) -> None:
        self.app = app
        self.header = (b"content-security-policy", value.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_policy(message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"content-security-policy"]
                message = {**message, "headers": [*headers, self.header]}
            await send(message)

        await self.app(scope, receive, with_policy)
