"""The seed page's learning-rate x seed sweep, used by ``mushin-nb demo`` and the notebooks.

With torch installed it is the seed's model verbatim; without torch the same
logistic-regression model is trained with numpy (full-batch gradient descent on the
same kind of synthetic 2-class data), so the demo runs on a minimal install.
"""

from __future__ import annotations

from typing import Any

from ._multirun import MultiRunMetricsWorkflow

LEARNING_RATES = [0.01, 0.1, 1.0]
SEEDS = [0, 1, 2]


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _make_data(seed: int, n: int = 200) -> tuple[Any, Any]:
    """A synthetic 2-class data set: ``x`` of shape (n, 2) and float labels ``y``."""
    import torch as tr

    g = tr.Generator().manual_seed(seed)
    x = tr.randn(n, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * tr.randn(n, generator=g) > 0).float()
    return x, y


def _make_data_np(seed: int, n: int = 200) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(n) > 0).astype(float)
    return x, y


class LRSweep(MultiRunMetricsWorkflow):
    """Train a linear classifier for 100 SGD steps; report its accuracy."""

    @staticmethod
    def task(lr: float, seed: int) -> dict:
        import torch as tr

        tr.set_num_threads(1)
        tr.manual_seed(seed)
        x, y = _make_data(seed)
        model = tr.nn.Linear(2, 1)
        opt = tr.optim.SGD(model.parameters(), lr=lr)
        for _ in range(100):
            opt.zero_grad()
            logits = model(x).squeeze(1)
            loss = tr.nn.functional.binary_cross_entropy_with_logits(logits, y)
            loss.backward()
            opt.step()
        with tr.no_grad():
            preds = (model(x).squeeze(1) > 0).float()
            acc = (preds == y).float().mean().item()
        result = dict(accuracy=acc)
        tr.save(result, "metrics.pt")
        return result


class LRSweepNumpy(MultiRunMetricsWorkflow):
    """The same model and training loop in numpy (no torch needed)."""

    @staticmethod
    def task(lr: float, seed: int) -> dict:
        import numpy as np

        rng = np.random.default_rng(seed)
        x, y = _make_data_np(seed)
        w = rng.uniform(-0.7, 0.7, size=2)
        b = rng.uniform(-0.7, 0.7)
        for _ in range(100):
            z = x @ w + b
            p = 1 / (1 + np.exp(-z))
            g = (p - y) / len(y)
            w -= lr * (x.T @ g)
            b -= lr * g.sum()
        acc = float(((x @ w + b > 0).astype(float) == y).mean())
        return dict(accuracy=acc)


def demo_workflow() -> MultiRunMetricsWorkflow:
    return LRSweep() if has_torch() else LRSweepNumpy()
