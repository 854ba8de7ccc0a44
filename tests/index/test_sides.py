from __future__ import annotations

import numpy as np

from memoryos_mcp.index.sides import AGENT, USER, named_side, rerank_by_side, speaker_sides


def test_a_speaker_is_on_the_side_the_other_side_addresses_them_from() -> None:
    exchanges = [
        ("Hey Mel! I went to the support group.", "Thanks, Caroline! That sounds great."),
        ("Thanks, Mel.", "Bye Caroline!"),
        ("Wow, Mel!", "Hi Caroline!"),
        ("Hi Paris!", "Hey Paris!"),  # addressed from both sides: no side
    ]
    sides = speaker_sides(exchanges, ["Caroline", "Mel", "Paris", "Nobody"])
    assert sides == {"Caroline": USER, "Mel": AGENT}


def test_a_query_has_a_side_only_when_the_people_it_names_share_one() -> None:
    sides = {"Caroline": USER, "Mel": AGENT, "Jo": USER}
    assert named_side("What does Mel like to paint?", sides) == AGENT
    assert named_side("What did Caroline and Jo do?", sides) == USER
    assert named_side("What did Caroline and Mel paint?", sides) is None  # both sides
    assert named_side("What did Melanie paint?", sides) is None  # whole names only
    assert named_side("What is the weather?", sides) is None


def test_rerank_lifts_the_page_whose_named_side_matches_the_query() -> None:
    query = np.asarray([1.0, 0.0], dtype=np.float32)
    scores = np.asarray([1.0, 0.9, 0.0])
    sides = np.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # page 1's side says it
    assert rerank_by_side(scores, sides, query, weight=0.0).tolist() == [0, 1, 2]
    assert rerank_by_side(scores, sides, query, weight=0.25).tolist() == [1, 0, 2]
    assert rerank_by_side(scores, np.zeros((3, 2)), query, weight=1.0).tolist() == [0, 1, 2]  # no signal
