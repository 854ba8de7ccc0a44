"""JSONChat on the `openai` SDK, for OpenAI and local OpenAI-compatible servers (Ollama, vLLM, llama.cpp).

Asks for JSON constrained to the answer's schema where the endpoint can (adapters.json_mode; plain text
where it cannot), validates it with pydantic, and tries one repair when the answer does not validate. A
valid answer the caller cannot use fails at once, without a repair: it costs the one call it took. 429, 5xx,
timeouts and refused connections are retried with jittered backoff, honouring Retry-After, and never past
the caller's deadline. Every failure becomes an LLMError and rests the model (adapters.llm_health).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from memoryos_mcp.adapters.json_mode import (
    REJECTING_STATUSES,
    JSONMode,
    JSONModeSetting,
    Shape,
    response_format,
)
from memoryos_mcp.adapters.llm_health import ModelHealth
from memoryos_mcp.core.errors import LLMAnswerUnusable, LLMError
from memoryos_mcp.core.protocols import LLMUsage

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
MIN_REQUEST_S = 1.0  # don't start a request with less time left than this
BACKOFF_BASE_S = 0.5  # first retry after 0.25-0.5 s, then doubling (jittered) up to BACKOFF_CAP_S
BACKOFF_CAP_S = 8.0


@dataclass
class ChatStats:
    """What the endpoint answered, counted since start (benchmarks and debugging read it)."""

    requests: int = 0  # HTTP requests sent, format probes and retries included
    answers: int = 0  # requests answered with a completion
    valid: int = 0  # answers that parsed as JSON and validated against the expected shape
    usable: int = 0  # questions whose final answer the pipeline could use
    unusable: int = 0  # questions whose valid answer could not be used (pages uncovered, ...)
    invalid: int = 0  # questions whose answer did not validate, repair included


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
        json_mode: JSONModeSetting = "auto",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        # Retries are ours (below) so that they back off within the add_memory time budget; the SDK's own
        # defaults (600 s, 2 retries) would outlast any desktop client.
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
        )
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.max_answer_chars = max_answer_chars
        self.clock = clock  # the clock of LLMUsage.deadline
        self._sleep = sleep
        self._jitter = jitter
        self.health = ModelHealth(model, cooldown_s, clock)
        self.json_mode = JSONMode(json_mode, str(self._client.base_url))
        self.stats = ChatStats()
        self._stats_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def stats_snapshot(self) -> dict[str, Any]:
        with self._stats_lock:
            return {**asdict(self.stats), "response_format": self.json_mode.shape}

    # ------------------------------------------------------------------ calls

    def complete_json(
        self,
        system: str,
        prompt: str,
        shape: type[M],
        usage: LLMUsage,
        *,
        use: Callable[[M], T],
        json_schema: Mapping[str, Any] | None = None,
        name: str = "answer",
    ) -> T:
        self.health.check()
        schema = json_schema if json_schema is not None else shape.model_json_schema()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        content = self._complete(messages, usage, name, schema)
        try:
            parsed = self._parse(content, shape)
        except ValueError as first:
            # One repair: show the model its answer (clipped) and what was wrong with it.
            messages += [
                {"role": "assistant", "content": content[:2000]},
                {
                    "role": "user",
                    "content": f"That answer was unusable ({first}). Reply again with only the JSON object, in the requested shape.",
                },
            ]
            content = self._complete(messages, usage, name, schema)
            try:
                parsed = self._parse(content, shape)
            except ValueError as second:
                self._count("invalid")
                # A model that cannot produce the JSON twice in a row (small local models often can't) would
                # make every add_memory wait for two useless answers: rest it like an unreachable one.
                raise self.health.failed(
                    f"invalid JSON from the model twice: {second}", unusable=True
                ) from None
        try:
            result = use(parsed)
        except LLMAnswerUnusable as exc:
            # Valid but useless, e.g. one page of three covered: asked again, a model most likely answers the
            # same, so no repair — the failure costs the one call it took, and the model rests.
            self._count("unusable")
            raise self.health.failed(f"unusable answer: {exc}", unusable=True) from None
        self._count("usable")
        self.health.succeeded()
        return result

    def _remaining(self, usage: LLMUsage) -> float:
        return self.timeout_s if usage.deadline is None else usage.deadline - self.clock()

    def _complete(
        self, messages: list[dict[str, str]], usage: LLMUsage, name: str, schema: Mapping[str, Any]
    ) -> str:
        shape = self.json_mode.shape
        rejected: dict[Shape, str] = {}  # shapes this endpoint refused during this call, and how
        stepped_on_5xx = False
        failures = 0
        while True:
            remaining = self._remaining(usage)
            if remaining < MIN_REQUEST_S:
                raise LLMError(
                    "the time budget of this call is spent; the LLM work stays pending for a later call"
                )
            fmt = response_format(shape, name, schema)
            retry_after: float | None = None
            try:
                usage.calls += 1
                self._count("requests")
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=0,
                    max_tokens=self.max_tokens,
                    timeout=min(self.timeout_s, remaining),
                    **({"response_format": fmt} if fmt else {}),  # type: ignore[arg-type]
                )
            except openai.APIStatusError as exc:
                status = exc.status_code
                lower = self.json_mode.below(shape) if fmt else None
                if (
                    lower is not None
                    and status in REJECTING_STATUSES
                    and not (status >= 500 and stepped_on_5xx)
                ):
                    # Maybe the endpoint does not take this response_format: ask the next way at once.
                    rejected[shape] = f"HTTP {status}: {_brief(exc.message)}"
                    stepped_on_5xx |= status >= 500
                    shape = lower
                    continue
                last = f"HTTP {status} from {self._client.base_url}"
                if status not in (408, 409, 429) and status < 500:
                    raise self.health.failed(f"{last}: {exc.message}") from None
                retry_after = _retry_after(exc.response.headers)
            except openai.APITimeoutError:
                last = f"no answer within {min(self.timeout_s, remaining):.0f} s"
            except openai.APIConnectionError as exc:
                last = f"cannot connect to {self._client.base_url}: {exc.__cause__ or exc}"
            except openai.OpenAIError as exc:  # anything else the SDK raises, e.g. an undecodable body
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.usage is not None:
                    usage.prompt_tokens += response.usage.prompt_tokens or 0
                    usage.completion_tokens += response.usage.completion_tokens or 0
                if response.choices:
                    if rejected:
                        self.json_mode.settle(shape, rejected)
                    self._count("answers")
                    return response.choices[0].message.content or ""
                last = "answer had no choices"
            failures += 1
            if failures > self.max_retries:
                raise self.health.failed(last, retry_after=retry_after)
            wait = retry_after if retry_after is not None else self._backoff(failures)
            if wait > self._remaining(usage) - MIN_REQUEST_S:
                # Waiting would outlast this call's budget: give up now; the model rests at least as long.
                raise self.health.failed(
                    f"{last}; the next try would be in {wait:.1f} s, past this call's time budget",
                    retry_after=retry_after,
                )
            logger.debug("LLM request failed (%s); retrying in %.2f s", last, wait)
            self._sleep(wait)

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter (half fixed, half random), so many clients do not retry in step."""
        full = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1))
        return full * (0.5 + 0.5 * self._jitter())

    def _parse(self, content: str, shape: type[M]) -> M:
        parsed = parse_answer(content, shape, self.max_answer_chars)
        self._count("valid")
        return parsed


def parse_answer(content: str, shape: type[M], max_chars: int) -> M:
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
        return shape.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(f"JSON of the wrong shape: {problems}") from None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait (retry-after-ms, or Retry-After as seconds or an HTTP date)."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None  # unreadable: use our own backoff


def _brief(message: str, limit: int = 160) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
