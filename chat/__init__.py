"""The chat service every way in (the chat page, Compare, Review, /mcp/) calls, and its export/import format."""
