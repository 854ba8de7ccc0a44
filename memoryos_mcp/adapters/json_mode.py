"""How to ask an OpenAI-compatible endpoint for JSON: the `response_format` shapes, best first, and which one
this endpoint takes — found on first contact, remembered, logged once.

Checked against the servers people run: vLLM, Ollama (/v1), LM Studio and OpenAI take
`{"type": "json_schema", ...}`; llama-cpp-python's server answers HTTP 500 to it but constrains decoding to
a schema given as `{"type": "json_object", "schema": ...}`; some servers take only `json_object`; a few take
no `response_format` at all, and get today's plain request. Every answer is validated whatever the shape.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Literal

logger = logging.getLogger(__name__)

JSONModeSetting = Literal["auto", "json_schema", "json_object", "off"]
Shape = Literal["json_schema", "json_object+schema", "json_object", "plain"]

LADDERS: dict[str, tuple[Shape, ...]] = {
    "auto": ("json_schema", "json_object+schema", "json_object", "plain"),
    "json_schema": ("json_schema", "plain"),
    "json_object": ("json_object+schema", "json_object", "plain"),
    "off": ("plain",),
}

# Statuses with which servers reject a response_format they do not take. A 5xx may also be an outage, so on
# one the request steps down a single rung and goes on with the normal retries from there.
REJECTING_STATUSES = frozenset({400, 415, 422, 500, 501})


def response_format(shape: Shape, name: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `response_format` request field of a shape (None: leave it out)."""
    if shape == "json_schema":
        # strict=False: strict mode needs closed objects everywhere, and the profile's keys are open.
        return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": False}}
    if shape == "json_object+schema":
        return {"type": "json_object", "schema": dict(schema)}
    if shape == "json_object":
        return {"type": "json_object"}
    return None


class JSONMode:
    """The shape to ask one endpoint with; steps down the ladder when the endpoint rejects a shape."""

    def __init__(self, setting: JSONModeSetting, endpoint: str) -> None:
        self.ladder = LADDERS[setting]
        self.endpoint = endpoint
        self._rung = 0
        self._lock = threading.Lock()

    @property
    def shape(self) -> Shape:
        with self._lock:
            return self.ladder[self._rung]

    def below(self, shape: Shape) -> Shape | None:
        """The next shape to try when `shape` was rejected; None at the bottom."""
        i = self.ladder.index(shape) + 1
        return self.ladder[i] if i < len(self.ladder) else None

    def settle(self, shape: Shape, rejected: Mapping[Shape, str]) -> None:
        """`shape` was answered after the endpoint rejected those above it: use it from now on."""
        with self._lock:
            rung = self.ladder.index(shape)
            if rung <= self._rung:
                return
            self._rung = rung
        reasons = "; ".join(f"{s}: {why}" for s, why in rejected.items())
        logger.info(
            "LLM endpoint %s rejects response_format %s (%s); asking with %s from now on",
            self.endpoint,
            " / ".join(rejected),
            reasons,
            "no response_format (plain JSON in the text)" if shape == "plain" else shape,
        )
