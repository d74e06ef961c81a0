"""The notebooks run: notebooks/tutorial.ipynb, live_sweeps.ipynb, robustness.ipynb and adaptive.ipynb are
executed in a real Jupyter kernel (nbclient), from a copy in a temporary directory so
that their sweeps and files land there, and their outputs are checked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, tmp_path: Path, monkeypatch) -> list:
    src = NOTEBOOKS / name
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(src, work / name)
    # the kernel is a child process: give it the test-only Hydra plugins that conftest
    # puts on this process's sys.path, so both see the same plugin set
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])))
    # a notebook shows figures inline (CI exports MPLBACKEND=Agg, which would hide them)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(work / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that errors
    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"cell errored: {cell.source[:200]!r}: {errors[0]['ename']}"
    return [c for c in nb.cells if c.cell_type == "code"]


def text(cell) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o and "text/plain" in o["data"]:
            parts.append(o["data"]["text/plain"])
    return "\n".join(parts)


def find(cells, needle: str):
    for c in cells:
        if needle in c.source:
            return c
    raise AssertionError(f"no cell contains {needle!r}")


def test_notebooks_are_committed_without_outputs():
    for name in ["tutorial.ipynb", "live_sweeps.ipynb", "robustness.ipynb", "adaptive.ipynb"]:
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, name


@pytest.mark.slow
def test_tutorial_notebook(tmp_path, monkeypatch):
    cells = execute("tutorial.ipynb", tmp_path, monkeypatch)
    ds_text = text(find(cells, "train.to_xarray("))
    assert "lr: 3" in ds_text and "seed: 3" in ds_text and "hidden: 2" in ds_text
    assert "loss_curve" in ds_text
    assert "{'steps': 200}" in text(find(cells, "print(ds.attrs)"))
    ev_text = text(find(cells, "evaluate.to_xarray()"))
    assert "job_dir: 18" in ev_text and "noise: 3" in ev_text
    saved = text(find(cells, "save_netcdf(ds"))
    assert "NetCDF identical: True" in saved
    assert "reloaded from the sweep directory identical: True" in saved
    work = tmp_path / "nb"
    assert (work / "tutorial-runs" / "train.nc").exists()
    assert len(list((work / "tutorial-runs" / "train").glob("*/model.pt"))) == 18
    assert any(o.get("data", {}).get("image/png") for c in cells for o in c.outputs)


@pytest.mark.slow
def test_live_sweeps_notebook(tmp_path, monkeypatch):
    cells = execute("live_sweeps.ipynb", tmp_path, monkeypatch)
    watched = text(find(cells, "while not run.done"))
    assert "[0, 1, 4, 9, 16, 25, 36, 49]" in watched
    assert "'done': 8" in watched
    cancelled = text(find(cells, "run.cancel()"))
    assert "['done', 'cancelled', 'cancelled', 'cancelled', 'cancelled', 'cancelled']" in cancelled
    resumed = text(find(cells, "resume=True"))
    assert "reused: 1" in resumed and "[0, 1, 4, 9, 16, 25, 36, 49]" in resumed
    failed = text(find(cells, "except SweepError as err:\n    print(err)"))
    assert "2 of 6 jobs of Fragile failed" in failed
    assert "['done', 'done', 'failed', 'done', 'done', 'failed']" in failed
    assert "['done', 'done', 'failed', 'cancelled', 'cancelled', 'cancelled']" in text(
        find(cells, 'on_error="stop"')
    )
    assert "2 failures" in text(find(cells, 'on_error="ignore"'))
    assert "ValueError: x=2 is broken" in text(find(cells, "run.failures[0].traceback"))


@pytest.mark.slow
def test_robustness_notebook(tmp_path, monkeypatch):
    cells = execute("robustness.ipynb", tmp_path, monkeypatch)
    assert "new cells run: 6" in text(find(cells, "p.refine_button.clicks += 1"))
    lost = text(find(cells, "accuracy lost between"))
    assert "'linear'" in lost and "'mlp'" in lost
    # plots were rendered (bokeh/holoviews bundles), not blank
    assert any(
        "application/vnd.holoviews_load.v0+json" in o.get("data", {}) or "text/html" in o.get("data", {})
        for c in cells
        for o in c.outputs
    )


@pytest.mark.slow
def test_adaptive_notebook(tmp_path, monkeypatch):
    import re

    pytest.importorskip("adaptive")
    cells = execute("adaptive.ipynb", tmp_path, monkeypatch)
    measured = text(find(cells, "n_uniform = next("))
    jobs, err = re.search(r"adaptive: (\d+) jobs, max interpolation error ([\d.]+)", measured).groups()
    uniform = int(re.search(r"uniform grid: (\d+) jobs for the same error", measured).group(1))
    assert int(jobs) == 20 and 2 * int(jobs) <= uniform and float(err) < 0.02
    assert "20 points in 5 rounds" in text(find(cells, "ds = run.wait()"))
    resumed = text(find(cells, "resume=True"))
    assert "NetCDF and load_from_dir: identical" in resumed and "new jobs: 8 |" in resumed
