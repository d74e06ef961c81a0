"""Quiet cells: no Hydra or joblib lines in a cell, on any sweep of a kernel, whatever
ran before (an ordinary ``hydra_zen.launch`` first, a second sweep); ``verbose=True`` /
``--verbose`` shows Hydra's lines and the task's log records; each job's log file has
the task's records either way. Cells run in a real Jupyter kernel (jupyter_client),
whose stdout/stderr, also of the launchers' worker processes, reach the cell."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import pytest

from mushin_nb import MultiRunMetricsWorkflow, multirun

TASK_LOGS = """
import glob, logging
from mushin_nb import MultiRunMetricsWorkflow, multirun

class W(MultiRunMetricsWorkflow):
    @staticmethod
    def task(lr: float) -> dict:
        logging.getLogger(__name__).info("TASKLOG lr=%s", lr)
        return dict(y=lr)

def records(d):  # the task's records in each job's log file, by job dir
    return sorted(open(f).read().count("TASKLOG") for f in glob.glob(d + "/*/*.log"))
"""

MAGIC_BODY = 'def task(lr: float) -> dict:\n    logging.getLogger(__name__).info("TASKLOG lr=%s", lr)\n    return dict(y=lr)'

# what Hydra, the launchers and joblib write when they are not quiet
NOISE = re.compile(r"HYDRA|hydra|Launching|#\d+ : |Joblib|joblib|Parallel|TASKLOG")


class Kernel:
    """A real IPython kernel; ``run(code)`` returns the cell's (stdout, stderr) and
    fails on an error in the cell."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        # as in Jupyter: ipykernel forwards what the kernel's child processes (joblib's
        # workers) write to its stdout/stderr into the cell, except under pytest
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env)

    def run(self, code: str, timeout: float = 240) -> tuple[str, str]:
        msg_id = self.kc.execute(code)
        out = {"stdout": "", "stderr": ""}
        errors = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        assert not errors, (code, errors, out)
        return out["stdout"], out["stderr"]

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    pytest.importorskip("jupyter_client")
    k = Kernel(tmp_path_factory.mktemp("quiet"))
    try:
        k.run("%load_ext mushin_nb\n" + TASK_LOGS)
        # an ordinary Hydra launch first: it leaves a console handler on the root logger
        out, _ = k.run(
            "from hydra_zen import launch, make_config\n"
            "launch(make_config(x=1), lambda c: logging.getLogger('z').info('ZLOG'), "
            "overrides=['hydra.run.dir=zen_run'], version_base='1.3');"
        )
        assert "ZLOG" in out  # Hydra's console handler is on the root logger now
        yield k
    finally:
        k.stop()


def test_cells_stay_quiet_on_every_sweep_and_launcher(kernel):
    sweeps = [
        ("W().run(lr=multirun([0.1, 0.2]), working_dir='a')", "a"),
        ("W().run(lr=multirun([0.1, 0.2]), working_dir='b')", "b"),  # a second sweep
        ("W().run(lr=multirun([0.1, 0.2]), working_dir='c', launcher='joblib', jobs=2)", "c"),
        ("W().run(lr=multirun([0.1, 0.2]), working_dir='d', launcher='joblib', jobs=2)", "d"),
        ("W().run(lr=multirun([0.1, 0.2]), working_dir='e', launcher='submitit_local', progress=False)", "e"),
        (f"%%mushin_sweep lr=0.1,0.2 -o ds --no-view -d f\n{MAGIC_BODY}", "f"),
        (f"%%mushin_sweep lr=0.1,0.2 -o ds --no-view -d g --launcher joblib -j 2\n{MAGIC_BODY}", "g"),
        ("r = W().start(lr=multirun([0.1, 0.2]), working_dir='h'); r.wait();", "h"),
    ]
    for code, d in sweeps:
        out, err = kernel.run(code)
        assert not NOISE.search(out + err), (code, out, err)
        # the job's own log file still has the task's record
        assert kernel.run(f"print(records({d!r}))")[0].strip() == "[1, 1]", code
    out, _ = kernel.run("print(logging.getLogger().handlers)")
    assert "zen_run" in out  # what was on the root logger before is back after the sweeps


