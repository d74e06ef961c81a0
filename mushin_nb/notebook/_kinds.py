"""The built-in plot kinds' renderers (registered by :mod:`.plots`): for each kind,
``<kind>_applies(ctx)``, ``<kind>_hv(ctx)`` (HoloViews, interactive) and
``<kind>_mpl(ctx, ax)`` (matplotlib, static); plus the cell-state grid of the live
view and the static plot shown before any metric has a value.

HoloViews/hvplot and matplotlib are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _deps
from ._mpl import cell_edges, cell_style, mark_spans, marks_legend, set_ticks
from ._status import STATUS_COLORS, STATUS_ORDER, is_numeric, wants_log_axis

if TYPE_CHECKING:
    from .plots import PlotContext

__all__ = [
    "bars_applies",
    "bars_hv",
    "bars_mpl",
    "array_applies",
    "array_hv",
    "array_mpl",
    "lines_applies",
    "lines_hv",
    "lines_mpl",
    "heatmap_applies",
    "heatmap_hv",
    "heatmap_mpl",
    "waiting_element",
    "waiting_static",
    "status_grid",
    "factors",
]


def _common(ctx: PlotContext) -> dict[str, Any]:
    return dict(responsive=True, height=320, title=ctx.metric)


def _finite(values: Any) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=float)).any())


# --------------------------------------------------------------------------- waiting


def waiting_element() -> Any:
    """The interactive plot before any job has returned a metric."""
    hv = _deps.hv()
    return hv.Curve([]).opts(title="waiting for the first result...", responsive=True, height=300)


def waiting_static(ctx: PlotContext, ax: Any) -> None:
    """The static plot before any job has returned a metric: the cells, marked by state."""
    if not ctx.swept:
        ax.text(0.5, 0.5, "waiting for the result", ha="center", va="center", transform=ax.transAxes)
    elif ctx.y is None:
        lines_mpl(ctx, ax)
    else:
        heatmap_mpl(ctx, ax)


# --------------------------------------------------------------------------- bars: one job


def bars_applies(ctx: PlotContext) -> bool:
    """One job: nothing is swept."""
    return not ctx.swept


def bars_hv(ctx: PlotContext) -> Any:
    """A bar of the job's value."""
    hv = _deps.hv()
    da, own = ctx.data(), ctx.own_dims
    val = float(da.isel({d: 0 for d in own}).values) if own else float(da.values)
    return hv.Bars([(ctx.metric, val)]).opts(**_common(ctx))


def bars_mpl(ctx: PlotContext, ax: Any) -> None:
    """A bar of the job's value (a text while it has none)."""
    val = float(np.asarray(ctx.data().values).ravel()[0])
    if np.isfinite(val):
        ax.bar([ctx.metric], [val], color="C0")
    else:
        ax.text(0.5, 0.5, "waiting for the result", ha="center", va="center", transform=ax.transAxes)


# --------------------------------------------------------------------------- array: an array per job


def array_applies(ctx: PlotContext) -> bool:
    """The metric has dimensions of its own (an array per job)."""
    return bool(ctx.own_dims)


def array_hv(ctx: PlotContext) -> Any:
    """Lines over the metric's own (first) dimension, one per value of x."""
    _deps.hv()
    own = ctx.own_dims
    da = ctx.data(keep=[ctx.x])
    extra = {d: 0 for d in own[1:]}
    if extra:
        da = da.isel(extra)
    return da.hvplot.line(x=own[0], by=ctx.x, **_common(ctx))


def array_mpl(ctx: PlotContext, ax: Any) -> None:
    """Lines over the metric's own dimension, one per value of x; the values of x
    with no line yet are listed with their state."""
    x = ctx.x
    assert x is not None
    da = ctx.data(keep=[x])
    own = [str(d) for d in da.dims if d != x]
    if len(own) > 1:
        da = da.isel({d: 0 for d in own[1:]})
    st = ctx.status(keep=[x])
    hue_vals = ctx.ds[x].values.tolist()
    states: set[str] = set()
    for i, xv in enumerate(hue_vals):
        line = da.isel({x: i})
        s = str(st.values[i]) if st is not None else "done"
        if _finite(line.values):
            ax.plot(da[own[0]].values, line.values, marker=".", label=f"{x}={xv}")
        elif s != "done":
            states.add(s)
    ax.set_xlabel(own[0])
    ax.set_ylabel(str(ctx.metric))
    handles, _ = ax.get_legend_handles_labels()
    if states and st is not None:
        waiting = [
            f"{x}={xv} ({st.values[i]})" for i, xv in enumerate(hue_vals) if str(st.values[i]) != "done"
        ]
        ax.text(
            0.01,
            0.02,
            "no line yet: " + ", ".join(waiting)[:160],
            transform=ax.transAxes,
            fontsize=8,
            color="#555",
        )
    marks_legend(ax, states, handles[:12])


