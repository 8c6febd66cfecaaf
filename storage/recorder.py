"""What the chat tells the conversation log: each finished turn, and the feedback on it."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.history import files_of, text_of
from core.turn import Turn
from storage.logs import LogStore, TurnRecord, now

MAX_SESSIONS = 10_000  # sessions whose turns can still be rated; the oldest are forgotten first


def user_turns(history: Any, before: int | None = None) -> int:
    """How many user messages a chat history holds (before index `before`). Gradio shows a message with
    files as several user entries in a row; they count as one."""
    entries = history if isinstance(history, (list, tuple)) else []
    count, previous = 0, None
    for entry in entries[:before]:
        role = entry.get("role") if isinstance(entry, dict) else None
        if role == "user" and previous != "user":
            count += 1
        previous = role
    return count


class Recorder:
    """Records turns into the log (or nowhere, without --log-db) and maps a rated message to its turn.

    The map is kept here per browser session, so feedback sent through the API can only
    rate turns of the session that sends it.
    """

    def __init__(self, store: LogStore | None) -> None:
        self.store = store
        self._sessions: OrderedDict[str, dict] = OrderedDict()  # session -> {"conversation", "turns", "rated"}

    def _session(self, session: str) -> dict:
        state = self._sessions.setdefault(session, {"conversation": "", "turns": {}, "rated": None})
        self._sessions.move_to_end(session)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return state

    def turn(self, session: str, history: Any, message: Any, turn: Turn, config: dict) -> None:
        """Log a turn that has ended (done, stopped, failed, or waiting for Run or Skip)."""
        if self.store is None:
            return
        state = self._session(session)
        ordinal = user_turns(history)
        if ordinal == 0 or not state["conversation"]:
            state["conversation"], state["turns"] = str(uuid.uuid4()), {}
        turn_id = str(uuid.uuid4())
        state["turns"][ordinal] = turn_id
        text = message.get("text") if isinstance(message, dict) else message
        files = message.get("files") if isinstance(message, dict) else []
        replies = [step.reply for step in turn.steps]
        usage = [r.usage for r in replies if r.usage]
        first = next((r.first_token for r in replies if r.first_token), None)
        status = "waiting" if turn.waiting else "error" if turn.error else "done" if turn.ended else "stopped"
        self.store.add_turn(
            TurnRecord(
                id=turn_id,
                conversation=state["conversation"],
                session=session,
                ordinal=ordinal,
                started=now() - timedelta(seconds=time.monotonic() - turn.started),
                ended=now(),
                status=status,
                model=str(config.get("model") or ""),
                message=text_of(text) if not isinstance(text, str) else text,
                attachments=[Path(path).name for path in files_of(files) + [f for f in files if isinstance(f, str)]],
                reply=turn.redactor.text(turn.text),
                thinking=turn.redactor.text("".join(r.reasoning for r in replies)),
                tool_steps=[
                    {
                        "id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                        "result": call.result,
                        "status": call.status,
                        "seconds": call.seconds,
                    }
                    for step in turn.steps
                    for call in step.calls
                ],
                config=config,
                telemetry={
                    "stats": turn.stats() if first else "",
                    "first_token_seconds": round(first - turn.started, 3) if first else None,
                    "steps": len(turn.steps),
                    "prompt_tokens": sum(u.prompt_tokens for u in usage) if usage else None,
                    "completion_tokens": sum(u.completion_tokens for u in usage) if usage else None,
                },
                notice=turn.error or turn.notice,
            )
        )

    def feedback(self, session: str, history: Any, index: Any, liked: Any) -> str | None:
        """Rate the turn whose message is at `index` in the chat; returns its id, or None if unknown."""
        if self.store is None or not isinstance(index, int):
            return None
        state = self._session(session)
        turn_id = state["turns"].get(user_turns(history, before=index + 1) - 1)
        if turn_id is None:
            return None
        value = 1 if liked is True else -1 if liked is False else None
        self.store.set_feedback(turn_id, value)
        state["rated"] = turn_id
        return turn_id

    def comment(self, session: str, text: str) -> bool:
        """Attach a comment to the turn this session rated last."""
        state = self._session(session)
        if self.store is None or not state["rated"]:
            return False
        self.store.set_comment(state["rated"], text.strip()[:2000])
        return True