def test_a_dask_sweep_is_quiet_too(kernel):
    pytest.importorskip("distributed")
    for d in ("k1", "k2"):  # the first starts a local cluster, whose log reaches the root logger
        out, err = kernel.run(f"W().run(lr=multirun([0.1, 0.2]), working_dir={d!r}, launcher='dask')")
        assert not NOISE.search(out + err) and "distributed" not in out + err, (out, err)
        assert kernel.run(f"print(records({d!r}))")[0].strip() == "[1, 1]"


def test_verbose_shows_hydra_lines_and_the_tasks_records(kernel):
    _, err = kernel.run("W().run(lr=multirun([0.1, 0.2]), working_dir='v1', verbose=True)")
    assert "Launching 2 jobs locally" in err and "#0 : +lr=0.1" in err, err
    assert "TASKLOG lr=0.1" in err and "TASKLOG lr=0.2" in err, err
    _, err = kernel.run(
        "W().run(lr=multirun([0.1, 0.2]), working_dir='v2', launcher='joblib', jobs=2, verbose=True)"
    )
    # the workers' records come through the kernel's forwarding of their stderr, which can
    # reach the page just after the cell's end: the next cell gets them then
    err += kernel.run("import sys; sys.stderr.flush()")[1]
    assert "Joblib.Parallel(" in err and "TASKLOG lr=0.1" in err and "TASKLOG lr=0.2" in err, err
    _, err = kernel.run(f"%%mushin_sweep lr=0.1,0.3 -o ds --no-view -d v3 --verbose\n{MAGIC_BODY}")
    assert "Launching 2 jobs locally" in err and "TASKLOG lr=0.3" in err, err
    for d in ("v1", "v2", "v3"):  # and still in each job's log file, once
        assert kernel.run(f"print(records({d!r}))")[0].strip() == "[1, 1]", d
    out, err = kernel.run("W().run(lr=multirun([0.1, 0.2]), working_dir='v4')")  # quiet again
    assert not NOISE.search(out + err), (out, err)


class Logs(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        logging.getLogger("my_task").info("hello from job %s", x)
        return dict(y=x)


@pytest.fixture()
def console():
    """A console handler on the root logger at INFO, as ``logging.basicConfig`` (or an
    earlier Hydra launch) leaves it; yields its stream."""
    root = logging.getLogger()
    stream = io.StringIO()
    h = logging.StreamHandler(stream)
    level = root.level
    root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(h)
        root.setLevel(level)


def test_a_console_handler_already_on_the_root_logger_gets_nothing(console, tmp_path, capfd):
    Logs().run(x=multirun([1, 2]), working_dir=str(tmp_path / "q"), progress=False)
    Logs().run(x=multirun([3]), working_dir=str(tmp_path / "q2"), progress=False)
    assert console.getvalue() == ""
    assert capfd.readouterr().err == ""
    assert "hello from job 2" in (tmp_path / "q" / "1" / "rai_workflow.log").read_text()
    logging.getLogger("user").info("after the sweeps")  # the user's handler is back, as it was
    assert console.getvalue() == "after the sweeps\n"
    assert all(not h.filters for h in logging.getLogger().handlers)  # nothing of the sweep's left


def test_verbose_writes_to_stderr_and_the_job_log_file(console, tmp_path, capfd):
    Logs().run(x=multirun([1, 2]), working_dir=str(tmp_path / "v"), progress=False, verbose=True)
    err = capfd.readouterr().err
    assert "Launching 2 jobs locally" in err and "hello from job 1" in err and "hello from job 2" in err
    assert console.getvalue() == ""  # shown once, on stderr: not twice through the user's handler
    assert "hello from job 1" in (tmp_path / "v" / "0" / "rai_workflow.log").read_text()


@pytest.mark.parametrize("bad", ["yes", 1, None, multirun([True, False])])
def test_verbose_must_be_a_bool(bad, tmp_path):
    with pytest.raises(
        TypeError, match=r"verbose=.*give True .* or False .*overrides=\['\+verbose=\.\.\.'\]"
    ):
        Logs().start(x=multirun([1]), working_dir=str(tmp_path / "s"), verbose=bad)
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_the_magic_and_the_demo_offer_verbose():
    from mushin_nb.cli import build_parser
    from mushin_nb.notebook.magic import MushinMagics

    assert "--verbose" in MushinMagics.mushin_sweep.__doc__
    assert build_parser().parse_args(["demo", "--verbose"]).verbose is True
    assert build_parser().parse_args(["demo"]).verbose is False
