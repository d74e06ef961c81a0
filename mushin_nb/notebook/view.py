"""The live view of a sweep: an hvplot of the live Dataset, redrawn as jobs finish.

``run.view()`` is ``LiveView(run).panel()``; the ``%%mushin_sweep`` magic and the
panel use it too.

Rendering
---------
- **JupyterLab 4 and Notebook 7**: works with ``pip install panel`` (its
  ``pyviz_comms`` lab extension comes along). Resources are inlined
  (``pn.extension(inline=True)``, run before ``import hvplot.xarray``), so plots
  render with no internet.
- **VS Code**: install ``jupyter_bokeh`` (and ``ipywidgets``) in the kernel's
  environment; Panel then talks to the page through ipywidgets comms
  (``pn.extension(comms="vscode")`` is picked automatically).
- **While a cell blocks** (the magic's default), the kernel cannot read messages
  from the page (so widgets of the view do nothing until the cell ends), but
  messages from the kernel still go out: the view redraws itself from a timer
  thread, and each ``pane.object = ...`` is pushed to the page.

Throttling: job events only mark the view dirty; a timer thread redraws at most
once per ``interval`` seconds (and once more when the run ends), however fast jobs
finish. ``interval=None`` starts no thread: call :meth:`LiveView.tick` yourself.
"""

from __future__ import annotations

import contextvars
import html
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import param

from . import _deps

__all__ = ["LiveView", "BlockingDisplay", "STATUS_COLORS"]

STATUS_ORDER = ("pending", "running", "done", "failed", "cancelled")
STATUS_COLORS = {
    "pending": "#d0d0d0",
    "running": "#3b82f6",
    "done": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#f59e0b",
}


def _is_run(obj: Any) -> bool:
    return hasattr(obj, "subscribe") and hasattr(obj, "spec") and hasattr(obj, "dataset")


def _numeric(values: Any) -> bool:
    arr = np.asarray(values)
    return arr.dtype.kind in "iuf" and arr.size > 0


def _logx(values: Any) -> bool:
    """A log axis for positive numbers spanning two decades or more."""
    if not _numeric(values):
        return False
    arr = np.asarray(values, dtype=float)
    return bool(np.all(arr > 0) and arr.max() / arr.min() >= 100)


def status_counts_html(status: dict[str, int]) -> str:
    """Coloured badges: ``3 done · 1 failed · ...`` (used by the view and the panel)."""
    parts = []
    for s in STATUS_ORDER:
        n = status.get(s, 0)
        if n or s in ("done", "failed"):
            parts.append(
                f'<span style="background:{STATUS_COLORS[s]};color:{"#000" if s == "pending" else "#fff"};'
                f'border-radius:4px;padding:1px 6px;margin-right:4px">{n} {s}</span>'
            )
    return f"<div>{''.join(parts)} of {status.get('total', 0)}</div>"


