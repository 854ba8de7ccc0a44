"""JSONChat on the `openai` SDK, for OpenAI and local OpenAI-compatible servers (Ollama, vLLM, llama.cpp).

Asks for JSON in plain text (no strict json_schema, no tool calling: local servers often lack them),
validates it with pydantic, and tries one repair when the answer is unusable. Failures become LLMError;
the first failure of a run of failures is logged once, and a cool-down stops every add_memory from
waiting on a model that is down.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import TypeVar

import openai
from pydantic import BaseModel, ValidationError

from memoryos_mcp.core.protocols import LLMUsage
from memoryos_mcp.errors import LLMError

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
MIN_REQUEST_S = 1.0  # don't start a request with less time left than this


class OpenAIChat:
    """Implements core.llm_analyzer.JSONChat."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 20.0,
        max_retries: int = 1,
        max_tokens: int = 1024,
        cooldown_s: float = 30.0,
        max_answer_chars: int = 100_000,
    ) -> None:
        # Retries are ours (below) so that they respect the add_memory time budget; the SDK's own
        # defaults (600 s, 2 retries) would outlast any desktop client.
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
        )
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.cooldown_s = cooldown_s
        self.max_answer_chars = max_answer_chars
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._last_error = ""

    # ------------------------------------------------------------------ health

    def _failed(self, error: str) -> LLMError:
        """Record a failure: log the first of a run once, and rest the model for cooldown_s."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.error("LLM %s failed: %s — memory keeps working; the analysis is retried later", self.model, error)
            else:
                logger.debug("LLM still failing: %s", error)
            self._retry_at = time.monotonic() + self.cooldown_s
            self._last_error = error
        return LLMError(error)

    def _succeeded(self) -> None:
        with self._lock:
            if self._failing_since is not None:
                logger.warning("LLM %s answers again after %.0f s", self.model, time.monotonic() - self._failing_since)
            self._failing_since = None
            self._retry_at = 0.0

    # ------------------------------------------------------------------ calls

    def complete_json(self, system: str, prompt: str, schema: type[M], usage: LLMUsage) -> M:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise LLMError(f"LLM unavailable (last error: {self._last_error}); next try in {wait:.0f} s")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        content = self._complete(messages, usage)
        try:
            parsed = _parse(content, schema, self.max_answer_chars)
        except ValueError as first:
            # One repair: show the model its answer (clipped) and what was wrong with it.
            messages += [
                {"role": "assistant", "content": content[:2000]},
                {"role": "user", "content": f"That answer was unusable ({first}). Reply again with only the JSON object, in the requested shape."},
            ]
            content = self._complete(messages, usage)
            try:
                parsed = _parse(content, schema, self.max_answer_chars)
            except ValueError as second:
                # A model that cannot produce the JSON twice in a row (small local models often can't) would
                # make every add_memory wait for two useless answers: rest it like an unreachable one.
                raise self._failed(f"invalid JSON from the model twice: {second}") from None
        self._succeeded()
        return parsed

    def _complete(self, messages: list[dict[str, str]], usage: LLMUsage) -> str:
        last = ""
        for _attempt in range(1 + self.max_retries):
            remaining = self.timeout_s if usage.deadline is None else usage.deadline - time.monotonic()
            if remaining < MIN_REQUEST_S:
                raise LLMError("the time budget of this call is spent; the LLM work stays pending for a later call")
            try:
                usage.calls += 1
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=0,
                    max_tokens=self.max_tokens,
                    timeout=min(self.timeout_s, remaining),
                )
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code} from {self._client.base_url}"
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise self._failed(f"{last}: {exc.message}") from None
                continue
            except openai.APITimeoutError:
                last = f"no answer within {min(self.timeout_s, remaining):.0f} s"
                continue
            except openai.APIConnectionError as exc:
                last = f"cannot connect to {self._client.base_url}: {exc.__cause__ or exc}"
                continue
            except openai.OpenAIError as exc:  # anything else the SDK raises, e.g. an undecodable body
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.usage is not None:
                usage.prompt_tokens += response.usage.prompt_tokens or 0
                usage.completion_tokens += response.usage.completion_tokens or 0
            if not response.choices:
                last = "answer had no choices"
                continue
            return response.choices[0].message.content or ""
        raise self._failed(last)


def _parse(content: str, schema: type[M], max_chars: int) -> M:
    """The JSON object in `content` (fences and chatter around it tolerated), validated; ValueError if not."""
    if len(content) > max_chars:
        raise ValueError(f"answer of {len(content)} characters is too long")
    text = _FENCE.sub("", content.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer" + (" (cut off?)" if start >= 0 else ""))
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg} at character {exc.pos}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise ValueError(f"JSON of the wrong shape: {problems}") from None
