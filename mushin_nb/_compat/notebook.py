"""The notebook layer's patches (Panel, pyviz_comms): part of :mod:`mushin_nb._compat`,
whose registry, guards and ``public_path`` they use. Imports nothing else of ours."""

from __future__ import annotations

import threading
from typing import Any

from . import Patch, code_names, public_path, register, usable  # noqa: F401  (public_path: the doctests)

__all__: list[str] = []

# ============================================================================ notebook layer
#
# The notebook layer (mushin_nb/notebook/_deps.py) loads Panel and hvplot once per
# kernel: Panel's extension unless the notebook loaded it, hvplot's xarray accessor
# without publishing BokehJS again, and pyviz_comms' capture of what a comm callback
# prints made thread-safe. (``import hvplot.xarray`` used to be forced to run again by
# dropping it from ``sys.modules``; a plain import does the same, so that patch is gone.)

__all__ += ["panel_extension_loaded", "mark_extension_cell", "thread_safe_comm_stdout"]
__all__ += ["ThreadSafeStandardOutput", "PANEL_EXTENSION_LOADED", "PYVIZ_COMMS_EXEC_COUNT"]
__all__ += ["PYVIZ_COMMS_STDOUT"]

PANEL_EXTENSION_LOADED = "panel-extension-loaded"
PYVIZ_COMMS_EXEC_COUNT = "pyviz-comms-execution-count"
PYVIZ_COMMS_STDOUT = "pyviz-comms-thread-stdout"


# ---------------------------------------------------------------- panel-extension-loaded
#
# Panel's extension is loaded only if nothing in this kernel loaded it yet, so the
# notebook's own ``pn.extension(...)`` wins. Panel publishes no such flag; the patch
# reads ``panel_extension._loaded``. Public path: take it as not loaded, so
# ``pn.extension(inline=True)`` runs (and sends Panel's resources) once more.


def panel_extension_loaded() -> bool:
    """Whether ``pn.extension`` has run in this process (False when the guard refuses).

    Examples
    --------
    >>> with public_path(PANEL_EXTENSION_LOADED):
    ...     panel_extension_loaded()
    False
    """
    if not usable(PANEL_EXTENSION_LOADED):
        return False
    from panel.config import panel_extension

    return bool(panel_extension._loaded)


def _probe_panel_extension() -> None:
    from panel.config import panel_extension

    if not isinstance(getattr(panel_extension, "_loaded", None), bool):
        raise AttributeError("panel_extension has no bool _loaded")
    if "_loaded" not in code_names(panel_extension.__call__):
        raise AssertionError("pn.extension() no longer sets panel_extension._loaded")


register(
    Patch(
        PANEL_EXTENSION_LOADED,
        package="panel",
        versions=">=1.0,<2",
        internals="panel.config.panel_extension._loaded read (has pn.extension run?)",
        public_path="taken as not loaded: pn.extension(inline=True) runs once more",
        probe=_probe_panel_extension,
    )
)


# ---------------------------------------------------------------- pyviz-comms-execution-count
#
# ``import hvplot.xarray`` runs ``hv.extension('bokeh')``, which publishes BokehJS
# (from the CDN) unless pyviz_comms counts it as re-run in the cell that loaded
# Panel's extension. The patch sets pyviz_comms' record of that cell
# (``extension._last_execution_count``) to the running cell. Public path: nothing is
# set, and the extension publishes its resources once more.


def mark_extension_cell(execution_count: int | None) -> bool:
    """Have pyviz extensions run from now on in cell ``execution_count`` count as re-runs
    there (they publish no resources again); False when the guard refuses.

    Examples
    --------
    >>> with public_path(PYVIZ_COMMS_EXEC_COUNT):
    ...     mark_extension_cell(7)
    False
    """
    if not usable(PYVIZ_COMMS_EXEC_COUNT):
        return False
    import pyviz_comms

    pyviz_comms.extension._last_execution_count = execution_count
    return True


