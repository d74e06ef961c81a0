"""Executing a shipped notebook as the tests do, and what its outputs must not show.

:func:`execute` runs a copy of a notebook of ``notebooks/`` in a real Jupyter kernel
(nbclient), in a directory of its own, with the kernel's temporary directory (``TMPDIR``)
under the test's: a notebook writes its sweeps to ``tempfile.mkdtemp()``, so they land
there and nothing is left in the working directory (nor in git's work tree).

:func:`quiet_problems` lists what a reader must not see in the executed notebook: a
warning on stderr (``WARNING:param.main: marker option not found ...``, a Python
warning), a numpy repr (``np.str_('linear')``, ``np.int64(15715)``), or a progress bar
left below its total (a ``tqdm`` widget whose saved text or state stopped at ``0/18``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

WARNING = re.compile(r"\b\w*(Warning|WARNING|warning)\b")
NUMPY_REPR = re.compile(r"\bnp\.(str_|bytes_|bool_|u?int\d*|float\d*|complex\d*|datetime64|timedelta64)\(")
TQDM_COUNT = re.compile(r"\|\s*(\d+)/(\d+) \[")
TEXT_MIMES = ("text/plain", "text/html", "text/markdown")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def execute(name: str, tmp_path: Path, monkeypatch: Any, timeout: int = 300) -> Any:
    """Run ``notebooks/<name>`` top to bottom in a copy under ``tmp_path / "nb"``; the
    executed notebook (nbformat), with no cell in error."""
    import nbclient
    import nbformat

    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(NOTEBOOKS / name, work / name)
    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    # the kernel is a child process: give it the test-only Hydra plugins that conftest
    # puts on this process's sys.path, so both see the same plugin set
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])))
    # a notebook shows figures inline (CI exports MPLBACKEND=Agg, which would hide them)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(work / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that errors
    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"cell errored: {cell.source[:200]!r}: {errors[0]['ename']}"
    return nb


def left_in_work_dir(name: str, tmp_path: Path) -> list[str]:
    """What the notebook left beside itself (its sweeps belong in a temporary directory)."""
    return sorted(p.name for p in (tmp_path / "nb").iterdir() if p.name != name)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def quiet_problems(nb: Any) -> list[str]:
    """What a reader must not see in the executed notebook ``nb`` (empty if nothing)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({cell.source.strip().splitlines()[0][:60]!r})"
        for o in cell.get("outputs", []):
            texts = []
            if o.get("output_type") == "stream":
                text = _text(o.get("text", ""))
                if o.get("name") == "stderr" and WARNING.search(text):
                    problems.append(f"{where}: a warning on stderr: {text.strip()[:300]!r}")
                texts.append(text)
            data = o.get("data", {})
            texts += [_text(data[m]) for m in TEXT_MIMES if m in data]
            for text in texts:
                found = NUMPY_REPR.search(text)
                if found:
                    at = text[max(found.start() - 60, 0) : found.end() + 30]
                    problems.append(f"{where}: a numpy repr: {at!r}")
            if "application/vnd.jupyter.widget-view+json" in data:
                for n, total in TQDM_COUNT.findall(_text(data.get("text/plain", ""))):
                    if int(n) < int(total):
                        problems.append(f"{where}: a progress bar's text stopped at {n}/{total}")
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for model_id, model in state.items():
        s = model.get("state", {})
        if model.get("model_name") in ("FloatProgressModel", "IntProgressModel"):
            if s.get("max") and s.get("value", 0) < s["max"]:
                problems.append(f"progress widget {model_id} stopped at {s.get('value')}/{s['max']}")
    return problems


def assert_quiet(nb: Any) -> None:
    """:func:`quiet_problems` is empty (else they are the assertion's message)."""
    problems = quiet_problems(nb)
    assert not problems, json.dumps(problems, indent=1)
