"""Benchmarks: our app next to the plain openai SDK and gr.load_chat, on one loopback server."""
