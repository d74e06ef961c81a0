"""A job ends as a job (issue 10, point 6): ``sys.exit()``, ``os._exit``, a
segfault or a SIGKILL (the OOM killer's signal) inside one job is that cell's
failure, named by its parameters, with the exit code or signal; the other cells
still run, on every launcher. Real processes, real signals, real files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mushin_nb import MultiRunMetricsWorkflow, SweepError, _store, multirun

try:  # the task travels to worker processes by value
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
except Exception:  # pragma: no cover
    pass
try:
    from joblib.externals import cloudpickle as _jl_cloudpickle

    _jl_cloudpickle.register_pickle_by_value(sys.modules[__name__])
except Exception:  # pragma: no cover
    pass


def value(x: int) -> float:
    return 10.0 * x + 0.25


class Die(MultiRunMetricsWorkflow):
    """x == 2 dies the way ``how`` says; every other cell returns value(x)."""

    @staticmethod
    def task(x: int, how: str, delay: float) -> dict:
        if x == 2:
            if how == "sys.exit":
                sys.exit(4)
            if how == "os._exit":
                os._exit(3)
            if how == "SIGSEGV":
                os.kill(os.getpid(), signal.SIGSEGV)
            if how == "SIGKILL":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(5)  # the signal arrives
        time.sleep(delay)
        return dict(y=value(x), pid=os.getpid())


def _run(tmp: Path, xs, how, delay=0.0, **kw):
    wf = Die()
    with pytest.raises(SweepError) as ei:
        wf.run(x=multirun(xs), how=how, delay=delay, working_dir=str(tmp), progress=False, **kw)
    return wf, ei.value


def _check(wf, err, tmp: Path, xs, *, type_: str, says: list[str]):
    ds = err.dataset
    # every other cell finished, with its exact value
    for x in xs:
        if x != 2:
            assert ds["status"].sel(x=x).item() == "done", (x, ds["status"].values)
            assert ds["y"].sel(x=x).item() == value(x)
    # the dead cell is that cell's failure, named by its parameters, saying how it ended
    assert ds["status"].sel(x=2).item() == "failed"
    (f,) = err.failures
    assert f.params == {"x": 2}
    assert f.exc_type == type_
    for s in says:
        assert s in f.message, (s, f.message)
    assert "x=2" in str(err)
    assert all(x not in wf.last_run.status for x in ("pending", "running")) or (
        wf.last_run.status["pending"] == 0 and wf.last_run.status["running"] == 0
    )
    # reload agrees with the live view
    assert _reloaded_status(tmp) == ds["status"].values.tolist()
    back = Die().load_from_dir(tmp).to_xarray()
    for x in xs:
        if x != 2:
            assert back["y"].sel(x=x).item() == value(x)
    assert not list(tmp.glob(f"**/{_store.RUNNING_JSON}"))  # no job is left looking like it runs


def _reloaded_status(tmp: Path) -> list[str]:
    from mushin_nb._dataset import status_array

    wf = Die().load_from_dir(tmp)
    return status_array(wf._spec, wf._results).tolist()


# --------------------------------------------------------------------- in-process


def test_sys_exit_in_process_is_the_jobs_failure(tmp_path):
    xs = [1, 2, 3]
    wf, err = _run(tmp_path, xs, "sys.exit")
    _check(wf, err, tmp_path, xs, type_="SystemExit", says=["sys.exit(4)", "exit code 4"])
    assert {int(p) for p in err.dataset["pid"].values[[0, 2]]} == {os.getpid()}  # ran in this process


# --------------------------------------------------------------------- joblib


@pytest.mark.parametrize(
    "how,xs,says",
    [
        ("sys.exit", [0, 1, 2], ["sys.exit(4)"]),
        # x=2 dies while x=3 runs in the other worker (which loky then kills too)
        ("os._exit", [0, 1, 2, 3], ["exited with code 3"]),
        # x=2 runs last, alone
        ("SIGSEGV", [0, 1, 2], ["killed by signal 11", "SIGSEGV"]),
        # x=2 dies first, while x=0 runs and x=1, x=3 wait: they run on a new worker
        ("SIGKILL", [2, 0, 1, 3], ["killed by signal 9", "SIGKILL", "out of memory?"]),
    ],
)
def test_joblib_worker_death_is_that_cells_failure(tmp_path, how, xs, says):
    wf, err = _run(tmp_path, xs, how, delay=0.3, launcher="joblib", jobs=2)
    type_ = "SystemExit" if how == "sys.exit" else "ProcessDied"
    _check(wf, err, tmp_path, xs, type_=type_, says=says)
    pids = {int(p) for p in err.dataset["pid"].values if p == p}
    assert os.getpid() not in pids
    if how != "sys.exit":
        assert "joblib worker" in err.failures[0].message
        # the failure is on disk, in the dead job's directory, as any failure
        rec = [json.loads(p.read_text()) for p in tmp_path.glob(f"*/{_store.RESULT_JSON}")]
        assert sorted(r["status"] for r in rec) == ["done"] * (len(xs) - 1) + ["failed"]
        # resume runs only the dead cell again (and it dies again)
        wf2, err2 = _run(tmp_path, xs, how, delay=0.3, launcher="joblib", jobs=2, resume=True)
        assert wf2.last_run.skipped == len(xs) - 1
        assert [f.params for f in err2.failures] == [{"x": 2}]


# --------------------------------------------------------------------- submitit


def test_submitit_local_os_exit_is_that_cells_failure(tmp_path, monkeypatch):
    # job processes unpickle Hydra's plugin registry: they need the test plugins too
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([plugins, os.environ.get("PYTHONPATH", "")]))
    xs = [1, 2, 3]
    wf, err = _run(
        tmp_path,
        xs,
        "os._exit",
        launcher="submitit_local",
        jobs=3,
        overrides=["hydra.launcher.timeout_min=5"],
        to_dictconfig=True,
    )
    _check(
        wf, err, tmp_path, xs, type_="ProcessDied", says=["exited with code 3", "os._exit", "submitit job"]
    )
    assert os.getpid() not in {int(p) for p in err.dataset["pid"].values if p == p}


# --------------------------------------------------------------------- in-process, the kernel dies

TASKS = """
import os, time
from mushin_nb import MultiRunMetricsWorkflow


