"""The live view of a sweep: an hvplot of the live Dataset, redrawn as jobs finish.

``run.view()`` is ``LiveView(run).panel()``; the panel and ``%%mushin_sweep
--background`` use it too. A ``%%mushin_sweep`` cell that blocks shows a
:class:`BlockingDisplay` instead, then the live view when the run ends.

Rendering
---------
- **JupyterLab 4 and Notebook 7**: works with ``pip install panel`` (its
  ``pyviz_comms`` lab extension comes along). Resources are inlined
  (``pn.extension(inline=True)``, see :mod:`._deps`), so plots render with no
  internet.
- **VS Code**: install ``jupyter_bokeh`` (and ``ipywidgets``) in the kernel's
  environment; Panel then talks to the page through ipywidgets comms
  (``pn.extension(comms="vscode")`` is picked automatically).
- **While a cell blocks** (the magic's default), the kernel reads no message from
  the page, and a Panel/bokeh output cannot be re-rendered in place
  (``update_display_data`` of a bokeh bundle breaks the pyviz renderer). So
  :class:`BlockingDisplay` sends plain MIME updates that every frontend redraws
  in place: ``text/html`` (status badges, the Dataset's HTML repr) and an
  ``image/png`` drawn with matplotlib (Agg) from the live Dataset. When the run
  ends, the interactive view is shown as a new output.

Threads
-------
Job events only mark the view dirty; a timer thread decides at most once per
``interval`` seconds (and once more when the run ends) that a redraw is due, however
fast jobs finish. ``interval=None`` starts no thread: call :meth:`LiveView.tick`.

Bokeh models are changed on one thread only, the one that owns them: a redraw
changes models, so Panel sends messages to the page, and those must not
interleave with the messages the kernel (or the server) sends itself. The timer
thread therefore only *schedules* the redraw:

- in a Jupyter kernel, on the kernel's main event loop
  (``get_ipython().kernel.io_loop.add_callback``), where Panel also handles the
  page's messages;
- in a served app (``pn.serve`` / ``mushin-nb serve``), on the session's
  document (``pn.state.execute(..., schedule=True)``, i.e.
  ``doc.add_next_tick_callback``, with the document lock);
- elsewhere (a script, tests), it redraws itself.
"""

from __future__ import annotations

import base64
import contextvars
import html
import io
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import param

from . import _deps

__all__ = ["LiveView", "BlockingDisplay", "STATUS_COLORS", "render_png", "MainThread", "run_view"]

STATUS_ORDER = ("pending", "running", "done", "failed", "cancelled")
STATUS_COLORS = {
    "pending": "#d0d0d0",
    "running": "#3b82f6",
    "done": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#f59e0b",
}


def _timer_loop(owner: Any, step: Callable[[bool], Any]) -> None:
    """The redraw timer of a view: every ``owner.interval`` seconds (and once when
    the run ends) call ``step(finished)``, until ``owner._stop`` is set; an error is
    kept in ``owner.error`` and never kills the thread."""
    while not owner._stop.is_set():
        finished = owner.run.join(owner.interval)
        try:
            step(finished)
        except Exception as e:
            owner.error = f"{type(e).__name__}: {e}"
        if finished:
            break


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


