"""The ways in over the chat service: the Compare and Review pages, the /mcp/ endpoint, and their web guards."""
