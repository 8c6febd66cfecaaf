"""A request a page refuses: one sentence for the person, and no traceback in the server's console."""

from __future__ import annotations

import gradio as gr


def refuse(sentence: str) -> gr.Error:
    """The error to raise: Gradio shows it to the user (or the API client) and, with print_exception off,
    does not print it as a traceback: it is an answer, not a fault."""
    return gr.Error(sentence, print_exception=False)
