"""%%mushin_sweep through a real IPython InteractiveShell: parsing, binding,
errors, background runs, interrupt, save, --panel."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from mushin_nb import SweepError, SweepRun, load_netcdf
from mushin_nb.notebook.magic import split_line

SQUARE = """
def task(x: int, k: int = 1) -> dict:
    return dict(y=x * k)
"""


@pytest.fixture(scope="module")
def ip():
    from _ipy import shell

    return shell()


@pytest.fixture()
def cell(ip, tmp_path, monkeypatch):
    """Run a %%mushin_sweep cell; return (result, namespace)."""
    monkeypatch.chdir(tmp_path)  # default sweep dirs land here
    for k in ("ds", "ds_run", "p"):
        ip.user_ns.pop(k, None)

    def run(line: str, body: str = SQUARE):
        res = ip.run_cell(f"%%mushin_sweep {line}\n{body}")
        return res, ip.user_ns

    return run


def err(res) -> str:
    assert res.error_in_exec is not None, "the cell did not fail"
    return str(res.error_in_exec)


def test_split_line_keeps_quotes_and_brackets():
    assert split_line("a='x y' b=range(0, 3) c=[1, 2] -o ds") == [
        "a='x y'",
        "b=range(0, 3)",
        "c=[1, 2]",
        "-o",
        "ds",
    ]
    with pytest.raises(UsageError, match="Unclosed quote"):
        split_line("a='x")


def test_sweep_binds_dataset_and_run(cell, tmp_path):
    res, ns = cell(f"x=1,2,3 k=10 -o ds --no-view -d {tmp_path / 'sw'}")
    assert res.success, res.error_in_exec
    ds = ns["ds"]
    assert dict(ds.sizes) == {"x": 3}  # swept -> dims
    assert ds["y"].values.tolist() == [10, 20, 30]
    assert ds.attrs["k"] == 10  # fixed -> attrs
    assert ds["status"].values.tolist() == ["done"] * 3
    assert isinstance(ns["ds_run"], SweepRun) and ns["ds_run"].sweep_dir == tmp_path / "sw"
    assert callable(ns["task"])  # the body ran in the user's namespace


def test_hydra_grammar_range_choice_and_quotes(cell):
    body = "def task(seed: int, name: str, opt: str) -> dict:\n    return dict(n=len(name) + seed)"
    res, ns = cell("seed=range(2) name='a,b',c opt=choice(sgd,adam) -o ds --no-view", body)
    assert res.success, res.error_in_exec
    ds = ns["ds"]
    assert ds["seed"].values.tolist() == [0, 1]
    assert ds["name"].values.tolist() == ["a,b", "c"]
    assert ds["opt"].values.tolist() == ["sgd", "adam"]
    assert ds["n"].sel(seed=1, name="a,b", opt="adam").item() == 4


def test_function_named_task_wins_and_several_candidates_need_task(cell):
    two = (
        "def helper(x: int) -> dict:\n    return dict(y=-x)\ndef task(x: int) -> dict:\n    return dict(y=x)"
    )
    res, ns = cell("x=1,2 -o ds --no-view", two)
    assert res.success and ns["ds"]["y"].values.tolist() == [1, 2]

    amb = "def f(x: int) -> dict:\n    return dict(y=x)\ndef g(x: int) -> dict:\n    return dict(y=-x)"
    res, _ = cell("x=1 -o ds --no-view", amb)
    assert isinstance(res.error_in_exec, UsageError)
    assert "f, g" in err(res) and "--task" in err(res)
    res, ns = cell("x=1,2 -o ds --no-view --task g", amb)
    assert res.success and ns["ds"]["y"].values.tolist() == [-1, -2]
    assert ns["ds_run"].workflow_name == "g"  # the workflow class is named after the function


def test_workflow_option_with_empty_body(cell, ip):
    ip.run_cell(
        "from mushin_nb import MultiRunMetricsWorkflow\n"
        "class Cube(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        "    def task(x: int) -> dict:\n"
        "        return dict(y=x ** 3)\n"
    )
    res, ns = cell("--workflow Cube x=1,2 -o ds --no-view", "\n")  # a blank body
    assert res.success, res.error_in_exec
    assert ns["ds"]["y"].values.tolist() == [1, 8] and ns["ds_run"].workflow_name == "Cube"
    res = ip.run_cell("%mushin_sweep --workflow Cube x=3 -o ds --no-view")  # the line form
    assert res.success, res.error_in_exec
    assert ns["ds"].attrs["x"] == 3 and ns["ds"]["y"].item() == 27
    res, _ = cell("--workflow Nope x=1 --no-view", "\n")
    assert "Nope" in err(res)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("x=1,2 bogus=3", ["'bogus'", "accepts: x: int, k: int = 1"]),
        ("k=2", ["required parameter x", "x=..."]),
        ("x=1,,2", ["'x=1,,2'", "Cannot read"]),
        ("x=abc", ["'x=abc'", "integer"]),
        ("x=interval(0,1)", ["interval", "range("]),
        ("x=1 x=2", ["twice"]),
        ("x", ["'x' is not an override"]),
        ("x=1 --on-error maybe", ["maybe"]),
        ("x=1 --resume", ["--resume needs -d"]),
    ],
)
def test_usage_errors_name_the_problem(cell, tmp_path, line, expected):
    res, ns = cell(f"{line} -o ds --no-view")
    assert isinstance(res.error_in_exec, UsageError), res.error_in_exec
    for text in expected:
        assert text in err(res)
    assert "ds" not in ns
    assert not (tmp_path / "multirun").exists()  # nothing ran


def test_no_task_in_cell(cell):
    res, _ = cell("x=1 --no-view", "y = 3")
    assert "defines no task" in err(res)


def test_failures_bind_then_raise_sweep_error(cell, capsys):
    body = "def task(x: int) -> dict:\n    if x == 2:\n        raise ValueError('two')\n    return dict(y=x)"
    res, ns = cell("x=1,2,3 -o ds --no-view", body)
    assert isinstance(res.error_in_exec, SweepError)
    assert ns["ds"]["status"].values.tolist() == ["done", "failed", "done"]
    res, ns = cell("x=1,2,3 -o ds --no-view --on-error ignore", body)
    assert res.success and ns["ds"]["y"].sel(x=3).item() == 3
    err = capsys.readouterr().err
    assert "1 of 3 jobs failed (--on-error ignore); first: [x=2] ValueError: two" in err
    assert "on_error=" not in err and "run.failures" not in err


def test_save_and_overwrite(cell, tmp_path):
    out = tmp_path / "r.nc"
    res, ns = cell(f"x=1,2 -o ds --no-view --save {out}")
    assert res.success and load_netcdf(out)["y"].values.tolist() == [1, 2]
    res, _ = cell(f"x=5 -o ds --no-view --save {out}")
    assert isinstance(res.error_in_exec, UsageError) and "--overwrite" in err(res)
    assert load_netcdf(out)["y"].values.tolist() == [1, 2]  # untouched, nothing ran
    res, _ = cell(f"x=5,6 -o ds --no-view --save {out} --overwrite")
    assert res.success and load_netcdf(out)["y"].values.tolist() == [5, 6]


def test_background_returns_at_once_and_rebinds(cell, ip):
    ip.run_cell("import threading\ngate = threading.Event()")
    body = "def task(x: int) -> dict:\n    gate.wait(30)\n    return dict(y=x)"
    res, ns = cell("x=1,2,3 -o ds --background --no-view", body)
    assert res.success
    run = ns["ds_run"]
    assert not run.done  # the cell returned while jobs wait
    assert ns["ds"]["status"].values.tolist() != ["done"] * 3
    ns["gate"].set()
    run.wait(60)
    import time

    for _ in range(100):  # the finishing thread rebinds ds right after the run ends
        if ns["ds"]["status"].values.tolist() == ["done"] * 3:
            break
        time.sleep(0.05)
    assert ns["ds"]["y"].values.tolist() == [1, 2, 3]


def test_background_with_view_rebinds_on_redraw(cell, ip):
    ip.run_cell("import threading\ngate2 = threading.Event()")
    body = "def task(x: int) -> dict:\n    gate2.wait(30)\n    return dict(y=x)"
    res, ns = cell("x=1,2 -o ds --background --plot y", body)
    assert res.success
    run = ns["ds_run"]
    assert not run.done
    ns["gate2"].set()
    run.wait(60)
    import time

    for _ in range(200):
        if ns["ds"]["status"].values.tolist() == ["done"] * 2:
            break
        time.sleep(0.05)
    assert ns["ds"]["y"].values.tolist() == [1, 2]


def test_blocking_with_view(cell):
    res, ns = cell("x=1,2 -o ds --plot y")
    assert res.success, res.error_in_exec
    assert ns["ds"]["y"].values.tolist() == [1, 2]


def test_stop_button_cancels_and_keeps_finished_results(cell):
    # the job for x=2 presses "stop" (KeyboardInterrupt in the main thread, where the cell waits)
    body = (
        "import _thread, time\n"
        "def task(x: int) -> dict:\n"
        "    if x == 2:\n"
        "        _thread.interrupt_main()\n"
        "        for _ in range(400):\n"
        "            time.sleep(0.05)\n"
        "    return dict(y=x)\n"
    )
    res, ns = cell("x=1,2,3 -o ds --no-view", body)
    assert isinstance(res.error_in_exec, KeyboardInterrupt)
    ds = ns["ds"]
    assert ds["status"].values.tolist() == ["done", "cancelled", "cancelled"]
    assert ds["y"].sel(x=1).item() == 1
    assert ns["ds_run"].done


def test_panel_option_prefills_the_panel(cell, tmp_path):
    res, ns = cell(f"x=1,2,3 k=4 --panel -o p -d {tmp_path / 'w'} --launcher joblib -j 2")
    assert res.success, res.error_in_exec
    p = ns["p"]
    assert p.pickers["x"].values == [1, 2, 3] and p.pickers["k"].values == [4]
    assert p.n_jobs == 3 and p.working_dir == str(tmp_path / "w")
    assert p.launcher == "joblib" and p.workers == 2
    assert res.result is p and p.run is None  # shown, not run


def test_help_lists_the_options(ip):
    doc = ip.find_cell_magic("mushin_sweep").__doc__
    for opt in [
        "-o NAME",
        "--workflow",
        "--task",
        "--working-dir",
        "--resume",
        "--launcher",
        "--jobs",
        "--on-error",
        "--save",
        "--overwrite",
        "--plot",
        "--background",
        "--panel",
        "--no-view",
        "--kind",
    ]:
        assert opt in doc, opt
    from mushin_nb._launchers import LAUNCHERS

    for info in LAUNCHERS:  # --launcher's help is the launcher table's
        assert info.name in doc, info.name


def test_kind_option_is_checked_then_used(cell):
    res, ns = cell("x=1,2 k=1,2 -o ds --kind lines")  # blocks: the PNG, then the view, of lines
    assert res.success, res.error_in_exec
    assert ns["ds"]["y"].values.tolist() == [[1, 2], [2, 4]]
    before = ns["ds"]
    res, ns = cell("x=1,2 -o ds --kind nope --no-view")
    assert isinstance(res.error_in_exec, UsageError) and ns["ds"] is before
    assert "--kind nope" in err(res) and "heatmap, lines" in err(res)


def test_resume_after_fixing_the_task_needs_force(cell, tmp_path):
    d = tmp_path / "sw"
    broken = (
        "def task(x: int) -> dict:\n    if x == 2:\n        raise ValueError('bug')\n    return dict(y=x)\n"
    )
    fixed = "def task(x: int) -> dict:\n    return dict(y=x)\n"
    res, ns = cell(f"x=1,2,3 -d {d} --no-view -o ds", broken)
    assert not res.success and ns["ds"]["status"].values.tolist() == ["done", "failed", "done"]
    res, ns = cell(f"x=1,2,3 -d {d} --no-view -o ds --resume", fixed)
    assert not res.success and "resume='force'" in str(res.error_in_exec)
    res, ns = cell(f"x=1,2,3 -d {d} --no-view -o ds --resume --force", fixed)
    assert res.success, res.error_in_exec
    assert ns["ds"]["y"].values.tolist() == [1, 2, 3] and ns["ds_run"].skipped == 2
    res, _ = cell("x=1 --force --no-view", fixed)
    assert not res.success and "--force goes with --resume" in str(res.error_in_exec)


# ------------------------------------------------------------------ in a real kernel: what a user sees


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A real IPython kernel (the venv's python3) in a directory of its own; ``run(code)``
    executes a cell and returns its status and every output the front end would show
    (streams, the error's rendered traceback), without ANSI colours."""
    import re

    from jupyter_client.manager import start_new_kernel

    cwd = tmp_path_factory.mktemp("kernel")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(code: str) -> tuple[str, str]:
        outs: list[str] = []

        def hook(msg):
            c, t = msg["content"], msg["msg_type"]
            if t == "stream":
                outs.append(c["text"])
            elif t == "error":
                outs.append("\n".join(c["traceback"]))
            elif t in ("execute_result", "display_data"):
                outs.append(c["data"].get("text/plain", ""))

        reply = kc.execute_interactive(code, output_hook=hook, timeout=300)
        return reply["content"]["status"], re.sub(r"\x1b\[[0-9;]*m", "", "".join(outs))

    run("%load_ext mushin_nb")
    try:
        yield run, cwd
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


