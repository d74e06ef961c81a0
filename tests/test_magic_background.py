"""``%%mushin_sweep --background``: once ``NAME_run.wait()`` returns, ``NAME`` is the
final Dataset (it was rebound by a thread that waited for the view's last redraw, which
a kernel runs on the main thread that the waiting cell blocks)."""

from __future__ import annotations

import pytest

BODY = "def task(x: int) -> dict:\n    {gate}.wait(30)\n    return dict(y=x)"


@pytest.fixture(scope="module")
def ip():
    from _ipy import shell

    return shell()


@pytest.mark.parametrize("view", ["--no-view", "--plot y"])
def test_name_is_final_when_wait_returns(ip, tmp_path, monkeypatch, view):
    monkeypatch.chdir(tmp_path)
    gate = f"gate_{view[2:].replace(' ', '_').replace('-', '_')}"
    ip.run_cell(f"import threading\n{gate} = threading.Event()")
    res = ip.run_cell(f"%%mushin_sweep x=1,2,3 -o bg --background {view}\n{BODY.format(gate=gate)}")
    assert res.success, res.error_in_exec
    ns = ip.user_ns
    run = ns["bg_run"]
    assert not run.done and ns["bg"]["status"].values.tolist() != ["done"] * 3
    ns[gate].set()
    run.wait(60)
    # no polling: the very next statement after wait() sees the final Dataset
    assert ns["bg"]["status"].values.tolist() == ["done"] * 3
    assert ns["bg"]["y"].values.tolist() == [1, 2, 3]
