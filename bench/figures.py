"""Shared by the benchmark programs: percentiles, and a figure table printed and optionally written as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100, linear interpolation); NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def report_figures(figures: dict[str, Any], json_path: Path | None) -> None:
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2))
