"""The notebook layer's patches of third-party internals (the *notebook layer* section of
``mushin_nb/_compat/``): each does what it is for, and its guard falls back to the
public path when the versions or the internals differ. Real pyviz_comms comms, a real
IPython shell, a real subprocess for the whole load with every patch off."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from mushin_nb import _compat

pytest.importorskip("panel")
pyviz_comms = pytest.importorskip("pyviz_comms")

NOTEBOOK_PATCHES = (
    _compat.PANEL_EXTENSION_LOADED,
    _compat.PYVIZ_COMMS_EXEC_COUNT,
    _compat.PYVIZ_COMMS_STDOUT,
)


@pytest.fixture
def fresh_verdicts():
    """Guards decide again (a test changes what they look at), before and after."""
    for name in NOTEBOOK_PATCHES:
        _compat._refresh(name)
    yield
    for name in NOTEBOOK_PATCHES:
        _compat._refresh(name)


def _pretend_version(monkeypatch, package, version):
    real = _compat.installed_version
    monkeypatch.setattr(_compat, "installed_version", lambda p: version if p == package else real(p))


def test_notebook_patches_are_registered_for_what_is_installed():
    for name in NOTEBOOK_PATCHES:
        patch = _compat.PATCHES[name]
        assert patch.in_range(_compat.installed_version(patch.package)), (name, patch.versions)
        assert _compat.refusal(name) is None, (name, _compat.refusal(name))


@pytest.mark.parametrize(
    "name, package",
    [
        (_compat.PANEL_EXTENSION_LOADED, "panel"),
        (_compat.PYVIZ_COMMS_EXEC_COUNT, "pyviz_comms"),
        (_compat.PYVIZ_COMMS_STDOUT, "pyviz_comms"),
    ],
)
def test_guards_refuse_other_versions(monkeypatch, fresh_verdicts, name, package):
    _pretend_version(monkeypatch, package, (99, 0))
    assert "99.0 is not" in str(_compat.refusal(name))


# ----------------------------------------------------------------------------- panel-extension-loaded


def test_panel_extension_loaded_reads_whether_pn_extension_ran():
    code = (
        "from mushin_nb import _compat\n"
        "before = _compat.panel_extension_loaded()\n"
        "import panel as pn\n"
        "pn.extension(inline=True)\n"
        "print(before, _compat.panel_extension_loaded())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_panel_extension_guard_refuses_changed_internals(monkeypatch, fresh_verdicts):
    from panel.config import panel_extension

    monkeypatch.setattr(panel_extension, "_loaded", "yes")  # not the bool it was written for
    assert "internals differ" in str(_compat.refusal(_compat.PANEL_EXTENSION_LOADED))
    assert _compat.panel_extension_loaded() is False  # the public path: taken as not loaded


# ----------------------------------------------------------------------------- pyviz-comms-execution-count


class _Ext(pyviz_comms.extension):
    """A pyviz extension that does nothing when called (records the cell rule only)."""

    def __call__(self, *args, **kwargs):
        return None


@pytest.fixture
def in_ipython(monkeypatch):
    """pyviz_comms as it is in a kernel, with a real IPython shell; its records restored."""
    from _ipy import shell

    ip = shell()
    monkeypatch.setattr(pyviz_comms, "_in_ipython", True)
    monkeypatch.setattr(pyviz_comms.extension, "_last_execution_count", None)
    monkeypatch.setattr(pyviz_comms.extension, "_repeat_execution_in_cell", False)
    return ip


def test_marked_cell_makes_an_extension_a_rerun(in_ipython, fresh_verdicts):
    ip = in_ipython
    _Ext()  # an extension run in an earlier cell ...
    ip.execution_count += 1
    _Ext()  # ... is no repeat in this one: it would publish its resources again
    assert pyviz_comms.extension._repeat_execution_in_cell is False
    ip.execution_count += 1
    assert _compat.mark_extension_cell(ip.execution_count) is True
    _Ext()  # e.g. hvplot's hv.extension('bokeh'): a repeat, it sends nothing
    assert pyviz_comms.extension._repeat_execution_in_cell is True


def test_exec_count_public_path_sets_nothing(in_ipython, fresh_verdicts):
    ip = in_ipython
    ip.execution_count += 1
    with _compat.public_path(_compat.PYVIZ_COMMS_EXEC_COUNT):
        assert _compat.mark_extension_cell(ip.execution_count) is False
    assert pyviz_comms.extension._last_execution_count is None
    _Ext()
    assert pyviz_comms.extension._repeat_execution_in_cell is False


def test_exec_count_guard_refuses_changed_internals(monkeypatch, fresh_verdicts):
    monkeypatch.delattr(pyviz_comms.extension, "_repeat_execution_in_cell")
    assert "internals differ" in str(_compat.refusal(_compat.PYVIZ_COMMS_EXEC_COUNT))
    assert _compat.mark_extension_cell(3) is False


# ----------------------------------------------------------------------------- pyviz-comms-thread-stdout


def _callback_prints_while_a_cell_prints(capsys):
    """A comm message handled on a worker thread (a kernel subshell) whose callback
    prints, while the main thread (a running cell) prints too. Returns (what the comm
    captured for the callback, what reached the real stdout)."""
    inside, cell_printed = threading.Event(), threading.Event()
    captured: list[list[str]] = []

    def on_msg(msg):
        print("from the callback")
        inside.set()
        cell_printed.wait(10)

    comm = pyviz_comms.Comm(on_msg=on_msg, on_stdout=captured.append)
    worker = threading.Thread(target=comm._handle_msg, args=({"content": 1},))
    worker.start()
    assert inside.wait(10)
    print("from the cell")
    cell_printed.set()
    worker.join(10)
    return [line for lines in captured for line in lines], capsys.readouterr().out


def _pyviz_original(monkeypatch):
    """pyviz_comms' own StandardOutput, put back for the test (the notebook layer may
    have replaced it already in this process)."""
    original = _compat.notebook._comm_stdout_original or pyviz_comms.StandardOutput
    assert original is not _compat.ThreadSafeStandardOutput
    monkeypatch.setattr(pyviz_comms, "StandardOutput", original)
    return original


def test_thread_safe_capture_keeps_the_cells_output(monkeypatch, capsys, fresh_verdicts):
    _pyviz_original(monkeypatch)
    # the original: the cell's print lands in the callback's capture
    got, out = _callback_prints_while_a_cell_prints(capsys)
    assert "from the cell" in got and "from the cell" not in out
    assert _compat.thread_safe_comm_stdout() is True
    assert pyviz_comms.StandardOutput is _compat.ThreadSafeStandardOutput
    got, out = _callback_prints_while_a_cell_prints(capsys)
    assert got == ["from the callback"] and "from the cell" in out and "from the callback" not in out


def test_thread_stdout_public_path_keeps_pyviz_comms_class(monkeypatch, fresh_verdicts):
    original = _pyviz_original(monkeypatch)
    with _compat.public_path(_compat.PYVIZ_COMMS_STDOUT):
        assert _compat.thread_safe_comm_stdout() is False
    assert pyviz_comms.StandardOutput is original


def test_thread_stdout_guard_refuses_changed_internals(monkeypatch, fresh_verdicts):
    def handle(self, msg):  # a pyviz_comms that no longer captures with StandardOutput()
        return self._on_msg(msg)

    original = _pyviz_original(monkeypatch)
    monkeypatch.setattr(pyviz_comms.Comm, "_handle_msg", handle)
    assert "internals differ" in str(_compat.refusal(_compat.PYVIZ_COMMS_STDOUT))
    assert _compat.thread_safe_comm_stdout() is False and pyviz_comms.StandardOutput is original


# ----------------------------------------------------------------------------- all public


def test_the_notebook_stack_loads_with_every_notebook_patch_off():
    """``_deps.pn()`` in a fresh interpreter with the three guards forced off: Panel's
    extension loaded, xarray objects get ``.hvplot``, pyviz_comms keeps its class."""
    code = (
        "import pyviz_comms\n"
        "original = pyviz_comms.StandardOutput\n"
        "from mushin_nb.notebook import _deps\n"
        "from panel.config import panel_extension\n"
        "_deps.pn()\n"
        "import xarray as xr\n"
        "print(panel_extension._loaded, hasattr(xr.Dataset, 'hvplot'), pyviz_comms.StandardOutput is original)\n"
    )
    off = ",".join(NOTEBOOK_PATCHES)
    env = {**__import__("os").environ, _compat.OFF_ENV: off}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr
