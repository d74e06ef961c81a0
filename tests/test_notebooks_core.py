"""The notebooks run: notebooks/tutorial.ipynb, live_sweeps.ipynb, robustness.ipynb and adaptive.ipynb are
executed in a real Jupyter kernel (nbclient), from a copy in a temporary directory, and their
outputs are checked: what they compute, and that a reader sees no warning, numpy repr or
frozen progress bar (tests/_nbcheck.py); their sweeps go to a temporary directory, never
beside the notebook."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from _nbcheck import NOTEBOOKS, assert_quiet, left_in_work_dir, quiet_problems

pytest.importorskip("nbclient")


def execute(name: str, tmp_path: Path, monkeypatch) -> list:
    import _nbcheck

    nb = _nbcheck.execute(name, tmp_path, monkeypatch)
    assert_quiet(nb)
    assert left_in_work_dir(name, tmp_path) == [], "the notebook wrote beside itself, not to a temporary dir"
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
    runs = Path(text(find(cells, "RUNS = ")).split("sweeps and files go to ")[1].split()[0])
    assert runs.is_relative_to(tmp_path / "tmp")  # tempfile.mkdtemp(): the kernel's TMPDIR
    assert (runs / "train.nc").exists()
    assert len(list((runs / "train").glob("*/model.pt"))) == 18
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


def test_the_quiet_check_finds_what_a_reader_must_not_see():
    """The check the notebook tests use finds each problem the issue saw, and passes
    the same outputs without them."""
    v4 = nbformat.v4

    def nb_with(*outputs, widgets=None):
        nb = v4.new_notebook(cells=[v4.new_code_cell("x = 1", outputs=list(outputs))])
        if widgets:
            nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": widgets}}
        return nb

    warned = v4.new_output(
        "stream", name="stderr", text="WARNING:param.main: marker option not found for line plot with bokeh\n"
    )
    reprs = v4.new_output("stream", name="stdout", text="{np.str_('linear'): 0.058}\n")
    count = v4.new_output("execute_result", data={"text/plain": "np.int64(15715)"}, execution_count=1)
    view = {"model_id": "m", "version_major": 2, "version_minor": 0}
    frozen = v4.new_output(
        "display_data",
        data={
            "application/vnd.jupyter.widget-view+json": view,
            "text/plain": "Train:   0%|          | 0/18 [00:00<?, ?job/s]",
        },
    )
    stuck = {"m": {"model_name": "FloatProgressModel", "state": {"value": 3.0, "max": 18.0}}}
    found = quiet_problems(nb_with(warned, reprs, count, frozen, widgets=stuck))
    assert [p.split(": ")[1] for p in found[:4]] == [
        "a warning on stderr",
        "a numpy repr",
        "a numpy repr",
        "a progress bar's text stopped at 0/18",
    ]
    assert found[4] == "progress widget m stopped at 3.0/18.0" and len(found) == 5
    fine = [
        v4.new_output("stream", name="stderr", text="mushin_nb: resume: 8 of 8 cells already done\n"),
        v4.new_output("stream", name="stdout", text="{'linear': 0.058}\n"),
        v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": view,
                "text/plain": "Train: 100%|##########| 18/18 [00:03<00:00, done=18, failed=0]",
            },
        ),
    ]
    done = {"m": {"model_name": "FloatProgressModel", "state": {"value": 18.0, "max": 18.0}}}
    assert quiet_problems(nb_with(*fine, widgets=done)) == []


def test_a_run_with_a_progress_bar_leaves_its_final_count_in_the_saved_notebook(tmp_path, monkeypatch):
    """tqdm shows its widget once, with the text of its first state: the bar is shown
    again at its end, so the notebook's saved text (what nbconvert, GitHub and the docs
    show without the widget) ends at 3/3, and so does the widget's saved state."""
    import nbclient

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from mushin_nb import MultiRunMetricsWorkflow, multirun\n"
                "class Sq(MultiRunMetricsWorkflow):\n"
                "    @staticmethod\n"
                "    def task(x: int) -> dict:\n"
                "        return dict(y=x * x)\n"
                f"Sq().run(x=multirun([1, 2, 3]), working_dir={str(tmp_path / 'sweep')!r})"
            )
        ]
    )
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "plugins"))
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown = [
        o for o in nb.cells[0].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(shown) == 1, json.dumps(nb.cells[0].outputs)[:2000]
    assert "3/3 [" in shown[0]["data"]["text/plain"] and "done=3" in shown[0]["data"]["text/plain"]
    assert_quiet(nb)


def test_notebooks_write_their_sweeps_to_a_temporary_dir():
    """No shipped notebook names a sweep directory or file relative to where it runs
    (that is, inside the repository): each takes a temporary directory."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "tempfile.mkdtemp(" in source, path.name
        for relative in ('-runs")', 'working_dir="', "working_dir='", 'Path("model.pt")'):
            assert relative not in source, (path.name, relative)
