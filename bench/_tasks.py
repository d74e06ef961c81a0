"""The benchmark's tasks: a light module (no torch at import), since joblib's
worker processes import it to unpickle the tasks."""

import time

from mushin_nb import MultiRunMetricsWorkflow


class Trivial(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=x)


class Stamp(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, sleep: float) -> dict:
        if sleep:
            time.sleep(sleep)
        return dict(y=x, t_end=time.time())


class Busy(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, seconds: float) -> dict:
        t = time.process_time()
        k = 0
        while time.process_time() - t < seconds:
            k += 1
        return dict(k=k)


class Grid(MultiRunMetricsWorkflow):
    @staticmethod
    def task(a: int, b: int, save_pt: bool) -> dict:
        if save_pt:  # for rai-toolbox, which reads metrics files
            import torch as _t

            _t.save({"y": a * b, "z": a / (b + 1)}, "metrics.pt")
        return dict(y=a * b, z=a / (b + 1))
