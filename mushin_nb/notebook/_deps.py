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
  done (pyviz_comms' "same cell" rule), so nothing is fetched or loaded twice.
"""

from __future__ import annotations

import sys
from typing import Any

_ready = False


def _ipython() -> Any:
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
    ip = _ipython()
    if ip is not None:
        try:
            import pyviz_comms

            # hvplot's hv.extension('bokeh') then counts as re-run in the cell that
            # loaded the extension: it sends no resources (no CDN request)
            pyviz_comms.extension._last_execution_count = ip.execution_count
        except Exception:  # pragma: no cover  (an older pyviz_comms)
            pass
    sys.modules.pop("hvplot.xarray", None)
    import hvplot.xarray  # noqa: F401


class _PerThreadStdout:
    """``sys.stdout`` while a comm message is handled: what the handling thread
    writes goes to its capture, what any other thread writes (a cell running on the
    main thread) to the stream underneath."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._captures: dict[int, Any] = {}

    def write(self, text: str) -> int:
        import threading

        return self._captures.get(threading.get_ident(), self._target).write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _ThreadSafeStandardOutput(list):
    """pyviz_comms' ``StandardOutput`` (captures what a comm callback prints, for
    Panel's console output), capturing the calling thread only.

    The original swaps the process-wide ``sys.stdout`` while a comm message is
    handled. JupyterLab >= 4.4 sends comm messages to a kernel *subshell* (its own
    thread), so a cell printing on the main thread at that moment lost its output
    to the capture. Same API: a list of the captured lines after the block.
    """

    _lock: Any = None

    def __enter__(self) -> _ThreadSafeStandardOutput:
        import threading
        from io import StringIO

        cls = type(self)
        if cls._lock is None:  # pragma: no cover  (set at install)
            cls._lock = threading.Lock()
        self._stringio = StringIO()
        with cls._lock:
            proxy = sys.stdout
            if not isinstance(proxy, _PerThreadStdout):
                proxy = sys.stdout = _PerThreadStdout(sys.stdout)
            self._proxy = proxy
            proxy._captures[threading.get_ident()] = self._stringio
        return self

    def __exit__(self, *args: Any) -> None:
        import threading

        with type(self)._lock:
            proxy = self._proxy
            proxy._captures.pop(threading.get_ident(), None)
            if not proxy._captures and sys.stdout is proxy:
                sys.stdout = proxy._target
        self.extend(self._stringio.getvalue().splitlines())
        del self._stringio, self._proxy


def _thread_safe_comm_stdout() -> None:
    """Use :class:`_ThreadSafeStandardOutput` in pyviz_comms (once, in a kernel)."""
    import threading

    try:
        import pyviz_comms
    except ImportError:  # pragma: no cover
        return
    current = getattr(pyviz_comms, "StandardOutput", None)
    if current is None or current is _ThreadSafeStandardOutput:
        return
    _ThreadSafeStandardOutput._lock = threading.Lock()
    pyviz_comms.StandardOutput = _ThreadSafeStandardOutput


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
        from panel.config import panel_extension

        if _ipython() is not None:
            _thread_safe_comm_stdout()

        if not panel_extension._loaded:
            # no extra extensions: e.g. Tabulator's JS would come from a CDN in notebooks
            panel.extension(inline=True)
        if not hvplot_ready():
            _import_hvplot_xarray()
        _ready = True
    return panel


def hv() -> Any:
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