def _probe_exec_count() -> None:
    import pyviz_comms

    ext = pyviz_comms.extension
    for attr in ("_last_execution_count", "_repeat_execution_in_cell"):
        if not hasattr(ext, attr):
            raise AttributeError(f"pyviz_comms.extension has no {attr}")
    if not {"_last_execution_count", "_repeat_execution_in_cell"} <= code_names(ext.__new__):
        raise AssertionError("extension.__new__ no longer compares execution counts")


register(
    Patch(
        PYVIZ_COMMS_EXEC_COUNT,
        package="pyviz_comms",
        versions=">=3.0,<4",
        internals="pyviz_comms.extension._last_execution_count written",
        public_path="nothing set: hv.extension('bokeh') publishes BokehJS again",
        probe=_probe_exec_count,
    )
)


# ---------------------------------------------------------------- pyviz-comms-thread-stdout
#
# pyviz_comms' ``StandardOutput`` (what a comm callback prints, captured for Panel's
# console output) swaps the process-wide ``sys.stdout`` while a comm message is
# handled. JupyterLab >= 4.4 sends comm messages to a kernel subshell (its own
# thread), so a cell printing on the main thread meanwhile lost its output to the
# capture. The patch replaces the module global ``StandardOutput`` (looked up by
# ``Comm._handle_msg``) with :class:`ThreadSafeStandardOutput`, which captures the
# calling thread only, through a per-thread proxy on ``sys.stdout`` while a capture
# is open. Public path: pyviz_comms' own class.

_stdout_lock = threading.Lock()
_comm_stdout_original: Any = None  # pyviz_comms' own class, once replaced


