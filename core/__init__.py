"""The chat itself, knowing nothing of Gradio or pages: prompt building, the turn loop, the reply, the relay, errors."""
