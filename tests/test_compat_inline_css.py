"""``panel-inline-css-updates``: with ``pn.extension(inline=True)``, a pane updated after
the first render (the panel's status line, the "a sweep is running" alert) keeps its
stylesheets inline instead of linking them from Panel's CDN (offline: unstyled). A real
Panel render over a pyviz_comms comm; the browser suite checks the page itself.

``panel-ipywidget-inline-css``: over ipywidgets (``comms="ipywidgets"``/``"vscode"``, a
real jupyter_bokeh ``BokehModel`` from ``panel.io.notebook.ipywidget``) Panel renders
without a comm; with ``inline=True`` the components still carry their CSS inline, at the
first render and for children added later."""

from __future__ import annotations

import pytest

pn = pytest.importorskip("panel")

from mushin_nb import _compat  # noqa: E402


def _cdn_sheets(model) -> list[str]:
    from bokeh.models import ImportedStyleSheet
    from panel.io.resources import CDN_DIST

    return [
        s.url for s in model.stylesheets if isinstance(s, ImportedStyleSheet) and s.url.startswith(CDN_DIST)
    ]


def _rendered_alert():
    from bokeh.document import Document
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets
    from pyviz_comms import Comm

    class Quiet(Comm):
        def init(self):
            pass

        def send(self, data=None, metadata=None, buffers=None):
            pass

    alert = pn.pane.Alert("", alert_type="warning", visible=False)
    root = pn.Column(alert).get_root(Document(), Quiet())
    for m in root.select({"type": UIElement}):  # what Panel does at a notebook's first render
        patch_inline_stylesheets(m)
    return alert, root


@pytest.fixture
def inline_config(monkeypatch):
    monkeypatch.setattr(pn.config, "inline", True)


def test_an_updated_alert_keeps_its_css_inline(inline_config):
    assert _compat.inline_css_on_update()
    alert, root = _rendered_alert()
    model = alert._models[root.ref["id"]][0]
    assert not _cdn_sheets(model)
    alert.object = "a sweep is running: wait for it or cancel it"
    alert.visible = True
    assert not _cdn_sheets(model), "the update linked the alert's CSS from the CDN"
    assert model.text and "sweep is running" in model.text


def test_without_the_patch_the_update_links_the_cdn(inline_config):
    """What the patch is for: Panel's own update sends the stylesheets as CDN links."""
    from panel.pane.base import ModelPane
    from panel.pane.markup import HTMLBasePane

    assert _compat.inline_css_on_update()
    alert, root = _rendered_alert()
    model = alert._models[root.ref["id"]][0]
    HTMLBasePane._update.__wrapped__(alert, root.ref["id"], model)  # Panel's method itself
    assert any(u.endswith("alerts.css") for u in _cdn_sheets(model))
    assert getattr(ModelPane._update, "_mushin_inline_css", False)


def test_the_guard_refuses_other_versions(monkeypatch):
    real = _compat.installed_version
    monkeypatch.setattr(_compat, "installed_version", lambda p: (99, 0) if p == "panel" else real(p))
    _compat._refresh(_compat.PANEL_INLINE_CSS)
    try:
        assert "99.0 is not" in str(_compat.refusal(_compat.PANEL_INLINE_CSS))
    finally:
        monkeypatch.undo()
        _compat._refresh(_compat.PANEL_INLINE_CSS)


@pytest.fixture
def over_ipywidgets(monkeypatch):
    pytest.importorskip("jupyter_bokeh")
    monkeypatch.setattr(pn.config, "comms", "ipywidgets")
    monkeypatch.setattr(pn.config, "inline", True)
    assert _compat.inline_css_over_ipywidgets()


def _widget_cdn_sheets(widget) -> list[str]:
    from bokeh.models import UIElement

    return [u for m in widget._model.select({"type": UIElement}) for u in _cdn_sheets(m)]


def test_over_ipywidgets_the_css_is_inline(over_ipywidgets):
    from panel.io.notebook import ipywidget

    col = pn.Column(pn.widgets.Button(label="Run"), pn.pane.Alert("a", alert_type="warning"))
    widget = ipywidget(col)
    assert type(widget).__name__ == "BokehModel"
    assert not _widget_cdn_sheets(widget)
    col.append(pn.widgets.TextInput(placeholder="results.nc"))  # sent after the first render
    col[0] = pn.pane.Markdown("replaced")
    assert not _widget_cdn_sheets(widget), "a later child linked its CSS from the CDN"


def test_over_ipywidgets_panel_itself_links_the_cdn(over_ipywidgets, monkeypatch):
    """What the patch is for, and that it follows ``inline``: without it Panel links every
    component's CSS from its CDN over ipywidgets."""
    from panel.io.notebook import ipywidget

    monkeypatch.setattr(pn.config, "inline", False)
    widget = ipywidget(pn.Column(pn.widgets.Button(label="Run")))
    assert any(u.endswith("button.css") for u in _widget_cdn_sheets(widget))


def test_the_ipywidget_guard_refuses_other_versions(monkeypatch):
    real = _compat.installed_version
    monkeypatch.setattr(_compat, "installed_version", lambda p: (99, 0) if p == "panel" else real(p))
    _compat._refresh(_compat.PANEL_IPYWIDGET_INLINE_CSS)
    try:
        assert "99.0 is not" in str(_compat.refusal(_compat.PANEL_IPYWIDGET_INLINE_CSS))
        assert not _compat.inline_css_over_ipywidgets()
    finally:
        monkeypatch.undo()
        _compat._refresh(_compat.PANEL_IPYWIDGET_INLINE_CSS)
