"""Cues in a query: questions that ask "when", dates the query names, and the names of the people talking.

A question about time ("When did…", "How long ago…") is answered by a page that says when something
happened, and the date of the exchange alone rarely matches the question's words. A query that names a
date ("in May 2023") is answered by pages of that day or month.
"""

from __future__ import annotations

import re
from collections.abc import Set

import numpy as np

from memoryos_mcp.core.models import Page
from memoryos_mcp.core.text import exchange_text

_TIME_QUESTION = re.compile(
    r"\b(when|what (year|month|day|date|time)|which (year|month|day)|how long|how many (years|months|weeks|days))\b",
    re.IGNORECASE,
)
_TIME_MENTION = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|recently|weekend|week|month|year|"
    r"last (night|morning|evening)|(this|next|last) (spring|summer|fall|autumn|winter)|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"(19|20)\d\d)\b",
    re.IGNORECASE,
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        "january february march april may june july august september october november december".split(), 1
    )
}
_NAMED_DATE = re.compile(
    r"\b(?:(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?)?"
    r"(january|february|march|april|may|june|july|august|september|october|november|december)"
    r"(?:\s+(\d{1,2})(?:st|nd|rd|th)?)?(?:,?\s+(\d{4}))?\b",
    re.IGNORECASE,
)
_ALSO_WORDS = {"may", "march"}
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})(?:-(\d{2}))?\b")

DateCue = tuple[int | None, int, int | None]  # (year or None, month, day or None)


def date_cues(query: str) -> list[DateCue]:
    """Dates a query names: "on May 3, 2023", "in December 2023", "3 June", "2023-05-08"."""
    cues: list[DateCue] = []
    for m in _NAMED_DATE.finditer(query):
        day = m.group(1) or m.group(3)
        if m.group(2).lower() in _ALSO_WORDS and not (day or m.group(4)):
            continue  # "may I…", "march on": a verb unless a day or year comes with it
        cues.append(
            (int(m.group(4)) if m.group(4) else None, _MONTHS[m.group(2).lower()], int(day) if day else None)
        )
    for m in _ISO_DATE.finditer(query):
        cues.append((int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None))
    return [(y, mo, d) for y, mo, d in cues if 1 <= mo <= 12]


def calendar_date(timestamp: str) -> tuple[int, int, int]:
    """(year, month, day) of an ISO timestamp; zeros when it has none."""
    try:
        return int(timestamp[0:4]), int(timestamp[5:7]), int(timestamp[8:10])
    except ValueError:
        return 0, 0, 0


def date_match(dates: np.ndarray, cue: DateCue) -> np.ndarray:
    """Per page (rows of year, month, day): 1 on the day (or month) the cue names, 0.5 in the month of a
    named day, else 0."""
    cue_year, cue_month, cue_day = cue
    in_month = dates[:, 1] == cue_month
    if cue_year is not None:
        in_month &= dates[:, 0] == cue_year
    if cue_day is None:
        return in_month.astype(np.float64)
    return np.where(in_month, np.where(dates[:, 2] == cue_day, 1.0, 0.5), 0.0)


def asks_about_time(query: str) -> bool:
    return _TIME_QUESTION.search(query) is not None


def mentions_time(page: Page) -> bool:
    return _TIME_MENTION.search(exchange_text(page)) is not None


# Who takes part in a conversation: the names its speakers call each other by ("Hey Caroline!", "Thanks, Mel.").
_GREETING = (
    r"(?i:hey|hi|hello|hiya|thanks|thank you|congrats|congratulations|bye|yeah|yes|yep|sorry|wow|whoa|oh|"
    r"good luck|cool|see you|take care|good night|morning|ok|okay|no)"
)
_VOCATIVE = re.compile(
    rf"\b{_GREETING}\s*,?\s+(?!{_GREETING}\b)([A-Z][a-z]+)\b"  # "Hey Caroline", "Thanks, Mel" (not "Yes Bye")
    r"|,\s*([A-Z][a-z]+)\s*[!.?]"  # "..., Caroline!"
)
_SELF_NAME = re.compile(r"\b(?i:i'm|i am|my name is|my name's|call me)\s+([A-Z][a-z]+)\b")  # "Hi! I'm Maya."
PARTICIPANT_MIN_USES = (
    3  # vocative uses that make a name a participant's (one or two may be a place: "Hi, Paris!")
)


def vocatives(text: str) -> list[str]:
    """Names the text addresses someone by."""
    return [m.group(1) or m.group(2) for m in _VOCATIVE.finditer(text)]


def self_names(text: str) -> list[str]:
    """Names someone introduces themselves by ("I'm Maya", "my name is Maya"; also "I'm Italian")."""
    return [m.group(1) for m in _SELF_NAME.finditer(text)]


def is_participant(vocative_uses: int, introductions: int) -> bool:
    """Addressed by the name often enough, or introduced by it and addressed by it at least once."""
    return vocative_uses >= PARTICIPANT_MIN_USES or (introductions > 0 and vocative_uses > 0)


def _names_pattern(names: Set[str]) -> str:
    return r"\b(?:" + "|".join(re.escape(n) for n in sorted(names)) + r")"


def without_names(query: str, names: Set[str]) -> str:
    """The query without the participants' names (and their possessive "'s")."""
    if not names:
        return query
    kept = re.sub(_names_pattern(names) + r"(?:'s|’s)?\b", " ", query)
    return " ".join(kept.split()) or query


# A named participant as they would say it of themselves: third person to first, verbs agreeing.
_FIRST_PERSON = (
    (re.compile(r"\b(?:she|he)\b", re.IGNORECASE), "I"),
    (re.compile(r"\b(?:her|his)\b", re.IGNORECASE), "my"),
    (re.compile(r"\bhim\b", re.IGNORECASE), "me"),
    (re.compile(r"\b(?:herself|himself)\b", re.IGNORECASE), "myself"),
    (re.compile(r"\bI and I\b"), "we"),
    (re.compile(r"\bdoes I\b"), "do I"),
    (re.compile(r"\bhas I\b"), "have I"),
    (re.compile(r"\bis I\b"), "am I"),
)


def in_first_person(query: str, names: Set[str]) -> str | None:
    """The query as the participant it names would put it ("What does Melanie like to paint?" → "What do I
    like to paint?"), or None when it names none. People speak of themselves in the first person, so this
    form meets what they said of themselves in a dense embedding."""
    if not names or re.search(_names_pattern(names) + r"\b", query) is None:
        return None
    text = re.sub(_names_pattern(names) + r"(?:'s|’s)\b", "my", query)
    text = re.sub(_names_pattern(names) + r"\b", "I", text)
    for pattern, replacement in _FIRST_PERSON:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def embedding_texts(query: str, names: Set[str], *, first_person: bool = True) -> list[str]:
    """What a query is embedded as (the caller averages the vectors): without the participants' names and,
    when it names one and `first_person`, also in that participant's first person (in_first_person)."""
    texts = [without_names(query, names)]
    spoken = in_first_person(query, names) if first_person else None
    if spoken is not None and spoken != texts[0]:
        texts.append(spoken)
    return texts
