"""The patch ``panel-comm-msg-keeps-held-events``: a message from the page handled on
another thread (a kernel subshell: Notebook 7, JupyterLab >= 4.4) while a redraw has
changed a model but not pushed it yet no longer drops that update. Real Panel objects
rendered into a real bokeh document with a pyviz_comms comm that records what it sends
to the page; the page's message is a real bokeh PATCH-DOC applied on a worker thread."""

from __future__ import annotations

import threading

import pytest

from mushin_nb import _compat

pytest.importorskip("panel")
pyviz_comms = pytest.importorskip("pyviz_comms")


class RecordingComm(pyviz_comms.Comm):
    """A comm whose page is open; it keeps every text it sends."""

    def __init__(self) -> None:
        super().__init__()
        self._comm = True  # open (Panel's push sends at once)
        self.sent: list[str] = []

    def send(self, data=None, metadata=None, buffers=None):
        if isinstance(data, str):
            self.sent.append(data)


@pytest.fixture
def fresh_verdict():
    _compat._refresh(_compat.PANEL_COMM_MSG_HELD)
    yield
    _compat._refresh(_compat.PANEL_COMM_MSG_HELD)


def _shown():
    """A panel (a status line and a text field) rendered for a notebook page."""
    import panel as pn
    from bokeh.document import Document

    status, field = pn.pane.HTML("5 done"), pn.widgets.TextInput(value="a")
    layout = pn.Column(status, field)
    from panel.io.model import add_to_doc

    comm = RecordingComm()
    doc = Document()
    root = layout.get_root(doc, comm)
    add_to_doc(root, doc, True)  # as Panel's render_mimebundle: the document held
    return layout, status, field, root, comm


def _page_sets_value(layout, field, root, value: str) -> None:
    """The page's message (the text field typed into), applied as Panel applies it,
    on a worker thread (the kernel's subshell)."""
    from panel.models.comm_manager import CommManager

    ref = root.ref["id"]
    model = field._models[ref][0]
    msg = {
        "header": {"msgid": "page-1", "msgtype": "PATCH-DOC"},
        "metadata": {},
        "content": {"events": [{"kind": "ModelChanged", "model": model.ref, "attr": "value", "new": value}]},
        "_buffers": {},
    }
    manager = CommManager(comm_id="c", plot_id=ref)
    worker = threading.Thread(target=layout._on_msg, args=(ref, manager, msg))
    worker.start()
    worker.join(30)
    assert not worker.is_alive()


def _redraw_with_message_between(layout, status, field, root, comm) -> str:
    """A redraw changes the status model; the page's message is applied before the
    redraw pushes; then it pushes. Returns everything the page was sent."""
    from panel.io.notebook import push

    ref = root.ref["id"]
    status._models[ref][0].text = "Finished: 6 jobs"  # model.update done, push not yet
    _page_sets_value(layout, field, root, "b")
    push(root.document, comm)  # the redraw's own push
    assert field.value == "b"  # the page's message was applied either way
    return "".join(comm.sent)


def test_panels_own_on_msg_drops_an_update_in_flight(monkeypatch):
    """What the patch is for: Panel's ``_on_msg`` (its ``doc.unhold()``) dispatches the
    update the other thread has not pushed, and the page never gets it."""
    from panel.viewable import MimeRenderMixin

    own = MimeRenderMixin.__dict__["_on_msg"]
    monkeypatch.setattr(MimeRenderMixin, "_on_msg", getattr(own, "__wrapped__", own))
    sent = _redraw_with_message_between(*_shown())
    assert "Finished: 6 jobs" not in sent


def test_patched_on_msg_keeps_and_sends_the_update_in_flight(fresh_verdict):
    from panel.viewable import MimeRenderMixin

    assert _compat.keep_held_events_on_comm_msg() is True
    assert getattr(MimeRenderMixin._on_msg, "_mushin_keeps_held", False)
    assert _compat.keep_held_events_on_comm_msg() is True  # once: not wrapped twice
    assert not getattr(MimeRenderMixin._on_msg.__wrapped__, "_mushin_keeps_held", False)
    layout, status, field, root, comm = _shown()
    sent = _redraw_with_message_between(layout, status, field, root, comm)
    assert "Finished: 6 jobs" in sent


def test_patched_on_msg_waits_for_a_redraw_holding_the_lock(fresh_verdict):
    """A page message arriving during a redraw (which holds MODELS_LOCK) is applied
    after the redraw has pushed: both reach their side."""
    from panel.io.notebook import push

    assert _compat.keep_held_events_on_comm_msg() is True
    layout, status, field, root, comm = _shown()
    ref = root.ref["id"]
    with _compat.MODELS_LOCK:
        status._models[ref][0].text = "Finished: 6 jobs"
        waiting = threading.Thread(target=_page_sets_value, args=(layout, field, root, "c"))
        waiting.start()
        push(root.document, comm)
        assert field.value == "a"  # not applied while the redraw holds the lock
    waiting.join(30)
    assert field.value == "c" and "Finished: 6 jobs" in "".join(comm.sent)


def test_comm_msg_public_path_keeps_panels_method(fresh_verdict):
    with _compat.public_path(_compat.PANEL_COMM_MSG_HELD):
        assert _compat.keep_held_events_on_comm_msg() is False


def test_comm_msg_guard_refuses_changed_internals(monkeypatch, fresh_verdict):
    from panel.viewable import MimeRenderMixin

    def on_msg(self, msg):  # a Panel whose _on_msg takes other arguments
        return None

    monkeypatch.setattr(MimeRenderMixin, "_on_msg", on_msg)
    assert "internals differ" in str(_compat.refusal(_compat.PANEL_COMM_MSG_HELD))
    assert _compat.keep_held_events_on_comm_msg() is False
    assert MimeRenderMixin._on_msg is on_msg