FAILING = "def task(x: int) -> dict:\n    if x == 2:\n        raise ValueError('two')\n    return dict(y=x)\n"
API_TERMS = ("resume=True", "resume='force'", "err.dataset", "wf.to_xarray", "working_dir=")
INTERNALS = ("Traceback", "mushin_nb/", "magic.py", "_workflows.py", "_execution.py")


def test_a_failed_cell_says_its_fix_with_the_cells_options_and_no_traceback(kernel):
    run, cwd = kernel
    status, text = run(f"%%mushin_sweep x=1,2,3 -o ds --no-view -d {cwd / 'fails'}\n{FAILING}")
    assert status == "error"
    assert "SweepError: 1 of 3 jobs of task failed" in text and "[x=2] ValueError: two" in text, text
    assert "in ds (the -o variable)" in text
    assert f"-d {cwd / 'fails'} --resume" in text and f"-d {cwd / 'fails'} --resume --force" in text
    for term in API_TERMS + INTERNALS:
        assert term not in text, (term, text)
    # without -o: the advice says how to bind the results
    status, text = run(f"%%mushin_sweep x=1,2 --no-view --on-error stop\n{FAILING}")
    assert status == "error" and "--on-error stop" in text and "on_error=" not in text
    assert "--resume -o NAME" in text and "-o NAME binds them" in text, text
    # the advice works: fix the task, run the cell again with the options it named
    fixed = "def task(x: int) -> dict:\n    return dict(y=x)\n"
    status, text = run(f"%%mushin_sweep x=1,2,3 -o ds --no-view -d {cwd / 'fails'} --resume --force\n{fixed}")
    assert status == "ok", text
    status, text = run("print(ds['y'].values.tolist(), ds_run.skipped)")
    assert text.strip() == "[1, 2, 3] 2", text


