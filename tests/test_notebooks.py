"""The notebooks run headless (nbclient, the venv's python3 kernel), with no error, and
show a reader no warning, numpy repr or frozen progress bar (tests/_nbcheck.py)."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.slow
def test_quickstart(tmp_path, monkeypatch):
    from _nbcheck import NOTEBOOKS, assert_quiet, execute, left_in_work_dir

    source = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code"), (
        "commit it with outputs cleared"
    )
    nb = execute("quickstart.ipynb", tmp_path, monkeypatch)
    texts = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout"
    )
    assert "9 jobs; Run disabled: False" in texts and "Finished: 9 jobs" in texts and "Wrote" in texts
    assert_quiet(nb)
    assert left_in_work_dir("quickstart.ipynb", tmp_path) == []
