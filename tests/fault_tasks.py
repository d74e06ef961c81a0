"""The workflow of the fault-injection suite (tests/test_faults.py).

A module of its own so that a subprocess runs the very same task (same source, same
task hash: ``resume=True`` accepts its results) and can be killed with SIGKILL.

Every metric is a deterministic function of the cell's parameters, so the value
each cell must show is known: ``s`` (a scalar) and ``a`` (a small array, stored in
the job's ``.npz``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from mushin_nb import MultiRunMetricsWorkflow

X = [0, 1, 2, 3]
Y = [0, 1]
# seconds each job sleeps (read when the job runs): slow enough that a kill or a
# cancel after k results lands while job k+1 is still running
DELAY_ENV = "MUSHIN_FAULT_DELAY"


def scalar(x: int, y: int) -> float:
    return 10.0 * x + y + 0.25


def array(x: int, y: int) -> np.ndarray:
    return np.array([float(x), float(y), x * y + 0.5])


class FaultSweep(MultiRunMetricsWorkflow):
    # its own pre_task: the task hash (resume's check) then depends on this file only,
    # not on the engine's source, which the test process and a worker may read
    # at different moments
    @staticmethod
    def pre_task() -> None:
        pass

    @staticmethod
    def task(x: int, y: int) -> dict:
        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        return dict(s=scalar(x, y), a=array(x, y))


# A warm worker for the kill faults: it imports everything, says "ready", then runs
# the sweep that one line on stdin describes (JSON: dir, resume, delay), so the test
# pays the import time while it does other steps.
WORKER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import fault_tasks
from hydra_zen import multirun
import hydra_plugins.mushin_nb_plugins.launcher, mushin_nb._dataset, xarray  # noqa: F401
print("ready", flush=True)
line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)
args = json.loads(line)
os.environ[fault_tasks.DELAY_ENV] = str(args["delay"])
fault_tasks.FaultSweep().run(
    x=multirun(fault_tasks.X), y=multirun(fault_tasks.Y),
    working_dir=args["dir"], resume=args["resume"], progress=False,
)
print("finished", flush=True)
"""
