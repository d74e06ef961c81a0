"""Live sweeps (issue 3): the SweepRun handle, failure policy, cancel, interrupt,
resume, progress and one-sweep-at-a-time, all without a notebook."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, SweepError, SweepRun, multirun

pytestmark = pytest.mark.usefixtures("cleandir")


def wait_until(cond, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Gated(MultiRunMetricsWorkflow):
    """Each job waits until the test creates ``go_<x>`` in the sweep's parent dir."""

    @staticmethod
    def task(x: int, gate_dir: str) -> dict:
        go = Path(gate_dir) / f"go_{x}"
        end = time.monotonic() + 60
        while not go.exists() and time.monotonic() < end:
            time.sleep(0.01)
        if x < 0:
            raise ValueError(f"negative x={x}")
        return dict(y=x * 10, sq=np.array([x, x * x]))


def open_gate(d: Path, x: int) -> None:
    (d / f"go_{x}").touch()


def test_start_returns_at_once_and_dataset_fills_cell_by_cell(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    run = Gated().start(x=multirun([1, 2, 3]), gate_dir=str(gates), working_dir="d")
    assert isinstance(run, SweepRun) and not run.done
    ds = run.dataset
    assert ds["x"].values.tolist() == [1, 2, 3]
    assert "y" not in ds or np.isnan(ds["y"]).all()
    wait_until(lambda: run.status["running"] == 1, what="first job running")
    assert run.dataset["status"].values.tolist() == ["running", "pending", "pending"]
    seen = []
    for x in [1, 2, 3]:
        open_gate(gates, x)
        wait_until(lambda x=x: run.status["done"] == x, what=f"{x} done")
        ds = run.dataset
        seen.append(ds["y"].values.tolist())
        assert ds["status"].values.tolist()[:x] == ["done"] * x
    assert seen[0][0] == 10 and np.isnan(seen[0][1:]).all()
    assert seen[1][:2] == [10, 20] and np.isnan(seen[1][2])
    final = run.wait(timeout=60)
    assert run.done and final["y"].values.tolist() == [10, 20, 30]
    assert final["sq"].sel(x=3).values.tolist() == [3, 9]
    assert run.status == {"pending": 0, "running": 0, "done": 3, "failed": 0, "cancelled": 0, "total": 3}


def test_wait_timeout_and_cancel_keeps_finished_cells(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    run = Gated().start(x=multirun([1, 2, 3, 4]), gate_dir=str(gates), working_dir="d")
    open_gate(gates, 1)
    wait_until(lambda: run.status["done"] == 1)
    ds = run.wait(timeout=0.2)  # returns the current grid
    assert not run.done and ds["status"].values.tolist()[0] == "done"
    run.cancel()
    open_gate(gates, 2)  # the job that was running finishes; no new one starts
    run.wait(timeout=60)
    st = run.dataset["status"].values.tolist()
    assert st[0] == "done" and st[2:] == ["cancelled", "cancelled"]
    assert st[1] in ("done", "cancelled")
    assert run.dataset["y"].sel(x=1).item() == 10
    # persisted: a resume runs only what is missing
    for x in (3, 4):
        open_gate(gates, x)
    wf = Gated()
    wf.run(x=multirun([1, 2, 3, 4]), gate_dir=str(gates), working_dir="d", resume=True, progress=False)
    assert wf.last_run.skipped == (2 if st[1] == "done" else 1)
    assert wf.to_xarray()["y"].values.tolist() == [10, 20, 30, 40]


def test_cancel_of_a_big_sweep_starts_nothing_more_and_writes_nothing_for_the_rest(cleandir):
    """A cancel stops the in-process sweep at once: no job starts after it and the cells
    that never started get no job directory or record (they were written one by one,
    through Hydra's whole job set-up: minutes for 100k cells); a resume runs exactly them."""
    n = 3000
    run = Quick().start(x=multirun(list(range(n))), working_dir="big")
    wait_until(lambda: run.status["done"] >= 20, what="20 jobs done")
    run.cancel()
    assert run.join(60)
    s = run.status
    done = s["done"]
    assert s["failed"] == 0 and s["pending"] == s["running"] == 0
    assert done < n and s["cancelled"] == n - done
    # at most the job that was starting when cancel() came recorded itself as cancelled
    recs = [
        json.loads(line) for line in (cleandir / "big" / ".mushin" / "index.jsonl").read_text().splitlines()
    ]
    assert sum(r["status"] == "done" for r in recs) == done
    assert sum(r["status"] == "cancelled" for r in recs) <= 1
    job_dirs = [p for p in (cleandir / "big").iterdir() if p.name.isdigit()]
    assert len(job_dirs) <= done + 1
    ds = run.dataset
    assert int((ds["status"] == "cancelled").sum()) == n - done and int(ds["y"].isnull().sum()) == n - done
    wf = Quick()
    wf.run(x=multirun(list(range(n))), working_dir="big", resume=True, progress=False)
    assert wf.last_run.skipped == done
    assert wf.to_xarray()["y"].values.tolist() == list(range(n))


def test_failures_collect_raises_with_partial_dataset_and_tracebacks(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    for x in (-1, 1, 2):
        open_gate(gates, x)
    wf = Gated()
    with pytest.raises(SweepError) as ei:
        wf.run(x=multirun([1, -1, 2]), gate_dir=str(gates), working_dir="d", progress=False)
    err = ei.value
    assert "x=-1" in str(err) and "ValueError: negative x=-1" in str(err)
    assert err.dataset["status"].values.tolist() == ["done", "failed", "done"]
    assert err.dataset["y"].sel(x=2).item() == 20
    (f,) = err.failures
    assert f.params == {"x": -1} and f.exc_type == "ValueError" and "negative" in f.message
    assert "Traceback" in f.traceback and "raise ValueError" in f.traceback
    assert (Path(f.job_dir) / "mushin_error.txt").read_text() == f.traceback
    ds = wf.to_xarray()  # the workflow still works: NaN where failed
    assert np.isnan(ds["y"].sel(x=-1)) and ds["y"].sel(x=1) == 10
    # fix and resume: only the failed cell runs
    wf.run(
        x=multirun([1, -1, 2]),
        gate_dir=str(gates),
        working_dir="d",
        progress=False,
        resume=True,
        on_error="ignore",
    )
    assert wf.last_run.skipped == 2


def test_on_error_stop_starts_no_new_job(cleandir):
    class Fails(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x == 2:
                raise RuntimeError("stop here")
            return dict(y=x)

    wf = Fails()
    with pytest.raises(SweepError, match="on_error='stop'") as ei:
        wf.run(x=multirun([1, 2, 3, 4]), working_dir="d", on_error="stop", progress=False)
    assert ei.value.dataset["status"].values.tolist() == ["done", "failed", "cancelled", "cancelled"]
    assert (
        not (Path("d") / "2" / "mushin_result.json").exists()
        or "cancelled" in (Path("d") / "2" / "mushin_result.json").read_text()
    )


def test_on_error_ignore_warns_once_and_returns(cleandir):
    class Fails(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x > 1:
                raise RuntimeError(f"bad {x}")
            return dict(y=x)

    wf = Fails()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        wf.run(x=multirun([1, 2, 3]), working_dir="d", on_error="ignore", progress=False)
    msgs = [str(w.message) for w in rec if "failed" in str(w.message)]
    assert len(msgs) == 1 and "2 of 3 jobs failed" in msgs[0]
    assert len(wf.last_run.failures) == 2
    assert wf.to_xarray()["y"].sel(x=1) == 1


def test_subscribe_once_per_job_and_callback_errors_never_stop(cleandir):
    class Sq(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x == 3:
                raise KeyError("three")
            return dict(y=x * x)

    gate = threading.Event()

    class Slow(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            gate.wait(30)
            return dict(y=x)

    events = []
    run = Sq().start(x=multirun([1, 2, 3, 4]), working_dir="d")
    run.subscribe(events.append)

    def bad(ev):
        raise RuntimeError("view crashed")

    run.subscribe(bad)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        run.wait(60)
    # events for jobs that finished before subscribing are not replayed; every later one arrives once
    assert len(events) == len({e.index for e in events}) <= 4
    assert run.status["done"] == 3 and run.status["failed"] == 1
    # subscribe before the first job finishes: all four events, with their content
    events.clear()
    run2 = Slow().start(x=multirun([1, 2, 3]), working_dir="e")
    unsub = run2.subscribe(events.append)
    run2.subscribe(bad)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        gate.set()
        run2.wait(60)
    assert sorted(e.params["x"] for e in events) == [1, 2, 3]
    assert all(e.status == "done" and e.metrics == {"y": e.params["x"]} and e.duration >= 0 for e in events)
    assert any("view crashed" in str(w.message) for w in rec)
    assert len(run2.callback_errors) == 3
    unsub()


def test_keyboard_interrupt_during_blocking_run_keeps_results(cleandir):
    class Slow(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x >= 2:
                end = time.monotonic() + 30
                while time.monotonic() < end:  # interruptible Python loop
                    time.sleep(0.01)
            return dict(y=x)

    wf = Slow()
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wf.run(x=multirun([0, 1, 2, 3]), working_dir="d", progress=False)
    # the running job was stopped inside its loop (it would have ended "done" otherwise)
    rec = json.loads((Path("d") / "2" / "mushin_result.json").read_text())
    assert rec["status"] == "cancelled"
    ds = wf.to_xarray()
    assert ds["y"].sel(x=0) == 0 and ds["y"].sel(x=1) == 1
    assert np.isnan(ds["y"].sel(x=2)) and np.isnan(ds["y"].sel(x=3))
    assert wf.last_run.status["cancelled"] == 2
    # the workflow (and Hydra) are usable again, and a resume runs only the rest
    wf2 = MultiRunMetricsWorkflow(working_dir="d")
    xr.testing.assert_identical(wf2.to_xarray(), ds)
    wf.run(x=multirun([0, 1]), working_dir="e", progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [0, 1]


def test_progress_bar_shows_done_and_failed(cleandir, capsys):
    class Fails(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x == 2:
                raise RuntimeError("x")
            return dict(y=x)

    Fails().run(x=multirun([1, 2, 3]), working_dir="d", on_error="ignore")
    err = capsys.readouterr().err
    assert "3/3" in err and "done=2" in err and "failed=1" in err
    Fails().run(x=multirun([1, 3]), working_dir="e", progress=False)
    assert "3/3" not in capsys.readouterr().err


def test_second_sweep_while_one_runs_is_a_clear_error(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    run = Gated().start(x=multirun([1]), gate_dir=str(gates), working_dir="d")
    with pytest.raises(RuntimeError, match="Another sweep is running"):
        Gated().start(x=multirun([2]), gate_dir=str(gates), working_dir="e")
    open_gate(gates, 1)
    run.wait(60)
    open_gate(gates, 2)
    run2 = Gated().start(x=multirun([2]), gate_dir=str(gates), working_dir="e")
    assert run2.wait(60)["y"].item() == 20


def test_resume_adds_values_runs_only_new_cells(cleandir, capsys):
    calls = Path("calls.txt").absolute()

    class Count(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, y: str) -> dict:
            with open(calls, "a") as f:
                f.write(f"{x}{y}\n")
            return dict(v=f"{x}{y}")

    wf = Count()
    wf.run(x=multirun([1, 2]), y=multirun(["a"]), working_dir="d", progress=False)
    wf.run(x=multirun([1, 2, 3]), y=multirun(["a", "b"]), working_dir="d", progress=False, resume=True)
    assert "resume: 2 of 6 cells already done" in capsys.readouterr().err
    assert calls.read_text().split() == ["1a", "2a", "1b", "2b", "3a", "3b"]
    ds = wf.to_xarray()
    assert ds["v"].values.tolist() == [["1a", "1b"], ["2a", "2b"], ["3a", "3b"]]
    xr.testing.assert_identical(Count(working_dir="d").to_xarray(), ds)
    dirs = [p.name for p in wf.multirun_working_dirs]
    assert len(set(dirs)) == 6  # new jobs never overwrite old job directories
    # values inserted before the old ones: old results move to their new cells
    wf.run(x=multirun([0, 1, 2, 3]), y=multirun(["b", "a"]), working_dir="d", progress=False, resume=True)
    assert wf.last_run.skipped == 6
    ds = wf.to_xarray()
    assert ds["v"].sel(x=2, y="a").item() == "2a" and ds["v"].sel(x=0, y="b").item() == "0b"
    xr.testing.assert_identical(Count(working_dir="d").to_xarray(), ds)


def test_resume_after_task_change_refuses_unless_forced(cleandir):
    class V1(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(v=x)

    class V2(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(v=x * 100)

    V1().run(x=multirun([1, 2]), working_dir="d", progress=False)
    with pytest.raises(ValueError, match="resume='force'"):
        V2().run(x=multirun([1, 2, 3]), working_dir="d", resume=True, progress=False)
    wf = V2()
    wf.run(x=multirun([1, 2, 3]), working_dir="d", resume="force", progress=False)
    assert wf.to_xarray()["v"].values.tolist() == [1, 2, 300]
    fresh = V2()
    with pytest.warns(RuntimeWarning, match="replaces it"):
        fresh.run(x=multirun([1, 2, 3]), working_dir="d", progress=False)
    assert fresh.to_xarray()["v"].values.tolist() == [100, 200, 300]
    xr.testing.assert_identical(V2(working_dir="d").to_xarray(), fresh.to_xarray())


def test_resume_after_the_process_was_killed(cleandir):
    script = textwrap.dedent(
        """
        import sys, time
        from mushin_nb import MultiRunMetricsWorkflow, multirun
        from pathlib import Path

        class Killed(MultiRunMetricsWorkflow):
            @staticmethod
            def task(x: int) -> dict:
                if x >= 2:
                    Path(sys.argv[1]).touch()
                    time.sleep(60)
                return dict(v=x)

        if __name__ == "__main__":
            Killed().run(x=multirun([0, 1, 2, 3]), working_dir="d", progress=False)
        """
    )
    Path("killed.py").write_text(script)
    proc = subprocess.Popen([sys.executable, "killed.py", str(cleandir / "reached")], cwd=cleandir)
    try:
        wait_until(lambda: Path("reached").exists(), timeout=120, what="job 2 to start")
    finally:
        proc.kill()
        proc.wait()
    sys.path.insert(0, str(cleandir))
    try:
        import killed  # the same task, so resume accepts its results

        partial = killed.Killed(working_dir="d").to_xarray()
        assert partial["v"].values.tolist()[:2] == [0, 1] and np.isnan(partial["v"].values[2:]).all()

        class Fast(killed.Killed):
            pass

        Fast.task = staticmethod(lambda x: dict(v=x))
        wf = Fast()
        wf.run(x=multirun([0, 1, 2, 3]), working_dir="d", resume="force", progress=False)
        assert wf.last_run.skipped == 2
        assert wf.to_xarray()["v"].values.tolist() == [0, 1, 2, 3]
    finally:
        sys.path.remove(str(cleandir))
        sys.modules.pop("killed", None)


def test_a_failed_launch_leaves_hydra_usable(cleandir):
    from hydra.core.global_hydra import GlobalHydra

    class T(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(y=x)

    with pytest.raises(Exception, match="doesnotexist"):
        T().run(x=multirun([1]), launcher="doesnotexist", working_dir="d", progress=False)
    assert not GlobalHydra.instance().is_initialized()
    wf = T()
    wf.run(x=multirun([1, 2]), working_dir="e", progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [1, 2]


def test_start_then_wait_fills_the_workflow_attributes(cleandir):
    class T(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(y=x + 1)

    wf = T()
    run = wf.start(x=multirun([1, 2]), working_dir="d")
    ds = run.wait(60)
    assert wf.metrics == {"y": [2, 3]} and len(wf.jobs) == 2
    xr.testing.assert_identical(wf.to_xarray(), ds.drop_vars("status"))


class Quick(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=x)


def _race_the_end(working_dir: str) -> tuple[SweepRun, list[str]]:
    """A sweep with callbacks registered before the end, from a callback while the end's
    callbacks run, and from a thread the moment ``done`` is seen."""
    run = Quick().start(x=multirun([1, 2]), working_dir=working_dir)
    calls: list[str] = []

    def first(r: SweepRun) -> None:
        r.on_finish(lambda _: calls.append("inner"))  # registered while callbacks run

    def late() -> None:
        while not run.done:  # register at whatever moment the end is at
            pass
        run.on_finish(lambda _: calls.append("late"))

    run.on_finish(first)
    racer = threading.Thread(target=late)
    racer.start()
    run.on_finish(lambda _: calls.append("early"))
    run.wait(timeout=60)
    racer.join(60)
    return run, calls


def test_on_finish_calls_every_callback_once_however_late_it_is_registered(cleandir):
    """A callback registered while the end's callbacks run, or from another thread at
    any moment around the end, is called exactly once; none falls in a gap between
    the last callback and ``done``."""
    for k in range(25):
        run, calls = _race_the_end(f"s{k}")
        assert sorted(calls) == ["early", "inner", "late"], (k, calls)
    run.on_finish(lambda _: calls.append("after"))
    assert calls[-1] == "after"