class MainThread:
    """Runs callbacks on the thread that owns the bokeh models, from any thread.

    Captured where the view is created: a served session's document if there is
    one; else the event loop running in the creating thread (in a kernel: the
    main shell's loop for a view made by a cell, or the subshell's loop for a view
    made by a widget callback: JupyterLab >= 4.4 sends comm messages to a kernel
    subshell, which handles them on its own thread); else the kernel's main loop;
    else nothing (callbacks then run at once: scripts, tests without a kernel).
    :meth:`adopt` moves to the thread that handles the page's messages when one of
    them reaches the view from another thread.
    """

    def __init__(self) -> None:
        self.doc: Any = None
        self.loop: Any = None  # an asyncio loop (call_soon_threadsafe)
        self.thread: threading.Thread | None = None
        try:
            from panel.io.state import state

            doc = state.curdoc
            if doc is not None and doc.session_context is not None:
                self.doc = doc
                self.thread = threading.current_thread()
                return
        except Exception:  # pragma: no cover
            pass
        ip = _deps._ipython()
        kernel = getattr(ip, "kernel", None) if ip is not None else None
        if kernel is None:
            return  # no kernel, no server: nothing to hand over to
        if not self.adopt():
            io_loop = getattr(kernel, "io_loop", None)
            if io_loop is not None:
                self.loop = io_loop.asyncio_loop
                self.thread = threading.main_thread()

    def adopt(self) -> bool:
        """Own the calling thread if an event loop runs in it (and no served
        document is the owner); returns whether it does now."""
        if self.doc is not None:
            return False
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.loop, self.thread = loop, threading.current_thread()
        return True

    @property
    def deferred(self) -> bool:
        """Whether :meth:`call` schedules (True) or runs at once (False)."""
        return self.doc is not None or self.loop is not None

    def here(self) -> bool:
        """Whether the calling thread is the one that owns the models."""
        return self.thread is None or threading.current_thread() is self.thread

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the owning thread: scheduled from another thread (in
        this thread's context, so outputs go to the cell that started it)."""
        if self.doc is not None:
            from panel.io.state import set_curdoc, state

            with set_curdoc(self.doc):
                state.execute(fn, schedule=True)  # doc.add_next_tick_callback, locked
        elif self.loop is not None:
            self.loop.call_soon_threadsafe(fn)
        else:
            fn()


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
        self._main = MainThread()
        self._pipes: Any = None  # the streams feeding the panes' DynamicMaps
        self._plot_key: Any = None
        self.plot_element: Any = None  # the HoloViews element shown now
        self.status_element: Any = None
        self._drawn_at = 0.0  # when the last redraw ended (time.monotonic())
        self._draw_cost = 0.0  # how long it took
        self._queued = False  # a redraw is scheduled on the owning thread, not run yet
        self._queued_force = False
        self._idle = threading.Event()  # no scheduled redraw is waiting
        self._idle.set()
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
        assert self.run is not None and self.interval is not None
        _timer_loop(self, lambda finished: self._request(force=finished))

    def _due(self) -> bool:
        return self._dirty.is_set() or (self.run is not None and self.run.status != self._last_status)

    def _request(self, force: bool = False) -> None:
        """From the timer thread: have the owning thread redraw if one is due (see
        the module's docstring); at most one scheduled redraw waits at a time."""
        if not self._main.deferred:
            self.tick(force=force)
            return
        with self._lock:
            if self._queued:  # the one waiting will see the latest state
                self._queued_force = self._queued_force or force
                return
            if not (force or self._due()):
                return
            # the owning thread also serves the page (and the notebook's cells): keep
            # it mostly free when redraws are slow (a slow machine, a big grid)
            if not force and time.monotonic() - self._drawn_at < max(self.interval or 0, 2 * self._draw_cost):
                return
            self._queued, self._queued_force = True, force
            self._idle.clear()
        try:
            self._main.call(self._run_queued)
        except BaseException:
            with self._lock:
                self._queued = False
                self._idle.set()
            raise

    def _run_queued(self) -> None:
        with self._lock:
            force, self._queued, self._queued_force = self._queued_force, False, False
        try:
            if not self._stop.is_set():
                self.tick(force=force)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._idle.set()

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
        """Wait for the timer thread's last redraw after the run ended (when the
        redraw is scheduled on the owning thread and this is another thread, wait
        for it to run too; the owning thread itself cannot wait for it)."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._main.deferred and not self._main.here():
            self._idle.wait(timeout)

    def close(self) -> None:
        """Stop redrawing (unsubscribe, end the timer thread)."""
        self._stop.set()
        self._idle.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def add_listener(self, fn: Callable[[Any], Any]) -> None:
        """Call ``fn(dataset)`` after every redraw (on the thread that owns the
        models: Panel widgets may be changed there)."""
        self._listeners.append(fn)

    def _on_control(self, *events: Any) -> None:
        if not self._main.here():  # a message from the page, handled on another thread
            self._main.adopt()
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
        # linked_axes=False: each redraw replaces both plots; Panel's axis linking would
        # make the new figure of one share a range with the figure of the other that
        # the next replacement removes (the page then meets references it dropped)
        self._plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=320, linked_axes=False)
        self._status_plot = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", height=170, linked_axes=False
        )
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

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self._cancel.disabled = True
            self._cancel.param.update(**_deps.label("Cancelling..."))

    # ------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        t0 = time.monotonic()
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
                    self._show_plots(ds)
                    self._message.visible = False
                except Exception as e:  # a bad plot must not stop the view
                    self.error = f"{type(e).__name__}: {e}"
                    self._message.object = f"Cannot plot: {html.escape(self.error)}"
                    self._message.visible = True
                self._repr.object = ds._repr_html_()
            finally:
                self._in_redraw = False
            self.redraws += 1
            self._drawn_at = time.monotonic()
            self._draw_cost = self._drawn_at - t0
        for fn in list(self._listeners):
            try:
                fn(ds)
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"

    def _show_plots(self, ds: Any) -> None:
        """Put the plots of ``ds`` in the panes. While their structure stays (the
        same metric, axes, selection, element types), the new elements go through
        a stream into the DynamicMaps the panes hold: HoloViews then updates the
        data of the bokeh figures already on the page (cheap; no model is replaced).
        Otherwise (a control changed, the first result arrived) new DynamicMaps."""
        elem = self.make_plot(ds)
        status = self.make_status_plot(ds)
        key = (
            self.metric,
            self.x,
            self._second_dim(),
            self.kind,
            tuple(repr(w.value) for w in self._sel.values()),
            id(self.reference),
            _structure(elem),
            _structure(status),
        )
        if key == self._plot_key and self._pipes is not None:
            self._pipes[0].send(elem)
            self._pipes[1].send(status)
        else:
            hv = _deps.hv()
            pipes = (hv.streams.Pipe(data=elem), hv.streams.Pipe(data=status))
            self._pipes, self._plot_key = pipes, key
            self._plot.object = hv.DynamicMap(_same, streams=[pipes[0]]).opts(framewise=True)
            self._status_plot.object = hv.DynamicMap(_same, streams=[pipes[1]])
        self.plot_element, self.status_element = elem, status

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
        # categorical axes: one equal-sized cell per swept value (0.01, 0.1, 1 are
        # three cells, not a log-spaced strip), labelled with the value
        da = da.assign_coords({d: [str(v) for v in da[d].values] for d in (x, y)})
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


def _same(data: Any) -> Any:
    return data


def _structure(elem: Any) -> tuple[Any, ...]:
    """What must not change for an element to replace another in a DynamicMap."""
    keys = tuple(elem.keys()) if hasattr(elem, "keys") and callable(elem.keys) else ()
    return (type(elem).__name__, keys)


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


# --------------------------------------------------------------------------- static rendering

# how a cell that has no result (yet) is marked on the static plot
STATUS_HATCH = {"pending": "///", "running": "...", "failed": "xx", "cancelled": "\\\\\\"}
STATUS_ALPHA = {"pending": 0.35, "running": 0.25, "failed": 0.45, "cancelled": 0.45}


def _cell_style(state: str, extra_alpha: float = 0.0) -> dict[str, Any]:
    """A marked cell: a translucent face, a solid hatch (``alpha=`` would fade both)."""
    from matplotlib.colors import to_rgba

    return dict(
        facecolor=to_rgba(STATUS_COLORS[state], min(STATUS_ALPHA[state] + extra_alpha, 1.0)),
        edgecolor=_HATCH_COLORS.get(state, STATUS_COLORS[state]),
        hatch=STATUS_HATCH[state],
    )


_HATCH_COLORS = {"pending": "#7a7a7a", "running": "#1d4ed8"}


def _metric_names(ds: Any) -> list[str]:
    return [str(v) for v in ds.data_vars if v != "status" and ds[v].dtype.kind in "iufb"]


def _edges(values: Any, log: bool) -> np.ndarray:
    """Cell edges around each value (midpoints; in log space for a log axis)."""
    v = np.log10(np.asarray(values, dtype=float)) if log else np.asarray(values, dtype=float)
    if v.size == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return 10**e if log else e


def _ticks(ax: Any, axis: str, labels: list[Any]) -> None:
    n = len(labels)
    step = max(1, math.ceil(n / 12))
    pos = list(range(0, n, step))
    text = [str(labels[i]) for i in pos]
    if axis == "x":
        ax.set_xticks(pos, text, rotation=30 if max((len(t) for t in text), default=0) > 6 else 0)
    else:
        ax.set_yticks(pos, text)


def _legend(ax: Any, states: set[str], extra: list[Any] | None = None) -> None:
    from matplotlib.patches import Patch

    handles = list(extra or [])
    for s in STATUS_ORDER:
        if s in states and s != "done":
            handles.append(Patch(**_cell_style(s, 0.15), label=s))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def render_png(
    ds: Any,
    metric: str | None = None,
    x: str | None = None,
    title: str | None = None,
    dpi: int = 80,
) -> bytes:
    """A PNG of the live Dataset, drawn with matplotlib (Agg, no pyplot figure):
    a line with markers over one swept parameter, a heatmap over two (the others
    at their first value). Cells without a result are marked in their colour:
    pending grey hatched, running blue dotted, failed red crossed, cancelled
    orange hatched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    swept = LiveView._swept_dims(ds)
    names = _metric_names(ds)
    metric = metric if metric in names else (names[0] if names else None)
    x = x if x in swept else (swept[0] if swept else None)
    y = next((d for d in swept if d != x), None)
    others = {d: 0 for d in swept if d not in (x, y)}
    status = ds["status"] if "status" in ds else None
    fig = Figure(figsize=(8.0, 3.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    where = ", ".join(f"{d}={ds[d].values[0]!r}" for d in others)
    head = " - ".join(t for t in (title, metric or "waiting for the first result") if t)
    if where:
        head += f" (at {where})"
    ax.set_title(head, fontsize=10, loc="left")
    states: set[str] = set()
    done_marker = [Line2D([], [], color="C0", marker="o", label="done")]

    if not swept:  # one job
        if metric is not None and np.isfinite(float(np.asarray(ds[metric].values).ravel()[0])):
            ax.bar([metric], [float(np.asarray(ds[metric].values).ravel()[0])], color="C0")
        else:
            ax.text(0.5, 0.5, "waiting for the result", ha="center", va="center", transform=ax.transAxes)
    elif metric is not None and len(ds[metric].dims) > len(swept):  # an array per job
        da = ds[metric].isel(others)
        if y is not None:
            da = da.isel({y: 0})
        own = [d for d in da.dims if d != x]
        if len(own) > 1:
            da = da.isel({d: 0 for d in own[1:]})
        st = status.isel(others) if status is not None else None
        if st is not None and y is not None:
            st = st.isel({y: 0})
        hue_vals = ds[x].values.tolist()
        for i, xv in enumerate(hue_vals):
            line = da.isel({x: i})
            s = str(st.values[i]) if st is not None else "done"
            if np.isfinite(np.asarray(line.values, dtype=float)).any():
                ax.plot(da[own[0]].values, line.values, marker=".", label=f"{x}={xv}")
            elif s != "done":
                states.add(s)
        ax.set_xlabel(own[0])
        ax.set_ylabel(metric)
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 12:
            handles = handles[:12]
        if states:
            ax.text(
                0.01,
                0.02,
                "no line yet: "
                + ", ".join(
                    f"{x}={xv} ({st.values[i]})"
                    for i, xv in enumerate(hue_vals)
                    if str(st.values[i]) != "done"
                )[:160],
                transform=ax.transAxes,
                fontsize=8,
                color="#555",
            )
        _legend(ax, states, handles)
    elif y is None:  # one swept parameter: a line with markers
        xs = ds[x].values
        numeric = _numeric(xs)
        log = numeric and _logx(xs)
        pos = np.asarray(xs, dtype=float) if numeric else np.arange(len(xs), dtype=float)
        if metric is not None:
            da = ds[metric].assign_coords({x: pos})
            if np.isfinite(np.asarray(da.values, dtype=float)).any():
                da.plot.line(ax=ax, x=x, marker="o", color="C0")
            ax.set_title("")  # xarray's own title (the scalar coordinates), centred
            ax.set_title(head, fontsize=10, loc="left")
            ax.set_ylabel(metric)
        ax.set_xlabel(x)
        if log:
            ax.set_xscale("log")
        if not numeric:
            _ticks(ax, "x", xs.tolist())
        edges = _edges(pos, log)
        if status is not None:
            for i, s in enumerate(status.values.tolist()):
                if s != "done":
                    states.add(s)
                    ax.axvspan(edges[i], edges[i + 1], linewidth=0, **_cell_style(s))
        ax.set_xlim(edges[0], edges[-1])
        _legend(ax, states, done_marker if metric is not None else None)
    else:  # two or more: a heatmap over x and y
        xs, ys = ds[x].values.tolist(), ds[y].values.tolist()
        if metric is not None:
            da = ds[metric].isel(others).transpose(y, x)
            vals = np.asarray(da.values, dtype=float)
            if np.isfinite(vals).any():
                pos = da.assign_coords({x: np.arange(len(xs)), y: np.arange(len(ys))})
                pos.plot.pcolormesh(
                    ax=ax, x=x, y=y, cmap="viridis", cbar_kwargs={"label": metric, "pad": 0.01}
                )
                ax.set_title("")
                ax.set_title(head, fontsize=10, loc="left")
        if status is not None:
            st = status.isel(others).transpose(y, x).values
            for j in range(len(ys)):
                for i in range(len(xs)):
                    s = str(st[j, i])
                    if s != "done":
                        states.add(s)
                        ax.add_patch(
                            Rectangle((i - 0.5, j - 0.5), 1, 1, linewidth=0.5, **_cell_style(s, 0.15))
                        )
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        _ticks(ax, "x", xs)
        _ticks(ax, "y", ys)
        _legend(ax, states)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class BlockingDisplay:
    """Show a run live in a cell that blocks until the run ends.

    While a cell runs, the kernel reads no message from the page, and a Panel or
    bokeh output cannot be re-rendered in place by ``update_display_data``. So
    this display sends plain MIME outputs that every frontend (JupyterLab,
    Notebook 7, VS Code, nbclient) redraws in place: a ``text/html`` head (status
    badges with counts), an ``image/png`` plot (:func:`render_png`) and the
    Dataset's own ``text/html`` repr, each updated under a fixed display id from
    a timer thread, at most once per ``interval`` seconds (kernel -> page only).

    :meth:`finish` (when the run has ended) clears them and shows the
    interactive :class:`LiveView` as a *new* output (a fresh renderer), which is
    interactive once the cell ends.
    """

    def __init__(
        self,
        run: Any,
        metric: str | None = None,
        title: str | None = None,
        interval: float | None = 0.25,
        x: str | None = None,
    ) -> None:
        import matplotlib.figure  # noqa: F401  (imported here, in the cell's thread)
        from IPython.display import display

        self.run = run
        self.metric = metric
        self.title = title
        self.interval = interval
        self.x = x
        self.updates = 0
        self.view: LiveView | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._last_status: dict[str, int] | None = None
        self._ids = {k: f"mushin-{k}-{uuid.uuid4().hex}" for k in ("head", "plot", "data")}
        self._unsubscribe = run.subscribe(lambda ev: self._dirty.set())
        self._thread: threading.Thread | None = None
        bundles = self._bundles()
        for key, bundle in bundles.items():
            display(bundle, raw=True, display_id=self._ids[key])
        if interval is not None and not run.done:
            ctx = contextvars.copy_context()  # this cell's context: the updates go to this cell
            self._thread = threading.Thread(
                target=ctx.run, args=(self._loop,), name="mushin-blocking-display", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------ content
    def _bundles(self) -> dict[str, dict[str, Any]]:
        ds = self.run.dataset
        head = self._head()
        text = head["text/plain"]
        try:
            png = base64.b64encode(render_png(ds, self.metric, self.x, self.title)).decode("ascii")
            plot = {"image/png": png, "text/plain": f"<plot: {text}>"}
        except Exception as e:  # a bad plot must not stop the display
            self.error = f"{type(e).__name__}: {e}"
            plot = {"text/plain": f"Cannot plot: {self.error}"}
        return {
            "head": head,
            "plot": plot,
            "data": {"text/html": ds._repr_html_(), "text/plain": repr(ds)},
        }

    def _head(self, final: bool = False) -> dict[str, str]:
        """Title, state and status badges (and where the results are, at the end)."""
        status = self.run.status
        self._last_status = status
        state = "finished" if self.run.done else ("stopped" if final else "running")
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        where = (
            f"<span>in <code>{html.escape(str(self.run.sweep_dir))}</code></span>"
            if final and getattr(self.run, "sweep_dir", None)
            else ""
        )
        finished = status["done"] + status["failed"] + status["cancelled"]
        return {
            "text/html": (
                '<div class="mushin-live" style="display:flex;gap:8px;align-items:center;flex-wrap:wrap">'
                f"{title}<span>{state}:</span>{status_counts_html(status)}{where}</div>"
            ),
            "text/plain": (
                f"{self.title + ': ' if self.title else ''}{state}: {finished} of {status['total']} jobs "
                f"finished ({status['done']} done, {status['failed']} failed, {status['cancelled']} cancelled)"
            ),
        }

    # ------------------------------------------------------------ updates
    def _loop(self) -> None:
        assert self.interval is not None
        _timer_loop(self, lambda finished: self.tick(force=finished))

    def tick(self, force: bool = False) -> bool:
        """Update the outputs if a job finished or a cell changed state since the
        last update (or ``force``); returns whether it updated."""
        with self._lock:
            if self._stop.is_set():
                return False
            if not (force or self._dirty.is_set() or self.run.status != self._last_status):
                return False
            self._update()
            return True

    def _update(self) -> None:
        from IPython.display import update_display

        self._dirty.clear()
        for key, bundle in self._bundles().items():
            update_display(bundle, raw=True, display_id=self._ids[key])
        self.updates += 1

    def finish(self) -> LiveView | None:
        """Once the run has ended (or the cell is interrupted): the last update,
        then the interactive :class:`LiveView` as a new output in place of the
        static ones. Returns the view (None if it could not be built: the static
        outputs stay)."""
        from IPython.display import display, update_display

        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        try:
            view = LiveView(self.run, metric=self.metric, x=self.x, show_cancel=False, title=self.title)
            layout = view.panel()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            with self._lock:
                self._update()  # the static outputs show the end instead
            import sys

            print(f"mushin_nb: no interactive view ({self.error}); the plot above is final.", file=sys.stderr)
            return None
        with self._lock:
            head = self._head(final=True)
            update_display(head, raw=True, display_id=self._ids["head"])
            for key in ("plot", "data"):  # the interactive view below shows them
                update_display({"text/plain": ""}, raw=True, display_id=self._ids[key])
            self.updates += 1
        display(layout)
        self.view = view
        return view


def run_view(run: Any, metric: str | None = None, **kwargs: Any) -> Any:
    """``run.view()``: a live plot of a :class:`~mushin_nb.SweepRun` (the engine's
    ``view`` hook)."""
    return LiveView(run, metric=metric, **kwargs).panel()
