"""Starting and stopping the Dask and Ray test clusters from the project's own
scripts (scripts/cluster/{dask,ray}_{start,stop}.sh), for tests/test_cluster_dask.py
and tests/test_cluster_ray.py.

A cluster's packages missing: the tests are skipped with the reason on a developer
machine, and fail when ``CI`` is set. A cluster that cannot start fails the tests
with the script's output. Stopping must leave none of the cluster's processes (the
sessions the start script recorded) running.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "cluster"
HERE = Path(__file__).resolve().parent


def require(module: str, command: str, extra: str) -> None:
    """Skip (or, in CI, fail) when the engine is not installed."""
    missing = []
    if importlib.util.find_spec(module) is None:
        missing.append(f"the Python package {module!r}")
    if not _command(command):
        missing.append(f"the {command!r} command")
    if missing:
        why = f"{' and '.join(missing)} not installed (pip install 'mushin-nb[{extra}]')"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {extra} cluster tests, but {why}")
        pytest.skip(why)


def _command(name: str) -> str | None:
    venv = Path(sys.executable).parent / name
    return str(venv) if venv.exists() else shutil.which(name)


def env() -> dict[str, str]:
    """The environment of the cluster's processes: this Python's tools first, and
    the tests' modules (cluster_tasks, the test Hydra plugins) importable."""
    e = dict(os.environ)
    e["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")])
    e["PYTHON"] = sys.executable
    e["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE / "plugins"), str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])
    )
    return e


def start(kind: str, *args: str, timeout: float = 1800, settings: dict | None = None) -> Path:
    """Run ``<kind>_start.sh STATE_DIR args`` (``settings``: its environment variables,
    e.g. ``{"RAY_PORT": "6391"}``); the state directory."""
    state = Path(tempfile.mkdtemp(prefix=f"mushin-{kind}-"))
    try:
        p = subprocess.run(
            ["bash", str(SCRIPTS / f"{kind}_start.sh"), str(state), *args],
            env={**env(), **(settings or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        stop(kind, state, check=False)
        pytest.fail(f"the {kind} test cluster did not start within {e.timeout} s: {e.stderr!r:.3000}")
    if p.returncode != 0:
        stop(kind, state, check=False)
        pytest.fail(
            f"the {kind} test cluster did not start (scripts/cluster/{kind}_start.sh exited "
            f"{p.returncode}):\n{p.stdout[-1000:]}\n{p.stderr[-4000:]}"
        )
    print(p.stdout.strip(), file=sys.stderr)
    return state


def sessions(state: Path, which: str = "*") -> list[int]:
    """The session ids a start script recorded (``which``: ``sids<which>`` files)."""
    out = []
    for f in state.glob(f"sids{which}"):
        out += [int(x) for x in f.read_text().split()]
    return out


def alive_in(sids: list[int]) -> list[str]:
    """The live (not zombie) processes of the sessions ``sids``."""
    out = []
    for sid in sids:
        p = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True, text=True)
        out += [
            ln.strip() for ln in p.stdout.splitlines() if ln.split() and not ln.split()[1].startswith("Z")
        ]
    return out


def stop(kind: str, state: Path, *, check: bool = True, args: tuple[str, ...] = ()) -> None:
    """Run ``<kind>_stop.sh STATE_DIR``; with ``check``, fail if any of the cluster's
    processes is still running afterwards."""
    sids = sessions(state, "-node" if args == ("node",) else "*")
    p = subprocess.run(
        ["bash", str(SCRIPTS / f"{kind}_stop.sh"), str(state), *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if not check:
        return
    left = alive_in(sids)
    for _ in range(50):
        if not left:
            break
        time.sleep(0.1)
        left = alive_in(sids)
    assert p.returncode == 0 and not left, (
        f"{kind}_stop.sh left processes running (exit {p.returncode}): {left}\n{p.stderr[-2000:]}"
    )
    if not args:
        shutil.rmtree(state, ignore_errors=True)


def wait_for(cond, timeout: float, what: str, run=None):
    """Poll ``cond()`` until it is truthy (its value) or fail saying ``what`` (at once,
    with the run's own error, if ``run`` ends first)."""
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        if run is not None and run.done:
            run.wait()  # raises the error that ended it, if any
            raise AssertionError(f"the run ended before {what}: {run!r}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def on_disk(sweep: Path) -> dict:
    """{x: status} of the job records in a sweep directory (one swept ``x``)."""
    import json

    out = {}
    for f in sweep.glob("*/mushin_result.json"):
        d = json.loads(f.read_text())
        out[d["index"][0]] = d["status"]
    return out


def watch(run, every: float = 0.05) -> list[tuple[int, int]]:
    """(done, running) cells of ``run.dataset`` until the run ends."""
    seen = []
    while not run.done:
        st = run.dataset["status"]
        seen.append((int((st == "done").sum()), int((st == "running").sum())))
        time.sleep(every)
    return seen


MAIN_SCRIPT = """
import json
import os
import sys

from mushin_nb import MultiRunMetricsWorkflow, multirun


def helper(x):  # defined in __main__: reaches the workers by value
    return 10 * x


class Local(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=helper(x), pid=os.getpid())


if __name__ == "__main__":
    wf = Local()
    wf.run(x=multirun([1, 2, 3]), working_dir=sys.argv[1], launcher=sys.argv[2],
           launcher_settings=json.loads(sys.argv[3]), progress=False)
    ds = wf.to_xarray()
    print(json.dumps({"y": ds["y"].values.tolist(), "pids": sorted(set(ds["pid"].values.tolist())),
                      "me": os.getpid()}))
"""


def run_main_script(tmp_path: Path, launcher: str, settings: str, extra_env: dict | None = None) -> dict:
    """Run a sweep from a script whose workflow is defined in ``__main__`` (as in a
    notebook); its directory is not on the workers' path."""
    import json

    script = tmp_path / "main_sweep.py"
    script.write_text(MAIN_SCRIPT)
    e = env()
    e.update(extra_env or {})
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "main_sweep"), launcher, settings],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])
