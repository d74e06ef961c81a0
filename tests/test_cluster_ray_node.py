"""A Ray node stopped mid-job is that cell's failure and the rest of the sweep finishes,
on a real two-node Ray cluster (head 127.0.0.2, second node 127.0.0.3) started for
this test alone by ``scripts/cluster/ray_start.sh`` and stopped by ``ray_stop.sh``.

The test stops a node, so it gets a cluster of its own (a rerun gets a new one, and
the other Ray tests never see a cluster missing a node), and the sweep's driver is a
process of its own, as a notebook's kernel is: it is connected to this cluster only.
Whatever happens, the driver and every process of the cluster are ended before the
test returns (by pid and by the sessions the start script recorded).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _cluster import alive_in, env, require, sessions, start, stop, wait_for

pytestmark = pytest.mark.cluster

# a port of its own: a cluster of tests/test_cluster_ray.py still shutting down cannot collide
PORT = "6490"
SECOND = "127.0.0.3"

DRIVER = """
import json
import sys

from cluster_tasks import Work

from mushin_nb import multirun

flags, sweep, address = sys.argv[1:4]
run = Work().start(
    x=multirun(list(range(4))),
    delay=2.0,
    hang_on=sys.argv[4],  # a job on the second node runs until the node goes
    flags=flags,
    working_dir=sweep,
    launcher="ray",
    launcher_settings={"address": address, "n_jobs": 2},  # one job per node at a time
)
ds = run.wait(600)
fails = [dict(params=f.params, exc_type=f.exc_type, message=f.message) for f in run.failures]
print(json.dumps(dict(status=ds["status"].values.tolist(), failures=fails)))
"""


def _on_second_node(flags: Path, driver: subprocess.Popen) -> int | None:
    """The x of a job that started on the second node (None: none yet)."""
    for f in flags.glob("started-*"):
        if f.read_text().partition(" ")[2].strip() == SECOND:
            return int(f.name.split("-")[1])
    if driver.poll() is not None:
        err = (flags.parent / "driver.err").read_text()
        raise AssertionError(
            f"the driver ended (exit {driver.returncode}) before a job ran on {SECOND}:\n{err[-4000:]}"
        )
    return None


def test_node_stopped_mid_job_is_that_cells_failure(tmp_path):
    require("ray", "ray", "ray")
    state = start("ray", settings={"RAY_PORT": PORT})
    sids = sessions(state)
    flags = tmp_path / "flags"
    flags.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    e = env()
    e.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(state / "token"))
    address = (state / "address").read_text().strip()
    driver = None
    try:
        with open(tmp_path / "driver.out", "w") as out, open(tmp_path / "driver.err", "w") as err:
            driver = subprocess.Popen(
                [sys.executable, str(script), str(flags), str(tmp_path / "s"), address, SECOND],
                env=e,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        x = wait_for(lambda: _on_second_node(flags, driver), 300, f"a job on the node {SECOND}")
        stop("ray", state, args=("node",))  # its processes, the job's worker included, end
        driver.wait(600)
        err = (tmp_path / "driver.err").read_text()
        assert driver.returncode == 0, err[-4000:]
        got = json.loads((tmp_path / "driver.out").read_text().strip().splitlines()[-1])
        st = got["status"]
        assert st[x] == "failed" and st.count("done") == 3, (st, err[-4000:])
        (f,) = got["failures"]
        assert f["params"] == {"x": x} and "died" in f["message"], f
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        stop("ray", state)  # fails if any process of the cluster is still running
        assert not alive_in(sids)
