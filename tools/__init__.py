"""Tools from MCP servers: their configuration, the connections to them, and the multi-step tool loop."""