class KernelDeath(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        if x == 2 and os.environ.get("MUSHIN_TEST_DIE") == "1":
            os._exit(3)  # takes the whole process (the "kernel") with it
        return dict(y=10.0 * x + 0.25)
"""


def test_in_process_death_is_found_on_reload_and_resume_reruns_only_it(tmp_path, monkeypatch):
    (tmp_path / "death_tasks.py").write_text(TASKS)
    sweep = tmp_path / "sweep"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from death_tasks import KernelDeath
        from mushin_nb import multirun
        KernelDeath().run(x=multirun([0, 1, 2]), working_dir={str(sweep)!r}, progress=False)
        """
    )
    env = dict(os.environ, MUSHIN_TEST_DIE="1")
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stderr
    # the dead job left its start marker and no result
    (marker,) = sweep.glob(f"*/{_store.RUNNING_JSON}")
    assert not (marker.parent / _store.RESULT_JSON).exists()

    monkeypatch.syspath_prepend(str(tmp_path))
    from death_tasks import KernelDeath

    wf = KernelDeath().load_from_dir(sweep)
    by_x = {r.index[0]: r for r in wf._results}
    assert by_x[0].status == by_x[1].status == "done" and by_x[2].status == "failed"
    err = by_x[2].error
    assert err["type"] == "ProcessDied" and "the process running this job died" in err["message"]
    assert "exit/signal unknown" in err["message"] and str(marker.parent) in err["message"]
    ds = wf.to_xarray()
    assert ds["y"].values[:2].tolist() == [0.25, 10.25] and ds["y"].isnull().values[2]

    wf.run(x=multirun([0, 1, 2]), working_dir=str(sweep), resume=True, progress=False)
    assert wf.last_run.skipped == 2  # only the dead cell ran again
    assert wf.to_xarray()["y"].values.tolist() == [0.25, 10.25, 20.25]
    back = KernelDeath().load_from_dir(sweep)
    from mushin_nb._dataset import status_array

    assert status_array(back._spec, back._results).tolist() == ["done"] * 3
    assert back.to_xarray()["y"].values.tolist() == [0.25, 10.25, 20.25]
    assert list(sweep.glob(f"**/{_store.RUNNING_JSON}")) == [marker]  # only the dead job's evidence


