"""Each component's config built once per app rather than once per visitor: Gradio builds every component's
config (its props through inspect.signature, its API schema through pydantic) for each new session, the same
each time. For the chat page: 6.4 ms of CPU per new session as Gradio does it, 0.16 ms built once (timed by hand,
7 x 200 sessions; with only the Import button's schema built once, as before, 2.5 ms)."""

from __future__ import annotations

import gradio as gr

# What config_for_block asks a component for. None of them changes once the app is built: an update from an
# event makes a new component for that session (whose config is then built as usual), it does not change this one.
BUILT = ("api_info", "api_info_as_input", "api_info_as_output", "example_inputs")


def build_configs_once(blocks: gr.Blocks) -> None:
    """From now on each of the app's components answers with what it answers now. Call it once the app is
    built and launched: a component changed after this would go on showing its old config."""
    for block in blocks.blocks.values():
        props = block.get_config()
        # A copy of the props each time: a session writes its own "value" into them (SessionState).
        block.get_config = lambda cls=None, props=props: dict(props)  # type: ignore[method-assign]
        for name in BUILT:
            ask = getattr(block, name, None)
            if ask is None:
                continue
            try:
                answer = ask()
            except NotImplementedError:  # a Button has no API schema: asked, it says so
                continue
            setattr(block, name, lambda answer=answer: answer)