def test_a_misspelled_launcher_in_a_cell_is_a_usage_error_before_anything_runs(kernel):
    run, cwd = kernel
    before = sorted(str(p) for p in cwd.rglob("*"))
    for line in ("--launcher jobllib", "hydra/launcher=jobllib", "hydra.launcher=jobllib"):
        status, text = run(f"%%mushin_sweep x=1,2 -o typo --no-view -d {cwd / 'typo'} {line}\n{FAILING}")
        assert status == "error" and text.startswith("UsageError: %%mushin_sweep: "), text
        assert "jobllib" in text and "Nothing was started or changed" in text
        assert "did you mean 'joblib'" in text or "--launcher jobllib" in text
        for term in INTERNALS + ("0/2", "launcher='"):
            assert term not in text, (term, text)
    assert not (cwd / "typo").exists() and sorted(str(p) for p in cwd.rglob("*")) == before
    assert run("print('typo' in dir())")[1].strip() == "False"


def test_the_api_in_a_kernel_shows_the_callers_line_and_the_message_not_the_internals(kernel):
    run, cwd = kernel
    status, text = run(
        "from mushin_nb import MultiRunMetricsWorkflow, multirun\n"
        "class Half(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        f"    {FAILING.replace(chr(10), chr(10) + '    ').rstrip()}\n"
        f"Half().run(x=multirun([1, 2]), launcher='jobllib', working_dir='{cwd / 'api'}')\n"
    )
    assert status == "error"
    assert "ValueError: launcher='jobllib' is not a launcher this environment has" in text, text
    assert "Half().run(" in text  # the caller's own line
    for term in ("mushin_nb/", "_launch", "_launchers"):
        assert term not in text, (term, text)
    assert not (cwd / "api").exists()
    status, text = run(f"Half().run(x=multirun([1, 2]), working_dir='{cwd / 'api'}', progress=False)\n")
    assert status == "error" and "SweepError: 1 of 2 jobs of Half failed" in text and "Half().run(" in text
    assert "resume=True" in text  # the API's own terms here
    assert "mushin_nb/" not in text and "_execution" not in text, text