class _PerThreadStdout:
    """``sys.stdout`` while a capture is open: the capturing thread writes to its
    capture, any other thread to the stream underneath."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.captures: dict[int, Any] = {}

    def write(self, text: str) -> int:
        return self.captures.get(threading.get_ident(), self.target).write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class ThreadSafeStandardOutput(list):
    """pyviz_comms' ``StandardOutput`` capturing the calling thread only: a list of the
    lines it printed inside the block.

    Examples
    --------
    >>> with ThreadSafeStandardOutput() as out:
    ...     print("captured")
    >>> out
    ['captured']
    """

    def __enter__(self) -> ThreadSafeStandardOutput:
        import io
        import sys

        self._stringio = io.StringIO()
        with _stdout_lock:
            proxy = sys.stdout
            if not isinstance(proxy, _PerThreadStdout):
                proxy = sys.stdout = _PerThreadStdout(sys.stdout)
            self._proxy = proxy
            proxy.captures[threading.get_ident()] = self._stringio
        return self

    def __exit__(self, *args: Any) -> None:
        import sys

        with _stdout_lock:
            proxy = self._proxy
            proxy.captures.pop(threading.get_ident(), None)
            if not proxy.captures and sys.stdout is proxy:
                sys.stdout = proxy.target
        self.extend(self._stringio.getvalue().splitlines())
        del self._stringio, self._proxy


def thread_safe_comm_stdout() -> bool:
    """Make pyviz_comms capture comm callbacks' prints per thread; whether it does
    (False when the guard refuses: pyviz_comms' own class stays).

    Examples
    --------
    >>> with public_path(PYVIZ_COMMS_STDOUT):
    ...     thread_safe_comm_stdout()
    False
    """
    global _comm_stdout_original
    if not usable(PYVIZ_COMMS_STDOUT):
        return False
    import pyviz_comms

    if pyviz_comms.StandardOutput is not ThreadSafeStandardOutput:
        _comm_stdout_original = pyviz_comms.StandardOutput
        pyviz_comms.StandardOutput = ThreadSafeStandardOutput
    return True


def _probe_comm_stdout() -> None:
    import sys

    import pyviz_comms

    current = getattr(pyviz_comms, "StandardOutput", None)
    if not (isinstance(current, type) and issubclass(current, list)):
        raise TypeError(f"pyviz_comms.StandardOutput is {current!r}, not a list subclass")
    if "StandardOutput" not in code_names(pyviz_comms.Comm._handle_msg):
        raise AssertionError("Comm._handle_msg no longer captures with StandardOutput()")
    before = sys.stdout
    with ThreadSafeStandardOutput() as got:
        print("probe", "lines", sep="\n")
    if list(got) != ["probe", "lines"] or sys.stdout is not before:
        raise AssertionError(f"the per-thread capture got {list(got)!r}")


register(
    Patch(
        PYVIZ_COMMS_STDOUT,
        package="pyviz_comms",
        versions=">=3.0,<4",
        internals="pyviz_comms.StandardOutput replaced; sys.stdout proxied while a capture is open",
        public_path="pyviz_comms' StandardOutput (swaps sys.stdout for the whole process)",
        probe=_probe_comm_stdout,
    )
)


# ---------------------------------------------------------------- panel-inline-css-updates
#
# With ``pn.extension(inline=True)`` Panel inlines a component's stylesheets when it is
# first rendered in a notebook, but an HTML/Markdown/Alert pane whose ``object`` changes
# later (``ModelPane._update``, ``HTMLBasePane._update``) sends all its properties again, stylesheets included,
# as links to cdn.holoviz.org (loading.css, theme/*.css, alerts.css): offline, a status
# line or the "sweep is running" alert drawn after the first render is left unstyled,
# and each update asks the CDN again. The patch wraps both ``_update``: after
# it, with ``config.inline``, each CDN stylesheet of the model is replaced by the same
# CSS inline (Panel's own ``replace_inline_css``, as at the first render). Public path: Panel's method;
# offline, those styles do not load.

__all__ += ["inline_css_on_update", "inline_stylesheets", "PANEL_INLINE_CSS"]

PANEL_INLINE_CSS = "panel-inline-css-updates"


def inline_stylesheets(model: Any) -> int:
    """Replace the model's stylesheets linked from Panel's CDN by the same CSS inline;
    returns how many it replaced.

    Examples
    --------
    >>> from bokeh.models import Div, ImportedStyleSheet
    >>> from panel.io.resources import CDN_DIST
    >>> div = Div(stylesheets=[ImportedStyleSheet(url=f"{CDN_DIST}css/loading.css")])
    >>> inline_stylesheets(div), type(div.stylesheets[0]).__name__
    (1, 'InlineStyleSheet')
    """
    from bokeh.models import ImportedStyleSheet
    from panel.io.notebook import replace_inline_css

    sheets, n = [], 0
    for sheet in model.stylesheets:
        if isinstance(sheet, ImportedStyleSheet):
            inline = replace_inline_css(sheet)  # the sheet itself if not a local Panel file
            n += inline is not sheet
            sheet = inline
        sheets.append(sheet)
    if n:
        model.stylesheets = sheets
    return n


def _inline_css_classes() -> list[Any]:
    """The pane classes whose ``_update`` sends every property again (Panel's
    ``ModelPane`` and ``HTMLBasePane``, which overrides it)."""
    from panel.pane.base import ModelPane
    from panel.pane.markup import HTMLBasePane

    return [ModelPane, HTMLBasePane]


def inline_css_on_update() -> bool:
    """Have Panel's panes (HTML, Markdown, Alert, ...) keep their stylesheets inline when
    their ``object`` changes after the first render (with ``pn.extension(inline=True)``);
    whether they do (False when the guard refuses).

    Examples
    --------
    >>> with public_path(PANEL_INLINE_CSS):
    ...     inline_css_on_update()
    False
    """
    if not usable(PANEL_INLINE_CSS):
        return False
    for cls in _inline_css_classes():
        original = cls.__dict__["_update"]
        if getattr(original, "_mushin_inline_css", False):
            continue

        def _update(self: Any, ref: str, model: Any, _original: Any = original) -> None:
            _original(self, ref, model)
            from panel.config import config

            if config.inline:
                inline_stylesheets(model)

        _update._mushin_inline_css = True  # type: ignore[attr-defined]
        _update.__wrapped__ = original  # type: ignore[attr-defined]
        cls._update = _update
    return True


def _probe_inline_css() -> None:
    from bokeh.models import Div, ImportedStyleSheet, InlineStyleSheet
    from panel.io.resources import CDN_DIST

    for cls in _inline_css_classes():
        update = cls.__dict__.get("_update")
        update = getattr(update, "__wrapped__", update)
        if update is None or not {"_get_properties", "update"} <= code_names(update):
            raise AssertionError(f"{cls.__name__}._update no longer sends its properties with model.update")
    div = Div(stylesheets=[ImportedStyleSheet(url=f"{CDN_DIST}css/alerts.css")])
    if inline_stylesheets(div) != 1 or not isinstance(div.stylesheets[0], InlineStyleSheet):
        raise AssertionError("replace_inline_css does not inline Panel's own alerts.css")


register(
    Patch(
        PANEL_INLINE_CSS,
        package="panel",
        versions=">=1.4,<2",
        internals="panel ModelPane._update and HTMLBasePane._update wrapped (stylesheets inlined after)",
        public_path="Panel's own _update: offline, stylesheets of panes updated after the first render "
        "do not load",
        probe=_probe_inline_css,
    )
)


# Over ipywidgets (``pn.extension(comms="ipywidgets")``, VS Code's "vscode", Colab through
# jupyter_bokeh) Panel renders with ``panel.io.notebook.ipywidget`` -> ``get_root(doc)``
# without a comm, so neither its inline render (``_render_mimebundle``) nor its inline
# re-render of changed children (``Renderable._preprocess``, only when a comm exists)
# applies: every component links its CSS from the CDN. No public setting changes that
# (``config.inline``, bokeh's resources mode and ``PANEL_CDN_ROOT`` (read at import) do
# not reach these stylesheets), so with ``config.inline`` and those comms the properties
# models are made and updated with (``Reactive._get_properties``, ``Syncable._update_model``)
# carry the CSS inline, and ``_preprocess`` inlines whatever a render left linked.

__all__ += ["inline_css_over_ipywidgets", "PANEL_IPYWIDGET_INLINE_CSS"]

PANEL_IPYWIDGET_INLINE_CSS = "panel-ipywidget-inline-css"
_WIDGET_COMMS = ("ipywidgets", "vscode")


def _inline_rendered(viewable: Any, root: Any, changed: Any = None) -> int:
    """Inline the CDN stylesheets of what ``viewable._preprocess(root, changed)`` rendered:
    the whole root, or the ``changed`` object's models; how many it replaced."""
    from bokeh.models import UIElement

    ref = root.ref["id"]
    if changed is not None and ref in changed._models:
        tops = [changed._models[ref][0]]
    else:
        tops = [root]
    return sum(inline_stylesheets(m) for top in tops for m in top.select({"type": UIElement}))


def _over_widgets() -> bool:
    from panel.config import config

    return bool(config.inline) and config.comms in _WIDGET_COMMS


def _inline_sheets(sheets: Any) -> Any:
    """``sheets`` with Panel's CDN stylesheets replaced by the same CSS inline (the list
    itself when there are none)."""
    from bokeh.models import ImportedStyleSheet
    from panel.io.notebook import replace_inline_css

    if not isinstance(sheets, list) or not any(isinstance(x, ImportedStyleSheet) for x in sheets):
        return sheets
    return [replace_inline_css(x) if isinstance(x, ImportedStyleSheet) else x for x in sheets]


def inline_css_over_ipywidgets() -> bool:
    """Have Panel objects rendered over ipywidgets (jupyter_bokeh) carry their stylesheets
    inline with ``pn.extension(inline=True)``, as over Panel's own comms: in the
    properties a model is made or updated with (never sent as CDN links first), and
    after a (re-)render; whether they do (False when the guard refuses).

    Examples
    --------
    >>> with public_path(PANEL_IPYWIDGET_INLINE_CSS):
    ...     inline_css_over_ipywidgets()
    False
    """
    if not usable(PANEL_IPYWIDGET_INLINE_CSS):
        return False
    from panel.reactive import Reactive, Syncable
    from panel.viewable import Renderable

    pre = Renderable.__dict__["_preprocess"]
    if getattr(pre, "_mushin_inline_css", False):
        return True
    upd, props = Syncable.__dict__["_update_model"], Reactive.__dict__["_get_properties"]

    def _preprocess(self: Any, root: Any, changed: Any = None, old_models: Any = None) -> None:
        pre(self, root, changed, old_models)
        if _over_widgets():
            _inline_rendered(self, root, changed)

    def _update_model(self: Any, events: Any, msg: Any, root: Any, model: Any, doc: Any, comm: Any) -> None:
        if "stylesheets" in msg and _over_widgets():
            msg["stylesheets"] = _inline_sheets(msg["stylesheets"])
        upd(self, events, msg, root, model, doc, comm)

    def _get_properties(self: Any, doc: Any) -> dict[str, Any]:
        out = props(self, doc)
        if "stylesheets" in out and _over_widgets():
            out["stylesheets"] = _inline_sheets(out["stylesheets"])
        return out

    wraps = [(Renderable, "_preprocess", _preprocess, pre), (Syncable, "_update_model", _update_model, upd)]
    for cls, name, new, original in [*wraps, (Reactive, "_get_properties", _get_properties, props)]:
        new._mushin_inline_css = True  # type: ignore[attr-defined]
        new.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(cls, name, new)
    return True


def _probe_ipywidget_css() -> None:
    import inspect

    from panel.io import notebook
    from panel.pane.base import Pane
    from panel.viewable import Renderable

    if "get_root" not in code_names(notebook.ipywidget):
        raise AssertionError("panel.io.notebook.ipywidget no longer renders with get_root")
    pre = Renderable.__dict__.get("_preprocess")
    pre = getattr(pre, "__wrapped__", pre)
    if pre is None or list(inspect.signature(pre).parameters) != ["self", "root", "changed", "old_models"]:
        raise AssertionError("Renderable._preprocess(root, changed, old_models) changed")
    from panel.reactive import Reactive, Syncable

    upd = Syncable.__dict__.get("_update_model")
    upd = getattr(upd, "__wrapped__", upd)
    if upd is None or "update" not in code_names(upd):
        raise AssertionError("Syncable._update_model no longer updates the model")
    props = Reactive.__dict__.get("_get_properties")
    props = getattr(props, "__wrapped__", props)
    if props is None or "stylesheets" not in (props.__code__.co_consts or ()):
        raise AssertionError("Reactive._get_properties no longer returns the stylesheets")
    for fn in (Renderable.get_root, Pane._get_root_model):
        if "_preprocess" not in code_names(fn):
            raise AssertionError(f"{fn.__qualname__} no longer calls _preprocess")


register(
    Patch(
        PANEL_IPYWIDGET_INLINE_CSS,
        package="panel",
        versions=">=1.4,<2",
        internals="panel Renderable._preprocess, Syncable._update_model, Reactive._get_properties wrapped "
        "(stylesheets inlined, over ipywidgets comms)",
        public_path="Panel's own _preprocess: over ipywidgets (VS Code, Colab, jupyter_bokeh) every "
        "component links its CSS from Panel's CDN (offline: unstyled)",
        probe=_probe_ipywidget_css,
    )
)


# ---------------------------------------------------------------- panel-comm-msg-keeps-held-events
#
# Panel holds a notebook's document events and pushes them right after each change; a
# page message goes to ``MimeRenderMixin._on_msg``, applied between ``doc.hold()`` and
# ``doc.unhold()``, and ``unhold`` dispatches every held event (never sent to the page).
# Notebook 7 and JupyterLab >= 4.4 send page messages to a kernel subshell (a thread)
# while a live view redraws on the main loop: one handled between a redraw's
# ``model.update`` and its ``push`` dropped that update (the panel's "Finished: N jobs",
# the view's last badges). The patch applies it under ``MODELS_LOCK`` (our redraws hold
# it too), sets the events held before aside, then puts them back and pushes them.

__all__ += ["MODELS_LOCK", "keep_held_events_on_comm_msg", "PANEL_COMM_MSG_HELD"]

PANEL_COMM_MSG_HELD = "panel-comm-msg-keeps-held-events"

MODELS_LOCK = threading.RLock()  # held while our redraws change and push models, and by _on_msg


def _comm_msg_keeping_held(original: Any) -> Any:
    def _on_msg(self: Any, ref: str, manager: Any, msg: Any) -> None:
        from panel.io.notebook import push
        from panel.io.state import state

        with MODELS_LOCK:
            view = state._views.get(ref)
            doc, comm = (view[2], view[3]) if view is not None else (None, None)
            pending: list[Any] = []
            if doc is not None:
                pending, doc.callbacks._held_events = list(doc.callbacks._held_events), []
            try:
                original(self, ref, manager, msg)
            finally:
                if pending and doc is not None:  # held before: Panel's _on_msg holds it again
                    doc.callbacks._held_events = pending + doc.callbacks._held_events
                    if comm is not None:
                        push(doc, comm)

    _on_msg._mushin_keeps_held = True  # type: ignore[attr-defined]
    _on_msg.__wrapped__ = original  # type: ignore[attr-defined]
    return _on_msg


def keep_held_events_on_comm_msg() -> bool:
    """Have Panel apply a page message under ``MODELS_LOCK``, keeping (then sending) the
    updates other threads hold instead of dropping them; False when the guard refuses.

    Examples
    --------
    >>> with public_path(PANEL_COMM_MSG_HELD):
    ...     keep_held_events_on_comm_msg()
    False
    """
    if not usable(PANEL_COMM_MSG_HELD):
        return False
    from panel.viewable import MimeRenderMixin

    original = MimeRenderMixin.__dict__["_on_msg"]
    if not getattr(original, "_mushin_keeps_held", False):
        MimeRenderMixin._on_msg = _comm_msg_keeping_held(original)
    return True


def _probe_comm_msg() -> None:
    from bokeh.document import Document
    from bokeh.models import Div
    from panel.viewable import MimeRenderMixin

    on_msg = MimeRenderMixin.__dict__.get("_on_msg")
    on_msg = getattr(on_msg, "__wrapped__", on_msg)
    if on_msg is None or on_msg.__code__.co_varnames[:4] != ("self", "ref", "manager", "msg"):
        raise AssertionError("MimeRenderMixin._on_msg(ref, manager, msg) changed")
    if not {"_views", "hold", "unhold", "apply_to_document"} <= code_names(on_msg):
        raise AssertionError("MimeRenderMixin._on_msg no longer applies messages between hold and unhold")
    doc, div = Document(), Div(text="a")
    doc.add_root(div)
    doc.hold("combine")
    div.text = "b"
    held = doc.callbacks._held_events
    if not (isinstance(held, list) and [getattr(e, "attr", None) for e in held] == ["text"]):
        raise AssertionError(f"a held document does not list its events in callbacks._held_events: {held!r}")


register(
    Patch(
        PANEL_COMM_MSG_HELD,
        package="panel",
        versions=">=1.4,<2",
        internals="panel MimeRenderMixin._on_msg wrapped (a lock; doc.callbacks._held_events kept)",
        public_path="Panel's _on_msg: a page message on a subshell may drop another thread's update",
        probe=_probe_comm_msg,
    )
)
