"""Which thread redraws: the redraw timer, and the thread that owns the bokeh models.

Examples
--------
>>> import threading
>>> class Done:
...     def join(self, timeout):
...         return True
>>> seen = []
>>> timer_loop(Done(), 0.01, threading.Event(), seen.append, print)
>>> seen
[True]
>>> MainThread().deferred  # no kernel, no server: callbacks run at once
False
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import _deps

__all__ = ["MainThread", "timer_loop"]


def timer_loop(
    run: Any,
    interval: float | None,
    stop: threading.Event,
    step: Callable[[bool], Any],
    on_error: Callable[[Exception], Any],
) -> None:
    """A view's redraw timer: every ``interval`` seconds, and once when ``run`` ends,
    call ``step(finished)``, until ``stop`` is set. An error of ``step`` goes to
    ``on_error`` and never ends the loop."""
    while not stop.is_set():
        finished = run.join(interval)
        try:
            step(finished)
        except Exception as e:
            on_error(e)
        if finished:
            break


class MainThread:
    """Runs callbacks on the thread that owns the bokeh models, from any thread.

    Captured where the view is created: a served session's document if there is
    one; else the event loop running in the creating thread (in a kernel: the
    main shell's loop for a view made by a cell, or the subshell's loop for a view
    made by a widget callback: JupyterLab >= 4.4 sends comm messages to a kernel
    subshell, which handles them on its own thread); else the kernel's main loop;
    else nothing (callbacks then run at once: scripts, tests without a kernel).
    :meth:`adopt` moves to the thread that handles the page's messages when one of
    them reaches the view from another thread.
    """

    def __init__(self) -> None:
        self.doc: Any = None
        self.loop: Any = None  # an asyncio loop (call_soon_threadsafe)
        self.thread: threading.Thread | None = None
        try:
            from panel.io.state import state

            doc = state.curdoc
            if doc is not None and doc.session_context is not None:
                self.doc = doc
                self.thread = threading.current_thread()
                return
        except Exception:  # pragma: no cover
            pass
        ip = _deps.ipython()
        kernel = getattr(ip, "kernel", None) if ip is not None else None
        if kernel is None:
            return  # no kernel, no server: nothing to hand over to
        if not self.adopt():
            io_loop = getattr(kernel, "io_loop", None)
            if io_loop is not None:
                self.loop = io_loop.asyncio_loop
                self.thread = threading.main_thread()

    def adopt(self) -> bool:
        """Own the calling thread if an event loop runs in it (and no served
        document is the owner); returns whether it does now."""
        if self.doc is not None:
            return False
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.loop, self.thread = loop, threading.current_thread()
        return True

    @property
    def deferred(self) -> bool:
        """Whether :meth:`call` schedules (True) or runs at once (False)."""
        return self.doc is not None or self.loop is not None

    def here(self) -> bool:
        """Whether the calling thread is the one that owns the models."""
        return self.thread is None or threading.current_thread() is self.thread

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the owning thread: scheduled from another thread (in
        this thread's context, so outputs go to the cell that started it)."""
        if self.doc is not None:
            from panel.io.state import set_curdoc, state

            with set_curdoc(self.doc):
                state.execute(fn, schedule=True)  # doc.add_next_tick_callback, locked
        elif self.loop is not None:
            self.loop.call_soon_threadsafe(fn)
        else:
            fn()
