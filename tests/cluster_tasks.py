"""Workflows of the Dask and Ray cluster tests (tests/test_cluster_dask.py,
tests/test_cluster_ray.py). The clusters' workers import this module (the tests
start them with this directory on PYTHONPATH), as a user's workers import their
project's code."""

import os
import time
from pathlib import Path

from mushin_nb import MultiRunMetricsWorkflow


def _note(flag_dir: str, name: str, text: str) -> None:
    if flag_dir:
        d = Path(flag_dir)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, d / name)


def _where() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    return ""


class Work(MultiRunMetricsWorkflow):
    """``x`` jobs of ``delay`` s; each notes its pid (and Ray node) in
    ``<flags>/started-<x>``. ``fail``: the job with that x raises while
    ``<flags>/FAIL`` exists. ``hang``: the job with that x runs 600 s; ``hang_on``: so
    do the jobs that run on the Ray node with that IP address."""

    @staticmethod
    def task(
        x: int, delay: float = 0.2, fail: int = -1, hang: int = -1, hang_on: str = "", flags: str = ""
    ) -> dict:
        node = _where()
        _note(flags, f"started-{x}", f"{os.getpid()} {node}")
        end = time.time() + (600 if x == hang or (hang_on and node == hang_on) else delay)
        while time.time() < end:  # short steps: a cancellation raised in the job lands at once
            time.sleep(min(0.05, max(0.0, end - time.time())))
        if x == fail and os.path.exists(os.path.join(flags, "FAIL")):
            raise ValueError(f"x={x} is broken while FAIL exists")
        return dict(y=x * x, pid=os.getpid())


class Curve(MultiRunMetricsWorkflow):
    """An accuracy-like curve that falls around ``eps = 0.3`` (for adaptive sweeps);
    each job notes the pid it ran in."""

    @staticmethod
    def task(eps: float) -> dict:
        import math

        return dict(acc=1.0 / (1.0 + math.exp((eps - 0.3) / 0.05)), pid=os.getpid())
