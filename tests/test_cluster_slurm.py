"""Sweeps on a real SLURM cluster (``launcher="slurm"``), started for this session
from the project's own ``scripts/cluster/slurm_start.sh`` and stopped by pid at the
end (nothing of it may be left running).

What a local sweep does, on SLURM: the live Dataset fills in as array tasks end,
failures carry the job's traceback (a killed task: its stderr), ``cancel()`` removes
queued tasks and stops running ones (``scancel``) and marks their cells cancelled, a
task killed from outside is that cell's failure while the rest finish,
``on_error="stop"`` removes the queued tasks, Ctrl-C of a blocking run cancels it,
``resume=True`` runs only what is missing, and a workflow defined in ``__main__``
reaches the workers.

Skipped only where SLURM is not installed (or not as root) and ``CI`` is not set;
in CI a cluster that cannot start fails the tests with the reason.
"""

import _thread
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import slurm_cluster

from mushin_nb import SweepError, multirun

SETTINGS = {"partition": "debug", "timeout_min": 5}


@pytest.fixture(scope="session")
def slurm():
    """The real SLURM cluster (tests/slurm_cluster.py): skipped where SLURM is not
    installed unless CI is set; stopped by pid at the end of the session."""
    cluster = slurm_cluster.acquire(required=True)
    try:
        yield cluster
    finally:
        slurm_cluster.release()


@pytest.fixture(autouse=True)
def _empty_queue_after(request):
    """After each test on the cluster, cancel every job still queued or running on it and
    wait until the queue is empty: a test that fails before its own cancel must not leave
    a long job holding the one node for the tests after it."""
    yield
    if "slurm" not in request.fixturenames:
        return
    import pwd

    subprocess.run(["scancel", "--full", "--user", pwd.getpwuid(os.getuid()).pw_name], capture_output=True)
    end = time.time() + 60
    while time.time() < end:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        if not out.stdout.strip():
            break
        time.sleep(0.5)


def _squeue(array: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-j", array, "-o", "%i %T"], capture_output=True, text=True)
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


def _sacct(array: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State"], capture_output=True, text=True
    )
    return dict(ln.split("|", 1) for ln in out.stdout.splitlines() if "|" in ln)


def _until(cond, timeout: float, what: str, every: float = 0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}")


def _records(sweep_dir: Path) -> dict[int, str]:
    """x -> status, as each job recorded itself in its directory."""
    out = {}
    for p in sweep_dir.glob("*/mushin_result.json"):
        cfg = (p.parent / ".hydra" / "overrides.yaml").read_text()
        x = int(next(ln.split("=")[1] for ln in cfg.splitlines() if "x=" in ln))
        out[x] = json.loads(p.read_text())["status"]
    return out


def _started(where: Path, n: int) -> list[tuple[int, str, int]]:
    """(x, SLURM job id, pid) of the Slow cells that started, once ``n`` have."""
    files = list(where.glob("started-*"))
    if len(files) < n:
        return []
    out = []
    for f in files:
        job, pid = f.read_text().split()
        out.append((int(f.name.split("-")[1]), job, int(pid)))
    return sorted(out)


# ----------------------------------------------------------------------- no cluster needed


def test_unknown_launcher_setting_is_refused_before_anything_is_submitted(tmp_path):
    from slurm_tasks import Quick

    d = tmp_path / "s"
    for kw, says in [
        (dict(overrides=["hydra.launcher.partion=debug"]), "did you mean 'partition'"),
        (dict(launcher_settings={"partion": "debug"}), "launcher_settings['partion']"),
        (dict(launcher_settings={"array_parallelism": 2}, jobs=3), "give it once"),
    ]:
        with pytest.raises(ValueError, match="partition|give it once") as ei:
            Quick().start(x=multirun([1, 2]), working_dir=str(d), launcher="slurm", **kw)
        assert says in str(ei.value)
    with pytest.raises(ValueError, match="launcher='joblib' has no setting 'partition'"):
        Quick().start(x=multirun([1]), working_dir=str(d), launcher="joblib", launcher_settings=SETTINGS)
    assert not d.exists()  # nothing was written


def test_stale_files_of_a_reused_job_id_are_removed(tmp_path):
    """A new cluster starts job ids at 1 again: the submitit files an earlier job with
    the same id left in the same folder must not be read as this job's result."""
    from submitit.slurm.slurm import SlurmJob

    from hydra_plugins.mushin_nb_plugins.submitit_launcher import _drop_stale_files

    old, new = SlurmJob(folder=tmp_path / "%j", job_id="1_0"), SlurmJob(folder=tmp_path / "%j", job_id="1_1")
    for job in (old, new):
        job.paths.folder.mkdir(parents=True)
        job.paths.result_pickle.write_bytes(b"earlier")
        job.paths.stdout.write_text("earlier")
        os.utime(job.paths.result_pickle, (time.time() - 600,) * 2)
        os.utime(job.paths.stdout, (time.time() - 600,) * 2)
        job.paths.submitted_pickle.write_bytes(b"now")
    os.utime(new.paths.submitted_pickle, (time.time() - 1200,) * 2)  # its result is newer: kept
    _drop_stale_files([old, new])
    assert not old.paths.result_pickle.exists() and not old.paths.stdout.exists()
    assert new.paths.result_pickle.exists() and new.paths.stdout.exists()


def test_submitit_local_cancel_stops_running_jobs(tmp_path):
    """The same cancel hook for local submitit jobs: the running ones are stopped and
    record themselves as cancelled."""
    from slurm_tasks import Slow

    plugins = str(Path(__file__).parent / "plugins")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), plugins, old or ""])
    try:
        run = Slow().start(
            x=multirun(list(range(3))),
            where=str(tmp_path),
            quick=1,
            working_dir=str(tmp_path / "s"),
            launcher="submitit_local",
            to_dictconfig=True,
            launcher_settings={"timeout_min": 5},
        )
        _until(lambda: _started(tmp_path, 2) and run.status["done"] == 1, 120, "two long jobs to start")
        run.cancel()
        assert run.join(60), "cancel() did not end the sweep"
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    assert (run.status["done"], run.status["cancelled"]) == (1, 2), run.status
    assert _records(tmp_path / "s") == {0: "done", 1: "cancelled", 2: "cancelled"}


