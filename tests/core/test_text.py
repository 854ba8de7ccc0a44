from memoryos_mcp.core.text import extract_keywords, extractive_summary


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
