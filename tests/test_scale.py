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

    import mushin_nb._workflows as wfmod

    def boom(*a, **k):
        raise AssertionError("YAML parsed on the reload hot path")

    for mod, name in [
        (yaml, "load"),
        (yaml, "safe_load"),
        (yaml, "full_load"),
        (OmegaConf, "load"),
        (hydra_zen, "load_from_yaml"),
        (wfmod, "load_from_yaml"),
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
