"""What tests share: fakes that implement the real ports, a fake OpenAI-compatible server, scripted LLM answers,
MCP call helpers, generated pages and histories, a from-scratch reference index."""