def test_a_task_that_cannot_be_pickled_is_refused_naming_what(tmp_path):
    """A notebook task that uses an object cloudpickle cannot send (a lock) is refused
    before anything is submitted, naming the global to create inside the task."""
    script = tmp_path / "main_lock.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, threading
            from mushin_nb import MultiRunMetricsWorkflow, multirun

            LOCK = threading.Lock()

            class Locked(MultiRunMetricsWorkflow):
                @staticmethod
                def task(x: int) -> dict:
                    with LOCK:
                        return dict(y=x)

            run = Locked().start(x=multirun([1, 2]), working_dir=sys.argv[1], launcher="submitit_local")
            try:
                run.wait(120)
            except TypeError as e:
                print("REFUSED", e)
            print("SUBMITTED", (run.sweep_dir / ".submitit").exists())
            """
        )
    )
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "REFUSED launcher='submitit_local' sends the task to its jobs with cloudpickle" in p.stdout
    assert "it uses LOCK (a lock)" in p.stdout and "Create such objects inside the task" in p.stdout
    assert "SUBMITTED False" in p.stdout


# ----------------------------------------------------------------------- on the cluster


@pytest.mark.cluster
def test_slurm_sweep_streams_fails_and_resumes(slurm, tmp_path):
    from slurm_tasks import Quick

    flag = tmp_path / "FAIL"
    flag.write_text("1")
    wf = Quick()
    kw = dict(
        x=multirun([0, 1, 2, 3]),
        flag=str(flag),
        working_dir=str(tmp_path / "s"),
        launcher="slurm",
        to_dictconfig=True,
        # a dict setting, as docs/scaling.md shows: any other sbatch option
        launcher_settings={**SETTINGS, "cpus_per_task": 1, "additional_parameters": {"comment": "mushin-nb"}},
    )
    run = wf.start(**kw)
    events = []
    run.subscribe(events.append)
    seen = []
    while not run.done:
        seen.append(int((run.dataset["status"] == "done").sum()))
        time.sleep(0.05)
    ds = run.wait(10)
    assert sorted(ev.params["x"] for ev in events) == [0, 1, 2, 3]
    assert any(0 < k < 3 for k in seen), seen  # cells filled as array tasks ended
    assert ds["status"].values.tolist() == ["done", "done", "failed", "done"]
    assert ds["y"].sel(x=3).item() == 9
    assert set(ds["partition"].values[[0, 1, 3]].tolist()) == {"debug"}  # the settings reached sbatch
    assert set(ds["cpus"].values[[0, 1, 3]].tolist()) == {1}
    (script,) = (tmp_path / "s" / ".submitit").glob("*/*_submission.sh")  # one array, one script
    assert "#SBATCH --comment=mushin-nb" in script.read_text().splitlines()
    assert os.getpid() not in {int(p) for p in ds["pid"].values if p == p}
    (f,) = run.failures
    assert f.params == {"x": 2} and f.exc_type == "RuntimeError"
    assert "fails while" in f.message and "slurm_tasks.py" in f.traceback  # the job's own traceback
    # the blocking run raises with the partial Dataset; resume=True runs only what failed
    with pytest.raises(SweepError) as ei:
        wf.run(**kw, resume=True, progress=False)
    assert wf.last_run.skipped == 3 and [x.params for x in ei.value.failures] == [{"x": 2}]
    flag.unlink()
    wf.run(**kw, resume=True, progress=False)
    assert wf.last_run.skipped == 3
    assert wf.to_xarray()["y"].values.tolist() == [0, 1, 4, 9]


@pytest.mark.cluster
def test_slurm_cancel_stops_queued_and_running_jobs(slurm, tmp_path):
    from slurm_tasks import Slow

    run = Slow().start(
        x=multirun(list(range(6))),
        where=str(tmp_path),
        working_dir=str(tmp_path / "s"),
        launcher="slurm",
        to_dictconfig=True,
        launcher_settings=SETTINGS,
    )
    # x=0, 1 finish at once; x=2, 3 then run (and would sleep 10 minutes); x=4, 5 queue
    started = _until(lambda: _started(tmp_path, 2), 120, "two long jobs to start")
    _until(lambda: run.status["done"] == 2 and run.status["running"] >= 1, 60, "the running cells")
    array = started[0][1].split("_")[0]
    assert any(" PENDING" in ln for ln in _squeue(array))
    run.cancel()
    assert run.join(90), "cancel() did not end the sweep"
    s = run.status
    assert (s["done"], s["cancelled"], s["failed"]) == (2, 4, 0), s
    # the running jobs were stopped and recorded themselves as cancelled; the queued never ran
    assert _records(tmp_path / "s") == {0: "done", 1: "done", 2: "cancelled", 3: "cancelled"}
    assert not list(tmp_path.glob("started-[45]"))
    _until(lambda: not _squeue(array), 60, f"array {array} to leave the queue")
    states = _sacct(array)
    assert all(states[f"{array}_{x}"].startswith("CANCELLED") for x in (2, 3)), states


@pytest.mark.cluster
def test_slurm_task_killed_from_outside_is_that_cells_failure(slurm, tmp_path):
    """One array task cancelled with ``scancel --signal=KILL``, another one's process
    SIGKILLed (as the out-of-memory killer does): each is its cell's failure, with
    the job's stderr; the other tasks finish."""
    from slurm_tasks import Slow

    run = Slow().start(
        x=multirun(list(range(5))),
        where=str(tmp_path),
        quick=3,
        working_dir=str(tmp_path / "s"),
        launcher="slurm",
        to_dictconfig=True,
        launcher_settings=SETTINGS,
    )
    _until(lambda: _started(tmp_path, 1), 120, "a long job to start")
    (x1, job1, _pid1), *_ = _started(tmp_path, 1)
    subprocess.run(["scancel", "--signal=KILL", job1], check=True)
    (x2, _job2, pid2) = _until(
        lambda: [t for t in _started(tmp_path, 1) if t[0] != x1], 120, "the other long job to start"
    )[0]
    os.kill(pid2, signal.SIGKILL)
    assert run.join(120), "the sweep did not end after its tasks were killed"
    s = run.status
    assert (s["done"], s["failed"]) == (3, 2), s
    fails = {f.params["x"]: f for f in run.failures}
    assert set(fails) == {x1, x2}
    for f in fails.values():
        assert f.exc_type == "ProcessDied"
        assert "Its stderr ends with" in f.message and "resume=True runs it again" in f.message
    assert "cancelled on the cluster" in fails[x1].message and job1 in fails[x1].message
    assert "ended without a result" in fails[x2].message
    assert "killed by signal 9 (SIGKILL" in fails[x2].message  # sacct's ExitCode of the task's step
    assert _records(tmp_path / "s") == {0: "done", 1: "done", 2: "done", x1: "failed", x2: "failed"}


