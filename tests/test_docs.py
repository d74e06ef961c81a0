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


def test_notebook_pages_are_the_notebooks():
    """The site renders the notebooks that CI executes (links, not copies)."""
    for name in ["tutorial.ipynb", "live_sweeps.ipynb"]:
        page = DOCS / name
        assert page.is_symlink() and page.resolve() == (ROOT / "notebooks" / name).resolve()


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
    tutorial = (site / "tutorial" / "index.html").read_text(encoding="utf-8")
    assert "to_xarray" in tutorial
