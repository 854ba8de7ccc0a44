"""Pictures the server draws (SVG, inline: no script, no style attribute — the page's policy allows neither)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from memoryos_mcp.service.schemas import ListedSegmentOut


def _colour(share: float) -> str:
    """Cold (blue) to hot (red)."""
    share = min(max(share, 0.0), 1.0)
    red, blue = int(60 + 195 * share), int(220 - 180 * share)
    return f"#{red:02x}50{blue:02x}"


def heat_picture(segments: Sequence[ListedSegmentOut], width: int = 720, row: int = 18) -> str:
    """One bar per segment, as long as its heat (α·N_visit + β·L_interaction + γ·recency), hottest first."""
    shown = sorted(segments, key=lambda s: -s.heat)[:40]
    if not shown:
        return "<p>No mid-term segments yet.</p>"
    top = max(s.heat for s in shown) or 1.0
    height = row * len(shown) + 4
    bars = []
    for i, s in enumerate(shown):
        length = max(2, int((width - 310) * s.heat / top))  # room after the bar for its value
        label = escape((s.summary or ", ".join(s.keywords) or s.id)[:40])
        y = 2 + i * row
        bars.append(
            f'<rect x="250" y="{y}" width="{length}" height="{row - 4}" fill="{_colour(s.heat / top)}">'
            f"<title>{escape(s.id)}: heat {s.heat:.2f} (visits {s.n_visit}, pages since promotion "
            f"{s.l_interaction}){' — archived' if s.archived else ''}</title></rect>"
            f'<text x="0" y="{y + row - 6}" font-size="11" fill="#333">{label}</text>'
            f'<text x="{254 + length}" y="{y + row - 6}" font-size="11" fill="#333">{s.heat:.2f}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="heat of each segment">{"".join(bars)}</svg>'
    )


def pages_over_time(days: dict[str, int], width: int = 720, height: int = 140) -> str:
    """Pages per day (per month when they span more than four months): bars, with the first and last label."""
    dated = {d: n for d, n in days.items() if d}
    if not dated:
        return "<p>No dated pages yet.</p>"
    by = dated
    if len(dated) > 1 and _months_between(min(dated), max(dated)) > 4:
        by = {}
        for day, n in dated.items():
            by[day[:7]] = by.get(day[:7], 0) + n
    keys = sorted(by)
    top = max(by.values())
    step = max(1.0, (width - 20) / len(keys))
    bars = []
    for i, key in enumerate(keys):
        h = max(1, int((height - 30) * by[key] / top))
        bars.append(
            f'<rect x="{10 + i * step:.1f}" y="{height - 20 - h}" width="{max(1.0, step - 1):.1f}" height="{h}" '
            f'fill="#4a78c2"><title>{escape(key)}: {by[key]} page(s)</title></rect>'
        )
    labels = (
        f'<text x="10" y="{height - 5}" font-size="11" fill="#333">{escape(keys[0])}</text>'
        f'<text x="{width - 10}" y="{height - 5}" font-size="11" fill="#333" text-anchor="end">'
        f"{escape(keys[-1])}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="pages over time">{"".join(bars)}{labels}</svg>'
    )


def _months_between(first: str, last: str) -> int:
    try:
        return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:7]) - int(first[5:7])
    except ValueError:
        return 0
