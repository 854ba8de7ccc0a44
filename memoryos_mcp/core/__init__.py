"""The MemoryOS memory model. Imports none of mcp, chromadb, openai or torch."""