class LiveView(param.Parameterized):
    """A live plot of a :class:`~mushin_nb.SweepRun` (or of a finished Dataset).

    Parameters
    ----------
    source : SweepRun or xarray.Dataset
    metric : str, optional
        The metric shown first (default: the first one a job returns).
    interval : float or None
        Redraw at most once per ``interval`` seconds (default 0.25); ``None``
        starts no timer thread (call :meth:`tick`).
    show_cancel : bool
        A Cancel button while the run is going (not useful while a cell blocks).
    reference : xarray.Dataset, optional
        Drawn dashed under the line plots (e.g. an earlier run from NetCDF).
    x : str, optional
        The swept parameter on the x axis.

    ``redraws`` counts redraws (tests use it to check throttling).
    """

    metric = param.Selector(default=None, objects=[], allow_None=True, doc="The metric plotted.")
    x = param.Selector(default=None, objects=[], allow_None=True, doc="The swept parameter on the x axis.")
    kind = param.Selector(
        default="heatmap",
        objects=["heatmap", "lines"],
        doc="With two or more swept parameters: a heatmap, or lines grouped by the other one.",
    )
    interval = param.Number(default=0.25, bounds=(0, None), allow_None=True)
    redraws = param.Integer(default=0, doc="How many times the view was drawn.")

    def __init__(
        self,
        source: Any,
        metric: str | None = None,
        interval: float | None = 0.25,
        show_cancel: bool = True,
        reference: Any = None,
        x: str | None = None,
        kind: str | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(interval=interval)
        self.run = source if _is_run(source) else None
        self._static = None if self.run is not None else source
        self.reference = reference
        self.show_cancel = show_cancel
        self.title = title
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._listeners: list[Callable[[Any], Any]] = []
        self._last_status: dict[str, int] | None = None
        self._in_redraw = False
        self._panel: Any = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.events = 0
        self.error: str | None = None

        ds = self.dataset()
        self.swept = self._swept_dims(ds)
        self.param.x.objects = list(self.swept)
        self.x = x if x in self.swept else (self.swept[0] if self.swept else None)
        if x is not None and x not in self.swept:
            raise ValueError(f"x={x!r} is not a swept parameter; choose one of {self.swept}")
        if kind is not None:
            self.kind = kind
        self._initial_metric = metric
        live = False
        if self.run is not None:  # subscribe before the first draw: no event is missed
            self._unsubscribe = self.run.subscribe(self._on_event)
            live = not self.run.done
        self._update_metrics(ds)
        self._build()
        self.param.watch(self._on_control, ["metric", "x", "kind"])
        self._redraw()
        if live and self.interval is not None:
            # ends after one last redraw once the run is over (at once if it already is);
            # runs in this cell's context, so its output goes to this cell
            ctx = contextvars.copy_context()
            self._thread = threading.Thread(
                target=ctx.run, args=(self._loop,), name="mushin-view", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------ data
    def dataset(self) -> Any:
        """The Dataset now (the run's live one, or the static one given)."""
        return self.run.dataset if self.run is not None else self._static

    @staticmethod
    def _swept_dims(ds: Any) -> list[str]:
        if "status" in ds.data_vars:
            return list(ds["status"].dims)
        vars_ = [v for v in ds.data_vars]
        if not vars_:
            return list(ds.dims)
        common = set(ds[vars_[0]].dims)
        for v in vars_[1:]:
            common &= set(ds[v].dims)
        return [d for d in ds.dims if d in common]

    def metrics(self, ds: Any = None) -> list[str]:
        ds = self.dataset() if ds is None else ds
        return [str(v) for v in ds.data_vars if v != "status" and ds[v].dtype.kind in "iufb"]

    def _update_metrics(self, ds: Any) -> None:
        names = self.metrics(ds)
        if names != list(self.param.metric.objects):
            self.param.metric.objects = names
        if self.metric is None or self.metric not in names:
            want = self._initial_metric
            if want is not None and want in names:
                new = want
            else:
                new = names[0] if names else None
            if new != self.metric:
                self.metric = new

    # ------------------------------------------------------------ events, throttle
    def _on_event(self, ev: Any) -> None:
        self.events += 1
        self._dirty.set()

    def _loop(self) -> None:
        run = self.run
        assert run is not None and self.interval is not None
        while not self._stop.is_set():
            finished = run.join(self.interval)
            try:
                self.tick(force=finished)
            except Exception as e:  # never let the timer thread die silently
                self.error = f"{type(e).__name__}: {e}"
            if finished:
                break

    def tick(self, force: bool = False) -> bool:
        """Redraw if a job finished or a cell changed state since the last draw
        (or ``force``); returns whether it redrew."""
        if self.run is None:
            return False
        status = self.run.status
        if not (force or self._dirty.is_set() or status != self._last_status):
            return False
        self._redraw()
        return True

    def join(self, timeout: float | None = 30) -> None:
        """Wait for the timer thread's last redraw after the run ended."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop redrawing (unsubscribe, end the timer thread)."""
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def add_listener(self, fn: Callable[[Any], Any]) -> None:
        """Call ``fn(dataset)`` after every redraw (from the redrawing thread)."""
        self._listeners.append(fn)

    def _on_control(self, *events: Any) -> None:
        if not self._in_redraw:
            self._redraw()

    # ------------------------------------------------------------ UI
    def _build(self) -> None:
        pn = _deps.pn()
        self._summary = pn.pane.HTML("", margin=(5, 10))
        self._progress = pn.indicators.Progress(value=0, max=1, width=200, margin=(10, 10))
        self._cancel = pn.widgets.Button(**_deps.label("Cancel"), **_deps.color("danger"), width=90)
        self._cancel.on_click(lambda e: self.cancel())
        self._cancel.visible = bool(self.show_cancel and self.run is not None and not self.run.done)
        self._metric_w = pn.widgets.Select.from_param(self.param.metric, **_deps.label("metric"), width=180)
        self._x_w = pn.widgets.Select.from_param(self.param.x, **_deps.label("x axis"), width=150)
        self._kind_w = pn.widgets.RadioButtonGroup.from_param(self.param.kind, width=160, margin=(27, 10))
        ds = self.dataset()
        self._sel: dict[str, Any] = {}
        for d in self.swept:
            opts = {str(v): v for v in ds[d].values.tolist()}
            w = pn.widgets.Select(**_deps.label(d), options=opts, value=next(iter(opts.values())), width=120)
            w.param.watch(self._on_control, "value")
            self._sel[d] = w
        self._plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=320)
        self._status_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=170)
        self._repr = pn.pane.HTML("", sizing_mode="stretch_width", min_width=320)
        self._message = pn.pane.Alert("", alert_type="warning", visible=False)
        controls = pn.Row(self._metric_w, self._x_w, self._kind_w, *self._sel.values())
        head = pn.Row(self._summary, self._progress, self._cancel)
        if self.title:
            head.insert(0, pn.pane.HTML(f"<b>{html.escape(self.title)}</b>", margin=(5, 10)))
        self._panel = pn.Column(
            head,
            controls,
            self._message,
            pn.Row(pn.Column(self._plot, self._status_plot, sizing_mode="stretch_width"), self._repr),
            sizing_mode="stretch_width",
        )

    def panel(self) -> Any:
        """The Panel layout (renders in a notebook; servable)."""
        return self._panel

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self._panel._repr_mimebundle_(include, exclude)

    def __panel__(self) -> Any:
        return self._panel

    def snapshot(self) -> Any:
        """A new, static layout of what the view shows now (for display updates
        while the kernel is busy: see :class:`BlockingDisplay`)."""
        pn = _deps.pn()
        with self._lock:
            return pn.Column(
                pn.Row(pn.pane.HTML(self._summary.object, margin=(5, 10))),
                pn.Row(
                    pn.Column(
                        pn.pane.HoloViews(self._plot.object, sizing_mode="stretch_width", min_height=320),
                        pn.pane.HoloViews(self._status_plot.object, sizing_mode="stretch_width", height=170),
                        sizing_mode="stretch_width",
                    ),
                    pn.pane.HTML(self._repr.object, sizing_mode="stretch_width", min_width=320),
                ),
                sizing_mode="stretch_width",
            )

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self._cancel.disabled = True
            self._cancel.param.update(**_deps.label("Cancelling..."))

    # ------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        with self._lock:
            self._dirty.clear()
            ds = self.dataset()
            status = self.run.status if self.run is not None else _static_status(ds)
            self._last_status = status
            self._in_redraw = True
            try:
                self._update_metrics(ds)
                finished = status["done"] + status["failed"] + status["cancelled"]
                self._summary.object = status_counts_html(status)
                self._progress.max = max(status["total"], 1)
                self._progress.value = min(finished, status["total"])
                if self.run is not None and self.run.done:
                    self._cancel.visible = False
                y = self._second_dim()
                for d, w in self._sel.items():
                    w.visible = d not in (self.x, y)
                self._x_w.visible = len(self.swept) > 1
                self._kind_w.visible = len(self.swept) > 1 and not self._is_array_metric(ds)
                try:
                    self._plot.object = self.make_plot(ds)
                    self._status_plot.object = self.make_status_plot(ds)
                    self._message.visible = False
                except Exception as e:  # a bad plot must not stop the view
                    self.error = f"{type(e).__name__}: {e}"
                    self._message.object = f"Cannot plot: {html.escape(self.error)}"
                    self._message.visible = True
                self._repr.object = ds._repr_html_()
            finally:
                self._in_redraw = False
            self.redraws += 1
        for fn in list(self._listeners):
            try:
                fn(ds)
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"

    def _second_dim(self) -> str | None:
        for d in self.swept:
            if d != self.x:
                return d
        return None

    def _is_array_metric(self, ds: Any) -> bool:
        return self.metric is not None and self.metric in ds and len(ds[self.metric].dims) > len(self.swept)

    def _selection(self, ds: Any, keep: set[str | None]) -> dict[str, Any]:
        return {d: w.value for d, w in self._sel.items() if d not in keep and d in ds.dims}

    def make_plot(self, ds: Any) -> Any:
        """The hvplot of the current metric (an overlay of the reference, if any)."""
        hv = _deps.hv()
        metric = self.metric
        if metric is None or metric not in ds:
            return hv.Curve([]).opts(title="waiting for the first result...", responsive=True, height=300)
        da = ds[metric]
        x = self.x
        own = [d for d in da.dims if d not in self.swept]
        common = dict(responsive=True, height=320, title=metric)
        if not self.swept:
            val = float(da.isel({d: 0 for d in own}).values) if own else float(da.values)
            return hv.Bars([(metric, val)]).opts(**common)
        if own:  # an array per job: lines over its own dim, one per value of x
            keep = {x}
            da = da.sel(self._selection(ds, keep))
            extra = {d: 0 for d in own[1:]}
            if extra:
                da = da.isel(extra)
            return da.hvplot.line(x=own[0], by=x, **common)
        if len(self.swept) == 1 or (self.kind == "lines"):
            y = self._second_dim() if len(self.swept) > 1 else None
            da = da.sel(self._selection(ds, {x, y}))
            kw = dict(x=x, logx=_logx(ds[x].values), **common)
            if y is not None:
                kw["by"] = y
            plot = da.hvplot.line(**kw) * da.hvplot.scatter(**kw)
            ref = self._reference_plot(metric, x, y)
            return plot if ref is None else ref * plot
        y = self._second_dim()
        da = da.sel(self._selection(ds, {x, y}))
        return da.hvplot.heatmap(x=x, y=y, C=metric, **common).opts(tools=["hover"])

    def _reference_plot(self, metric: str, x: str | None, y: str | None) -> Any:
        ref = self.reference
        if ref is None or metric not in ref or x not in ref[metric].dims:
            return None
        da = ref[metric]
        sel = {d: w.value for d, w in self._sel.items() if d not in (x, y) and d in da.dims}
        da = da.sel(sel)
        kw: dict[str, Any] = dict(x=x, line_dash="dashed", alpha=0.6, responsive=True, height=320)
        if y is not None and y in da.dims:
            kw["by"] = y
        extra = [d for d in da.dims if d not in (x, kw.get("by"))]
        if extra:
            da = da.isel({d: 0 for d in extra})
        da = da.rename(f"{metric} (reference)")
        return da.hvplot.line(**kw)

    def make_status_plot(self, ds: Any) -> Any:
        """A grid of the cells coloured by state (pending, running, done, failed,
        cancelled) over the plotted parameters."""
        hv = _deps.hv()
        if "status" not in ds or not self.swept:
            return hv.HeatMap([]).opts(height=60)
        x = self.x
        y = self._second_dim()
        st = ds["status"].sel(self._selection(ds, {x, y}))
        rows = []
        if y is None:
            for xv, s in zip(ds[x].values.tolist(), st.values.tolist()):
                rows.append((xv, "", STATUS_ORDER.index(s), s))
        else:
            st = st.transpose(x, y)
            xs, ys = ds[x].values.tolist(), ds[y].values.tolist()
            for i, xv in enumerate(xs):
                for j, yv in enumerate(ys):
                    s = str(st.values[i, j])
                    rows.append((xv, yv, STATUS_ORDER.index(s), s))
        cmap = [STATUS_COLORS[s] for s in STATUS_ORDER]
        return hv.HeatMap(rows, kdims=[x, y or "cells"], vdims=["code", "status"]).opts(
            cmap=cmap,
            clim=(-0.5, len(STATUS_ORDER) - 0.5),
            colorbar=False,
            tools=["hover"],
            responsive=True,
            height=120 if y is None else 170,
            title="cell state: grey pending, blue running, green done, red failed, orange cancelled",
            fontsize={"title": 9},
        )


