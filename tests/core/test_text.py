from memoryos_mcp.core.models import Page
from memoryos_mcp.core.text import (
    MAX_PAGE_SENTENCES,
    extract_keywords,
    extractive_summary,
    is_question,
    page_sentences,
    sentence_layout,
)


def _page(user_input: str, agent_response: str) -> Page:
    return Page("p", "u", user_input, agent_response, "2024-05-08T10:00:00", added_at=0)


def test_a_pages_sentences_are_the_users_then_the_agents_and_their_split_is_known() -> None:
    page = _page("Hi! I went hiking. Ok", "Where?\nTell me more.")
    assert page_sentences(page) == ["Hi!", "I went hiking.", "Where?", "Tell me more."]
    assert sentence_layout(page, 4) == (2, 0b0100)  # "Ok" is too short to be a sentence; "Where?" asks
    assert sentence_layout(page, 1) == (-1, 0)  # vectors of another split (or the page's own): unknown
    assert sentence_layout(page, 3) == (-1, 0) and sentence_layout(page, 5) == (-1, 0)
    assert sentence_layout(_page("", "Sure, here it is."), 1) == (0, 0)
    assert sentence_layout(_page("You did? Wow!", "Did I what?!"), 3) == (2, 0b101)
    many = _page(" ".join(f"Line {i}?" for i in range(40)), "Fine.")
    assert len(page_sentences(many)) <= MAX_PAGE_SENTENCES  # grouped: a group may hold both sides
    assert sentence_layout(many, len(page_sentences(many))) == (-1, 0)


def test_a_question_is_a_sentence_that_asks() -> None:
    for asks in ("Do you paint?", "Really?!", 'He said "why?"', "(what is that?)", "Isn't it? "):
        assert is_question(asks), asks
    for states in ("I paint.", "Wow!", "Why? Because I can.", "(image description: a cake)", "A ? B"):
        assert not is_question(states), states


def test_keywords_skip_stop_words_and_rank_by_frequency() -> None:
    words = extract_keywords("I love hiking. Hiking in the mountains with my sister is the best hiking.")
    assert words[0] == "hiking"
    assert "the" not in words and "with" not in words
    assert "mountains" in words and "sister" in words


def test_extractive_summary_keeps_original_sentences_in_order() -> None:
    text = "Hiking is my hobby. The weather was odd. I went hiking with Ana. Hiking trails were steep."
    summary = extractive_summary([text], max_sentences=2)
    sentences = [s for s in text.split(". ")]
    assert summary.count(".") >= 1
    positions = [text.index(part.strip(". ")) for part in summary.split(". ") if part]
    assert positions == sorted(positions)
    assert all(any(part.strip(". ") in s for s in sentences) for part in summary.split(". ") if part)


def test_extractive_summary_of_nothing_is_empty() -> None:
    assert extractive_summary([]) == ""
    assert extractive_summary(["", "  "]) == ""
