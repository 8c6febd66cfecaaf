"""Chat backends: the embedded local model and any OpenAI-compatible server."""
