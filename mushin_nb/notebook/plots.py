"""The plot kinds of the live view: one registry, two renderers per kind.

A :class:`PlotKind` is one spec: when it applies to a sweep's Dataset, how it is
drawn interactively (HoloViews/hvplot, in :class:`~mushin_nb.notebook.view.LiveView`)
and how it is drawn statically (matplotlib, in :func:`render_png`, which a
``%%mushin_sweep`` cell shows while it blocks). Both renderers get the same
:class:`PlotContext`, and :func:`choose_kind` picks the kind for both, so what a
blocking cell shows is what the live view shows once the cell ends. Adding a kind
is registering one spec with :func:`register_plot_kind`.

Built-in kinds, in the order they are tried:

- ``bars`` (automatic): one job, no swept parameter;
- ``array`` (automatic): a metric that is an array per job, drawn as lines over
  its own dimension, one per value of the x parameter;
- ``heatmap``: two or more swept parameters, x against the second one;
- ``lines``: one or more swept parameters, a line over x (grouped by the second one).

An *automatic* kind is taken whenever it applies, whatever kind is asked for; of the
others, the one asked for if it applies, else the first that does.

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"acc": (("lr", "seed"), np.arange(6.0).reshape(3, 2))},
...                 coords={"lr": [0.01, 0.1, 1.0], "seed": [0, 1]})
>>> ctx = plot_context(ds)
>>> ctx.metric, ctx.x, ctx.y, choose_kind(ctx).name, choose_kind(ctx, "lines").name
('acc', 'lr', 'seed', 'heatmap', 'lines')
>>> render_png(ds, kind="lines")[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _kinds
from ._mpl import new_axes
from ._status import metric_names, swept_dims

__all__ = [
    "PlotContext",
    "PlotKind",
    "plot_context",
    "register_plot_kind",
    "unregister_plot_kind",
    "plot_kinds",
    "choose_kind",
    "interactive_plot",
    "render_png",
]


@dataclass(frozen=True)
class PlotContext:
    """What a renderer draws: the Dataset and the view's choices.

    Parameters
    ----------
    ds : xarray.Dataset
        The sweep's Dataset now (a live one has cells without results).
    metric : str or None
        The variable shown (None: no job has returned one yet).
    x : str or None
        The swept parameter on the x axis (None: nothing is swept).
    y : str or None
        The second swept parameter (heatmap rows, line groups), or None.
    swept : tuple of str
        Every swept parameter (the Dataset's grid dimensions).
    selection : Mapping
        A value for each swept parameter other than ``x`` (``y`` included): the slice
        shown of the parameters the plot does not lay out.
    reference : xarray.Dataset, optional
        An earlier run to draw under the new one (dashed lines).
    title : str, optional
        The view's title (the workflow's name).
    """

    ds: Any
    metric: str | None
    x: str | None
    y: str | None
    swept: tuple[str, ...]
    selection: Mapping[str, Any] = field(default_factory=dict)
    reference: Any = None
    title: str | None = None

    @property
    def own_dims(self) -> list[str]:
        """The metric's dimensions that are not swept (an array per job)."""
        if self.metric is None or self.metric not in self.ds:
            return []
        return [str(d) for d in self.ds[self.metric].dims if d not in self.swept]

    def data(self, keep: Iterable[str | None] = ()) -> Any:
        """The metric's DataArray at :attr:`selection`, except for the dims in ``keep``."""
        if self.metric is None:
            raise ValueError("no metric to plot yet")
        return self._select(self.ds[self.metric], keep)

    def status(self, keep: Iterable[str | None] = ()) -> Any:
        """The ``status`` variable at :attr:`selection` (None if the Dataset has none)."""
        if "status" not in self.ds:
            return None
        return self._select(self.ds["status"], keep)

    def _select(self, da: Any, keep: Iterable[str | None]) -> Any:
        keep = set(keep)
        sel = {d: v for d, v in self.selection.items() if d not in keep and d in da.dims}
        return da.sel(sel) if sel else da


def plot_context(
    ds: Any,
    *,
    metric: str | None = None,
    x: str | None = None,
    selection: Mapping[str, Any] | None = None,
    reference: Any = None,
    title: str | None = None,
) -> PlotContext:
    """A :class:`PlotContext` for ``ds``: ``metric`` if it is one of its numeric
    variables (else the first), ``x`` if it is swept (else the first swept
    parameter), and the first value of every parameter ``selection`` does not set."""
    swept = tuple(swept_dims(ds))
    names = metric_names(ds)
    metric = metric if metric in names else (names[0] if names else None)
    x = x if x in swept else (swept[0] if swept else None)
    y = next((d for d in swept if d != x), None)
    given = dict(selection or {})
    chosen = {d: given[d] if d in given else ds[d].values[0] for d in swept if d != x}
    return PlotContext(ds, metric, x, y, swept, chosen, reference, title)


