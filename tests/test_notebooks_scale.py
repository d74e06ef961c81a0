"""notebooks/scale_out.ipynb runs top to bottom: joblib, submitit_local, and its SLURM
section on the tests' real SLURM cluster (tests/slurm_cluster.py; its SLURM_CONF reaches
the notebook's kernel). Where SLURM is not installed (and CI is not set) that section runs
its sweeps with joblib, as the notebook does for a reader without a cluster."""

import os
from pathlib import Path

import nbformat
import pytest
import slurm_cluster
from nbclient import NotebookClient

NB = Path(__file__).resolve().parents[1] / "notebooks" / "scale_out.ipynb"


def test_scale_out_notebook_outputs_are_cleared():
    nb = nbformat.read(NB, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="session")
def slurm_or_none():
    cluster = slurm_cluster.acquire(required=False)
    try:
        yield cluster
    finally:
        if cluster is not None:
            slurm_cluster.release()


@pytest.mark.slow
def test_scale_out_notebook_runs(tmp_path, monkeypatch, slurm_or_none, dask_for_the_notebook):
    # submitit's worker processes unpickle Hydra's plugin registry, test plugins included
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([plugins, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NB, as_version=4)
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "error" not in [o.get("output_type") for c in nb.cells for o in c.get("outputs", [])]
    assert "diverged at lr=1.0" in text
    assert "reused 4 cells" in text
    assert "4 events" in text
    # the SLURM section: the class API, the magic and the panel on the cluster
    on = "slurm" if slurm_or_none is not None else "joblib"
    assert f"{on}: {{'pending': 0, 'running': 0, 'done': 6" in text
    assert f"magic on {on} ['done', 'done', 'done', 'done']" in text
    assert f"panel on {'submitit_slurm' if on == 'slurm' else 'joblib'} ['done', 'done']" in text
    # the Dask section (issue 11, Dask/Ray work): the class API, the magic and the panel
    # on the real Dask cluster of the fixture below
    assert "dask: {'pending': 0, 'running': 0, 'done': 6" in text
    assert "magic on dask ['done', 'done', 'done', 'done']" in text
    assert "panel on dask ['done', 'done']" in text


# --------------------------------------------------------------------------- Dask (issue 11)


@pytest.fixture
def dask_for_the_notebook(monkeypatch):
    """A real Dask cluster (scripts/cluster/dask_start.sh) whose address reaches the
    notebook's kernel as DASK_SCHEDULER_ADDRESS; stopped after, nothing left running."""
    import _cluster

    _cluster.require("distributed", "dask", "dask")
    state = _cluster.start("dask", "2")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", (state / "address").read_text().strip())
    try:
        yield
    finally:
        _cluster.stop("dask", state)
