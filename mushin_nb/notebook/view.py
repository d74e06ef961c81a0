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
  ``image/png`` drawn with matplotlib (Agg) from the live Dataset by the static
  renderer of the same plot kind (:mod:`.plots`). When the run ends, the
  interactive view is shown as a new output.

Threads
-------
Job events only mark the view dirty; a timer thread decides at most once per
``interval`` seconds (and once more when the run ends) that a redraw is due, however
fast jobs finish, and waits longer after a slow redraw: redraws take at most 5% of the
time (``_live.spaced``), since a redraw holds the GIL an in-process sweep needs.
``interval=None`` starts no thread: call :meth:`LiveView.tick`.

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

Plot kinds
----------
What is drawn is chosen once, by :func:`.plots.choose_kind`, for the interactive
view and the static PNG alike; :func:`.plots.register_plot_kind` adds a kind (one
spec with both renderers).

Modules: this one is the public face; the work is in ``_live`` (:class:`LiveView`),
``_blocking`` (:class:`BlockingDisplay`), ``_threads`` (:class:`MainThread`),
``_status`` (cell states and badges) and :mod:`.plots` (the kinds).

Examples
--------
>>> import xarray as xr
>>> ds = xr.Dataset({"acc": ("lr", [0.5, 0.75])}, coords={"lr": [0.1, 1.0]})
>>> type(LiveView(ds, interval=None).plot_element).__name__
'Overlay'
"""

from __future__ import annotations

from typing import Any

from ._blocking import BlockingDisplay
from ._live import LiveView
from ._status import STATUS_COLORS, STATUS_ORDER, status_counts_html
from ._threads import MainThread
from .plots import render_png

__all__ = [
    "LiveView",
    "BlockingDisplay",
    "STATUS_COLORS",
    "STATUS_ORDER",
    "status_counts_html",
    "render_png",
    "MainThread",
    "run_view",
]


def run_view(run: Any, metric: str | None = None, **kwargs: Any) -> Any:
    """``run.view()``: a live plot of a :class:`~mushin_nb.SweepRun` (the engine's
    ``view`` hook), ``LiveView(run, metric=metric, **kwargs).panel()``."""
    return LiveView(run, metric=metric, **kwargs).panel()