# --------------------------------------------------------------------------- lines over x


def lines_applies(ctx: PlotContext) -> bool:
    """At least one swept parameter."""
    return bool(ctx.swept)


def _reference_hv(ctx: PlotContext) -> Any:
    """The reference run's curves (dashed), or None if it has none to show."""
    ref, metric, x, y = ctx.reference, ctx.metric, ctx.x, ctx.y
    if ref is None or metric is None or metric not in ref or x not in ref[metric].dims:
        return None
    da = ref[metric]
    sel = {d: v for d, v in ctx.selection.items() if d not in (x, y) and d in da.dims}
    da = da.sel(sel)
    kw: dict[str, Any] = dict(x=x, line_dash="dashed", alpha=0.6, responsive=True, height=320)
    if y is not None and y in da.dims:
        kw["by"] = y
    extra = [d for d in da.dims if d not in (x, kw.get("by"))]
    if extra:
        da = da.isel({d: 0 for d in extra})
    return da.rename(f"{metric} (reference)").hvplot.line(**kw)


def lines_hv(ctx: PlotContext) -> Any:
    """A line with markers over x (one per value of y), over the reference if any."""
    _deps.hv()
    x, y = ctx.x, ctx.y
    da = ctx.data(keep=[x, y])
    kw: dict[str, Any] = dict(x=x, logx=wants_log_axis(ctx.ds[x].values), **_common(ctx))
    if y is not None:
        kw["by"] = y
    plot = da.hvplot.line(**kw) * da.hvplot.scatter(**kw)
    ref = _reference_hv(ctx)
    return plot if ref is None else ref * plot


def _x_axis(ctx: PlotContext, ax: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions and cell edges of the x values; the axis labelled, scaled, ticked."""
    x = ctx.x
    assert x is not None
    xs = ctx.ds[x].values
    numeric = is_numeric(xs)
    log = numeric and wants_log_axis(xs)
    pos = np.asarray(xs, dtype=float) if numeric else np.arange(len(xs), dtype=float)
    ax.set_xlabel(x)
    if log:
        ax.set_xscale("log")
    if not numeric:
        set_ticks(ax, "x", xs.tolist())
    return pos, cell_edges(pos, log)


def _column_states(st: Any, x: str, y: str) -> list[str]:
    """Per value of x: ``done`` if a cell of that column is, else its most common state."""
    out = []
    for col in st.transpose(x, y).values.tolist():
        col = [str(s) for s in col]
        out.append("done" if "done" in col else max(set(col), key=col.count))
    return out


def lines_mpl(ctx: PlotContext, ax: Any) -> None:
    """A line with markers over x (one per value of y); cells without a result shaded
    in their state's colour (with y: the columns where no cell has one)."""
    from matplotlib.lines import Line2D

    x, y = ctx.x, ctx.y
    assert x is not None
    pos, edges = _x_axis(ctx, ax)
    handles: list[Any] = []
    if ctx.metric is not None:
        da = ctx.data(keep=[x, y]).assign_coords({x: pos})
        if y is None:
            if _finite(da.values):
                da.plot.line(ax=ax, x=x, marker="o", color="C0")
            handles = [Line2D([], [], color="C0", marker="o", label="done")]
        else:
            da = da.transpose(x, y)
            for j, yv in enumerate(ctx.ds[y].values.tolist()):
                vals = np.asarray(da.isel({y: j}).values, dtype=float)
                if np.isfinite(vals).any():
                    ax.plot(pos, vals, marker="o", label=f"{y}={yv}")
            handles = ax.get_legend_handles_labels()[0][:12]
        ax.set_ylabel(ctx.metric)
    st = ctx.status(keep=[x, y])
    states: set[str] = set()
    if st is not None:
        per_x = [str(s) for s in st.values.tolist()] if y is None else _column_states(st, x, y)
        states = mark_spans(ax, edges, per_x)
    ax.set_xlim(edges[0], edges[-1])
    marks_legend(ax, states, handles or None)


# --------------------------------------------------------------------------- heatmap: x against y


def heatmap_applies(ctx: PlotContext) -> bool:
    """Two or more swept parameters."""
    return len(ctx.swept) >= 2


def heatmap_hv(ctx: PlotContext) -> Any:
    """A heatmap of x against y, one equal cell per value (categorical axes)."""
    _deps.hv()
    x, y = ctx.x, ctx.y
    da = ctx.data(keep=[x, y])
    # categorical axes: one equal-sized cell per swept value (0.01, 0.1, 1 are
    # three cells, not a log-spaced strip), labelled with the value
    da = da.assign_coords({d: factors(da[d].values) for d in (x, y)})
    return da.hvplot.heatmap(x=x, y=y, C=ctx.metric, **_common(ctx)).opts(tools=["hover"])


def heatmap_mpl(ctx: PlotContext, ax: Any) -> None:
    """A heatmap of x against y; cells without a result hatched in their state's colour."""
    from matplotlib.patches import Rectangle

    x, y = ctx.x, ctx.y
    assert x is not None and y is not None
    xs, ys = ctx.ds[x].values.tolist(), ctx.ds[y].values.tolist()
    if ctx.metric is not None:
        da = ctx.data(keep=[x, y]).transpose(y, x)
        if _finite(da.values):
            at = da.assign_coords({x: np.arange(len(xs)), y: np.arange(len(ys))})
            at.plot.pcolormesh(
                ax=ax, x=x, y=y, cmap="viridis", cbar_kwargs={"label": ctx.metric, "pad": 0.01}
            )
    st = ctx.status(keep=[x, y])
    states: set[str] = set()
    if st is not None:
        cells = st.transpose(y, x).values
        for j in range(len(ys)):
            for i in range(len(xs)):
                s = str(cells[j, i])
                if s != "done":
                    states.add(s)
                    ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, linewidth=0.5, **cell_style(s, 0.15)))
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    set_ticks(ax, "x", xs)
    set_ticks(ax, "y", ys)
    marks_legend(ax, states)


