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
            # no extra extensions: e.g. Tabulator's JS would come from a CDN in notebooks
            panel.extension(inline=True)
        import hvplot.xarray  # noqa: F401  (registers .hvplot on xarray objects)

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