@dataclass(frozen=True)
class PlotKind:
    """One kind of plot of the live view, drawn two ways that share the choice.

    Parameters
    ----------
    name : str
        What ``LiveView(kind=...)``, ``render_png(kind=...)`` and ``%%mushin_sweep
        --kind`` take.
    applies : callable
        ``applies(ctx) -> bool``: whether this kind can draw the :class:`PlotContext`.
    interactive : callable
        ``interactive(ctx)`` -> a HoloViews element (hvplot), for the live view.
    static : callable
        ``static(ctx, ax)``: draws on a matplotlib ``Axes``, for the PNG a blocking
        cell shows. Called only once a metric has a value (``ctx.metric`` is set).
    automatic : bool
        Taken whenever it applies, whatever kind is asked for (the data's shape
        decides: one job, an array per job); not offered in the view's kind menu.
    description : str
        One line for the reader.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> def bars(ctx):
    ...     return ctx.data(keep=[ctx.x]).hvplot.bar(x=ctx.x)
    >>> def bars_png(ctx, ax):
    ...     da = ctx.data(keep=[ctx.x])
    ...     ax.bar([str(v) for v in da[ctx.x].values], np.nan_to_num(da.values))
    >>> kind = register_plot_kind(PlotKind("bar_chart", lambda ctx: ctx.x is not None, bars, bars_png))
    >>> ds = xr.Dataset({"acc": ("lr", [0.5, 0.75])}, coords={"lr": [0.1, 1.0]})
    >>> choose_kind(plot_context(ds), "bar_chart") is kind
    True
    >>> render_png(ds, kind="bar_chart")[:4]
    b'\\x89PNG'
    >>> unregister_plot_kind("bar_chart")
    """

    name: str
    applies: Callable[[PlotContext], bool]
    interactive: Callable[[PlotContext], Any]
    static: Callable[[PlotContext, Any], Any]
    automatic: bool = False
    description: str = ""


_KINDS: dict[str, PlotKind] = {}


def register_plot_kind(kind: PlotKind, *, replace: bool = False) -> PlotKind:
    """Add ``kind`` to the registry (tried after the kinds registered before it);
    ``replace=True`` puts it in place of a kind of the same name. Returns it."""
    if not isinstance(kind, PlotKind):
        raise TypeError(f"register_plot_kind takes a PlotKind, got {type(kind).__name__}")
    if not kind.name or not isinstance(kind.name, str):
        raise ValueError(f"a plot kind needs a name (a non-empty str), got {kind.name!r}")
    if kind.name in _KINDS and not replace:
        raise ValueError(
            f"a plot kind named {kind.name!r} is registered already; pass replace=True to replace it"
        )
    _KINDS[kind.name] = kind
    return kind


def unregister_plot_kind(name: str) -> None:
    """Remove the kind ``name`` from the registry (nothing if it is not there)."""
    _KINDS.pop(name, None)


def plot_kinds(*, automatic: bool | None = None) -> list[PlotKind]:
    """The registered kinds in the order they are tried (only the automatic ones, or
    only the others, if ``automatic`` says so).

    >>> [k.name for k in plot_kinds(automatic=False)][:2]
    ['heatmap', 'lines']
    """
    return [k for k in _KINDS.values() if automatic is None or k.automatic == automatic]


def choose_kind(ctx: PlotContext, requested: str | None = None) -> PlotKind:
    """The kind that draws ``ctx``: an automatic kind that applies, else ``requested``
    if it applies, else the first kind that applies. The live view and
    :func:`render_png` both choose with this function."""
    for k in plot_kinds(automatic=True):
        if k.applies(ctx):
            return k
    if requested is not None:
        if requested not in _KINDS:
            names = ", ".join(repr(k.name) for k in plot_kinds(automatic=False))
            raise ValueError(f"kind={requested!r} is not a plot kind; choose one of {names}")
        kind = _KINDS[requested]
        if not kind.automatic and kind.applies(ctx):
            return kind
    for k in plot_kinds(automatic=False):
        if k.applies(ctx):
            return k
    raise LookupError(f"no registered plot kind draws {len(ctx.swept)} swept parameters")


def interactive_plot(ctx: PlotContext, kind: str | None = None) -> Any:
    """The HoloViews element of ``ctx`` (an empty plot saying it waits while no
    metric has a value yet)."""
    if ctx.metric is None or ctx.metric not in ctx.ds:
        return _kinds.waiting_element()
    return choose_kind(ctx, kind).interactive(ctx)


def render_png(
    ds: Any,
    metric: str | None = None,
    x: str | None = None,
    title: str | None = None,
    dpi: int = 80,
    kind: str | None = None,
    selection: Mapping[str, Any] | None = None,
) -> bytes:
    """A PNG of a sweep's (live) Dataset, drawn with matplotlib (Agg, no pyplot
    figure) by the static renderer of the kind :func:`choose_kind` picks: a line
    with markers over one swept parameter, a heatmap over two (the others at their
    first value, or at ``selection``), lines of an array metric. Cells without a
    result are marked in their colour: pending grey hatched, running blue dotted,
    failed red crossed, cancelled orange hatched."""
    ctx = plot_context(ds, metric=metric, x=x, selection=selection, title=title)
    fig, ax = new_axes(dpi)
    if ctx.metric is None:
        _kinds.waiting_static(ctx, ax)
    else:
        choose_kind(ctx, kind).static(ctx, ax)
    head = " - ".join(t for t in (title, ctx.metric or "waiting for the first result") if t)
    where = ", ".join(f"{d}={v!r}" for d, v in ctx.selection.items() if d != ctx.y)
    if where:
        head += f" (at {where})"
    ax.set_title("")  # e.g. xarray's own (the scalar coordinates), centred
    ax.set_title(head, fontsize=10, loc="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


for _kind in (
    PlotKind("bars", _kinds.bars_applies, _kinds.bars_hv, _kinds.bars_mpl, True, "one job: its value"),
    PlotKind(
        "array",
        _kinds.array_applies,
        _kinds.array_hv,
        _kinds.array_mpl,
        True,
        "an array per job: lines over its own dimension, one per value of x",
    ),
    PlotKind("heatmap", _kinds.heatmap_applies, _kinds.heatmap_hv, _kinds.heatmap_mpl, False, "x against y"),
    PlotKind(
        "lines", _kinds.lines_applies, _kinds.lines_hv, _kinds.lines_mpl, False, "a line over x, one per y"
    ),
):
    register_plot_kind(_kind)
del _kind
