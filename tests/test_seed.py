"""The seed page (workflows-and-sweeps.md), verbatim but for the import."""

from pathlib import Path

import pytest
import torch as tr
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, load_netcdf, multirun, save_netcdf

LEARNING_RATES = [0.01, 0.1, 1.0]
SEEDS = [0, 1, 2]


def _make_data(seed: int, n: int = 128):
    g = tr.Generator().manual_seed(seed)
    x = tr.randn(n, 2, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).float()
    return x, y


# ---- from the page ----------------------------------------------------------
class LRSweep(MultiRunMetricsWorkflow):
    @staticmethod
    def task(lr: float, seed: int) -> dict:
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
        # returning the dict is what populates the dataset; saving is optional
        result = dict(accuracy=acc)
        tr.save(result, "metrics.pt")
        return result


def build_dataset(working_dir: Path | None = None):
    """Run the learning-rate x seed sweep and return an ``xarray.Dataset``."""
    wf = LRSweep()
    wf.run(
        lr=multirun(LEARNING_RATES),
        seed=multirun(SEEDS),
        working_dir=str(working_dir) if working_dir is not None else None,
    )
    return wf.to_xarray()


# -----------------------------------------------------------------------------


@pytest.mark.usefixtures("cleandir")
def test_seed_example(tmp_path):
    ds = build_dataset(tmp_path / "sweep")
    assert dict(ds.sizes) == {"lr": 3, "seed": 3}
    assert list(ds.data_vars) == ["accuracy"]
    per_lr = ds["accuracy"].mean("seed")  # average over seeds, per learning rate
    assert per_lr.sizes == {"lr": 3} and float(per_lr.sel(lr=1.0)) > 0.8
    assert dict(ds.sel(lr=0.1).sizes) == {"seed": 3}  # slice to a single lr
    # the task's own metrics.pt files landed in each job directory and reload identically
    again = LRSweep().load_from_dir(tmp_path / "sweep", "metrics.pt").to_xarray()
    xr.testing.assert_identical(again, ds)
    # save and reload as NetCDF
    save_netcdf(ds, tmp_path / "lr.nc")
    xr.testing.assert_identical(load_netcdf(tmp_path / "lr.nc"), ds)
    # without working_dir: a new directory under ./multirun
    ds2 = build_dataset()
    xr.testing.assert_identical(ds2, ds)
    assert len(list(Path("multirun").glob("*/*/.mushin/manifest.json"))) == 1
