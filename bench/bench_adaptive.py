"""Adaptive against uniform sampling: how many jobs each needs for the same maximum
interpolation error, on a few curves.

    python bench/bench_adaptive.py          # three curves, three point budgets, two losses
    python bench/bench_adaptive.py --quick  # one budget, the curvature loss

For each curve and budget, an adaptive sweep (``adaptive_range(..., npoints_goal=n)``)
runs as real Hydra jobs (rounds of ``batch_size=4`` through the in-process launcher);
its maximum interpolation error is measured against the curve evaluated on a dense grid
(401 points); the uniform count is the smallest ``N`` for which ``N`` evenly spaced points
reach that error (the first such ``N``: a lucky alignment counts for the uniform grid).
The uniform grids are evaluated in this process (the same function the jobs call).

Curves:

- ``torch noise``: a small MLP's accuracy on 4000 test points against the size of the
  Gaussian noise added to them (two classes on spheres in 32 dimensions), sigma in [0, 2];
- ``gaussian margin``: Phi(0.3 / sigma), a linear classifier's accuracy under Gaussian
  noise of size sigma in [0, 2] (a sharp start, a long tail);
- ``two knees``: two logistic drops (at 0.3, width 0.02, and at 0.7, width 0.05) on [0, 1].
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mushin_nb import RobustnessCurve, adaptive_range

DIM = 32
CURVES: dict[str, tuple[Callable[[float], float], float]] = {}


# ------------------------------------------------------------------ the curves


def _spheres(n: int, seed: int) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    r = 1.0 + y + 0.05 * torch.randn(n, generator=g)
    u = torch.randn(n, DIM, generator=g)
    return u / u.norm(dim=1, keepdim=True) * r[:, None], y


@functools.cache
def _model() -> tuple:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = _spheres(2000, seed=0)
    net = torch.nn.Sequential(torch.nn.Linear(DIM, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    xt, yt = _spheres(4000, seed=1)
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(2))
    return net, xt, yt, noise


@functools.cache
def torch_noise(sigma: float) -> float:
    import torch

    net, xt, yt, noise = _model()
    with torch.no_grad():
        return float((net(xt + sigma * noise).argmax(1) == yt).float().mean())


def gaussian_margin(sigma: float) -> float:
    return 0.5 * math.erfc(-0.3 / max(sigma, 1e-12) / math.sqrt(2))


def two_knees(x: float) -> float:
    return 0.4 / (1 + math.exp((x - 0.3) / 0.02)) + 0.6 / (1 + math.exp((x - 0.7) / 0.05))


CURVES = {
    "torch noise": (torch_noise, 2.0),
    "gaussian margin": (gaussian_margin, 2.0),
    "two knees": (two_knees, 1.0),
}


class Curve(RobustnessCurve):
    @staticmethod
    def task(epsilon: float, curve: str) -> dict:
        return dict(accuracy=CURVES[curve][0](epsilon))


# ------------------------------------------------------------------ measuring


def max_error(xs: np.ndarray, ys: np.ndarray, dense: np.ndarray, truth: np.ndarray) -> float:
    return float(np.max(np.abs(np.interp(dense, xs, ys) - truth)))


def uniform_jobs(
    f: Callable[[float], float], high: float, err: float, dense: np.ndarray, truth: np.ndarray
) -> int:
    for n in range(2, 2000):
        xs = np.linspace(0.0, high, n)
        if max_error(xs, np.array([f(x) for x in xs]), dense, truth) <= err:
            return n
    raise RuntimeError("no uniform grid up to 2000 points reaches that error")


def measure(name: str, n: int, loss: str, where: Path) -> dict:
    f, high = CURVES[name]
    dense = np.linspace(0.0, high, 401)
    truth = np.array([f(x) for x in dense])
    t0 = time.perf_counter()
    run = Curve().start(
        epsilon=adaptive_range(0.0, high, npoints_goal=n, batch_size=4, loss=loss),
        curve=name,
        working_dir=str(where),
    )
    ds = run.wait()
    seconds = time.perf_counter() - t0
    jobs = int((ds["status"] == "done").sum())
    err = max_error(ds["epsilon"].values, ds["accuracy"].values, dense, truth)
    uni = uniform_jobs(f, high, err, dense, truth)
    return dict(curve=name, loss=loss, jobs=jobs, rounds=run.rounds, err=err, uniform=uni, seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one budget (20 points), the curvature loss")
    args = ap.parse_args(argv)
    budgets = [20] if args.quick else [12, 20, 30]
    losses = ["curvature"] if args.quick else ["curvature", "default"]
    head = f"{'curve':<16} {'loss':<10} {'adaptive jobs':>13} {'rounds':>6} {'max error':>10} {'uniform jobs':>12} {'ratio':>6} {'s':>5}"
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        for name in CURVES:
            for loss in losses:
                for n in budgets:
                    k += 1
                    r = measure(name, n, loss, Path(tmp) / str(k))
                    print(
                        f"{r['curve']:<16} {r['loss']:<10} {r['jobs']:>13} {r['rounds']:>6} {r['err']:>10.4f} "
                        f"{r['uniform']:>12} {r['uniform'] / r['jobs']:>5.1f}x {r['seconds']:>5.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    sys.exit(main())
