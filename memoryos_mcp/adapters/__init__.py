"""Adapters: Chroma storage, sentence-transformers embeddings, OpenAI-compatible LLM."""
