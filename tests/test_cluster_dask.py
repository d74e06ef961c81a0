"""Sweeps on a real Dask distributed cluster (``launcher="dask"``): a scheduler and
two worker processes on 127.0.0.1, started for this module by the project's own
``scripts/cluster/dask_start.sh`` and stopped by ``dask_stop.sh`` (nothing of it
may be left running).

What a local sweep does, on Dask: the live Dataset fills in as jobs finish, with
running cells shown; failures carry the job's own traceback; ``resume=True`` runs
only what is missing; ``cancel()`` stops the queued jobs and the running ones and
marks their cells; ``on_error="stop"`` cancels the queued jobs; Ctrl-C of a blocking
run cancels it; a worker killed mid-job is that cell's failure while the rest
finish; the sweep panel runs on the cluster its "launcher settings" name; a
workflow defined in ``__main__`` reaches the workers by value, and code
the workers cannot import is a clear error naming the module; the process's own
``distributed.Client`` is used when no address is given, and a LocalCluster is
started when there is none.

Skipped where ``distributed`` is not installed and ``CI`` is not set.
"""

import _thread
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from _cluster import (
    alive_in,
    on_disk,
    require,
    run_main_script,
    sessions,
    start,
    stop,
    wait_for,
    watch,
)
from cluster_tasks import Work

from mushin_nb import SweepError, multirun

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def dask_address():
    require("distributed", "dask", "dask")
    state = start("dask", "2")
    address = (state / "address").read_text().strip()
    sids = sessions(state)
    try:
        yield address
    finally:
        from mushin_nb import _remote

        for k, c in list(_remote._DASK.items()):  # the clients the launcher kept for this cluster
            if k == ("address", address):
                c.close()
                _remote._DASK.pop(k, None)
        stop("dask", state)
        assert not alive_in(sids)


def _flags(tmp_path: Path) -> Path:
    d = tmp_path / "flags"
    d.mkdir(exist_ok=True)
    return d


def _started(flags: Path, x: int) -> int | None:
    f = flags / f"started-{x}"
    return int(f.read_text().split()[0]) if f.exists() else None


def test_live_failures_traceback_resume(dask_address, tmp_path):
    flags = _flags(tmp_path)
    (flags / "FAIL").write_text("1")
    wf = Work()
    kw = dict(
        x=multirun(list(range(6))),
        delay=0.4,
        fail=2,
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="dask",
        launcher_settings={"address": dask_address},
    )
    run = wf.start(**kw)
    events = []
    run.subscribe(events.append)
    seen = watch(run)
    ds = run.wait(120)
    assert sorted(ev.params["x"] for ev in events) == list(range(6))
    assert {ev.status for ev in events if ev.params["x"] == 2} == {"failed"}
    assert any(0 < done < 6 for done, _ in seen), seen  # filled in as jobs finished
    assert ds["y"].values.tolist()[:2] == [0, 1] and ds["y"].sel(x=5).item() == 25
    assert ds["status"].sel(x=2).item() == "failed"
    pids = {int(p) for p in ds["pid"].values[~ds["pid"].isnull().values]}
    assert os.getpid() not in pids  # ran on the cluster's workers
    (f,) = run.failures
    assert f.params["x"] == 2 and f.exc_type == "ValueError"
    assert "x=2 is broken while FAIL exists" in f.traceback and "cluster_tasks.py" in f.traceback
    # fixed: resume runs only the failed cell, on the cluster
    (flags / "FAIL").unlink()
    wf.run(**kw, resume=True, progress=False)
    assert wf.last_run.skipped == 5
    assert wf.to_xarray()["y"].values.tolist() == [0, 1, 4, 9, 16, 25]


