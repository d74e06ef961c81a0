"""Loading the notebook stack (panel, hvplot) in the right order, once."""

from __future__ import annotations

from typing import Any

_ready = False


def pn() -> Any:
    """``panel``, with its extension loaded with inline resources, then hvplot.

    ``pn.extension(inline=True)`` must run before ``import hvplot.xarray``:
    otherwise hvplot loads bokeh from a CDN and plots are blank offline.
    """
    global _ready
    import panel

    if not _ready:
        from panel.config import panel_extension

        if not panel_extension._loaded:
            panel.extension("tabulator", inline=True)
        elif "tabulator" not in panel_extension._loaded_extensions:
            panel.extension("tabulator")
        import hvplot.xarray  # noqa: F401  (registers .hvplot on xarray objects)

        _ready = True
    return panel


def hv() -> Any:
    pn()
    import holoviews

    return holoviews
