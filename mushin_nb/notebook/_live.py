"""The live view (:class:`LiveView`): the plot kinds of :mod:`.plots` over a run's live
Dataset, redrawn as jobs finish (see :mod:`.view` for rendering and threads)."""

from __future__ import annotations

import contextvars
import html
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import param

from .. import _compat
from . import _deps
from ._kinds import status_grid
from ._status import metric_names, static_status, status_counts_html, swept_dims
from ._threads import MainThread, timer_loop
from .plots import PlotContext, choose_kind, interactive_plot, plot_context, plot_kinds

__all__ = ["LiveView", "is_run", "spaced"]

VIEW_SHARE = 0.05
"""The most of the time a live view spends redrawing while its run goes on: a redraw
that took 50 ms comes at most once a second (see :func:`spaced`)."""
MAX_GAP = 5.0
"""A running view redraws at least this often (or once per ``interval`` if longer),
however long its last redraw took (the first ones take longer: the plots are built)."""


def spaced(drawn_at: float, cost: float, interval: float | None) -> bool:
    """Whether a redraw that ended at ``drawn_at`` (``time.monotonic()``) and took
    ``cost`` seconds is long enough ago for another: ``interval``, and long enough that
    redrawing takes at most ``VIEW_SHARE`` of the time (up to ``MAX_GAP``). A redraw
    holds Python's GIL, which an in-process sweep needs too, and the thread that owns
    the plots also serves the page and the notebook's cells: a slow redraw (a big
    grid, a busy machine) comes less often, and the sweep keeps its speed.

    Examples
    --------
    >>> now = time.monotonic()
    >>> spaced(now - 0.3, 0.01, 0.25), spaced(now - 0.3, 0.05, 0.25)  # 50 ms: once a second
    (True, False)
    """
    gap = max(interval or 0, min(cost / VIEW_SHARE, MAX_GAP))
    return time.monotonic() - drawn_at >= gap


