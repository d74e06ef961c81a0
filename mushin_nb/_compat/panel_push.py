"""Panel's messages to a notebook page sent in the order they were made, comm by comm:
part of :mod:`mushin_nb._compat`.

Panel's ``panel.io.notebook.push`` sends a document's changes over the view's comm. While
the page has not opened that comm yet (just after a cell shows the view: a
``%%mushin_sweep --background`` cell whose view redraws at once), it retries each message
on a timer of its own (``IOLoop.current().call_later(0.1, ...)``), and a message made once
the comm is open is sent at once. So the messages go out in whichever order their timers
find the comm open: one naming a new figure could reach the page before the one that
defines it (the page: "reference ... isn't known", and the view stops updating).

The patch ``panel-push-in-order`` replaces ``push`` (in ``panel.io.notebook``, and in
every module that imported it by name: ``panel.reactive``, ``panel.pane.base``,
HoloViews' plots, ...) by :func:`push_in_order`. It makes the message as Panel does
(``diff``) and sends it as Panel does (``send``), but while a comm is not open, or
messages still wait for it, the message joins that comm's queue; one timer per comm
(0.1 s, as Panel's, on the calling thread's event loop, else a timer thread) sends the
queue in order once the comm is open, and any push to it meanwhile sends the queue
first. Sends are serialised by a lock (page messages may be handled on a kernel
subshell thread). It reads pyviz_comms' ``Comm._comm`` (set when the page opens the
comm), as Panel's ``push`` does. Public path: Panel's ``push``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from . import Patch, code_names, public_path, register, usable  # noqa: F401  (public_path: the doctests)

__all__ = ["PANEL_PUSH_IN_ORDER", "RETRY", "push_in_order", "send_pushes_in_order", "waiting", "forget"]

PANEL_PUSH_IN_ORDER = "panel-push-in-order"
"""The patch's name (Panel's ``push`` keeping each comm's messages in order)."""

RETRY = 0.1
"""Seconds between two looks at a comm that the page has not opened yet (Panel's too)."""

_lock = threading.RLock()  # held while a comm's queue changes and while messages are sent
_waiting: dict[int, tuple[Any, list[Any]]] = {}  # id(comm) -> (comm, messages not sent yet)
_original: Any = None  # Panel's own push, once replaced


def _panel() -> Any:
    import panel.io.notebook

    return panel.io.notebook


def push_in_order(doc: Any, comm: Any, binary: bool = True, msg: Any = None) -> None:
    """Panel's ``push(doc, comm, binary, msg)``: send the document's held changes (or
    ``msg``) over ``comm``; while the page has not opened ``comm``, keep the message,
    and send the kept messages in the order they were made once it has.

    Examples
    --------
    >>> from bokeh.document import Document
    >>> from bokeh.models import Div
    >>> from pyviz_comms import Comm
    >>> doc, div, comm = Document(), Div(text="a"), Comm()
    >>> doc.add_root(div); doc.hold("combine"); div.text = "b"
    >>> push_in_order(doc, comm)  # the page has not opened the comm: kept
    >>> waiting(comm)
    1
    >>> forget(comm); waiting(comm)
    0
    """
    nb = _panel()
    if msg is None:
        msg = nb.diff(doc, binary=binary)
    if msg is None:
        return
    with _lock:
        entry = _waiting.get(id(comm))
        if entry is None and comm._comm:
            nb.send(comm, msg)
            return
        first = entry is None
        if entry is None:
            entry = _waiting[id(comm)] = (comm, [])
        entry[1].append(msg)
        if comm._comm:  # opened since the first one was kept: all of them now, in order
            _send_waiting(id(comm))
            return
    if first:
        _later(id(comm))


def waiting(comm: Any) -> int:
    """How many messages wait for the page to open ``comm``."""
    with _lock:
        entry = _waiting.get(id(comm))
        return len(entry[1]) if entry is not None else 0


def forget(comm: Any) -> None:
    """Drop the messages waiting for ``comm`` (a page that will never open it)."""
    with _lock:
        _waiting.pop(id(comm), None)


def _send_waiting(key: int) -> None:
    with _lock:
        comm, messages = _waiting.pop(key)
        nb = _panel()
        for msg in messages:
            nb.send(comm, msg)


def _retry(key: int) -> None:
    with _lock:
        entry = _waiting.get(key)
        if entry is None:  # sent by a push meanwhile, or forgotten
            return
        if entry[0]._comm:
            _send_waiting(key)
            return
    _later(key)


def _later(key: int) -> None:
    """Look at the comm again in ``RETRY`` seconds: on the calling thread's event loop
    (a kernel's, where Panel retries too), else on a timer thread."""
    import asyncio

    try:
        asyncio.get_running_loop().call_later(RETRY, _retry, key)
    except RuntimeError:  # no loop runs in this thread
        timer = threading.Timer(RETRY, _retry, args=(key,))
        timer.daemon = True
        timer.start()


def send_pushes_in_order() -> bool:
    """Have Panel send each comm's messages in the order they were made, also those
    made before the page opened the comm; whether it does (False when the guard
    refuses: Panel's own ``push`` stays).

    Examples
    --------
    >>> with public_path(PANEL_PUSH_IN_ORDER):
    ...     send_pushes_in_order()
    False
    """
    global _original
    if not usable(PANEL_PUSH_IN_ORDER):
        return False
    nb = _panel()
    original = nb.push
    if original is push_in_order:
        return True
    _original = original
    for module in list(sys.modules.values()):  # every module that took it by name
        if getattr(module, "__dict__", {}).get("push") is original:
            module.push = push_in_order  # type: ignore[attr-defined]
    return True


def _probe() -> None:
    import inspect

    from bokeh.document import Document
    from bokeh.models import Div
    from pyviz_comms import Comm

    nb = _panel()
    own = _original if nb.push is push_in_order else nb.push
    if list(inspect.signature(own).parameters) != ["doc", "comm", "binary", "msg"]:
        raise AssertionError("panel.io.notebook.push(doc, comm, binary, msg) changed")
    if not {"diff", "_comm", "call_later", "send"} <= code_names(own):
        raise AssertionError("panel's push no longer sends diff() or retries while comm._comm is unset")
    if list(inspect.signature(nb.send).parameters) != ["comm", "msg"]:
        raise AssertionError("panel.io.notebook.send(comm, msg) changed")
    if "_comm" not in vars(Comm()):
        raise AttributeError("a pyviz_comms Comm has no _comm")

    class Recording(Comm):
        sent: list[Any]
        _comm: Any  # pyviz_comms': None until the page opens the comm

        def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
            self.sent.append(data if buffers is None else buffers)

    doc, div = Document(), Div(text="a")
    doc.add_root(div)
    doc.hold("combine")
    div.text = "b"
    msg = nb.diff(doc, binary=True)
    ours, theirs = Recording(), Recording()
    for comm in (ours, theirs):
        comm.sent, comm._comm = [], True
    push_in_order(doc, ours, msg=msg)
    own(doc, theirs, msg=msg)
    if not ours.sent or ours.sent != theirs.sent:
        raise AssertionError("push_in_order sends another text than panel's push")


register(
    Patch(
        PANEL_PUSH_IN_ORDER,
        package="panel",
        versions=">=1.4,<2",
        internals="panel.io.notebook.push replaced (there and where imported by name); "
        "pyviz_comms Comm._comm read",
        public_path="Panel's push: messages made before the page opens a comm are each retried on their "
        "own timer and may reach the page out of order",
        probe=_probe,
    )
)
