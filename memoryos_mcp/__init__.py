"""memoryos-mcp: a MemoryOS-style hierarchical memory served over MCP."""

__version__ = "0.1.0"
