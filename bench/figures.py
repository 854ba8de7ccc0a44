"""Shared by the benchmark programs: print a figure table and optionally write it as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report_figures(figures: dict[str, Any], json_path: Path | None) -> None:
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2))