def _static_status(ds: Any) -> dict[str, int]:
    out = {s: 0 for s in STATUS_ORDER}
    if "status" in ds:
        vals, counts = np.unique(ds["status"].values, return_counts=True)
        out.update({str(v): int(c) for v, c in zip(vals, counts)})
        out["total"] = int(ds["status"].size)
    else:
        dims = LiveView._swept_dims(ds)
        total = int(math.prod(ds.sizes[d] for d in dims))
        out["done"] = total
        out["total"] = total
    return out


def _quiet() -> Any:
    """No console-output area per render (Panel adds an empty output each time)."""
    pn = _deps.pn()
    return pn.config.set(console_output="disable")


def _dispose(layout: Any) -> None:
    """Forget every rendered copy of ``layout`` (its bokeh models and comms)."""
    from panel.io.state import state

    for ref in list(getattr(layout, "_models", {})):
        root = layout._models[ref][0]
        layout._cleanup(root)
        state._views.pop(ref, None)


class BlockingDisplay:
    """Show a :class:`LiveView` in a cell that blocks until the run ends.

    While a cell runs, the kernel reads no message from the page, so a Panel
    comm that the page opens is not open yet and widget updates would wait. This
    display sends each redraw as an IPython ``update_display_data`` message
    instead (kernel -> page only, works in JupyterLab, Notebook 7, VS Code and
    nbclient): a fresh static snapshot each time. :meth:`finish` puts the live,
    interactive view in its place once the run has ended.
    """

    def __init__(self, view: LiveView) -> None:
        from IPython.display import display

        self.view = view
        self.updates = 0
        self._lock = threading.Lock()
        self.current = view.snapshot()
        with _quiet():
            self.handle = display(self.current, display_id=True)
        view.add_listener(self._update)

    def _update(self, ds: Any) -> None:
        with self._lock:
            if self.handle is None:
                return
            old, self.current = self.current, self.view.snapshot()
            with _quiet():
                self.handle.update(self.current)
            self.updates += 1
            _dispose(old)

    def finish(self) -> None:
        """Replace the snapshots by the live view (interactive once the cell ends)."""
        with self._lock:
            if self._update in self.view._listeners:
                self.view._listeners.remove(self._update)
            if self.handle is not None:
                self.handle.update(self.view.panel())
                _dispose(self.current)
                self.handle = None