def test_the_panel_runs_on_the_cluster_of_its_launcher_settings(dask_address, tmp_path):
    """The sweep panel with launcher dask and the cluster's address in its "launcher
    settings" field (launcher_settings= as in code): Run sends the jobs to the workers."""
    from mushin_nb.notebook.panel import sweep_panel

    p = sweep_panel(
        Work(),
        x=[0, 1, 2, 3],
        delay=0.2,
        launcher="dask",
        launcher_settings={"address": dask_address},
        working_dir=str(tmp_path / "s"),
        interval=None,
    )
    assert p.launcher_settings == f"address='{dask_address}'" and not p.reason
    p.launcher_settings = "adress=" + dask_address  # misspelled: Run is disabled, and says why
    assert p.run_button.disabled and "has no setting 'adress'; did you mean 'address'?" in p.reason
    p.launcher_settings = "address=" + dask_address  # as the user types it: no quotes
    assert not p.run_button.disabled
    p.run_button.clicks += 1
    ds = p.wait(300)
    assert ds["y"].values.tolist() == [0, 1, 4, 9]
    pids = {int(x) for x in ds["pid"].values}
    assert os.getpid() not in pids  # ran on the cluster's workers
    assert p.message.startswith("Finished: 4 jobs")


def test_worker_killed_mid_job_is_that_cells_failure(dask_address, tmp_path):
    flags = _flags(tmp_path)
    wf = Work()
    run = wf.start(
        x=multirun(list(range(4))),
        delay=0.3,
        hang=1,
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="dask",
        launcher_settings={"address": dask_address},
    )
    pid = wait_for(lambda: _started(flags, 1), 120, "the job x=1 to start", run)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # the worker process running x=1 (its nanny starts a new one)
    ds = run.wait(180)
    assert ds["status"].values.tolist() == ["done", "failed", "done", "done"]
    assert ds["y"].values.tolist()[2:] == [4, 9]
    (f,) = run.failures
    assert f.params == {"x": 1} and f.exc_type == "ProcessDied"
    assert "Dask worker" in f.message and "died" in f.message and "resume=True" in f.message


def test_cancel_stops_queued_and_running_jobs(dask_address, tmp_path):
    flags = _flags(tmp_path)
    wf = Work()
    run = wf.start(
        x=multirun(list(range(6))),
        delay=600,  # every job would run 10 minutes
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="dask",
        launcher_settings={"address": dask_address},
    )
    wait_for(lambda: run.status["running"] == 2, 120, "two running cells (two workers)", run)
    wait_for(lambda: len(list(flags.glob("started-*"))) == 2, 120, "the two jobs' tasks to start", run)
    started = sorted(int(p.name.split("-")[1]) for p in flags.glob("started-*"))
    run.cancel()
    assert run.join(60), "cancel() did not stop the running jobs"
    s = run.status
    assert s["cancelled"] == 6 and s["done"] == 0, s
    # the jobs that were running recorded themselves as cancelled: a reload agrees
    assert on_disk(tmp_path / "s") == {x: "cancelled" for x in started}  # what a reload sees
    # the workers are free again: the next sweep runs at once
    quick = Work()
    quick.run(
        x=multirun([0, 1]),
        delay=0.0,
        working_dir=str(tmp_path / "next"),
        launcher="dask",
        launcher_settings={"address": dask_address},
        progress=False,
    )
    assert quick.to_xarray()["y"].values.tolist() == [0, 1]


def test_on_error_stop_cancels_the_queued_jobs(dask_address, tmp_path):
    flags = _flags(tmp_path)
    (flags / "FAIL").write_text("1")
    wf = Work()
    with pytest.raises(SweepError) as ei:
        wf.run(
            x=multirun(list(range(8))),
            delay=0.5,
            fail=0,
            flags=str(flags),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"address": dask_address},
            on_error="stop",
            progress=False,
        )
    st = ei.value.dataset["status"].values.tolist()
    assert st[0] == "failed" and st.count("cancelled") >= 4, st
    assert len(list(flags.glob("started-*"))) < 8  # queued jobs never started


def test_ctrl_c_of_a_blocking_run_cancels_it(dask_address, tmp_path):
    flags = _flags(tmp_path)

    def press_ctrl_c():
        wait_for(lambda: len(list(flags.glob("started-*"))) >= 2, 120, "two jobs to start")
        _thread.interrupt_main()

    t = threading.Thread(target=press_ctrl_c, daemon=True)
    t.start()
    wf = Work()
    with pytest.raises(KeyboardInterrupt):
        wf.run(
            x=multirun(list(range(4))),
            delay=600,
            flags=str(flags),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"address": dask_address},
            progress=False,
        )
    t.join()
    assert wf.last_run.join(60)
    assert wf.last_run.status["cancelled"] == 4