# --------------------------------------------------------------------------- the cell-state grid


def factors(values: Any) -> list[str]:
    """The labels of a categorical axis: one per swept value, in the grid's order
    (the heatmap's axes and the state grid's, so their cells line up).

    >>> factors(np.array([0.5, 1.0, 2.0])), factors(["a", "b"])
    (['0.5', '1.0', '2.0'], ['a', 'b'])
    """
    return [str(v) for v in np.asarray(values).tolist()]


def status_grid(ctx: PlotContext) -> Any:
    """The live view's grid of cells coloured by state (pending, running, done,
    failed, cancelled) over x (and y): categorical axes with the heatmap's factors
    (one equal cell per swept value), and a legend of the states' colours."""
    hv = _deps.hv()
    st = ctx.status(keep=[ctx.x, ctx.y])
    if st is None or not ctx.swept:
        return hv.HeatMap([]).opts(height=60)
    x, y = ctx.x, ctx.y
    assert x is not None
    xs = factors(ctx.ds[x].values)
    if y is None:
        cols = {x: xs, "cells": [""] * len(xs), "status": [str(s) for s in st.values.tolist()]}
    else:
        ys = factors(ctx.ds[y].values)
        cells = st.transpose(x, y).values
        cols = {
            x: [xv for xv in xs for _ in ys],
            y: ys * len(xs),
            "status": [str(s) for s in cells.ravel().tolist()],
        }
    return hv.HeatMap(cols, kdims=[x, y or "cells"], vdims=["status"]).opts(
        cmap=dict(STATUS_COLORS),
        colorbar=False,
        tools=["hover"],
        responsive=True,
        height=130 if y is None else 190,
        yaxis=None if y is None else "left",
        hooks=[_state_legend],
    )


def _state_legend(plot: Any, element: Any) -> None:
    """A legend of every state's colour right of the grid (where the heatmap has its
    colour bar), added once per figure: the hook runs again at each update."""
    fig = plot.state
    if any(getattr(leg, "name", None) == "mushin-states" for leg in fig.right):
        return
    from bokeh.models import ColumnDataSource, Legend, LegendItem, Rect

    items = []
    for s in STATUS_ORDER:  # a swatch per state: a glyph of its colour at no place (NaN)
        glyph = Rect(x="x", y="y", width=1, height=1, fill_color=STATUS_COLORS[s], line_color=None)
        r = fig.add_glyph(ColumnDataSource(data={"x": [np.nan], "y": [np.nan]}), glyph)
        items.append(LegendItem(label=s, renderers=[r]))
    legend = Legend(
        items=items,
        name="mushin-states",
        label_text_font_size="8pt",
        glyph_height=12,
        glyph_width=12,
        spacing=1,
        padding=4,  # pyright: ignore[reportArgumentType]  (bokeh types its properties as Property[...])
        margin=4,
        border_line_alpha=0,
    )
    fig.add_layout(legend, "right")
