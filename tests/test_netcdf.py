"""NetCDF: save then load is identical for every Dataset this package produces."""

import os
import string

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from mushin_nb import MultiRunMetricsWorkflow, RobustnessCurve, hydra_list, load_netcdf, multirun, save_netcdf

pytestmark = pytest.mark.usefixtures("cleandir")


class Many(MultiRunMetricsWorkflow):
    @staticmethod
    def task(lr: float, name: str, flag: bool) -> dict:
        return dict(acc=lr, label=f"{name}!", ok=flag, curve=np.linspace(0, lr, 4), count=len(name))


def test_workflow_dataset_round_trips_with_every_attr_kind():
    wf = Many()
    wf.run(
        lr=multirun([0.1, 1.0]),
        name=multirun(["a,b", "ü"]),
        flag=multirun([True, False]),
        opts={"a": 1, "b": [1, 2]},
        nothing=None,
        on=True,
        tags=hydra_list(["x", "y"]),
        working_dir="d",
        progress=False,
    )
    for kw in [
        {},
        {"include_working_subdirs_as_data_var": True},
        {"non_multirun_params_as_singleton_dims": True},
    ]:
        ds = wf.to_xarray(**kw)
        ds["acc"].attrs = {"units": "fraction", "meta": {"k": None}}
        path = save_netcdf(ds, f"out{len(kw)}{list(kw)}.nc")
        back = load_netcdf(path)
        xr.testing.assert_identical(back, ds)
        assert back.attrs["opts"] == {"a": 1, "b": [1, 2]} and back.attrs["nothing"] is None
        assert back.attrs["on"] is True and back["acc"].attrs["meta"] == {"k": None}
    wf.to_netcdf("wf.nc", include_working_subdirs_as_data_var=True)
    xr.testing.assert_identical(load_netcdf("wf.nc"), wf.to_xarray(include_working_subdirs_as_data_var=True))


def test_live_dataset_with_status_and_failures_round_trips():
    class Half(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x % 2:
                raise ValueError("odd")
            return dict(y=x)

    run = Half().start(x=multirun([0, 1, 2, 3]), working_dir="d", on_error="ignore")
    ds = run.wait()
    assert ds["status"].values.tolist() == ["done", "failed", "done", "failed"]
    save_netcdf(ds, "live.nc")
    xr.testing.assert_identical(load_netcdf("live.nc"), ds)


def test_robustness_curve_dataset_round_trips():
    class R(RobustnessCurve):
        @staticmethod
        def task(epsilon: float, model: str) -> dict:
            return dict(acc=1 - epsilon, model_len=len(model))

    wf = R()
    wf.run(epsilon=[0.5, 0.0, 0.25], model=multirun(["lin", "cnn"]), working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["epsilon"].values.tolist() == [0.0, 0.25, 0.5]
    save_netcdf(ds, "r.nc")
    xr.testing.assert_identical(load_netcdf("r.nc"), ds)


def test_existing_file_needs_overwrite_and_write_is_atomic(monkeypatch):
    ds = xr.Dataset({"a": ("x", [1.0, 2.0])}, coords={"x": [1, 2]})
    save_netcdf(ds, "f.nc")
    before = open("f.nc", "rb").read()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_netcdf(ds * 2, "f.nc")
    assert open("f.nc", "rb").read() == before

    # a crash in the middle of writing leaves the old file and no partial file
    def crash(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(xr.Dataset, "to_netcdf", crash)
        with pytest.raises(KeyboardInterrupt):
            save_netcdf(ds * 3, "f.nc", overwrite=True)
    assert open("f.nc", "rb").read() == before
    assert sorted(os.listdir(".")) == ["f.nc"]
    save_netcdf(ds * 2, "f.nc", overwrite=True)
    xr.testing.assert_identical(load_netcdf("f.nc"), ds * 2)


def test_attr_that_cannot_be_saved_names_it():
    ds = xr.Dataset(attrs={"fn": print})
    with pytest.raises(TypeError, match="'fn'"):
        save_netcdf(ds, "x.nc")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(attrs=st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6), json_values, max_size=5))
def test_any_json_attrs_round_trip(attrs, tmp_path_factory):
    d = tmp_path_factory.mktemp("nc")
    ds = xr.Dataset({"v": ("x", [1.0])}, coords={"x": [0]}, attrs=attrs)
    save_netcdf(ds, d / "a.nc")
    back = load_netcdf(d / "a.nc")
    assert back.attrs == attrs
    xr.testing.assert_identical(back, ds)


def test_nul_characters_in_attrs_round_trip():
    ds = xr.Dataset(attrs={"A": "\x00", "B": "a\x00b", "plain": "x"})
    save_netcdf(ds, "nul.nc")
    xr.testing.assert_identical(load_netcdf("nul.nc"), ds)
