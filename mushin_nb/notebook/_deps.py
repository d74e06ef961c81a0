"""Loading the notebook stack (panel, hvplot) in the right order, once.

BokehJS must reach a notebook page once, inline (so plots render offline):

- Panel's extension is loaded (``pn.extension(inline=True)``) only if nothing in
  this kernel loaded it yet: the notebook's own ``pn.extension(...)`` wins.
- ``import hvplot.xarray`` runs ``hv.extension('bokeh')``, which publishes
  BokehJS *from the CDN* unless it runs in the cell that loaded Panel's
  extension. And hvplot drops ``hvplot.xarray`` from ``sys.modules`` before
  every cell (a ``pre_run_cell`` hook), so a plain ``import hvplot.xarray`` in a
  later cell runs the extension again. Hence: import it only when xarray objects
  lack the ``.hvplot`` accessor, and then as part of the extension load already
  done (pyviz_comms' "same cell" rule), so nothing is fetched or loaded twice; and
  with ``hv.extension``'s ``inline`` on while it runs (else it publishes a reload
  that asks the CDN for Panel's es-module-shims).
- Panes (HTML, Alert, ...) updated after the first render would link their
  stylesheets from the CDN again: :func:`mushin_nb._compat.inline_css_on_update`.
- Over ipywidgets (``comms="ipywidgets"``/``"vscode"``: jupyter_bokeh) Panel renders
  without a comm and links every component's CSS from its CDN, whatever
  ``config.inline`` says: :func:`mushin_nb._compat.inline_css_over_ipywidgets`.
- Messages Panel makes before the page has opened a view's comm are sent in the order
  they were made: :func:`mushin_nb._compat.panel_push.send_pushes_in_order`.

The third-party internals this needs (Panel's "extension loaded" flag, pyviz_comms'
record of the cell, its stdout capture) are read and written in
:mod:`mushin_nb._compat` only, each behind a guard with a public fallback.

Examples
--------
>>> label("Run") in ({"label": "Run"}, {"name": "Run"})
True
"""

from __future__ import annotations

import sys
from typing import Any

from .. import _compat
from .._compat.panel_push import send_pushes_in_order

_ready = False


def ipython() -> Any:
    """The running IPython shell, or None (IPython not imported, or not in a shell)."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


def _import_hvplot_xarray() -> None:
    """``import hvplot.xarray`` (registers ``.hvplot`` on xarray objects) without
    publishing BokehJS again: Panel's extension has loaded it already."""
    ip = ipython()
    if ip is not None:
        # hvplot's hv.extension('bokeh') then counts as re-run in the cell that loaded
        # the extension: it sends no resources (no CDN request); see mushin_nb._compat
        _compat.mark_extension_cell(ip.execution_count)
    import holoviews
    import panel

    # the import runs hv.extension('bokeh'), which publishes a reload of its resources
    # from the CDN (Panel's es-module-shims) unless inline: inline as Panel's extension is
    ext = holoviews.extension
    if not hasattr(ext, "inline"):  # outside IPython: holoviews' plain extension publishes nothing
        import hvplot.xarray  # noqa: F401

        return
    before = ext.inline
    ext.inline = bool(before or panel.config.inline)
    try:
        import hvplot.xarray  # noqa: F401
    finally:
        ext.inline = before


def hvplot_ready() -> bool:
    """Whether xarray objects have the ``.hvplot`` accessor already."""
    import xarray

    return hasattr(xarray.Dataset, "hvplot") and hasattr(xarray.DataArray, "hvplot")


def pn() -> Any:
    """``panel``, its extension loaded (inline resources) unless the kernel has
    it already, and hvplot's xarray accessor registered unless it is already."""
    global _ready
    import panel

    if not _ready:
        if ipython() is not None:
            # what a widget callback prints is captured per thread (JupyterLab >= 4.4
            # handles widget messages on a subshell thread while a cell may print)
            _compat.thread_safe_comm_stdout()
            # panes updated after the first render keep their stylesheets inline (offline)
            _compat.inline_css_on_update()
            # over ipywidgets (VS Code, Colab, jupyter_bokeh) Panel links every component's
            # CSS from its CDN; inline, as over its own comms (no public setting does it)
            _compat.inline_css_over_ipywidgets()
            # a page message handled on a subshell thread no longer drops an update a
            # redraw on the main loop has made but not pushed yet (Notebook 7, Lab >= 4.4)
            _compat.keep_held_events_on_comm_msg()
            # messages made before the page opens a view's comm (a --background cell's
            # first redraws) go out in the order they were made, not each on its own timer
            send_pushes_in_order()
        if not _compat.panel_extension_loaded():
            # no extra extensions: e.g. Tabulator's JS would come from a CDN in notebooks
            panel.extension(inline=True)
        if not hvplot_ready():
            _import_hvplot_xarray()
        _ready = True
    return panel


def hv() -> Any:
    """``holoviews``, after :func:`pn` (the extension and the accessor are loaded)."""
    pn()
    import holoviews

    return holoviews


def label(text: str) -> dict[str, str]:
    """A widget's label keyword: ``label=`` on Panel >= 1.9 (``name=`` before)."""
    from panel.widgets import Widget

    return {"label": text} if "label" in Widget.param else {"name": text}


def color(kind: str) -> dict[str, str]:
    """A button's colour keyword: ``color=`` on Panel >= 1.9 (``button_type=`` before)."""
    from panel.widgets import Button

    return {"color": kind} if "color" in Button.param else {"button_type": kind}
