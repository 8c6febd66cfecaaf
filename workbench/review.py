"""The /review page: the logged conversations, filtered, opened read-only, exported as JSONL; behind its own login."""

from __future__ import annotations

import functools
import secrets
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gradio as gr
import sqlalchemy as sa

from refusals import refuse
from tools.loop import fenced, pretty
from workbench.store import LogStore, export_jsonl, export_votes, votes_path

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


def reading(handler: Callable) -> Callable:
    """A handler that reads the log: a database that cannot be reached is one sentence, not a blank error."""

    @functools.wraps(handler)
    def read(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except sa.exc.SQLAlchemyError:
            raise refuse(
                "The conversation log cannot be read now: its database is unreachable. Try again soon."
            ) from None

    return read


def add_review_page(demo: gr.Blocks, store: LogStore, logins: Sequence[tuple[str, str]]) -> None:
    """Add /review to `demo`. Each handler checks that its session signed in, the API included."""
    signed_in: set[str] = set()

    def check(request: gr.Request) -> None:
        if (request.session_hash or "") not in signed_in:
            raise refuse("Log in to review conversations.")

    def log_in(user: str, password: str, request: gr.Request) -> tuple:
        # compare_digest: the time taken says nothing about how much of a password was right
        ok = any(secrets.compare_digest(user, u) & secrets.compare_digest(password, p) for u, p in logins)
        if not ok:  # one line under the form, which stays as it was: not an error over the whole form
            return "Wrong user name or password.", *(gr.skip() for _ in range(7))
        signed_in.add(request.session_hash or "")
        panel_open = gr.Column(visible=False), gr.Column(visible=True)
        return "", *panel_open, *search(False, ANY_MODEL, "", "", "", request)

    def matching(disliked: bool, model: str, text: str, since: str, until: str) -> list[dict]:
        end = _date(until, "To")
        return store.find(
            disliked_only=disliked,
            model=None if model == ANY_MODEL else model,
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

    @reading
    def export(disliked: bool, model: str, text: str, since: str, until: str, request: gr.Request) -> list[str]:
        check(request)
        path = Path(tempfile.mkdtemp(prefix="chat-log-")) / f"chats-{datetime.now(UTC):%Y%m%d-%H%M%S}.jsonl"
        count = export_jsonl(store, matching(disliked, model, text, since, until), path)
        voted = export_votes(store, votes_path(path))
        gr.Info(f"Exported {_count(count, 'turn')}" + (f" and {_count(voted, 'compare vote')}." if voted else "."))
        return [str(path), str(votes_path(path))] if voted else [str(path)]

    with demo.route("Review", "/review"):
        gr.Markdown("<h1 style='text-align: center'>Review</h1>")
        with gr.Column(visible=True) as login_box:
            if not logins:
                gr.Markdown("The review page is locked. Start the app with `--review-auth user:password` to open it.")
            user = gr.Textbox(label="User", interactive=bool(logins))
            password = gr.Textbox(label="Password", type="password", interactive=bool(logins))
            log_in_button = gr.Button("Log in", variant="primary", interactive=bool(logins))
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
            summary = gr.Markdown()
            table = gr.Dataframe(
                headers=["Started (UTC)", "Model", "Rating", "Status", "Message", "Reply", "Comment"],
                interactive=False,
                wrap=True,
                # Short columns fit their words at 1280 px; the texts share the rest (a phone scrolls sideways).
                column_widths=["150px", "120px", "110px", "80px", "25%", "25%", "16%"],
            )
            found = gr.State([])
            conversation = gr.Chatbot(label="Conversation (read-only)", height=480)
            exported = gr.File(label="Export", interactive=False, file_count="multiple")
            gr.Markdown("### Compare votes")
            votes = gr.Dataframe(
                headers=["When (UTC)", "Message", "Vote", "Side A", "Side B"],
                interactive=False,
                wrap=True,
                column_widths=["150px", "24%", "110px", "30%", "30%"],
            )
        filters = [disliked, model, text, since, until]
        results = [table, found, model, summary, votes]
        gr.on(
            [log_in_button.click, password.submit],
            log_in,
            [user, password],
            [login_status, login_box, panel, *results],
            show_progress="hidden",
        )
        gr.on([search_button.click, text.submit], search, filters, results, api_name="review_search")
        table.select(open_turn, found, conversation, api_name="review_open")
        export_button.click(export, filters, exported, api_name="review_export")
