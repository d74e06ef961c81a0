"""The patch ``panel-push-in-order``: the messages Panel makes for a notebook page before
the page has opened the view's comm (a ``%%mushin_sweep --background`` cell's first
redraws) reach the page in the order they were made. Real Panel objects rendered into a
real bokeh document with a pyviz_comms comm that records what it sends; the page opens
the comm part-way (as it does once it has rendered the output)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

import pytest

from mushin_nb import _compat
from mushin_nb._compat import panel_push

pytest.importorskip("panel")
pyviz_comms = pytest.importorskip("pyviz_comms")


class PageComm(pyviz_comms.Comm):
    """A comm the page has not opened yet; it keeps every text it sends, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def open(self) -> None:
        self._comm = True  # what pyviz_comms sets when the page opens it

    def send(self, data=None, metadata=None, buffers=None):
        if isinstance(data, str):
            self.sent.append(data)


@pytest.fixture
def fresh_verdict():
    _compat._refresh(_compat.PANEL_PUSH_IN_ORDER)
    yield
    _compat._refresh(_compat.PANEL_PUSH_IN_ORDER)


def _own_push():
    import panel.io.notebook as nb

    return panel_push._original if nb.push is panel_push.push_in_order else nb.push


def _bind(monkeypatch, fn) -> None:
    """Have Panel (and every module that took ``push`` by name) push with ``fn``."""
    for module in list(sys.modules.values()):
        if getattr(module, "__dict__", {}).get("push") in (_own_push(), panel_push.push_in_order):
            monkeypatch.setattr(module, "push", fn)


def _shown():
    """A view (a status line) rendered for a notebook page whose comm is not open yet."""
    import panel as pn
    from bokeh.document import Document
    from panel.io.model import add_to_doc

    layout = pn.Column(pn.pane.HTML("0 done"))
    comm = PageComm()
    doc = Document()
    root = layout.get_root(doc, comm)
    add_to_doc(root, doc, True)  # as Panel's render_mimebundle: the document held
    return layout, root, comm


def _redraw_adds_a_figure(layout, root):
    """A redraw that shows a new pane (its model is defined by this message); returns
    the pane and its model's id."""
    import panel as pn

    pane = pn.pane.HTML("new figure")
    layout.append(pane)
    return pane, pane._models[root.ref["id"]][0].ref["id"]


def _page_reads(comm) -> list[dict]:
    """The PATCH-DOC contents the page received, in order."""
    return [json.loads(s) for s in comm.sent if '"events"' in s]


def _defined_before_referenced(contents: list[dict], model_id: str) -> bool:
    """Whether the first message naming ``model_id`` is the one that defines it (a
    reference the page does not know yet is its 'reference ... isn't known')."""
    for content in contents:
        text = json.dumps(content)
        if f'"id": "{model_id}"' in text:
            return '"type": "object"' in text and f'"id": "{model_id}", "attributes"' in text
    raise AssertionError(f"no message names {model_id}")


async def _until(cond, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # polling interval


def _in_fresh_thread(fn):
    """``fn()`` on a thread of its own, which has no event loop: an earlier test in the
    session may leave one marked running on the main thread (asyncio.run refuses then)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the scenario did not end within 60 s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _scenario() -> tuple[list[dict], str, PageComm]:
    """On a running event loop (a kernel's): a redraw shows a new figure before the
    page opens the comm, the page opens it, the next redraw changes that figure; then
    until the page has both."""

    async def run():
        layout, root, comm = _shown()
        pane, model_id = _redraw_adds_a_figure(layout, root)
        assert comm.sent == []  # not open: nothing can be sent yet
        comm.open()
        pane.object = "updated figure"
        await _until(lambda: sum("figure" in s for s in comm.sent) >= 2)
        return _page_reads(comm), model_id, comm

    return _in_fresh_thread(lambda: asyncio.run(run()))


def test_panels_own_push_sends_a_reference_before_its_definition(monkeypatch):
    """What the patch is for: with Panel's ``push`` the first message waits on its own
    timer while the next one, made once the comm is open, goes out at once."""
    _bind(monkeypatch, _own_push())
    contents, model_id, _ = _scenario()
    assert "updated figure" in json.dumps(contents[0])
    assert not _defined_before_referenced(contents, model_id)


def test_pushes_in_order_send_the_definition_first(monkeypatch, fresh_verdict):
    assert panel_push.send_pushes_in_order() is True
    assert panel_push.send_pushes_in_order() is True  # once: not wrapped twice
    import panel.io.notebook as nb
    import panel.reactive

    assert nb.push is panel_push.push_in_order and panel.reactive.push is panel_push.push_in_order
    assert panel_push._original not in (None, panel_push.push_in_order)
    _bind(monkeypatch, panel_push.push_in_order)
    contents, model_id, comm = _scenario()
    assert "new figure" in json.dumps(contents[0]) and "updated figure" in json.dumps(contents[-1])
    assert _defined_before_referenced(contents, model_id)
    assert panel_push.waiting(comm) == 0


def test_messages_kept_while_closed_go_out_in_order_once_open(monkeypatch, fresh_verdict):
    """Several redraws before the page opens the comm; the retry (the calling thread's
    loop, else a timer thread: here, no loop) sends them all, in order, once open."""
    _bind(monkeypatch, panel_push.push_in_order)

    def redraws_then_open():
        layout, root, comm = _shown()
        pane, model_id = _redraw_adds_a_figure(layout, root)
        for i in range(3):
            pane.object = f"redraw {i}"
        assert comm.sent == [] and panel_push.waiting(comm) == 4
        comm.open()
        asyncio.run(_until(lambda: panel_push.waiting(comm) == 0))
        return comm, model_id

    comm, model_id = _in_fresh_thread(redraws_then_open)
    texts = [json.dumps(c) for c in _page_reads(comm)]
    assert len(texts) == 4 and "new figure" in texts[0]
    assert [next(i for i in range(3) if f"redraw {i}" in t) for t in texts[1:]] == [0, 1, 2]
    assert _defined_before_referenced(_page_reads(comm), model_id)


def test_a_push_from_another_thread_keeps_the_order(monkeypatch, fresh_verdict):
    """A message made on a kernel subshell's thread (a page message handled there)
    while earlier ones still wait: sent after them."""
    _bind(monkeypatch, panel_push.push_in_order)
    layout, root, comm = _shown()
    pane, model_id = _redraw_adds_a_figure(layout, root)
    comm.open()
    worker = threading.Thread(target=lambda: setattr(pane, "object", "from the subshell"))
    worker.start()
    worker.join(30)
    texts = [json.dumps(c) for c in _page_reads(comm)]
    assert len(texts) == 2 and "new figure" in texts[0] and "from the subshell" in texts[1]


def test_push_order_public_path_keeps_panels_push(fresh_verdict):
    import panel.io.notebook as nb

    before = nb.push
    with _compat.public_path(_compat.PANEL_PUSH_IN_ORDER):
        assert panel_push.send_pushes_in_order() is False
    assert nb.push is before


def test_push_order_guard_refuses_changed_internals(monkeypatch, fresh_verdict):
    import panel.io.notebook as nb

    def push(doc, comm):  # a Panel whose push takes other arguments
        return None

    monkeypatch.setattr(nb, "push", push)
    assert "internals differ" in str(_compat.refusal(_compat.PANEL_PUSH_IN_ORDER))
    assert panel_push.send_pushes_in_order() is False
    assert nb.push is push
