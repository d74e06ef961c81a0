"""Cell states as the notebook layer shows them: their order, colours and badges.

The states are the engine's (``mushin_nb._store.STATES``, the one set of cell states);
this module only gives each one a colour. A state the engine adds without a colour
here fails at import, not in a half-drawn plot.

Examples
--------
>>> STATUS_ORDER
('pending', 'running', 'done', 'failed', 'cancelled')
>>> counts = {"pending": 1, "running": 0, "done": 2, "failed": 0, "cancelled": 0, "total": 3}
>>> "2 done" in status_counts_html(counts) and "of 3" in status_counts_html(counts)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._store import STATES

__all__ = [
    "STATUS_ORDER",
    "STATUS_COLORS",
    "status_counts_html",
    "static_status",
    "swept_dims",
    "metric_names",
    "is_numeric",
    "wants_log_axis",
]

_COLORS = {
    "pending": "#d0d0d0",
    "running": "#3b82f6",
    "done": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#f59e0b",
}

STATUS_ORDER: tuple[str, ...] = tuple(STATES)
"""The cell states in the order a cell goes through them (the engine's ``STATES``)."""

STATUS_COLORS: dict[str, str] = {s: _COLORS[s] for s in STATUS_ORDER}
"""A colour per cell state (badges, the state grid, the static plot's marks)."""


def status_counts_html(status: Mapping[str, int]) -> str:
    """Coloured badges: ``3 done · 1 failed · ... of N`` (the view's and the panel's).

    States with no cell are left out, except ``done`` and ``failed``.
    """
    parts = []
    for s in STATUS_ORDER:
        n = status.get(s, 0)
        if n or s in ("done", "failed"):
            parts.append(
                f'<span style="background:{STATUS_COLORS[s]};color:{"#000" if s == "pending" else "#fff"};'
                f'border-radius:4px;padding:1px 6px;margin-right:4px">{n} {s}</span>'
            )
    return f"<div>{''.join(parts)} of {status.get('total', 0)}</div>"


def swept_dims(ds: Any) -> list[str]:
    """The swept parameters of a sweep's Dataset: the dims of its ``status``
    variable, else the dims every data variable shares.

    >>> import xarray as xr
    >>> swept_dims(xr.Dataset({"y": (("a", "t"), [[1, 2]]), "z": ("a", [3])}))
    ['a']
    """
    if "status" in ds.data_vars:
        return [str(d) for d in ds["status"].dims]
    names = list(ds.data_vars)
    if not names:
        return [str(d) for d in ds.dims]
    common = set(ds[names[0]].dims)
    for v in names[1:]:
        common &= set(ds[v].dims)
    return [str(d) for d in ds.dims if d in common]


def metric_names(ds: Any) -> list[str]:
    """The variables a plot can show: numeric, not ``status``."""
    return [str(v) for v in ds.data_vars if v != "status" and ds[v].dtype.kind in "iufb"]


def static_status(ds: Any) -> dict[str, int]:
    """Cell counts per state of a finished Dataset (every cell ``done`` if it has no
    ``status`` variable, e.g. one saved without it)."""
    out = {s: 0 for s in STATUS_ORDER}
    if "status" in ds:
        vals, counts = np.unique(ds["status"].values, return_counts=True)
        out.update({str(v): int(c) for v, c in zip(vals, counts)})
        out["total"] = int(ds["status"].size)
    else:
        total = int(math.prod(ds.sizes[d] for d in swept_dims(ds)))
        out["done"] = total
        out["total"] = total
    return out


def is_numeric(values: Any) -> bool:
    """Whether ``values`` is a non-empty array of numbers."""
    arr = np.asarray(values)
    return arr.dtype.kind in "iuf" and arr.size > 0


def wants_log_axis(values: Any) -> bool:
    """A log axis for positive numbers spanning two decades or more.

    >>> wants_log_axis([0.001, 0.1]), wants_log_axis([1, 2, 3]), wants_log_axis(["a"])
    (True, False, False)
    """
    if not is_numeric(values):
        return False
    arr = np.asarray(values, dtype=float)
    return bool(np.all(arr > 0) and arr.max() / arr.min() >= 100)
