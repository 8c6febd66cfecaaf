"""Helpers the tests and the benchmark share: the fake provider, the MCP test server, app processes, a browser."""
