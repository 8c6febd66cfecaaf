"""Tools for the model: MCP servers (their configuration, connections, stdio transport) and Python-function tools."""
