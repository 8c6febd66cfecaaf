"""The /review page: the logged conversations, filtered, opened read-only, exported as JSONL; behind its own login."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import gradio as gr
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config import Network
from core.turn import fenced, pretty
from pages.mounted import Route
from pages.proxies import client_address
from pages.refusals import refuse
from pages.signin import COOKIE, SignIns
from storage.logs import LogStore, turn_lines, vote_lines

ANY_MODEL = "Any model"
RATINGS = {1: "thumbs up", -1: "thumbs down", None: ""}
VERDICTS = {"a": "A is better", "b": "B is better", "tie": "Tie"}


def _date(text: str, label: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise refuse(f"{label} is a date like 2026-11-24, not {text.strip()!r}.") from None


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _short(text: str, length: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def conversation_messages(turns: list[dict]) -> list[dict]:
    """Logged turns as Chatbot messages: each message, its tool steps and thinking folded, its reply."""
    shown: list[dict] = []
    for turn in turns:
        files = f" (attached: {', '.join(turn['attachments'])})" if turn["attachments"] else ""
        shown.append({"role": "user", "content": turn["message"] + files})
        if turn["thinking"]:
            shown.append({"role": "assistant", "content": turn["thinking"], "metadata": {"title": "Thinking"}})
        for step in turn["tool_steps"] or []:
            # As text, as the chat shows them: a tool's output may hold HTML (a <form>, say) the page must not render.
            content = f"Arguments:\n{fenced(pretty(step['arguments']), 'json')}\n\nResult:\n{fenced(step['result'])}"
            metadata = {"title": f"Tool: {step['name']}", "log": step["status"], "status": "done"}
            shown.append({"role": "assistant", "content": content, "metadata": metadata})
        reply = turn["reply"] + (f"\n\n⚠️ {turn['notice']}" if turn["notice"] else "")
        shown.append({"role": "assistant", "content": reply or f"({turn['status']}, no text)"})
        about = f"{turn['model']} · {turn['status']} · {RATINGS[turn['feedback']] or 'not rated'}"
        if turn["comment"]:
            about += f" · “{turn['comment']}”"
        if stats := (turn["telemetry"] or {}).get("stats"):
            about += f" · {stats}"
        shown.append({"role": "assistant", "content": "", "metadata": {"title": "Logged", "log": about}})
    return shown


LOCKED = "Log in to review conversations."
UNREACHABLE = "The conversation log cannot be read now: its database is unreachable. Try again soon."


def reading(handler: Callable) -> Callable:
    """A handler that reads the log: a database that cannot be reached is one sentence, not a blank error."""

    @functools.wraps(handler)
    def read(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except sa.exc.SQLAlchemyError:
            raise refuse(UNREACHABLE) from None

    return read


# The sign-in and the exports go to the app's own routes, not through Gradio's queue: the password never
# enters a Gradio event, and an export is handed only to a request carrying a reviewer's cookie.
_HERE = 'const here = location.pathname.replace(/\\/+$/, "");'
SIGN_IN_JS = f"""async (user, password) => {{
  {_HERE}
  const answer = await fetch(here + "/sign-in", {{method: "POST", body: new URLSearchParams({{user, password}})}});
  if (answer.ok) {{ location.reload(); return ""; }}
  return (await answer.json()).error;
}}"""
SIGN_OUT_JS = f"""async () => {{ {_HERE} await fetch(here + "/sign-out", {{method: "POST"}}); location.reload(); }}"""


def download_js(name: str) -> str:
    """A click that fetches /review/<name> with the filters and saves it, or returns why not."""
    return f"""async (disliked, model, text, since, until) => {{
  {_HERE}
  const query = new URLSearchParams({{disliked, model, text, since, until}});
  const answer = await fetch(here + "/{name}?" + query);
  if (!answer.ok) return (await answer.json()).error;
  const file = /filename="([^"]+)"/.exec(answer.headers.get("content-disposition"))[1];
  const link = Object.assign(document.createElement("a"), {{download: file}});
  link.href = URL.createObjectURL(await answer.blob());
  link.click();
  return "Exported " + answer.headers.get("x-export-count") + " to " + file + ".";
}}"""


def review_page(store: LogStore, signins: SignIns, proxies: Sequence[Network]) -> tuple[gr.Blocks, list[Route]]:
    """The review page, an app of its own, and its sign-in and export routes (their paths under the page's).
    Each handler checks the request's sign-in cookie, the API included."""

    def reviewer(request: Request | gr.Request) -> bool:
        return signins.valid(request.cookies.get(COOKIE))

    def check(request: gr.Request) -> None:
        if not reviewer(request):
            raise refuse(LOCKED)

    def opened(request: gr.Request) -> tuple:
        """The page as it loads: the panel for a reviewer whose cookie holds, the form for anyone else."""
        if not reviewer(request):
            return gr.Column(visible=True), gr.Column(visible=False), *(gr.skip() for _ in range(5))
        return gr.Column(visible=False), gr.Column(visible=True), *search(False, ANY_MODEL, "", "", "", request)

    async def sign_in(request: Request) -> Response:
        form = await request.form()
        address = client_address(
            request.client.host if request.client else None, request.headers.get("x-forwarded-for", ""), proxies
        )
        attempt = signins.attempt(address, str(form.get("user", "")), str(form.get("password", "")))
        if attempt.token is None:
            headers = {"Retry-After": str(math.ceil(attempt.wait))} if attempt.wait else None
            return JSONResponse({"error": attempt.problem}, attempt.status, headers)
        response = JSONResponse({"signed_in": True})
        response.set_cookie(
            COOKIE,
            attempt.token,
            max_age=int(signins.lifetime),
            httponly=True,  # no script on the page can read it
            samesite="strict",  # nor can another site's page send it
            secure=request.url.scheme == "https",
        )
        return response

    def sign_out(request: Request) -> Response:
        signins.sign_out(request.cookies.get(COOKIE))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE)
        return response

    def download(request: Request, lines: Callable[[Request], list[str]], name: str) -> Response:
        if not reviewer(request):
            return JSONResponse({"error": "Log in on the review page to export."}, 401)
        try:
            found = lines(request)
        except gr.Error as exc:
            return JSONResponse({"error": exc.message}, 400)
        except sa.exc.SQLAlchemyError:
            return JSONResponse({"error": UNREACHABLE}, 503)
        file = f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.jsonl"
        headers = {
            "Content-Disposition": f'attachment; filename="{file}"',
            "X-Export-Count": _count(len(found), "turn" if name == "chats" else "compare vote"),
            "Cache-Control": "no-store",
        }
        return Response("".join(found), media_type="application/x-ndjson", headers=headers)

    def filtered_turns(request: Request) -> list[str]:
        query = request.query_params
        found = matching(*(query.get(key, "") for key in ("disliked", "model", "text", "since", "until")))
        return list(turn_lines(store, found))

    def export_turns(request: Request) -> Response:
        return download(request, filtered_turns, "chats")

    def export_votes(request: Request) -> Response:
        return download(request, lambda _: list(vote_lines(store)), "votes")

    def matching(disliked: bool | str, model: str, text: str, since: str, until: str) -> list[dict]:
        end = _date(until, "To")
        return store.find(
            disliked_only=disliked in (True, "true"),
            model=None if model in (ANY_MODEL, "") else model,
            text=text.strip(),
            since=_date(since, "From"),
            until=end + timedelta(days=1) if end else None,
        )

    @reading
    def search(disliked: bool, model: str, text: str, since: str, until: str, request: gr.Request) -> tuple:
        check(request)
        found = matching(disliked, model, text, since, until)
        rows = [
            [
                f"{row['started']:%Y-%m-%d %H:%M}",
                row["model"],
                RATINGS[row["feedback"]],
                row["status"],
                _short(row["message"]),
                _short(row["reply"]),
                _short(row["comment"] or ""),
            ]
            for row in found
        ]
        choices = [ANY_MODEL, *store.models()]
        return (
            gr.Dataframe(rows),
            [(row["conversation"], row["ordinal"]) for row in found],
            gr.Dropdown(choices=choices, value=model if model in choices else ANY_MODEL),
            f"{_count(len(found), 'turn')}{' (the newest 500)' if len(found) == 500 else ''}.",
            gr.Dataframe(vote_rows()),
        )

    def vote_rows() -> list[list[str]]:
        """The compare votes, newest first: what was asked, the verdict, and each side's settings and reply."""

        def side(choice: dict) -> str:
            return _short(f"{choice.get('model')} (temperature {choice.get('temperature')}): {choice.get('reply')}")

        return [
            [f"{vote['created']:%Y-%m-%d %H:%M}", _short(vote["message"]), VERDICTS.get(vote["vote"], vote["vote"]),
             side(vote["a"]), side(vote["b"])]
            for vote in reversed(store.all_votes()[-500:])
        ]  # fmt: skip

    @reading
    def open_turn(found: list, selected: gr.SelectData, request: gr.Request) -> list[dict]:
        check(request)
        row = selected.index[0] if isinstance(selected.index, (list, tuple)) else selected.index
        if not isinstance(row, int) or not 0 <= row < len(found):
            return []
        conversation, ordinal = found[row]
        return conversation_messages(store.conversation(conversation, up_to=ordinal))

    with gr.Blocks(title="Review", analytics_enabled=False) as page:
        gr.Markdown("<h1 style='text-align: center'>Review</h1>")
        gr.Markdown("[← Chat](../)")  # the chat is at the page's parent
        with gr.Column(visible=True) as login_box:
            if not signins.logins:
                gr.Markdown("The review page is locked. Start the app with `--review-auth user:password` to open it.")
            user = gr.Textbox(label="User", interactive=bool(signins.logins))
            password = gr.Textbox(label="Password", type="password", interactive=bool(signins.logins))
            log_in_button = gr.Button("Log in", variant="primary", interactive=bool(signins.logins))
            login_status = gr.Markdown(elem_id="review-login-status")
        with gr.Column(visible=False) as panel:
            with gr.Row():
                disliked = gr.Checkbox(label="Thumbs down only")
                model = gr.Dropdown([ANY_MODEL], value=ANY_MODEL, label="Model")
                text = gr.Textbox(label="Text in the message or reply")
                since = gr.Textbox(label="From (YYYY-MM-DD)")
                until = gr.Textbox(label="To (YYYY-MM-DD)")
            with gr.Row():
                search_button = gr.Button("Search", variant="primary", size="sm")
                export_button = gr.Button("Export these as JSONL", size="sm")
                export_votes_button = gr.Button("Export the compare votes as JSONL", size="sm")
                sign_out_button = gr.Button("Sign out", size="sm")
            summary = gr.Markdown()
            export_status = gr.Markdown(elem_id="review-export-status")
            table = gr.Dataframe(
                headers=["Started (UTC)", "Model", "Rating", "Status", "Message", "Reply", "Comment"],
                interactive=False,
                wrap=True,
                # Short columns fit their words at 1280 px; the texts share the rest (a phone scrolls sideways).
                column_widths=["150px", "120px", "110px", "80px", "25%", "25%", "16%"],
            )
            found = gr.State([])
            conversation = gr.Chatbot(label="Conversation (read-only)", height=480)
            gr.Markdown("### Compare votes")
            votes = gr.Dataframe(
                headers=["When (UTC)", "Message", "Vote", "Side A", "Side B"],
                interactive=False,
                wrap=True,
                column_widths=["150px", "24%", "110px", "30%", "30%"],
            )
        filters = [disliked, model, text, since, until]
        results = [table, found, model, summary, votes]
        page.load(opened, None, [login_box, panel, *results], api_visibility="private")
        gr.on([log_in_button.click, password.submit], None, [user, password], login_status, js=SIGN_IN_JS)
        sign_out_button.click(None, js=SIGN_OUT_JS)
        gr.on([search_button.click, text.submit], search, filters, results, api_name="review_search")
        table.select(open_turn, found, conversation, api_name="review_open")
        export_button.click(None, filters, export_status, js=download_js("export.jsonl"))
        export_votes_button.click(None, filters, export_status, js=download_js("votes.jsonl"))
    return page, [
        ("/sign-in", sign_in, ["POST"]),
        ("/sign-out", sign_out, ["POST"]),
        ("/export.jsonl", export_turns, ["GET"]),
        ("/votes.jsonl", export_votes, ["GET"]),
    ]
