"""Matplotlib pieces the static renderers share: how a cell without a result is
marked, axis ticks, the legend of marks. Matplotlib is imported inside the
functions (the Agg backend, no pyplot figure).

Examples
--------
>>> sorted(STATUS_HATCH) == sorted(s for s in STATUS_ORDER if s != "done")
True
>>> cell_edges([1.0, 2.0, 4.0], log=False).tolist()
[0.5, 1.5, 3.0, 5.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._status import STATUS_COLORS, STATUS_ORDER

__all__ = [
    "STATUS_HATCH",
    "STATUS_ALPHA",
    "cell_style",
    "cell_edges",
    "set_ticks",
    "marks_legend",
    "mark_spans",
    "new_axes",
]

_HATCH = {"pending": "///", "running": "...", "failed": "xx", "cancelled": "\\\\\\"}
_ALPHA = {"pending": 0.35, "running": 0.25, "failed": 0.45, "cancelled": 0.45}
_HATCH_COLORS = {"pending": "#7a7a7a", "running": "#1d4ed8"}

STATUS_HATCH: dict[str, str] = {s: _HATCH[s] for s in STATUS_ORDER if s != "done"}
"""How a cell that has no result (yet) is hatched on the static plot, per state."""

STATUS_ALPHA: dict[str, float] = {s: _ALPHA[s] for s in STATUS_ORDER if s != "done"}
"""The opacity of a marked cell's face, per state."""


def cell_style(state: str, extra_alpha: float = 0.0) -> dict[str, Any]:
    """A marked cell: a translucent face, a solid hatch (``alpha=`` would fade both)."""
    from matplotlib.colors import to_rgba

    return dict(
        facecolor=to_rgba(STATUS_COLORS[state], min(STATUS_ALPHA[state] + extra_alpha, 1.0)),
        edgecolor=_HATCH_COLORS.get(state, STATUS_COLORS[state]),
        hatch=STATUS_HATCH[state],
    )


def cell_edges(values: Any, log: bool) -> np.ndarray:
    """Cell edges around each value (midpoints; in log space for a log axis)."""
    v = np.log10(np.asarray(values, dtype=float)) if log else np.asarray(values, dtype=float)
    if v.size == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return 10**e if log else e


def set_ticks(ax: Any, axis: str, labels: Sequence[Any]) -> None:
    """At most about 12 labelled ticks at positions 0, 1, ... of a categorical axis."""
    n = len(labels)
    step = max(1, math.ceil(n / 12))
    pos = list(range(0, n, step))
    text = [str(labels[i]) for i in pos]
    if axis == "x":
        ax.set_xticks(pos, text, rotation=30 if max((len(t) for t in text), default=0) > 6 else 0)
    else:
        ax.set_yticks(pos, text)


def marks_legend(ax: Any, states: Iterable[str], extra: list[Any] | None = None) -> None:
    """A legend (right of the axes) of ``extra`` handles and the marks of ``states``."""
    from matplotlib.patches import Patch

    states = set(states)
    handles = list(extra or [])
    for s in STATUS_ORDER:
        if s in states and s != "done":
            handles.append(Patch(**cell_style(s, 0.15), label=s))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def mark_spans(ax: Any, edges: Any, states: Sequence[str]) -> set[str]:
    """Shade the x span of each cell whose state is not ``done``; the states marked."""
    marked: set[str] = set()
    for i, s in enumerate(states):
        if s != "done":
            marked.add(s)
            ax.axvspan(edges[i], edges[i + 1], linewidth=0, **cell_style(s))
    return marked


def new_axes(dpi: int) -> tuple[Any, Any]:
    """A figure of the static plot's size with one axes, drawn by Agg (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 3.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()
