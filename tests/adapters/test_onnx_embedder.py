"""The ONNX Runtime embedder gives the vectors sentence-transformers gives, for short and long texts."""

from __future__ import annotations

import numpy as np
import pytest

from memoryos_mcp.adapters.bundled_model import bundled_model_dir
from memoryos_mcp.adapters.embedder import SentenceTransformerEmbedder, make_embedder
from memoryos_mcp.adapters.onnx_embedder import OnnxEmbedder

pytestmark = pytest.mark.slow

TEXTS = [
    "hi",
    "When did Maya move to Lisbon?",
    "I baked sourdough bread with a crispy crust and my sister Ana loved it — pastéis de nata next!",
    " ".join(f"word{i} about hiking trails, ridges and the summit view" for i in range(60)),  # > 256 tokens
    "",
]


def test_onnx_vectors_equal_sentence_transformers_vectors() -> None:
    assert bundled_model_dir() is not None
    onnx = make_embedder()
    assert isinstance(onnx, OnnxEmbedder)
    reference = SentenceTransformerEmbedder().embed(TEXTS)
    got = onnx.embed(TEXTS)
    assert got.shape == reference.shape == (len(TEXTS), 384)
    assert np.abs(got - reference).max() < 1e-5
    one_by_one = np.vstack([onnx.embed([t]) for t in TEXTS])  # batching and padding change nothing
    assert np.abs(one_by_one - got).max() < 1e-5
    assert onnx.embed([]).shape == (0, 384)


def test_the_torch_backend_can_be_chosen() -> None:
    assert isinstance(make_embedder(backend="torch"), SentenceTransformerEmbedder)


def test_texts_are_batched_by_length_so_that_little_is_padding() -> None:
    from memoryos_mcp.adapters.onnx_embedder import length_batches

    order = np.arange(7)
    # A page (60 tokens) and its sentences: the page alone, the sentences together, the shortest apart.
    batches = length_batches([60, 20, 18, 15, 12, 10, 8], 16, order)
    assert [b.tolist() for b in batches] == [[0], [1, 2, 3, 4, 5], [6]]
    assert [len(b) for b in length_batches([30] * 40, 16, np.arange(40))] == [16, 16, 8]
    assert length_batches([], 16, np.arange(0)) == []


def test_length_batches_put_many_short_texts_in_one_run_within_a_token_budget() -> None:
    from memoryos_mcp.adapters.onnx_embedder import length_batches

    sizes = [len(b) for b in length_batches([16] * 200, 64, np.arange(200), tokens=2048)]
    assert sizes == [64, 64, 64, 8]
    sizes = [len(b) for b in length_batches([100] * 50, 64, np.arange(50), tokens=2048)]
    assert sizes == [20, 20, 10]  # padded tokens per run stay within the budget
    assert [len(b) for b in length_batches([300, 280], 64, np.arange(2), tokens=256)] == [1, 1]  # one over it


@pytest.mark.slow
def test_a_paused_call_gives_the_same_vectors_and_lets_other_calls_in_between_runs() -> None:
    import threading

    from memoryos_mcp.core.protocols import PausableEmbedder

    embedder = make_embedder()
    assert isinstance(embedder, PausableEmbedder)
    texts = [f"Sentence number {i} about {'hiking ' * (i % 7)}and bread." for i in range(300)]
    plain = embedder.embed(texts)
    seen: list[np.ndarray] = []

    def pause() -> None:  # another call gets the model while the long one pauses
        done = threading.Event()
        threading.Thread(target=lambda: (seen.append(embedder.embed(["a query"])), done.set())).start()
        assert done.wait(30)

    paused = embedder.embed_pausing(texts, pause)
    assert len(seen) >= 2  # one per run of the model
    assert np.allclose(paused, plain, atol=1e-6)
    assert np.allclose(seen[0], embedder.embed(["a query"]), atol=1e-6)