# --------------------------------------------------------------------- safety net


def test_no_cell_is_left_pending_or_running_after_a_sweep(tmp_path):
    """A cell whose job never ran (a sweeper that lost it) is failed at the end,
    saying so, and that failure is on disk: reload agrees with the live view."""
    import hydra_plugins.mushin_test_plugins.drop_sweeper  # noqa: F401

    wf = Die()
    run = wf.start(
        x=multirun([0, 1, 3]),
        how="none",
        delay=0.0,
        working_dir=str(tmp_path),
        sweeper="mushin_test_drop_last",
    )
    ds = run.wait(120)
    assert ds["status"].values.tolist() == ["done", "done", "failed"]
    assert run.status["pending"] == run.status["running"] == 0
    (f,) = run.failures
    assert f.params == {"x": 3} and f.exc_type == "NoResult"
    assert "no result was recorded for the job with x=3" in f.message and "resume=True" in f.message
    assert _reloaded_status(tmp_path) == ["done", "done", "failed"]
    assert Die().load_from_dir(tmp_path).to_xarray()["y"].values[:2].tolist() == [value(0), value(1)]


def test_find_dead_jobs_tells_dead_from_running_and_unknown(tmp_path):
    """Start markers of a process that is gone (nested job dirs too), of one still
    running, of another host, and of a finished job: only the first is a death."""
    code = (
        "import sys; from mushin_nb import _store; "
        "_store.mark_job_started(sys.argv[1], index=[int(sys.argv[2])], job_num=int(sys.argv[2]), run_id='r'); "
        "sys.stdout.write('ok\\n'); sys.stdout.flush(); sys.stdin.readline()"
    )
    dirs = {k: tmp_path / sub for k, sub in [("dead", "a/1"), ("alive", "a/2"), ("host", "3"), ("done", "4")]}
    for d in dirs.values():
        d.mkdir(parents=True)
    procs = {}
    for i, (k, d) in enumerate(dirs.items()):
        procs[k] = subprocess.Popen(
            [sys.executable, "-c", code, str(d), str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert procs[k].stdout.readline() == "ok\n"
    try:
        for k in ("dead", "host", "done"):
            procs[k].communicate("\n", timeout=60)
        m = json.loads((dirs["host"] / _store.RUNNING_JSON).read_text())
        (dirs["host"] / _store.RUNNING_JSON).write_text(json.dumps({**m, "host": "elsewhere"}))
        (dirs["done"] / _store.RESULT_JSON).write_text(
            json.dumps({"run_id": "r", "job_num": 3, "status": "done"})
        )
        dead = _store.find_dead_jobs(tmp_path)
        assert [(r.subdir, r.index, r.status, r.error["type"]) for r in dead] == [
            ("a/1", (0,), "failed", "ProcessDied")
        ]
        assert _store.find_dead_jobs(tmp_path, skip={"a/1"}) == []
        assert _store.find_dead_jobs(tmp_path, run_ids=["other"]) == []
    finally:
        procs["alive"].communicate("\n", timeout=60)
    # now that one is gone too
    assert sorted(r.subdir for r in _store.find_dead_jobs(tmp_path)) == ["a/1", "a/2"]


# --------------------------------------------------------------------- the marker becomes the result


class Record(MultiRunMetricsWorkflow):
    """Each job notes the inode of its start marker, then returns its value."""

    @staticmethod
    def task(x: int) -> dict:
        ino = os.stat(_store.RUNNING_JSON).st_ino  # the task runs in its job directory
        return dict(y=value(x), marker_ino=ino)


def test_a_jobs_start_marker_becomes_its_result_file(tmp_path):
    """A job creates no file for its result: the start marker it wrote is rewritten
    with the result and renamed, so no marker and no temporary file is left."""
    wf = Record()
    wf.run(x=multirun([0, 1, 2]), working_dir=str(tmp_path), progress=False)
    ds = wf.to_xarray()
    for x in (0, 1, 2):
        (job_dir,) = {tmp_path / r.subdir for r in wf._results if r.index == (x,)}
        result = job_dir / _store.RESULT_JSON
        assert result.stat().st_ino == ds["marker_ino"].sel(x=x).item()  # the same file
        assert not (job_dir / _store.RUNNING_JSON).exists()
        assert not [p.name for p in job_dir.iterdir() if p.name.endswith(".tmp")]
        assert json.loads(result.read_text())["scalars"]["y"] == value(x)
    back = Record().load_from_dir(tmp_path).to_xarray()
    assert back["y"].values.tolist() == [value(0), value(1), value(2)]


def test_write_job_result_makes_a_missing_job_dir_and_index_dir_again(tmp_path):
    """A result whose job directory and sweep index directory are gone (removed by hand
    while the sweep ran) is still written whole: both are made again, nothing raises."""
    r = _store.JobResult(index=(0,), status="done", subdir="a/0", duration=0.1, metrics={"y": 1.5})
    rec = _store.write_job_result(tmp_path, tmp_path / "a" / "0", r, from_marker=True)
    assert json.loads((tmp_path / "a" / "0" / _store.RESULT_JSON).read_text()) == rec
    index = tmp_path / _store.META_DIR / _store.INDEX
    assert [json.loads(ln) for ln in index.read_text().splitlines()] == [rec]
    assert rec["scalars"] == {"y": 1.5}
    shutil.rmtree(tmp_path / _store.META_DIR)
    r1 = _store.JobResult(index=(1,), status="done", subdir="a/1", duration=0.1, metrics={"y": 2.5})
    rec1 = _store.write_job_result(tmp_path, tmp_path / "a" / "1", r1)
    assert [json.loads(ln) for ln in index.read_text().splitlines()] == [rec1]


def test_write_job_result_from_a_marker_falls_back_and_survives_a_torn_rewrite(tmp_path):
    """Without a marker the result is written as usual; a crash while the marker is
    being rewritten leaves a marker its readers skip: the cell has no record (never a
    wrong value), and resume runs it again."""
    wf = Die()
    wf.run(x=multirun([0, 1]), how="", delay=0.0, working_dir=str(tmp_path), progress=False)
    r0 = next(r for r in wf._results if r.index == (0,))
    job_dir = tmp_path / r0.subdir
    # no marker: the ordinary atomic write
    (job_dir / _store.RESULT_JSON).unlink()
    rec = _store.write_job_result(tmp_path, job_dir, r0, from_marker=True)
    assert json.loads((job_dir / _store.RESULT_JSON).read_text()) == rec
    # the torn rewrite: half of a result in the marker, no result file
    _store.mark_job_started(job_dir, index=(0,), job_num=r0.job_num, subdir=r0.subdir, run_id="r9")
    (job_dir / _store.RESULT_JSON).unlink()
    (job_dir / _store.RUNNING_JSON).write_text(_store.dumps(rec)[:40])
    index = tmp_path / _store.META_DIR / _store.INDEX
    lines = [ln for ln in index.read_text().splitlines() if json.loads(ln)["index"] != [0]]
    index.write_text("".join(ln + "\n" for ln in lines))
    assert _store.read_job_marker(job_dir) is None  # skipped as a file being written
    assert _store.find_dead_jobs(tmp_path) == []
    back = Die().load_from_dir(tmp_path)
    ds = back.to_xarray()
    assert ds["y"].isnull().values[0] and ds["y"].values[1] == value(1)
    back.run(x=multirun([0, 1]), how="", delay=0.0, working_dir=str(tmp_path), resume=True, progress=False)
    assert back.last_run.skipped == 1
    assert back.to_xarray()["y"].values.tolist() == [value(0), value(1)]
