"""The Dask and Ray launchers without a cluster: their plugin modules stay light,
their configs and launcher-table entries, settings refused or explained before
anything is submitted, and the settings the docs show are real ones. (Sweeps on real
clusters: tests/test_cluster_dask.py, tests/test_cluster_ray.py.)"""

import ast
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_tasks import Work

from mushin_nb import multirun

ROOT = Path(__file__).resolve().parents[1]
HAS_DASK = importlib.util.find_spec("distributed") is not None
HAS_RAY = importlib.util.find_spec("ray") is not None


def test_plugin_modules_import_no_engine():
    """Hydra imports every plugin module when it scans: the engines stay unimported."""
    code = (
        "import sys\n"
        "import hydra_plugins.mushin_nb_plugins.dask_launcher, hydra_plugins.mushin_nb_plugins.ray_launcher\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()\n"
        "print(sorted(m for m in ('distributed', 'dask', 'ray') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name,hydra,has", [("dask", "mushin_nb_dask", HAS_DASK), ("ray", "mushin_nb_ray", HAS_RAY)]
)
def test_table_entries_and_configs(name, hydra, has):
    from mushin_nb._launchers import installed_launchers, launcher_fields, resolve_launcher, workers_overrides

    if not has:
        with pytest.raises(ValueError, match=rf"pip install 'mushin-nb\[{name}\]'"):
            resolve_launcher(name)
        return
    info = resolve_launcher(name)
    assert info.hydra == hydra and name in installed_launchers()
    assert workers_overrides(info, 3) == ["hydra.launcher.n_jobs=3"]
    fields = launcher_fields(info)
    assert fields is not None and "address" in fields and "n_jobs" in fields


@pytest.mark.skipif(not HAS_DASK, reason="distributed is not installed (pip install 'mushin-nb[dask]')")
def test_an_unknown_setting_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="has no setting 'adress'; did you mean 'address'") as ei:
        Work().start(
            x=multirun([1, 2]),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"adress": "x"},
        )
    assert "Nothing was submitted" in str(ei.value)
    assert not (tmp_path / "s").exists()


def test_the_panels_launcher_settings_are_checked_before_a_run(tmp_path):
    """The sweep panel's "launcher settings" field: read as name=value items, checked
    against the chosen launcher's settings (Run disabled, saying why), passed to the
    run as launcher_settings=; a dict setting reaches the composed launcher config."""
    from mushin_nb.notebook.panel import sweep_panel

    p = sweep_panel(Work(), x=[1, 2], launcher="joblib", launcher_settings="partition=gpu", interval=None)
    assert p.run_button.disabled
    assert "launcher settings: launcher joblib has no setting 'partition'; its settings are" in p.reason
    assert p.start() is None and "has no setting 'partition'" in p.message  # nothing ran
    p.launcher_settings = "n_jobs"
    assert p.run_button.disabled and "'n_jobs' is not name=value" in p.reason
    p.launcher_settings = "n_jobs=1,2"
    assert p.run_button.disabled and "a setting takes one value" in p.reason
    p.launcher_settings = "n_jobs=2 prefer=processes"
    assert not p.run_button.disabled
    assert p.kwargs()["launcher_settings"] == {"n_jobs": 2, "prefer": "processes"}
    p.launcher = "mushin_nb"  # a launcher without these settings: refused again
    assert p.run_button.disabled and "launcher mushin_nb has no setting 'n_jobs'" in p.reason
    p.launcher = "joblib"
    p.working_dir = str(tmp_path / "s")
    p.run_button.clicks += 1
    ds = p.wait(300)
    assert ds["y"].values.tolist() == [1, 4]
    cfg = (tmp_path / "s" / "multirun.yaml").read_text()
    assert "n_jobs: 2" in cfg and "prefer: processes" in cfg  # what the launcher ran with


def test_the_magics_panel_takes_the_lines_launcher_settings(tmp_path, monkeypatch):
    """``%%mushin_sweep --panel ... hydra.launcher.<name>=<value>``: the panel's field."""
    from _ipy import shell

    monkeypatch.chdir(tmp_path)
    ip = shell()
    ip.user_ns.pop("p", None)
    res = ip.run_cell(
        "%%mushin_sweep x=1,2 --panel -o p --launcher joblib hydra.launcher.n_jobs=2\n"
        "def task(x: int) -> dict:\n    return dict(y=x)\n"
    )
    assert res.success, res.error_in_exec
    p = ip.user_ns["p"]
    assert p.launcher == "joblib" and p.launcher_settings == "hydra.launcher.n_jobs=2" and not p.reason
    assert p.kwargs()["launcher_settings"] == {"n_jobs": 2}


