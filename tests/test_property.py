"""Property: a multirun of ints, floats, bools and arbitrary text goes
run -> to_xarray -> NetCDF -> load and back identical, and each job got its value."""

import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mushin_nb import MultiRunMetricsWorkflow, load_netcdf, multirun, save_netcdf


class Echo(MultiRunMetricsWorkflow):
    @staticmethod
    def task(v) -> dict:
        return dict(seen=repr(v))


text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
) | st.sampled_from(
    ["a,b", "'", '"', "[1]", "{a:1}", "null", "true", "1", "1.5", "${x}", "\\${x}", "a\\", "ü☃"]
)

scalars = (
    st.integers(-(2**31), 2**31) | st.floats(allow_nan=False, allow_infinity=True) | st.booleans() | text
)


@settings(
    max_examples=int(__import__("os").environ.get("MUSHIN_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.one_of(
        st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=4, unique=True),
        st.lists(
            st.floats(allow_nan=False), min_size=1, max_size=4, unique_by=lambda f: f if f != 0 else 0.0
        ),
        st.lists(st.booleans(), min_size=1, max_size=2, unique=True),
        st.lists(text, min_size=1, max_size=4, unique=True),
        st.lists(
            scalars, min_size=1, max_size=4, unique_by=lambda v: repr(v) if isinstance(v, str) else str(v)
        ),
    )
)
def test_multirun_round_trip(values, tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    wf = Echo()
    wf.run(v=multirun(values), working_dir=str(d / "s"), progress=False, with_log_configuration=False)
    ds = wf.to_xarray()
    assert ds["seen"].values.tolist() == [repr(v) for v in values]  # the task got each value, typed
    save_netcdf(ds, d / "s.nc")
    back = load_netcdf(d / "s.nc")
    xr.testing.assert_identical(back, ds)
    xr.testing.assert_identical(Echo(working_dir=str(d / "s")).to_xarray(), ds)
    assert wf.multirun_task_overrides["v"] == values


pytest.importorskip("hypothesis")
