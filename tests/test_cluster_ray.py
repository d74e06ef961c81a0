"""Sweeps on a real two-node Ray cluster (``launcher="ray"``): the head on 127.0.0.2
and a second node on 127.0.0.3, with token authentication, started for this module
by the project's own ``scripts/cluster/ray_start.sh`` and stopped by ``ray_stop.sh``
(nothing of it may be left running).

What a local sweep does, on Ray: the live Dataset fills in as jobs finish, on both
nodes; failures carry the job's own traceback; ``resume=True`` runs only what is
missing; ``cancel()`` stops the queued and the running jobs (``ray.cancel(force=True)``)
and records their cells as cancelled; ``on_error="stop"`` cancels the queued jobs;
Ctrl-C of a blocking run cancels it; a worker killed mid-job is that cell's failure
while the rest finish (a node stopped mid-job: tests/test_cluster_ray_node.py, on a
cluster of its own); a workflow defined in
``__main__`` reaches the workers by value.

Skipped where Ray is not installed and ``CI`` is not set.
"""

import _thread
import json
import os
import signal
import threading
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
def ray_cluster():
    require("ray", "ray", "ray")
    state = start("ray")
    address = (state / "address").read_text().strip()
    sids = sessions(state)
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(state / "token")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # this process is the driver: it needs the cluster's token
    try:
        yield address, state
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop("ray", state)
        assert not alive_in(sids)


def _settings(cluster, **kw):
    return {"address": cluster[0], **kw}


def _flags(tmp_path: Path) -> Path:
    d = tmp_path / "flags"
    d.mkdir(exist_ok=True)
    return d


def _started(flags: Path) -> dict[int, tuple[int, str]]:
    out = {}
    for f in flags.glob("started-*"):
        pid, _, node = f.read_text().partition(" ")
        out[int(f.name.split("-")[1])] = (int(pid), node.strip())
    return out


def test_live_failures_traceback_resume_on_both_nodes(ray_cluster, tmp_path):
    flags = _flags(tmp_path)
    (flags / "FAIL").write_text("1")
    wf = Work()
    kw = dict(
        x=multirun(list(range(6))),
        delay=0.5,
        fail=2,
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="ray",
        launcher_settings=_settings(ray_cluster),
    )
    run = wf.start(**kw)
    events = []
    run.subscribe(events.append)
    seen = watch(run)
    ds = run.wait(300)
    assert sorted(ev.params["x"] for ev in events) == list(range(6))
    assert any(0 < done < 6 for done, _ in seen), seen  # filled in as jobs finished
    assert ds["status"].sel(x=2).item() == "failed" and ds["y"].sel(x=5).item() == 25
    assert {node for _, node in _started(flags).values()} == {"127.0.0.2", "127.0.0.3"}
    (f,) = run.failures
    assert f.params["x"] == 2 and f.exc_type == "ValueError"
    assert "x=2 is broken while FAIL exists" in f.traceback and "cluster_tasks.py" in f.traceback
    (flags / "FAIL").unlink()
    wf.run(**kw, resume=True, progress=False)
    assert wf.last_run.skipped == 5
    assert wf.to_xarray()["y"].values.tolist() == [0, 1, 4, 9, 16, 25]


def test_cancel_stops_queued_and_running_jobs(ray_cluster, tmp_path):
    flags = _flags(tmp_path)
    wf = Work()
    run = wf.start(
        x=multirun(list(range(5))),
        delay=600,
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="ray",
        launcher_settings=_settings(ray_cluster),
    )
    wait_for(lambda: run.status["running"] == 2, 180, "two running cells (one per node)", run)
    started = sorted(_started(flags))
    run.cancel()
    assert run.join(60), "cancel() did not stop the running jobs"
    s = run.status
    assert s["cancelled"] == 5 and s["done"] == 0, s
    assert on_disk(tmp_path / "s") == {x: "cancelled" for x in started}  # what a reload sees
    for pid, _ in _started(flags).values():  # their worker processes were stopped
        wait_for(lambda pid=pid: not _alive(pid), 30, f"the worker process {pid} to end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_on_error_stop_cancels_the_queued_jobs(ray_cluster, tmp_path):
    flags = _flags(tmp_path)
    (flags / "FAIL").write_text("1")
    with pytest.raises(SweepError) as ei:
        Work().run(
            x=multirun(list(range(8))),
            delay=0.5,
            fail=0,
            flags=str(flags),
            working_dir=str(tmp_path / "s"),
            launcher="ray",
            launcher_settings=_settings(ray_cluster),
            on_error="stop",
            progress=False,
        )
    st = ei.value.dataset["status"].values.tolist()
    assert st[0] == "failed" and st.count("cancelled") >= 4, st


def test_ctrl_c_of_a_blocking_run_cancels_it(ray_cluster, tmp_path):
    flags = _flags(tmp_path)

    def press_ctrl_c():
        wait_for(lambda: len(_started(flags)) >= 2, 180, "two jobs to start")
        _thread.interrupt_main()

    t = threading.Thread(target=press_ctrl_c, daemon=True)
    t.start()
    wf = Work()
    with pytest.raises(KeyboardInterrupt):
        wf.run(
            x=multirun(list(range(3))),
            delay=600,
            flags=str(flags),
            working_dir=str(tmp_path / "s"),
            launcher="ray",
            launcher_settings=_settings(ray_cluster),
            progress=False,
        )
    t.join()
    assert wf.last_run.join(60)
    assert wf.last_run.status["cancelled"] == 3


def test_main_module_code_reaches_the_workers(ray_cluster, tmp_path):
    out = run_main_script(tmp_path, "ray", json.dumps(_settings(ray_cluster)))
    assert out["y"] == [10, 20, 30] and out["me"] not in out["pids"]


def test_worker_killed_mid_job_is_that_cells_failure(ray_cluster, tmp_path):
    flags = _flags(tmp_path)
    run = Work().start(
        x=multirun(list(range(4))),
        delay=0.3,
        hang=1,
        flags=str(flags),
        working_dir=str(tmp_path / "s"),
        launcher="ray",
        launcher_settings=_settings(ray_cluster),
    )
    pid = wait_for(lambda: _started(flags).get(1, (None,))[0], 180, "the job x=1 to start", run)
    os.kill(pid, signal.SIGKILL)
    ds = run.wait(300)
    assert ds["status"].values.tolist() == ["done", "failed", "done", "done"]
    (f,) = run.failures
    assert f.params == {"x": 1} and f.exc_type == "ProcessDied"
    assert "Ray worker" in f.message and "died" in f.message