def is_run(obj: Any) -> bool:
    """Whether ``obj`` is a live run (a ``SweepRun``) rather than a Dataset."""
    return hasattr(obj, "subscribe") and hasattr(obj, "spec") and hasattr(obj, "dataset")


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
    show_progress : bool
        The state badges and the progress bar above the plot (the sweep panel,
        which has its own, hides them: one progress display per panel).
    reference : xarray.Dataset, optional
        Drawn dashed under the line plots (e.g. an earlier run from NetCDF).
    x : str, optional
        The swept parameter on the x axis.
    kind : str, optional
        The plot kind (``"heatmap"``, ``"lines"`` or one registered with
        :func:`~mushin_nb.notebook.plots.register_plot_kind`).
    title : str, optional
        Shown above the plot.

    ``redraws`` counts redraws (tests use it to check throttling).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"acc": (("lr", "seed"), [[0.1, 0.2], [0.3, 0.4]])},
    ...                 coords={"lr": [0.1, 1.0], "seed": [0, 1]})
    >>> view = LiveView(ds, kind="lines", interval=None)
    >>> view.metric, view.x, type(view.plot_element).__name__
    ('acc', 'lr', 'Overlay')
    >>> view.kind = "heatmap"
    >>> type(view.plot_element).__name__
    'HeatMap'
    """

    metric = param.Selector(default=None, objects=[], allow_None=True, doc="The metric plotted.")
    x = param.Selector(default=None, objects=[], allow_None=True, doc="The swept parameter on the x axis.")
    kind = param.Selector(
        default="heatmap",
        objects=["heatmap", "lines"],
        doc="With two or more swept parameters: a heatmap, or lines grouped by the other one "
        "(or a registered plot kind).",
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
        show_progress: bool = True,
    ) -> None:
        super().__init__(interval=interval)
        self.run = source if is_run(source) else None
        self._static = None if self.run is not None else source
        self.reference = reference
        self.show_cancel = show_cancel
        self.show_progress = show_progress
        self.title = title
        self._init_state()
        ds = self.dataset()
        self.swept = swept_dims(ds)
        self.param.x.objects = list(self.swept)
        self.x = x if x in self.swept else (self.swept[0] if self.swept else None)
        if x is not None and x not in self.swept:
            raise ValueError(f"x={x!r} is not a swept parameter; choose one of {self.swept}")
        self.param.kind.objects = [k.name for k in plot_kinds(automatic=False)]
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
        self.redraw()
        self._draw_cost = 0.0  # the first draw builds the plots: the next one comes after `interval`
        if live and self.interval is not None:
            # ends after one last redraw once the run is over (at once if it already is);
            # runs in this cell's context, so its output goes to this cell
            ctx = contextvars.copy_context()
            self._thread = threading.Thread(
                target=ctx.run, args=(self._loop,), name="mushin-view", daemon=True
            )
            self._thread.start()

    def _init_state(self) -> None:
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
        self._draw_cost = 0.0  # how long it took (with the listeners)
        self._queued = False  # a redraw is scheduled on the owning thread, not run yet
        self._queued_force = False
        self._idle = threading.Event()  # no scheduled redraw is waiting
        self._idle.set()
        self.events = 0
        self.error: str | None = None

    # ------------------------------------------------------------ data
    def dataset(self) -> Any:
        """The Dataset now (the run's live one, or the static one given)."""
        return self.run.dataset if self.run is not None else self._static

    def metrics(self, ds: Any = None) -> list[str]:
        """The variables the view can plot (numeric, not ``status``)."""
        return metric_names(self.dataset() if ds is None else ds)

    @property
    def drawn_status(self) -> dict[str, int] | None:
        """The cell counts per state of the last redraw (what the badges show), or None
        before the first."""
        return self._last_status

    def context(self, ds: Any = None) -> PlotContext:
        """What the plot kinds draw now: the Dataset, the metric, the axes, the
        selection of the other swept parameters (the view's widgets), the reference."""
        ds = self.dataset() if ds is None else ds
        selection = {d: w.value for d, w in getattr(self, "_sel", {}).items() if d != self.x}
        return plot_context(
            ds, metric=self.metric, x=self.x, selection=selection, reference=self.reference, title=self.title
        )

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
        timer_loop(
            self.run, self.interval, self._stop, lambda finished: self._request(force=finished), self._fail
        )

    def _fail(self, e: Exception) -> None:
        self.error = f"{type(e).__name__}: {e}"

    def _due(self) -> bool:
        return self._dirty.is_set() or (self.run is not None and self.run.status != self._last_status)

    def _spaced(self) -> bool:
        return spaced(self._drawn_at, self._draw_cost, self.interval)

    def _request(self, force: bool = False) -> None:
        """From the timer thread: have the owning thread redraw if one is due (see
        :mod:`.view`); at most one scheduled redraw waits at a time."""
        if not self._main.deferred:
            if force or self._spaced():
                self.tick(force=force)
            return
        with self._lock:
            if self._queued:  # the one waiting will see the latest state
                self._queued_force = self._queued_force or force
                return
            if not (force or self._due()):
                return
            if not (force or self._spaced()):
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
            self._fail(e)
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
        self.redraw()
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

    def set_reference(self, ds: Any) -> None:
        """Draw ``ds`` (an earlier run) dashed under the line plots from now on."""
        self.reference = ds
        self.redraw()

    def _on_control(self, *events: Any) -> None:
        if not self._main.here():  # a message from the page, handled on another thread
            self._main.adopt()
        if not self._in_redraw:
            self.redraw()

    # ------------------------------------------------------------ UI
    def _build(self) -> None:
        pn = _deps.pn()
        self._summary = pn.pane.HTML("", margin=(5, 10), visible=self.show_progress)
        self._progress = pn.indicators.Progress(
            value=0, max=1, width=200, margin=(10, 10), visible=self.show_progress
        )
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
        # its height is the grid's (one row of cells, or a row per value of y)
        self._status_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", linked_axes=False)
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
        """Cancel the run (what the Cancel button does): no new job starts."""
        if self.run is not None:
            self.run.cancel()
            self._cancel.disabled = True
            self._cancel.param.update(**_deps.label("Cancelling..."))

    # ------------------------------------------------------------ drawing
    def redraw(self) -> None:
        """Draw the current Dataset now (on the calling thread), then call the listeners."""
        with _compat.MODELS_LOCK:  # no page message is applied meanwhile (see _compat)
            self._redraw()

    def _redraw(self) -> None:
        t0 = time.monotonic()
        with self._lock:
            self._dirty.clear()
            ds = self.dataset()
            status = self.run.status if self.run is not None else static_status(ds)
            self._last_status = status
            self._in_redraw = True
            try:
                self._draw(ds, status)
            finally:
                self._in_redraw = False
            self.redraws += 1
        for fn in list(self._listeners):
            try:
                fn(ds)
            except Exception as e:
                self._fail(e)
        self._drawn_at = time.monotonic()
        self._draw_cost = self._drawn_at - t0

    def _draw(self, ds: Any, status: dict[str, int]) -> None:
        self._update_metrics(ds)
        finished = status["done"] + status["failed"] + status["cancelled"]
        self._summary.object = status_counts_html(status)
        self._progress.max = max(status["total"], 1)
        self._progress.value = min(finished, status["total"])
        if self.run is not None and self.run.done:
            self._cancel.visible = False
        ctx = self.context(ds)
        for d, w in self._sel.items():
            w.visible = d not in (ctx.x, ctx.y)
        self._x_w.visible = len(self.swept) > 1
        try:
            chosen = choose_kind(ctx, self.kind)
            offered = [k for k in plot_kinds(automatic=False) if k.applies(ctx)]
            self._kind_w.visible = not chosen.automatic and len(offered) > 1
            self._show_plots(ctx)
            self._message.visible = False
        except Exception as e:  # a bad plot must not stop the view
            self._fail(e)
            self._message.object = f"Cannot plot: {html.escape(str(self.error))}"
            self._message.visible = True
        self._repr.object = ds._repr_html_()

    def _show_plots(self, ctx: PlotContext) -> None:
        """Put the plots of ``ctx`` in the panes. While their structure stays (the
        same metric, axes, selection, element types), the new elements go through
        a stream into the DynamicMaps the panes hold: HoloViews then updates the
        data of the bokeh figures already on the page (cheap; no model is replaced).
        Otherwise (a control changed, the first result arrived) new DynamicMaps."""
        elem = interactive_plot(ctx, self.kind)
        status = status_grid(ctx)
        key = (
            self.metric,
            self.x,
            ctx.y,
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

    def make_plot(self, ds: Any) -> Any:
        """The HoloViews element of the current metric in ``ds`` (the kind
        :func:`~mushin_nb.notebook.plots.choose_kind` picks; the reference under it)."""
        return interactive_plot(self.context(ds), self.kind)

    def make_status_plot(self, ds: Any) -> Any:
        """A grid of the cells coloured by state (pending, running, done, failed,
        cancelled) over the plotted parameters."""
        return status_grid(self.context(ds))


def _same(data: Any) -> Any:
    return data


def _structure(elem: Any) -> tuple[Any, ...]:
    """What must not change for an element to replace another in a DynamicMap."""
    keys = getattr(elem, "keys", None)
    found = cast("Iterable[Any]", keys()) if callable(keys) else ()
    return (type(elem).__name__, tuple(found))
