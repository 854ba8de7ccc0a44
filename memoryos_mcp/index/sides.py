"""Who said it: a question about one person is answered by what that person said.

A page holds two speakers' words (user_input and agent_response). "What does Melanie like to paint?" meets
Caroline's talk of painting as well as Melanie's; when the question names people who all speak on one side,
the best-sentence re-ranking (PageIndex.rank) looks only at that side's sentences. Which side a person is on
is read from how the other side addresses them ("Thanks, Mel!" in the agent's words: Mel is the user).

Measured on LoCoMo dev, LLM-free (bench/locomo_loo.py --grid speakers): mid-term @10 0.842 → 0.849,
held-out fold mean 0.846 → 0.852, multi-hop 0.584 → 0.609.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from memoryos_mcp.index.cues import vocatives

USER, AGENT = "user", "agent"
SIDE_MAJORITY = 3  # a name is on a side when the other side addresses it this many times more often


def addressed(user_input: str, agent_response: str) -> list[tuple[str, str]]:
    """(name, the side its bearer speaks on) for each name one side of an exchange addresses the other by."""
    return [(name, USER) for name in vocatives(agent_response)] + [
        (name, AGENT) for name in vocatives(user_input)
    ]


def sides_from_counts(counts: Mapping[tuple[str, str], int], names: Iterable[str]) -> dict[str, str]:
    """The side (USER or AGENT) each of `names` speaks on, from how often each side addresses them
    (`counts[name, side]`, as addressed() gives them). A name addressed from both sides without a clear
    majority has no side."""
    sides = {}
    for name in names:
        user, agent = counts.get((name, USER), 0), counts.get((name, AGENT), 0)
        if max(user, agent) >= SIDE_MAJORITY * max(1, min(user, agent)):
            sides[name] = USER if user > agent else AGENT
    return sides


def named_side(query: str, sides: Mapping[str, str]) -> str | None:
    """The one side the people a query names speak on (those in `sides`: a name without a clear side is not
    counted); None when it names none of them, or people on both sides."""
    found = {side for name, side in sides.items() if re.search(rf"\b{re.escape(name)}\b", query)}
    return found.pop() if len(found) == 1 else None