@pytest.mark.skipif(not HAS_DASK, reason="distributed is not installed (pip install 'mushin-nb[dask]')")
def test_no_scheduler_at_the_address_says_so(tmp_path):
    """Not an OSError (the run would call it a file-system problem): what to check."""
    from mushin_nb._remote import ClusterConnectionError

    t0 = time.time()
    with pytest.raises(ClusterConnectionError) as ei:
        Work().run(
            x=multirun([1]),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"address": "tcp://127.0.0.1:9", "timeout": 2},
            progress=False,
        )
    msg = str(ei.value)
    assert "no Dask scheduler answered there" in msg and "tcp://127.0.0.1:9" in msg and "address" in msg
    assert not isinstance(ei.value, OSError)
    assert time.time() - t0 < 120


@pytest.mark.skipif(not HAS_DASK, reason="distributed is not installed (pip install 'mushin-nb[dask]')")
def test_a_dict_setting_that_is_not_a_dict(tmp_path):
    with pytest.raises(TypeError, match=r"launcher_settings=\{'resources': 'GPU'\} .*give a dict"):
        Work().run(
            x=multirun([1]),
            working_dir=str(tmp_path / "s"),
            launcher="dask",
            launcher_settings={"resources": "GPU"},
            progress=False,
        )


def _no_run_settings(engine: str) -> set[str]:
    """The launcher_settings keys (and hydra.launcher.X) of the docs' cluster blocks for ``engine``."""
    text = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    keys: set[str] = set()
    for m in re.finditer(r"<!-- no-run -->\n```python\n(.*?)^```", text, re.S | re.M):
        code = m.group(1)
        if f'launcher="{engine}"' not in code:
            continue
        keys |= set(re.findall(r"hydra\.launcher\.(\w+)=", code))
        for node in ast.walk(ast.parse(code)):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "launcher_settings"
                and isinstance(node.value, ast.Dict)
            ):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return keys


@pytest.mark.parametrize("engine,has", [("dask", HAS_DASK), ("ray", HAS_RAY)])
def test_settings_in_the_docs_are_real_fields(engine, has):
    if not has:
        pytest.skip(f"{engine} is not installed (pip install 'mushin-nb[{engine}]')")
    from mushin_nb._launchers import launcher_fields, resolve_launcher

    used = _no_run_settings(engine)
    assert used, f"docs/scaling.md shows no {engine} settings"
    fields = set(launcher_fields(resolve_launcher(engine)) or [])
    assert used <= fields, f"not settings of launcher={engine!r}: {sorted(used - fields)}"


UNPICKLABLE = """
import sys
import threading

from mushin_nb import MultiRunMetricsWorkflow, multirun

LOCK = threading.Lock()  # a notebook global the task uses: cloudpickle cannot send it


class Locked(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        with LOCK:
            return dict(y=x)


if __name__ == "__main__":
    try:
        Locked().run(x=multirun([1]), working_dir=sys.argv[1], launcher=sys.argv[2],
                     launcher_settings={"address": sys.argv[3]}, progress=False)
    except Exception as e:
        print(type(e).__name__, e)
"""


@pytest.mark.parametrize(
    "engine,address,has", [("dask", "tcp://127.0.0.1:9", HAS_DASK), ("ray", "127.0.0.1:9", HAS_RAY)]
)
def test_a_task_that_cannot_be_pickled_is_refused_naming_what(tmp_path, engine, address, has):
    """Refused before connecting to the cluster (the address here has none), naming the
    notebook global at fault and the fix."""
    if not has:
        pytest.skip(f"{engine} is not installed (pip install 'mushin-nb[{engine}]')")
    script = tmp_path / "locked.py"
    script.write_text(UNPICKLABLE)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s"), engine, address],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert text.startswith("SweepCodeError"), text + out.stderr[-2000:]
    assert "LOCK (a lock)" in text and "inside the task" in text and "Nothing was submitted" in text
    assert list((tmp_path / "s").glob("*/.hydra")) == []  # no job ran
