"""The documentation works: every code example on docs/*.md runs, and the site
builds with ``mkdocs build --strict``.

Each page's fenced blocks run in order in one fresh namespace, inside a fresh
temporary directory:

- ```` ```python ```` blocks are executed as Python;
- ```` ```ipython ```` blocks (``%%mushin_sweep`` and other magics) are run by a real
  IPython shell, with the page's Python blocks in the same namespace;
- ``<!-- no-run -->`` on the line before a fence skips it: only for settings of a
  cluster (SLURM, Ray) that cannot run here; :func:`test_no_run_blocks_are_only_cluster_settings`
  holds the pages to that, and :func:`test_slurm_settings_in_docs_are_real_fields`
  checks those settings against the installed submitit launcher;
- ``<!-- raises: ExceptionName -->`` before a fence: the block must raise that
  exception (a magic cell whose failure is the point of the example).
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARK = re.compile(r"<!--\s*(no-run|raises:\s*([\w.]+))\s*-->\s*$")


@dataclass
class Block:
    page: str
    lang: str
    code: str
    line: int
    no_run: bool
    raises: str | None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang not in ("python", "py", "ipython"):
            continue
        before = text[: m.start()].rstrip("\n").splitlines()
        mark = MARK.search(before[-1]) if before else None
        out.append(
            Block(
                page=page.name,
                lang="ipython" if lang == "ipython" else "python",
                code=m.group(2),
                line=text[: m.start()].count("\n") + 1,
                no_run=bool(mark and mark.group(1) == "no-run"),
                raises=mark.group(2) if mark and mark.group(2) else None,
            )
        )
    return out


PAGES = sorted(DOCS.glob("*.md"))


def test_pages_have_examples():
    """The harness finds the examples (a regex that matched nothing would make
    every page pass)."""
    assert PAGES, "no docs/*.md"
    counts = {p.name: len(blocks(p)) for p in PAGES}
    for name in ["workflows.md", "live.md", "notebook.md", "robustness.md", "scaling.md", "migration.md"]:
        assert counts.get(name, 0) >= 2, counts
    assert any(b.lang == "ipython" for b in blocks(DOCS / "notebook.md"))


def _exec_python(code: str, ns: dict, where: str) -> None:
    # registered like a notebook cell: tracebacks show the source, and
    # inspect.getsource works (resume compares the task's source)
    linecache.cache[where] = (len(code), None, code.splitlines(True), where)
    exec(compile(code, where, "exec"), ns)


def _shell():
    from _ipy import shell

    return shell()


def _run_ipython(shell, code: str) -> None:
    res = shell.run_cell(code, store_history=False, silent=False)
    if res.error_before_exec is not None:
        raise res.error_before_exec
    if res.error_in_exec is not None:
        raise res.error_in_exec


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    todo = [b for b in blocks(page) if not b.no_run]
    if not todo:
        pytest.skip(f"{page.name} has no runnable example")
    monkeypatch.chdir(tmp_path)
    # conftest puts tests/plugins on sys.path (test-only Hydra plugins, scanned by
    # Hydra in this process); worker processes of joblib/submitit need it as well
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])))
    module = f"docs_{page.stem}"
    shell = None
    if any(b.lang == "ipython" for b in todo):
        shell = _shell()
        shell.reset(new_session=False)
        ns = shell.user_ns
        ns["__name__"] = module
    else:
        ns = {"__name__": module}
    try:
        for b in todo:
            where = f"{page.name}:{b.line}"
            try:
                if b.lang == "ipython":
                    assert shell is not None
                    _run_ipython(shell, b.code)
                elif shell is not None:
                    _run_ipython(shell, b.code)
                else:
                    _exec_python(b.code, ns, where)
            except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too
                if b.raises and type(e).__name__ == b.raises.rsplit(".", 1)[-1]:
                    continue
                raise AssertionError(f"the example at {where} failed: {type(e).__name__}: {e}") from e
            else:
                if b.raises:
                    raise AssertionError(f"the example at {where} should raise {b.raises} and did not")
    finally:
        run = None
        for v in list(ns.values()):
            if type(v).__name__ == "SweepRun" and not v.done:
                run = v
                run.cancel()
                run.wait(60)
        if shell is not None:
            shell.reset(new_session=False)
        logging.shutdown()
        import matplotlib.pyplot as plt

        plt.close("all")
    assert run is None, f"{page.name} left a sweep running"


CLUSTER_WORDS = (
    "submitit_slurm",
    'launcher="slurm"',
    "--launcher slurm",
    'launcher="ray"',
    "hydra.launcher.ray",
    'launcher="dask"',
)
SLURM_WORDS = ("submitit_slurm", 'launcher="slurm"', "--launcher slurm")


def _launcher_settings_keys(code: str) -> set[str]:
    """The keys of ``launcher_settings={...}`` dict literals in a Python block."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {
        k.value
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword)
        and node.arg == "launcher_settings"
        and isinstance(node.value, ast.Dict)
        for k in node.value.keys
        if isinstance(k, ast.Constant) and isinstance(k.value, str)
    }


