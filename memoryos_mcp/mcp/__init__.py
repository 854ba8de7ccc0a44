"""The MCP surface: the server, its contract, the texts a model reads, the reference dialect."""
