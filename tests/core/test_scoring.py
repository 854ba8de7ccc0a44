import math

import pytest

from memoryos_mcp.core.models import Segment
from memoryos_mcp.core.scoring import cosine, f_scores, heat, jaccard


def test_jaccard_is_intersection_over_union() -> None:
    assert jaccard({"a", "b", "c"}, {"b", "c", "d"}) == pytest.approx(2 / 4)
    assert jaccard([], []) == 0.0
    assert jaccard(["x"], ["x"]) == 1.0


def test_cosine_handles_zero_vectors() -> None:
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine([0, 0], [1, 0]) == 0.0


def test_f_score_adds_cosine_and_jaccard() -> None:
    hiking = _segment(keyword_counts={"hiking": 1, "trail": 1})
    hiking.embedding = [1.0, 0.0]
    other = _segment(keyword_counts={"bread": 1})
    other.embedding = [0.0, 2.0]
    scores = f_scores([hiking, other], [3.0, 0.0], ["hiking", "sister"])
    assert scores.tolist() == pytest.approx([1.0 + 1 / 3, 0.0])


def _segment(**kw: object) -> Segment:
    base = dict(id="s", user_id="u", summary="", keyword_counts={}, created_at=0.0, last_access=1000.0)
    base.update(kw)
    return Segment(**base)  # type: ignore[arg-type]


def test_heat_follows_the_paper_formula() -> None:
    seg = _segment(n_visit=3, l_interaction=2)
    now = 1000.0 + 5e6
    expected = 2.0 * 3 + 0.5 * 2 + 1.5 * math.exp(-5e6 / 1e7)
    assert heat(seg, now, alpha=2.0, beta=0.5, gamma=1.5, mu=1e7) == pytest.approx(expected)


def test_heat_recency_term_is_one_right_after_access() -> None:
    assert heat(_segment(), 1000.0, alpha=1, beta=1, gamma=1, mu=1e7) == pytest.approx(1.0)