@pytest.mark.cluster
def test_slurm_on_error_stop_removes_the_queued_jobs(slurm, tmp_path):
    from slurm_tasks import FailFirst

    run = FailFirst().start(
        x=multirun(list(range(6))),
        working_dir=str(tmp_path / "s"),
        launcher="slurm",
        jobs=1,  # one array task at a time
        on_error="stop",
        to_dictconfig=True,
        launcher_settings=SETTINGS,
    )
    assert run.join(120)
    s = run.status
    # how many tasks start before the stop lands depends on the machine's speed: at least
    # the last of the one-at-a-time tasks (2 s each) never runs
    assert s["failed"] == 1 and s["done"] + s["cancelled"] == 5 and s["cancelled"] >= 1, s
    assert run.failures[0].params == {"x": 0}
    # submitit's folder holds the array's directory (<array>_<task>) and a symbolic link
    # .submission_file_<uuid>.sh to its script, listed in no fixed order
    sub = next(p.name for p in (tmp_path / "s" / ".submitit").iterdir() if p.name[:1].isdigit())
    array = sub.split("_")[0]
    _until(lambda: not _squeue(array), 60, f"array {array} to leave the queue")
    # slurmdbd records jobs asynchronously: sacct may list the array a moment after squeue dropped it
    _until(
        lambda: [x for x, st in _sacct(array).items() if "None" in st or st.startswith("CANCELLED")],
        60,
        f"sacct to list the tasks of array {array} that never ran (it lists {_sacct(array)})",
    )


