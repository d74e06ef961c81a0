"""What a ``%%mushin_sweep`` cell shows while it blocks (:class:`BlockingDisplay`)."""

from __future__ import annotations

import base64
import contextvars
import html
import sys
import threading
import time
import uuid
from typing import Any

from ._live import LiveView, spaced
from ._status import status_counts_html
from ._threads import timer_loop
from .plots import render_png

__all__ = ["BlockingDisplay"]


class BlockingDisplay:
    """Show a run live in a cell that blocks until the run ends.

    While a cell runs, the kernel reads no message from the page, and a Panel or
    bokeh output cannot be re-rendered in place by ``update_display_data``. So
    this display sends plain MIME outputs that every frontend (JupyterLab,
    Notebook 7, VS Code, nbclient) redraws in place: a ``text/html`` head (status
    badges with counts), an ``image/png`` plot (:func:`~.plots.render_png`, the
    static renderer of the same plot kind the live view shows) and the Dataset's
    own ``text/html`` repr, each updated under a fixed display id from a timer
    thread, at most once per ``interval`` seconds (kernel -> page only).

    :meth:`finish` (when the run has ended) clears them and shows the
    interactive :class:`~.view.LiveView` as a *new* output (a fresh renderer), which is
    interactive once the cell ends.

    Parameters
    ----------
    run : SweepRun
    metric, x, kind : str, optional
        The metric, the x axis and the plot kind shown first (as :class:`~.view.LiveView`).
    title : str, optional
        The workflow's name, above the plot.
    interval : float or None
        Update at most once per ``interval`` seconds; ``None``: no timer (call :meth:`tick`).
    """

    def __init__(
        self,
        run: Any,
        metric: str | None = None,
        title: str | None = None,
        interval: float | None = 0.25,
        x: str | None = None,
        kind: str | None = None,
    ) -> None:
        import matplotlib.figure  # noqa: F401  (imported here, in the cell's thread)
        from IPython.display import display

        self.run = run
        self.metric = metric
        self.title = title
        self.interval = interval
        self.x = x
        self.kind = kind
        self.updates = 0
        self.view: LiveView | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._last_status: dict[str, int] | None = None
        self._ids = {k: f"mushin-{k}-{uuid.uuid4().hex}" for k in ("head", "plot", "data")}
        self._unsubscribe: Any = run.subscribe(lambda ev: self._dirty.set())
        self._thread: threading.Thread | None = None
        bundles = self._bundles()
        for key, bundle in bundles.items():
            display(bundle, raw=True, display_id=self._ids[key])
        self._updated_at = time.monotonic()  # when the last update ended
        self._update_cost = 0.0  # how long it took (the first, which imports and builds more, not counted)
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
            png = render_png(ds, self.metric, self.x, self.title, kind=self.kind)
            plot = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"<plot: {text}>"}
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
        timer_loop(self.run, self.interval, self._stop, self._step, self._fail)

    def _step(self, finished: bool) -> None:
        """The timer's call: an update if one is due and the last is long enough ago
        (as a live view's redraws: :func:`~._live.spaced`), and always the last one."""
        if finished or spaced(self._updated_at, self._update_cost, self.interval):
            self.tick(force=finished)

    def _fail(self, e: Exception) -> None:
        self.error = f"{type(e).__name__}: {e}"

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

        t0 = time.monotonic()
        self._dirty.clear()
        for key, bundle in self._bundles().items():
            update_display(bundle, raw=True, display_id=self._ids[key])
        self.updates += 1
        self._updated_at = time.monotonic()
        self._update_cost = self._updated_at - t0

    def finish(self) -> LiveView | None:
        """Once the run has ended (or the cell is interrupted): the last update,
        then the interactive :class:`~.view.LiveView` as a new output in place of the
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
            view = LiveView(
                self.run, metric=self.metric, x=self.x, kind=self.kind, show_cancel=False, title=self.title
            )
            layout = view.panel()
        except Exception as e:
            self._fail(e)
            with self._lock:
                self._update()  # the static outputs show the end instead
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
