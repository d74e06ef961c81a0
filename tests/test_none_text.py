"""A string metric that a job returns None for (issue 13): never confused with a
returned "", and held the same way by the live Dataset, the Dataset reloaded from the
sweep directory, and NetCDF (save_netcdf/load_netcdf, and the live file of save=)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, load_netcdf, multirun, save_netcdf


class Tagged(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(tag={0: "a", 1: None, 2: "", 3: "\x1f"}[x], y=x)


def test_none_is_missing_and_an_empty_string_stays_one(tmp_path):
    run = Tagged().start(
        x=multirun([0, 1, 2, 3]), working_dir=str(tmp_path / "s"), save=str(tmp_path / "live.nc")
    )
    live = run.wait()
    tag = live["tag"]
    assert tag.dtype == object
    assert tag.isnull().values.tolist() == [False, True, False, False]
    assert [tag.values[i] for i in (0, 2, 3)] == ["a", "", "\x1f"]
    reloaded = Tagged(working_dir=str(tmp_path / "s")).to_xarray()
    xr.testing.assert_identical(reloaded, live.drop_vars("status"))
    back = load_netcdf(save_netcdf(live, tmp_path / "saved.nc"))
    xr.testing.assert_identical(back, live)  # "\x1f" is a value: the file's fill is another text
    xr.testing.assert_identical(load_netcdf(tmp_path / "live.nc"), live)


def test_live_dataset_and_its_file_while_cells_are_missing(tmp_path):
    """Record by record (None first, then texts): the live Dataset is what build_dataset
    makes of the same records, and its live NetCDF file holds the same."""
    from mushin_nb._dataset import build_dataset
    from mushin_nb._live_netcdf import LiveNetCDF
    from mushin_nb._livedata import LiveDataset
    from mushin_nb._store import JobResult
    from mushin_nb._sweep import Param, SweepSpec

    spec = SweepSpec([Param("x", [0, 1, 2], ["0", "1", "2"], swept=True)])
    added: list[JobResult] = []
    live = LiveDataset(spec, results=lambda: added)  # the run's records, as a run gives them
    f = LiveNetCDF(live, tmp_path / "live.nc", every=0)
    records = [
        JobResult(index=(1,), status="done", metrics={"tag": None, "y": 1}),
        JobResult(index=(0,), status="done", metrics={"tag": "a", "y": 0}),
        JobResult(index=(2,), status="done", metrics={"tag": "", "y": 2}),
    ]
    for k, r in enumerate(records, 1):
        added.append(r)
        live.add(r)
        f.flush()
        now = live.snapshot()
        xr.testing.assert_identical(now, build_dataset(spec, records[:k], include_status=True))
        xr.testing.assert_identical(load_netcdf(f.path), now)
        if k >= 2:
            assert now["tag"].dtype == object and now["tag"].isnull().values.tolist() == [False, True, k < 3]
    f.close()
    final = live.snapshot()
    assert final["tag"].values[0] == "a" and final["tag"].values[2] == ""
    assert np.isnan(final["tag"].values[1])
    xr.testing.assert_identical(load_netcdf(f.path), final)


def test_text_without_none_is_unchanged(tmp_path):
    """No job returned None: a str array, as before (missing cells "")."""

    class Plain(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(tag=f"t{x}")

    ds = Plain().start(x=multirun([0, 1]), working_dir=str(tmp_path)).wait()
    assert ds["tag"].dtype.kind == "U" and ds["tag"].values.tolist() == ["t0", "t1"]
