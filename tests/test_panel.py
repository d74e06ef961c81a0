"""The sweep panel, driven like a user would: set widget values, click buttons.
Real sweeps, real NetCDF files, a real Panel server on 127.0.0.1."""

from __future__ import annotations

import enum
import threading
import time
import urllib.request
from typing import Literal

import pytest

from mushin_nb import MultiRunMetricsWorkflow, load_netcdf

pytest.importorskip("panel")

GATE = threading.Event()


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Many(MultiRunMetricsWorkflow):
    @staticmethod
    def task(
        lr: float,
        seed: int = 0,
        opt: Literal["sgd", "adam"] = "sgd",
        color: Color = Color.RED,
        nesterov: bool = False,
        tag: str = "t",
    ) -> dict:
        return dict(score=lr * 10 + seed)


class Flaky(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        if x == 2:
            raise ValueError(f"x={x} is unlucky")
        return dict(y=x * x)


class Gated(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        GATE.wait(30)
        return dict(y=x)


def test_pickers_follow_the_signature():
    import panel as pn

    p = Many().panel()
    k = p.pickers
    assert list(k) == ["lr", "seed", "opt", "color", "nesterov", "tag"]
    assert isinstance(k["lr"].input, pn.widgets.TextInput) and k["lr"].range_builder is not None
    assert isinstance(k["seed"].input, pn.widgets.TextInput) and k["seed"].range_builder is not None
    assert isinstance(k["opt"].input, pn.widgets.MultiChoice) and k["opt"].input.options == ["sgd", "adam"]
    assert k["color"].input.options == ["RED", "BLUE"] and k["color"].values == ["RED"]
    assert isinstance(k["nesterov"].input, pn.widgets.CheckBoxGroup) and k["nesterov"].values == [False]
    assert k["tag"].values == ["t"] and k["tag"].tags.visible
    # defaults are fixed values; lr has no default: required, no value
    assert k["lr"].missing and "required" in k["lr"].badge.object
    assert "fixed" in k["seed"].badge.object


def test_job_count_and_why_run_is_disabled():
    p = Many().panel()
    assert p.n_jobs == 0 and p.run_button.disabled
    assert "lr" in p.reason and "no value" in p.reason
    assert "lr" in p.reason_text.object and p.reason_text.visible
    p.pickers["lr"].input.value = "0.01, 0.1, 1"
    assert p.n_jobs == 3 and not p.run_button.disabled and p.reason == ""
    assert "swept" in p.pickers["lr"].badge.object and "3 values" in p.pickers["lr"].badge.object
    p.pickers["seed"].input.value = "range(4)"
    assert p.n_jobs == 12 and p.pickers["seed"].values == [0, 1, 2, 3]
    p.pickers["nesterov"].input.value = [True, False]
    p.pickers["opt"].input.value = ["sgd", "adam"]
    assert p.n_jobs == 48
    assert "<b>48</b> jobs" in p.jobs_text.object
    # a value of the wrong type: the picker says so, Run stays disabled
    p.pickers["seed"].input.value = "1, x"
    assert p.run_button.disabled and "seed" in p.reason and "integer" in p.reason
    p.pickers["seed"].input.value = "1, 1"
    assert "twice" in p.reason
    p.pickers["seed"].input.value = "1"
    assert not p.run_button.disabled
    p.resume = True
    assert p.run_button.disabled and "working directory" in p.reason


def test_range_builder_fills_linear_and_log_ranges():
    p = Many().panel()
    lr = p.pickers["lr"]
    lr.range_start.value, lr.range_stop.value, lr.range_count.value = 0.001, 1.0, 4
    lr.range_scale.value = "log"
    lr.fill_button.clicks += 1
    assert lr.values == [0.001, 0.01, 0.1, 1.0]
    seed = p.pickers["seed"]
    seed.range_start.value, seed.range_stop.value, seed.range_count.value = 0, 10, 3
    seed.range_scale.value = "linear"
    seed.fill_button.clicks += 1
    assert seed.values == [0, 5, 10] and seed.input.value == "0, 5, 10"
    assert p.n_jobs == 12


def test_installed_launchers_only():
    from mushin_nb.notebook.panel import installed_launchers

    names = installed_launchers()
    # the default (in-process) launcher first, shown as the default; the name
    # launcher="joblib" runs (mushin_nb_joblib) is not offered a second time
    assert names[:2] == ["mushin_nb", "basic"] and "joblib" in names and "mushin_nb_joblib" not in names
    p = Many().panel(lr=0.1)
    assert list(p.param.launcher.objects) == names and p.launcher == "mushin_nb"
    assert p.param.launcher.names["in-process (default)"] == "mushin_nb"
    assert p.kwargs()["launcher"] is None  # the engine's default
    p.launcher = "basic"  # Hydra's own BasicLauncher, passed as such
    assert p.kwargs()["launcher"] == "basic"
    with pytest.raises(ValueError):
        p.launcher = "not-a-launcher"
    p.workers = 2  # parallel jobs need a parallel launcher
    assert "joblib" in p.reason
    p.launcher = "joblib"
    assert "joblib" not in p.reason


def test_unknown_initial_value_names_the_parameter():
    with pytest.raises(TypeError, match=r"'momentum'.*accepts: lr: float"):
        Many().panel(lr=0.1, momentum=0.9)


def test_run_in_background_progress_failures_and_save(tmp_path):
    p = Flaky().panel(x=[1, 2, 3], working_dir=str(tmp_path / "sweep"), interval=0.05)
    assert p.n_jobs == 3
    p.run_button.clicks += 1  # Run: starts in the background, returns at once
    assert p.run is not None and "Started 3 jobs" in p.message
    ds = p.wait(60)
    assert ds["y"].sel(x=3).item() == 9 and ds["status"].sel(x=2).item() == "failed"
    assert p.progress.value == 3 and p.progress.max == 3
    assert "2 done" in p.progress_text.object and "1 failed" in p.progress_text.object
    assert "1 of 3 jobs failed" in p.message
    # the failures table: parameter values, error, traceback on demand
    assert p.failures_table.visible and len(p.failures) == 1
    table = p.failures_table.object
    assert "ValueError" in table and "x=2 is unlucky" in table and "<details>" in table
    assert "Traceback (most recent call last)" in table
    assert p.cancel_button.disabled and not p.run_button.disabled

    # Save: writes NetCDF through save_netcdf, says what it wrote
    out = tmp_path / "res.nc"
    p.save_path.value = str(out)
    p.save_button.clicks += 1
    assert out.exists() and "Wrote" in p.save_message and "x: 3" in p.save_message
    back = load_netcdf(out)
    assert back["y"].sel(x=3).item() == 9 and back["status"].values.tolist() == ["done", "failed", "done"]

    # saving again asks before replacing the file
    before = out.read_bytes()
    p.save_button.clicks += 1
    assert "already exists" in p.save_message and p.replace_button.visible
    assert out.read_bytes() == before
    p.keep_button.clicks += 1  # keep it: nothing written, question gone
    assert not p.replace_button.visible and out.read_bytes() == before
    p.save_button.clicks += 1
    p.replace_button.clicks += 1
    assert "Wrote" in p.save_message and not p.replace_button.visible


def test_save_before_any_run_says_so(tmp_path):
    p = Flaky().panel(x=[1])
    p.save_path.value = str(tmp_path / "a.nc")
    p.save_button.clicks += 1
    assert "run a sweep first" in p.save_message and not (tmp_path / "a.nc").exists()


def test_cancel_keeps_finished_results(tmp_path):
    GATE.clear()
    try:
        p = Gated().panel(x=[1, 2, 3, 4], working_dir=str(tmp_path), interval=None)
        p.run_button.clicks += 1
        assert p.run_button.disabled and "running" in p.reason  # one sweep at a time
        p.cancel_button.clicks += 1
    finally:
        GATE.set()
    ds = p.wait(60)
    assert p.run.status["cancelled"] >= 1
    assert "cancelled" in ds["status"].values.tolist()
    assert "Cancelled" in p.message


def test_plain_function_and_resume_runs_only_new_cells(tmp_path):
    from mushin_nb import sweep_panel

    calls = []

    def square(x: int) -> dict:
        calls.append(x)
        return dict(y=x * x)

    p = sweep_panel(square, x=[1, 2], working_dir=str(tmp_path), interval=None)
    assert type(p.workflow).__name__ == "square"
    p.start()
    p.wait(60)
    p.pickers["x"].input.value = "1, 2, 3"
    p.resume = True
    p.run_button.clicks += 1
    ds = p.wait(60)
    assert calls == [1, 2, 3] and p.run.skipped == 2
    assert ds["y"].values.tolist() == [1, 4, 9]


def _fetch(url: str) -> str:
    last: Exception | None = None
    for _ in range(100):  # the server thread needs a moment to listen
        try:
            return urllib.request.urlopen(url, timeout=10).read().decode()
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}: {last}")


def test_pn_serve_serves_the_panel_page():
    import panel as pn
    from panel.io.state import state

    p = Flaky().panel(x=[1, 2])
    server = pn.serve(p.panel(), address="127.0.0.1", port=0, threaded=True, show=False)
    try:
        for _ in range(100):
            if server.server_id in state._servers:
                break
            time.sleep(0.1)
        port = state._servers[server.server_id][0].port
        page = _fetch(f"http://127.0.0.1:{port}/")
        assert "<html" in page.lower() and "static/js/bokeh" in page  # served by itself: offline
    finally:
        server.stop()
    server.join(30)
    assert not server.is_alive()


def test_serve_function_and_cli(tmp_path):
    import argparse

    from mushin_nb.notebook.serve import add_cli, load_target, serve

    mod = tmp_path / "mysweeps.py"
    mod.write_text(
        "from mushin_nb import MultiRunMetricsWorkflow\n"
        "class Sq(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        "    def task(x: int = 1) -> dict:\n"
        "        return dict(y=x * x)\n"
    )
    assert load_target(f"{mod}:Sq").__name__ == "Sq"
    with pytest.raises(ValueError, match="MODULE:CLASS"):
        load_target("nocolon")
    with pytest.raises(ValueError, match="has no 'Nope'"):
        load_target(f"{mod}:Nope")
    server = serve(f"{mod}:Sq", port=0, threaded=True)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        page = _fetch(server.url)
        assert "mushin-nb: Sq" in page
    finally:
        server.stop()
    server.join(30)
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", f"{mod}:Sq", "--port", "0", "-d", "out"])
    assert args.command == "serve" and args.target == f"{mod}:Sq" and args.working_dir == "out"
    assert callable(args.func)