def test_main_module_code_reaches_the_workers(dask_address, tmp_path):
    out = run_main_script(tmp_path, "dask", json.dumps({"address": dask_address}))
    assert out["y"] == [10, 20, 30] and out["me"] not in out["pids"]


def test_code_the_workers_cannot_import_is_a_clear_error(dask_address, tmp_path, monkeypatch):
    mod = tmp_path / "mods"
    mod.mkdir()
    (mod / "only_on_this_machine.py").write_text(
        "from mushin_nb import MultiRunMetricsWorkflow\n\n"
        "class Mine(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        "    def task(x: int) -> dict:\n"
        "        return dict(y=x)\n"
    )
    monkeypatch.syspath_prepend(str(mod))
    from only_on_this_machine import Mine

    with pytest.raises(Exception) as ei:
        Mine().run(
            x=multirun([1, 2]),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"address": dask_address},
            progress=False,
        )
    msg = str(ei.value)
    assert "only_on_this_machine" in msg and "register_pickle_by_value" in msg, msg
    monkeypatch.delitem(sys.modules, "only_on_this_machine")


def test_the_processs_own_client_is_used(dask_address, tmp_path):
    from distributed import Client

    with Client(dask_address) as client:  # as a notebook would make it
        workers = set(client.run(os.getpid).values())
        wf = Work()
        wf.run(
            x=multirun([0, 1, 2]), delay=0.0, working_dir=str(tmp_path / "s"), launcher="dask", progress=False
        )
        ds = wf.to_xarray()
    assert ds["y"].values.tolist() == [0, 1, 4]
    assert set(ds["pid"].values.astype(int).tolist()) <= workers


def test_a_local_cluster_when_there_is_none(tmp_path, monkeypatch):
    require("distributed", "dask", "dask")
    from distributed import default_client

    with pytest.raises(ValueError):
        default_client()  # no client in this process: the launcher starts a LocalCluster
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    wf = Work()
    t0 = time.time()
    wf.run(
        x=multirun([0, 1, 2, 3]),
        delay=0.0,
        working_dir=str(tmp_path / "s"),
        launcher="dask",
        jobs=2,
        progress=False,
    )
    ds = wf.to_xarray()
    assert ds["y"].values.tolist() == [0, 1, 4, 9]
    pids = set(ds["pid"].values.astype(int).tolist())
    assert os.getpid() not in pids and len(pids) <= 2, (pids, time.time() - t0)
    from mushin_nb import _remote

    for k, c in list(_remote._DASK.items()):
        if k[0] == "local":
            cluster = c.cluster
            c.close()
            cluster.close()
            _remote._DASK.pop(k)


def test_adaptive_points_run_on_the_cluster(dask_address, tmp_path):
    """Issue 15 on a cluster launcher: each round of an adaptive sweep is a sweep of
    real jobs on the Dask workers; the curve's points come back sorted and exact."""
    import math

    import numpy as np
    from cluster_tasks import Curve

    from mushin_nb import adaptive_range

    wf = Curve()
    wf.run(
        eps=adaptive_range(0.0, 1.0, npoints_goal=10, batch_size=4, metric="acc"),
        working_dir=str(tmp_path / "a"),
        launcher="dask",
        launcher_settings={"address": dask_address},
        progress=False,
    )
    ds = wf.to_xarray()
    eps = ds["eps"].values
    assert len(eps) >= 10 and np.all(np.diff(eps) > 0)
    expected = [1.0 / (1.0 + math.exp((e - 0.3) / 0.05)) for e in eps]
    assert np.allclose(ds["acc"].values, expected)
    pids = {int(p) for p in ds["pid"].values}
    assert os.getpid() not in pids  # every point ran on the cluster's workers
    again = Curve().load_from_dir(tmp_path / "a").to_xarray()
    assert again["acc"].values.tolist() == ds["acc"].values.tolist()
