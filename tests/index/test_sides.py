from __future__ import annotations

from collections import Counter

from memoryos_mcp.index.sides import AGENT, USER, addressed, named_side, sides_from_counts


def test_a_speaker_is_on_the_side_the_other_side_addresses_them_from() -> None:
    exchanges = [
        ("Hey Mel! I went to the support group.", "Thanks, Caroline! That sounds great."),
        ("Thanks, Mel.", "Bye Caroline!"),
        ("Wow, Mel!", "Hi Caroline!"),
        ("Hi Paris!", "Hey Paris!"),  # addressed from both sides: no side
    ]
    counts = Counter(pair for exchange in exchanges for pair in addressed(*exchange))
    sides = sides_from_counts(counts, ["Caroline", "Mel", "Paris", "Nobody"])
    assert sides == {"Caroline": USER, "Mel": AGENT}


def test_a_query_has_a_side_only_when_the_people_it_names_share_one() -> None:
    sides = {"Caroline": USER, "Mel": AGENT, "Jo": USER}
    assert named_side("What does Mel like to paint?", sides) == AGENT
    assert named_side("What did Caroline and Jo do?", sides) == USER
    assert named_side("What did Caroline and Mel paint?", sides) is None  # both sides
    assert named_side("What did Melanie paint?", sides) is None  # whole names only
    assert named_side("What is the weather?", sides) is None
