"""Domain errors. The server turns these into MCP tool errors whose message the model can act on."""


class MemoryOSError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidInputError(MemoryOSError, ValueError):
    """A caller passed something we cannot store or search (empty text, bad user_id, ...)."""


class StorageError(MemoryOSError):
    """The vector store could not be reached or refused an operation."""


class ConfigurationError(MemoryOSError):
    """Settings are inconsistent or name something that does not exist."""


class LLMError(MemoryOSError):
    """The language model failed: unreachable, timed out, or answered something unusable."""


class LLMAnswerUnusable(LLMError):
    """The model answered, but nothing usable: malformed twice, or valid JSON that leaves pages uncovered, has
    no usable topic or misses segments. Asking again later would most likely get the same answer, so the work
    goes on at once with the local analysis instead of waiting for the model."""
