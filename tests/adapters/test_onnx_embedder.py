"""The ONNX Runtime embedder gives the vectors sentence-transformers gives, for short and long texts."""

from __future__ import annotations

import numpy as np
import pytest

from memoryos_mcp.adapters.embedder import SentenceTransformerEmbedder, bundled_model_dir, make_embedder
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
