"""Workflows the SLURM cluster tests run (tests/test_cluster_slurm.py).

In a module of their own so the array tasks import them by name, cheaply (the
tests' directory is on the jobs' PYTHONPATH); the test that a workflow defined in
``__main__`` reaches the workers runs its own script instead.
"""

import os
import time
from pathlib import Path

from mushin_nb import MultiRunMetricsWorkflow


def _slurm() -> dict:
    return dict(
        job=f"{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}",
        partition=os.environ.get("SLURM_JOB_PARTITION", ""),
        cpus=int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0),
        pid=os.getpid(),
    )


class Quick(MultiRunMetricsWorkflow):
    """Fails for x == 2 while ``flag`` exists; otherwise returns x*x and where it ran."""

    @staticmethod
    def task(x: int, flag: str = "", delay: float = 0.2) -> dict:
        time.sleep(delay)
        if x == 2 and flag and os.path.exists(flag):
            print(f"about to fail for x={x}", flush=True)
            raise RuntimeError(f"x={x} fails while {flag} exists")
        s = _slurm()
        return dict(y=x * x, pid=s["pid"], cpus=s["cpus"], partition=s["partition"])


class Slow(MultiRunMetricsWorkflow):
    """Cells with x < quick finish at once; the others write their SLURM job id to
    and pid to ``<where>/started-<x>`` and then sleep ``sleep`` seconds (they are to be cancelled
    or killed)."""

    @staticmethod
    def task(x: int, where: str, quick: int = 2, sleep: float = 600.0) -> dict:
        if x < quick:
            time.sleep(0.2)
            return dict(y=float(x))
        s = _slurm()
        Path(where, f"started-{x}").write_text(f"{s['job']} {s['pid']}")
        time.sleep(sleep)
        return dict(y=float(x))


class FailFirst(MultiRunMetricsWorkflow):
    """x == 0 fails at once; the others take ``delay`` seconds."""

    @staticmethod
    def task(x: int, delay: float = 2.0) -> dict:
        if x == 0:
            raise ValueError("x=0 is the failure that stops the sweep")
        time.sleep(delay)
        return dict(y=float(x))