def test_no_run_blocks_are_only_cluster_settings():
    """``<!-- no-run -->`` is only for what cannot run on this machine."""
    for page in PAGES:
        for b in blocks(page):
            if b.no_run:
                assert any(w in b.code for w in CLUSTER_WORDS), (
                    f"{page.name}:{b.line} is marked no-run but is not a cluster setting; make it runnable"
                )


def test_slurm_settings_in_docs_are_real_fields():
    """Every ``hydra.launcher.X=`` (and ``launcher_settings`` key) the docs tell SLURM
    users to write is a field of the installed submitit launcher's SLURM config (a
    renamed field would otherwise only fail on a cluster)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from dataclasses import fields

    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    names = {f.name for f in fields(SlurmQueueConf)}
    used = set()
    for page in PAGES:
        for b in blocks(page):
            if b.no_run and any(w in b.code for w in SLURM_WORDS):  # what users write on a cluster
                used |= set(re.findall(r"hydra\.launcher\.(\w+)=", b.code))
                used |= _launcher_settings_keys(b.code)
    assert used, "the docs show no SLURM settings"
    assert used <= names, f"not fields of SlurmQueueConf: {sorted(used - names)}"


def test_docs_list_every_public_name_in_the_api_reference():
    import mushin_nb

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [n for n in mushin_nb.__all__ if n != "unload_ipython_extension" and n not in text]
    assert not missing, f"api.md does not document {missing}"


def _docs_build():
    """scripts/docs_build.py, the script (and MkDocs hook) that builds the executed pages."""
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "scripts" / "docs_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_executed_pages_are_built_not_committed():
    """The site's notebook pages and example outputs are written by scripts/docs_build.py
    from notebooks/ and the pages (never in git, so git never holds a stale copy), and
    ``mkdocs build`` runs it as a hook."""
    db = _docs_build()
    tracked = subprocess.run(
        ["git", "ls-files", "docs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith(".ipynb") or f.startswith("docs/generated/")], tracked
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^hooks:\n  - scripts/docs_build\.py$", config, re.M)
    for src, page in db.NOTEBOOKS.items():
        assert (ROOT / "notebooks" / src).exists()
        assert re.search(rf"^  - [^:]+: {re.escape(page)}$", config, re.M), page


def test_docs_build_shows_the_examples_the_doc_tests_run():
    """The outputs on a page are those of the examples :func:`test_page_examples_run` runs."""
    db = _docs_build()
    assert db.MD_PAGES
    for page in db.MD_PAGES:
        ours = [b["code"] for b in db.md_blocks((DOCS / page).read_text(encoding="utf-8"))]
        assert ours == [b.code for b in blocks(DOCS / page) if not b.no_run], page


def test_changed_sources_make_the_executed_pages_stale(tmp_path, monkeypatch):
    """A changed code cell or example makes ``mkdocs build`` execute again; prose does not."""
    db = _docs_build()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "docs").mkdir()
    for src in db.NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / src, tmp_path / "notebooks" / src)
    for page in db.MD_PAGES:
        shutil.copy(DOCS / page, tmp_path / "docs" / page)
    monkeypatch.setattr(db, "ROOT", tmp_path)
    monkeypatch.setattr(db, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(db, "OUT", tmp_path / "docs" / "generated")
    monkeypatch.setattr(db, "STAMP", tmp_path / "docs" / "generated" / "stamp.json")
    db.OUT.mkdir()
    assert not db.is_fresh()  # nothing built yet
    for p in db.generated_files():
        p.write_text("{}", encoding="utf-8")
    db.STAMP.write_text(json.dumps({"digest": db.digest()}), encoding="utf-8")
    assert db.is_fresh() and db.build() is False  # up to date: nothing runs

    page = tmp_path / "docs" / db.MD_PAGES[0]
    page.write_text(page.read_text(encoding="utf-8") + "\nMore prose.\n", encoding="utf-8")
    assert db.is_fresh()
    page.write_text(page.read_text(encoding="utf-8") + "\n```python\nx = 1\n```\n", encoding="utf-8")
    assert not db.is_fresh()

    db.STAMP.write_text(json.dumps({"digest": db.digest()}), encoding="utf-8")
    nb_path = tmp_path / "notebooks" / next(iter(db.NOTEBOOKS))
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = "".join(code["source"]) + "\nprint('changed')"
    nb_path.write_text(json.dumps(nb), encoding="utf-8")
    assert not db.is_fresh()


def test_outputs_are_shown_as_a_reader_sees_them():
    """Plots become their PNG, progress widgets their final text, script payloads go;
    a warning or a numpy repr in an output fails the build."""
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    db = _docs_build()
    exec_ = db.EXEC_MIME
    widgets = {
        "bar": {
            "model_name": "HBoxModel",
            "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]},
        },
        "l": {"model_name": "HTMLModel", "state": {"value": "Train:\u2007100%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"value": 18.0, "max": 18.0}},
        "r": {"model_name": "HTMLModel", "state": {"value": "\u200718/18\u2007[00:03&lt;00:00]"}},
    }
    outputs = [
        new_output(
            "display_data",
            data={"application/javascript": "x", "application/vnd.holoviews_load.v0+json": "x"},
        ),
        new_output("display_data", data={"text/html": "<script>x()</script><style>a {}</style>"}),
        new_output(
            "display_data", data={"text/html": "<div></div>", exec_: ""}, metadata={exec_: {"id": "other"}}
        ),
        new_output(
            "execute_result",
            data={"text/html": "<div></div>", exec_: "", "text/plain": ":Curve"},
            metadata={exec_: {"id": "plot"}},
            execution_count=1,
        ),
        new_output(
            "display_data", data={db.WIDGET_MIME: {"model_id": "bar"}, "text/plain": "Train: 0%| | 0/18"}
        ),
        new_output(
            "display_data", data={"text/html": '<div class="xr-wrap">', "text/plain": "<xarray.Dataset>"}
        ),
        new_output("stream", name="stdout", text="done\n"),
    ]
    nb = new_notebook(cells=[new_code_cell("x", outputs=outputs)])
    nb.metadata["widgets"] = {db.WIDGET_STATE: {"state": widgets}}
    db.clean_outputs(nb, {"plot": b"\x89PNG"}, "nb")
    out = nb.cells[0].outputs
    assert [o.output_type for o in out] == ["execute_result", "display_data", "display_data", "stream"]
    assert out[0].data == {"image/png": "iVBORw==", "text/plain": ":Curve"}
    assert out[1].data == {"text/plain": "Train: 100%|██████████| 18/18 [00:03<00:00]"}
    assert out[2].data == {"text/plain": "<xarray.Dataset>"}
    nbformat.validate(nb)

    bad = [
        new_output("stream", name="stderr", text="x.py:1: UserWarning: careful\n"),
        new_output("stream", name="stderr", text="WARNING:param.main: marker option not found\n"),
        new_output("stream", name="stdout", text="{np.str_('linear'): 0.5}\n"),
        new_output("execute_result", data={"text/plain": "np.float64(0.5)"}, execution_count=1),
    ]
    for o in bad:
        with pytest.raises(db.DocsBuildError, match=r"nb, code cell 1 (prints a warning|shows a numpy repr)"):
            db.clean_outputs(new_notebook(cells=[new_code_cell("x", outputs=[o])]), {}, "nb")


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]' installs it)")
    site = tmp_path / "site"
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").exists()
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ["MultiRunMetricsWorkflow", "SweepRun", "save_netcdf", "sweep_panel"]:
        assert name in api
    _check_executed_pages(site)


def _pngs(html: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}', html)


def _check_executed_pages(site: Path) -> None:
    """The notebook pages and the robustness page show what the code printed and drew."""
    import nbformat

    db = _docs_build()
    for src, page in db.NOTEBOOKS.items():  # executed copies of the notebooks, cell for cell
        ours = nbformat.read(DOCS / page, as_version=4)
        theirs = nbformat.read(ROOT / "notebooks" / src, as_version=4)
        assert [c.source for c in ours.cells] == [c.source for c in theirs.cells], page
        assert all(c.execution_count for c in ours.cells if c.cell_type == "code"), page
    pages = {p: (site / p / "index.html").read_text(encoding="utf-8") for p in ["tutorial", "live_sweeps"]}
    pages["robustness_notebook"] = (site / "robustness_notebook" / "index.html").read_text(encoding="utf-8")
    for name, html in pages.items():
        assert "holoviews_load" not in html and "Bokeh.embed" not in html, f"{name} carries script payloads"
    tutorial = pages["tutorial"]
    assert (
        "to_xarray" in tutorial
        and "NetCDF identical: True" in tutorial
        and "&lt;xarray.Dataset&gt;" in tutorial
    )
    assert len(_pngs(tutorial)) >= 1  # the loss curves
    live = pages["live_sweeps"]
    assert "reused: 1" in live and "2 of 6 jobs of Fragile failed" in live
    assert len(_pngs(pages["robustness_notebook"])) >= 3  # two hvplot curves and the panel
    robustness = (site / "robustness" / "index.html").read_text(encoding="utf-8")
    assert "&lt;xarray.Dataset&gt;" in robustness and "&lt;AdaptiveRun NoiseCurve finished" in robustness
    images = re.findall(r'<img[^>]*src="\.\./(generated/robustness-[\w-]+\.png)"', robustness)
    assert images and all((site / i).stat().st_size > 5000 for i in images), images
