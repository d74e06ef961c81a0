"""Big sweeps: reloading a sweep directory reads the index (no per-job YAML), and
falls back to scanning the job directories when the index is missing or stale."""

import os
import shutil

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, multirun


class Grid(MultiRunMetricsWorkflow):
    @staticmethod
    def task(a: int, b: str) -> dict:
        return dict(y=a * 10 + len(b), v=np.arange(3) * a, ok=a % 2 == 0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    wf = Grid()
    wf.run(a=multirun(list(range(12))), b=multirun(["p", "qq", "r s t"]), working_dir=str(d), progress=False)
    return d, wf.to_xarray()


def _reload(d):
    return MultiRunMetricsWorkflow().load_from_dir(d).to_xarray()


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_reload_reads_no_yaml(sweep, monkeypatch):
    import hydra_zen
    import yaml
    from omegaconf import OmegaConf

    def boom(*a, **k):
        raise AssertionError("YAML parsed on the reload hot path")

    for mod, name in [
        (yaml, "load"),
        (yaml, "safe_load"),
        (yaml, "full_load"),
        (OmegaConf, "load"),
        (hydra_zen, "load_from_yaml"),  # mushin_nb imports it where it reads YAML
    ]:
        monkeypatch.setattr(mod, name, boom)
    d, ref = sweep
    ds = _reload(d)
    xr.testing.assert_identical(ds, ref)
    assert ds["v"].dims == ("a", "b", "v_dim0")


def test_reload_without_index_scans_job_dirs(sweep, tmp_path):
    d, ref = sweep
    c = _copy(d, tmp_path / "c")
    os.unlink(c / ".mushin" / "index.jsonl")
    xr.testing.assert_identical(_reload(c), ref)


def test_reload_with_truncated_index(sweep, tmp_path):
    d, ref = sweep
    c = _copy(d, tmp_path / "c")
    idx = c / ".mushin" / "index.jsonl"
    lines = idx.read_bytes().splitlines(keepends=True)
    assert len(lines) == 36
    # a third of the lines, then a torn line (a writer killed mid-write)
    idx.write_bytes(b"".join(lines[:12]) + lines[12][:25])
    xr.testing.assert_identical(_reload(c), ref)


def test_reload_with_stale_index_entries(sweep, tmp_path):
    """An index whose last records were lost (the jobs' result files exist): the
    job directories not in the index are scanned."""
    d, ref = sweep
    c = _copy(d, tmp_path / "c")
    idx = c / ".mushin" / "index.jsonl"
    lines = idx.read_bytes().splitlines(keepends=True)
    idx.write_bytes(b"".join(lines[:-5]))
    ds = _reload(c)
    xr.testing.assert_identical(ds, ref)


def test_to_xarray_large_grid_is_complete(tmp_path):
    """A few hundred cells through the default launcher reload cell for cell."""
    wf = Grid()
    wf.run(
        a=multirun(list(range(60))),
        b=multirun(["p", "qq", "r s t", "u"]),
        working_dir=str(tmp_path),
        progress=False,
    )
    ds = _reload(tmp_path)
    assert dict(ds.sizes) == {"a": 60, "b": 4, "v_dim0": 3}
    exp = np.add.outer(np.arange(60) * 10, [1, 2, 5, 1])
    np.testing.assert_array_equal(ds["y"].values, exp)
    np.testing.assert_array_equal(ds["v"].sel(b="u").values, np.outer(np.arange(60), np.arange(3)))


FRESH_RELOAD = (
    "import sys, json\n"
    "from mushin_nb import MultiRunMetricsWorkflow\n"
    "ds = MultiRunMetricsWorkflow().load_from_dir(sys.argv[1]).to_xarray()\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    "print(json.dumps(ds['y'].values.tolist()))\n"
)


def test_a_fresh_process_reloads_without_importing_dask_or_hydra(sweep):
    """With dask installed, xarray asks of each new array whether it is a dask array by
    importing dask.array (and scipy): as long as xarray's own import. A reload builds
    its Dataset without that question, and reads no YAML: Hydra is not imported."""
    import json
    import subprocess
    import sys

    pytest.importorskip("dask.array")
    d, expected = sweep
    out = subprocess.run(
        [sys.executable, "-c", FRESH_RELOAD, str(d)], capture_output=True, text=True, check=True
    )
    modules, y = (json.loads(line) for line in out.stdout.splitlines())
    assert "xarray" in modules and "dask" not in modules and "scipy" not in modules
    assert "hydra" not in modules and "hydra_zen" not in modules and "omegaconf" not in modules
    assert y == expected["y"].values.tolist()


@pytest.mark.parametrize(
    "data_vars, coords",
    [
        (
            {
                "y": (("a", "b"), np.arange(6.0).reshape(2, 3)),
                "s": (("a", "b"), np.array([["x", "y", "z"]] * 2)),
                "k": (("a", "b"), np.ones((2, 3), bool)),
                "i": (("a", "b"), np.ones((2, 3), np.int32)),
            },
            {"a": [0.1, 1.0], "b": ["p", "q", "r"]},
        ),
        ({"v": (("a", "v_dim0"), np.zeros((2, 4)))}, {"a": [True, False], "v_dim0": np.arange(4)}),
        ({"v": (("a",), np.zeros(3))}, {"a": [float("nan"), 2.0, np.inf]}),
        ({"v": (("a",), np.zeros(2))}, {"a": [1 + 2j, 3j]}),
        ({"v": (("a",), np.array([None, "x"], dtype=object))}, {"a": [1, 2]}),  # left to xr.Dataset
        ({"v": (("a",), np.zeros(2))}, {"a": [2**70, 1]}),  # object coordinate: left to xr.Dataset
        ({}, {"a": [1, 2]}),
    ],
)
def test_the_dataset_made_without_dask_checks_is_what_xarray_makes(data_vars, coords):
    from mushin_nb._dataset import make_dataset

    got = make_dataset(data_vars, coords, {"seed": 0})
    ref = xr.Dataset(data_vars, coords=coords, attrs={"seed": 0})
    xr.testing.assert_identical(got, ref)
    for k in ref.variables:
        assert type(got.variables[k]) is type(ref.variables[k])
    for k, idx in ref.xindexes.items():
        assert type(got.xindexes[k]) is type(idx)
        assert got.xindexes[k].index.equals(idx.index) and got.xindexes[k].index.dtype == idx.index.dtype