def test_api_refusals_after_the_plan_show_the_message_not_the_internals(kernel):
    """save= to an existing file, a second sweep while one runs in the kernel, a
    directory another process holds, and sweep_panel(launcher=typo): the caller's line
    and the message, no frame inside mushin_nb; nothing changed on disk."""
    run, cwd = kernel
    (cwd / "exists.nc").write_text("keep")
    status, _ = run(
        "import threading, time\n"
        "from mushin_nb import MultiRunMetricsWorkflow, multirun, sweep_panel\n"
        "from mushin_nb._lock import SweepLock\n"
        "gate = threading.Event()\n"
        "class Slow(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        "    def task(x: int) -> dict:\n"
        "        gate.wait(60)\n"
        "        return dict(y=x)\n"
    )
    assert status == "ok"
    cases = {
        f"Slow().run(x=multirun([1]), working_dir='{cwd / 'a'}', save='{cwd / 'exists.nc'}')": "the file exists",
        f"held = SweepLock('{cwd / 'held'}'); held.acquire()\n"
        f"Slow().run(x=multirun([1]), working_dir='{cwd / 'held'}')": "SweepLocked",
        "sweep_panel(Slow, launcher='jobllib')": "did you mean 'joblib'",
    }
    for code, expected in cases.items():
        status, text = run(code)
        assert status == "error" and expected in text, (code, text)
        assert "Slow().run(" in text or "sweep_panel(" in text, text
        for term in ("mushin_nb/", "_launch", "_live_netcdf", "_lock.py", "_sweep_panel"):
            assert term not in text, (term, text)
    run("held.release()")
    status, _ = run(f"r = Slow().start(x=multirun([1]), working_dir='{cwd / 'first'}')")
    assert status == "ok"
    status, text = run(f"Slow().run(x=multirun([2]), working_dir='{cwd / 'second'}')")
    assert status == "error" and "SweepBusy" in text and "Slow().run(" in text, text
    assert "mushin_nb/" not in text and "_execution" not in text, text
    assert not (cwd / "second").exists() and (cwd / "exists.nc").read_text() == "keep"
    out = run("gate.set(); print(r.wait(60)['y'].values.tolist())")[1]
    assert out.strip() in ("[1]", "[1.0]"), out