@pytest.mark.cluster
def test_slurm_ctrl_c_of_a_blocking_run_cancels_it(slurm, tmp_path):
    from slurm_tasks import Slow

    wf = Slow()

    def press_stop():
        _until(lambda: _started(tmp_path, 1), 120, "a long job to start")
        _thread.interrupt_main()  # Ctrl-C in the cell that waits

    threading.Thread(target=press_stop, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        wf.run(
            x=multirun(list(range(4))),
            where=str(tmp_path),
            quick=1,
            working_dir=str(tmp_path / "s"),
            launcher="slurm",
            to_dictconfig=True,
            launcher_settings=SETTINGS,
            progress=True,
        )
    run = wf.last_run
    assert run.join(90)
    s = run.status
    assert s["done"] <= 1 and s["cancelled"] >= 3 and s["failed"] == 0, s
    array = _started(tmp_path, 1)[0][1].split("_")[0]
    _until(lambda: not _squeue(array), 60, f"array {array} to leave the queue")


@pytest.mark.cluster
def test_slurm_workflow_defined_in_main_reaches_the_workers(slurm, tmp_path):
    """A workflow class defined in the notebook (``__main__``) travels to the array
    tasks by value (cloudpickle): no module to import there."""
    script = tmp_path / "main_sweep.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from mushin_nb import MultiRunMetricsWorkflow, multirun

            class InMain(MultiRunMetricsWorkflow):
                @staticmethod
                def task(x: int) -> dict:
                    return dict(y=x + 0.5, on_slurm=int("SLURM_ARRAY_JOB_ID" in os.environ))

            wf = InMain()
            wf.run(x=multirun([1, 2]), working_dir=sys.argv[1], launcher="slurm", to_dictconfig=True,
                   launcher_settings={"timeout_min": 5}, progress=False)
            ds = wf.to_xarray()
            print("RESULT", ds["y"].values.tolist(), ds["on_slurm"].values.tolist())
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing importable from the tests
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "RESULT [1.5, 2.5] [1, 1]" in p.stdout


@pytest.mark.cluster
def test_slurm_tasks_wait_for_the_folders_submitit_creates_after_sbatch(slurm, tmp_path, monkeypatch):
    """submitit creates each array task's folder (where SLURM writes its output) only
    after sbatch returned; a task the scheduler started earlier failed with no output
    (state FAILED, ExitCode 0:53). A busy driver is simulated by a slow folder step:
    the launcher submits the array held and releases it once every folder exists."""
    from slurm_tasks import Quick
    from submitit.core import utils as submitit_utils

    real = submitit_utils.JobPaths.move_temporary_file

    def slow_move(self, tmp_path_, name, keep_as_symlink=False):
        if not str(self.folder).endswith("_0"):  # the first task's folder comes at once
            time.sleep(1.5)
        return real(self, tmp_path_, name, keep_as_symlink)

    monkeypatch.setattr(submitit_utils.JobPaths, "move_temporary_file", slow_move)
    run = Quick().start(
        x=multirun([0, 1, 3]),
        delay=0.0,
        working_dir=str(tmp_path / "s"),
        launcher="slurm",
        to_dictconfig=True,
        launcher_settings=SETTINGS,
    )
    assert run.join(120), "the sweep did not end"
    assert run.status["done"] == 3, [f.line() for f in run.failures]
    (script,) = (tmp_path / "s" / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --hold" in script.read_text().splitlines()
    array = script.parent.name.split("_")[0]
    # slurmdbd records states asynchronously: sacct may lag behind squeue
    _until(
        lambda: [_sacct(array).get(f"{array}_{t}") for t in range(3)] == ["COMPLETED"] * 3,
        60,
        f"sacct to list the 3 tasks of array {array} COMPLETED",
    )
