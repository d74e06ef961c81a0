"""`mushin-nb demo` and `mushin-nb export`, run as a user would."""

import subprocess
import sys

import xarray as xr

from mushin_nb import load_netcdf


def cli(*args, cwd=None):
    """Run ``mushin-nb ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "mushin_nb.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_demo_writes_netcdf_and_prints_means(tmp_path):
    out = cli("demo", "--out", tmp_path / "demo", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mean accuracy per learning rate" in out.stdout
    assert "lr=0.01" in out.stdout and "lr=1 " in out.stdout
    ds = load_netcdf(tmp_path / "demo" / "lr_sweep.nc")
    assert dict(ds.sizes) == {"lr": 3, "seed": 3} and float(ds["accuracy"].min()) > 0.5
    # export the sweep directory again, with the job directories
    out2 = cli("export", tmp_path / "demo" / "sweep", tmp_path / "e.nc", "--with-dirs")
    assert out2.returncode == 0, out2.stderr
    exported = load_netcdf(tmp_path / "e.nc")
    xr.testing.assert_identical(exported.drop_vars("working_subdir"), ds)
    assert exported["working_subdir"].sel(lr=0.1, seed=2).item().startswith(str(tmp_path))
    # an existing file is not replaced without --overwrite
    out3 = cli("export", tmp_path / "demo" / "sweep", tmp_path / "e.nc")
    assert out3.returncode != 0 and "overwrite" in out3.stderr


def test_demo_numpy_model_matches_without_torch(tmp_path):
    from mushin_nb import multirun
    from mushin_nb._demo import LRSweepNumpy

    wf = LRSweepNumpy()
    wf.run(lr=multirun([0.01, 1.0]), seed=multirun([0, 1]), working_dir=str(tmp_path / "s"), progress=False)
    acc = wf.to_xarray()["accuracy"]
    assert float(acc.sel(lr=1.0).mean()) > float(acc.sel(lr=0.01).mean()) - 0.05
    assert float(acc.min()) > 0.5
