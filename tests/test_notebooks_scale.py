"""notebooks/scale_out.ipynb runs top to bottom (joblib and submitit_local)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB = Path(__file__).resolve().parents[1] / "notebooks" / "scale_out.ipynb"


def test_scale_out_notebook_outputs_are_cleared():
    nb = nbformat.read(NB, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_scale_out_notebook_runs(tmp_path, monkeypatch):
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
