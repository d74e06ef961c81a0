"""A refused ``%%mushin_sweep`` or panel Run changes nothing and says why.

Refused: a bad option or value, another sweep running in this kernel, a sweep
directory another process writes. Each test snapshots the directory tree (paths,
sizes, mtimes, contents) and the namespace / panel state before the refused call
and compares after: equal, and the message names the problem in the surface's terms
(the magic's option names; the panel's controls, in a red alert).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from mushin_nb import MultiRunMetricsWorkflow, RobustnessCurve, multirun

pytest.importorskip("panel")

SQUARE = """
def task(x: int, k: int = 1) -> dict:
    return dict(y=x * k)
"""


class Gated(MultiRunMetricsWorkflow):
    """Each job waits until the file ``gate`` exists: a sweep that keeps running."""

    @staticmethod
    def task(x: int, gate: str) -> dict:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return dict(y=x)


class Sq(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=x * x)


class Curve(RobustnessCurve):
    @staticmethod
    def task(epsilon: float) -> dict:
        return dict(acc=1.0 - epsilon)


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under ``root`` (and ``root``): kind, size, mtime, content hash."""
    out: dict[str, tuple] = {}
    for p in [root, *sorted(root.rglob("*"))]:
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", st.st_mtime_ns)
        else:
            out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="module")
def ip():
    from _ipy import shell

    return shell()


@pytest.fixture()
def finished(tmp_path, monkeypatch):
    """A finished sweep in tmp_path/done, the cwd tmp_path (default sweeps land here)."""
    monkeypatch.chdir(tmp_path)
    wf = Sq()
    wf.run(x=multirun([1, 2]), working_dir=str(tmp_path / "done"), progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [1, 4]
    return tmp_path / "done"


@pytest.fixture()
def gated(tmp_path):
    """A sweep started with ``wf.start`` that runs until the gate file is made."""
    gate = tmp_path / "gate"
    wf = Gated()
    run = wf.start(x=multirun([1, 2]), gate=str(gate), working_dir=str(tmp_path / "running"))
    try:
        yield run
    finally:
        gate.touch()
        run.wait(60)
    assert run.dataset["y"].values.tolist() == [1, 2]  # the running sweep was not disturbed


@pytest.fixture()
def with_past(finished):
    """A workflow object that has run (its state is what a refused start could reset)."""
    wf = Sq()
    wf.run(x=multirun([3]), working_dir=str(finished.parent / "sq"), progress=False)
    return wf


def _bind_namespace(ip, sq=None) -> dict[str, object]:
    """A namespace as a user leaves it: an earlier Dataset, run, task and workflow."""
    ip.run_cell(
        "from mushin_nb import MultiRunMetricsWorkflow\n"
        "def task(x: int) -> dict:\n"
        "    return dict(old=x)\n"
        "ds = 'an earlier Dataset'\n"
        "ds_run = 'an earlier run'\n"
    )
    ip.user_ns["sq"] = sq if sq is not None else Sq()
    for k in ("ds2", "ds2_run"):
        ip.user_ns.pop(k, None)
    return {k: ip.user_ns[k] for k in ("task", "ds", "ds_run", "sq")}


def _same_namespace(ip, before: dict[str, object]) -> None:
    for k, v in before.items():
        assert ip.user_ns.get(k) is v, f"{k} was rebound by a refused call"
    assert "ds2" not in ip.user_ns and "ds2_run" not in ip.user_ns


def _refused(ip, line: str, body: str = SQUARE) -> str:
    res = ip.run_cell(f"%%mushin_sweep {line}\n{body}")
    assert isinstance(res.error_in_exec, UsageError), res.error_in_exec
    return str(res.error_in_exec)


@pytest.mark.parametrize(
    "line, says",
    [
        ("x=1,2 --on-error maybe", ["--on-error", "maybe"]),
        ("x=1,2 --bogus", ["--bogus"]),
        ("x=1,2 -j 0", ["-j/--jobs 0"]),
        ("x=1,2 --force", ["--force goes with --resume"]),
        ("x=1,2 --save r.nc -o 2bad", ["-o 2bad", "Python name"]),
        ("x=1,2 --overwrite", ["--overwrite goes with --save"]),
        ("x=abc", ["'x=abc'", "integer"]),
        ("x=1,2 nope=3", ["'nope'", "accepts"]),
        # found by the engine, said with the magic's option names
        ("x=1,2 -j 2", ["-j/--jobs 2 needs a parallel launcher", "--launcher joblib", "Nothing was started"]),
        ("x=1,2 --launcher nope", ["--launcher nope is not a launcher"]),
    ],
)
def test_magic_refuses_a_bad_option_or_value_and_changes_nothing(ip, finished, tmp_path, line, says):
    before = _bind_namespace(ip)
    disk = tree(tmp_path)
    msg = _refused(ip, f"{line} --no-view" if " -o " in line else f"{line} -o ds2 --no-view")
    for text in says:
        assert text in msg, msg
    assert "working_dir=" not in msg and "jobs=" not in msg
    _same_namespace(ip, before)  # `task` too: the body's definition was put back
    assert tree(tmp_path) == disk


def test_magic_refuses_paths_in_its_own_terms(ip, finished, tmp_path):
    before = _bind_namespace(ip)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "out.nc").write_text("not mine to replace")
    disk = tree(tmp_path)
    msg = _refused(ip, f"x=1 -o ds2 --no-view -d {tmp_path / 'afile'}")
    assert "-d/--working-dir" in msg and "is a file" in msg
    msg = _refused(ip, f"x=1 -o ds2 --no-view -d {tmp_path / 'nowhere'} --resume")
    assert "--resume" in msg and "no mushin_nb sweep" in msg
    msg = _refused(ip, f"x=1 -o ds2 --no-view --save {tmp_path / 'out.nc'}")
    assert "--overwrite" in msg
    msg = _refused(ip, f"x=1 -o ds2 --no-view --save {tmp_path}")
    assert "is a directory" in msg
    _same_namespace(ip, before)
    assert tree(tmp_path) == disk


def test_magic_started_while_another_sweep_runs_changes_nothing(ip, finished, with_past, tmp_path, gated):
    wf = with_past
    before = _bind_namespace(ip, wf)
    state = dict(vars(wf))
    disk = tree(tmp_path, skip=gated.sweep_dir)  # the running sweep writes its own directory
    # into the finished sweep's directory (which a refused start once archived and rewrote),
    # into a new default directory, and with a workflow object of the namespace
    for line in (f"x=1,2 -d {finished}", "x=1,2", "--workflow sq x=5,6", f"x=1 -d {finished} --resume"):
        msg = _refused(ip, f"{line} -o ds2 --no-view")
        assert "another sweep is running in this kernel" in msg and "stop it" in msg, msg
        assert "Nothing was started or changed" in msg
    assert not (tmp_path / "multirun").exists()
    assert {k: v for k, v in vars(wf).items()} == state and all(vars(wf)[k] is v for k, v in state.items()), (
        "the workflow object of the namespace was changed by a refused call"
    )
    _same_namespace(ip, before)
    assert tree(tmp_path, skip=gated.sweep_dir) == disk
    assert not gated.done


def test_magic_on_a_directory_another_process_writes_changes_nothing(ip, finished, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from mushin_nb._lock import SweepLock\n"
            f"lock = SweepLock({str(finished)!r}).acquire()\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n"
            "lock.release()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _bind_namespace(ip)
        disk = tree(tmp_path)
        msg = _refused(ip, f"x=1,2 -d {finished} -o ds2 --no-view")
        assert f"-d/--working-dir '{finished}' is being written by another sweep" in msg, msg
        assert str(holder.pid) in msg and "working_dir=" not in msg
        _same_namespace(ip, before)
        assert tree(tmp_path) == disk
    finally:
        holder.stdin.close()
        holder.wait(30)


def _panel_state(p) -> dict[str, object]:
    return dict(
        run=p.run,
        view=p.view,
        values={k: list(v.values) for k, v in p.pickers.items()},
        texts={k: v.input.value for k, v in p.pickers.items()},
        working_dir=p.working_dir,
        resume=p.resume,
        launcher=p.launcher,
        workers=p.workers,
        on_error=p.on_error,
        n_jobs=p.n_jobs,
        failures=list(p.failures),
        view_area=list(p.view_area.objects),
        cancel=p.cancel_button.disabled,
        progress=p.progress.visible,
        last_saved=p.last_saved,
    )


def test_panel_run_while_another_sweep_runs_changes_nothing(finished, tmp_path, gated):
    p = Sq().panel(x=[7, 8], working_dir=str(finished), interval=None)
    assert not p.reason and not p.refusal_alert.visible
    state = _panel_state(p)
    disk = tree(tmp_path, skip=gated.sweep_dir)
    p.run_button.clicks += 1  # what a click does
    assert p.message.startswith("Cannot run: another sweep is running in this kernel"), p.message
    assert p.refusal_alert.visible and "click Run again" in p.refusal_alert.object
    assert _panel_state(p) == state
    assert tree(tmp_path, skip=gated.sweep_dir) == disk
    # once that sweep ends, Run works and the alert goes
    (tmp_path / "gate").touch()
    gated.wait(60)
    p.run_button.clicks += 1
    assert p.wait(60)["y"].values.tolist() == [49, 64]
    assert not p.refusal_alert.visible


def test_panel_refusals_by_the_engine_are_said_with_its_controls(finished, tmp_path):
    (tmp_path / "afile").write_text("x")
    p = Sq().panel(x=[1, 2], working_dir=str(tmp_path / "afile"), interval=None)
    state = _panel_state(p)
    disk = tree(tmp_path)
    p.run_button.clicks += 1
    assert "working directory" in p.message and "is a file" in p.message, p.message
    assert "working_dir=" not in p.message and p.refusal_alert.visible
    assert _panel_state(p) == state and tree(tmp_path) == disk


def test_refine_while_another_sweep_runs_puts_the_widgets_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = Curve().panel(epsilon=[0.0, 1.0], working_dir=str(tmp_path / "curve"), interval=None)
    p.run_button.clicks += 1
    p.wait(60)
    gate = tmp_path / "gate"
    other = Gated().start(x=multirun([1]), gate=str(gate), working_dir=str(tmp_path / "running"))
    try:
        p.working_dir, p.resume = "", False  # what the user left in the panel
        state = _panel_state(p)
        disk = tree(tmp_path, skip=other.sweep_dir)
        p.refine_start, p.refine_stop, p.refine_count = 0.0, 1.0, 1
        p.refine_button.clicks += 1
        assert p.message.startswith("Cannot run: another sweep is running"), p.message
        assert p.refusal_alert.visible
        assert _panel_state(p) == state  # the epsilons, working directory and resume as they were
        assert tree(tmp_path, skip=other.sweep_dir) == disk
    finally:
        gate.touch()
        other.wait(60)
    p.refine_button.clicks += 1  # now it runs: only the new epsilon
    assert p.wait(60)["acc"].values.tolist() == [1.0, 0.5, 0.0] and p.run.skipped == 2
    assert p.working_dir == str(tmp_path / "curve") and p.resume


def test_a_misspelled_launcher_is_refused_before_anything_exists_in_every_surface(ip, finished, tmp_path):
    """``jobllib`` (and Hydra's own spellings of a wrong choice) is refused by the API,
    the magic and the panel before any directory or progress bar exists, listing the
    valid names with a did-you-mean, each in its surface's terms."""
    disk = tree(tmp_path)
    where = str(tmp_path / "typo")
    api = [
        (
            dict(launcher="jobllib"),
            ["launcher='jobllib' is not a launcher", "did you mean 'joblib'", "'mushin_nb'"],
        ),
        (
            dict(overrides=["hydra/launcher=jobllib"]),
            ["hydra/launcher=jobllib", "mushin_nb_joblib", "'joblib'"],
        ),
        (dict(overrides=["hydra.launcher=jobllib"]), ["plain value", "launcher='jobllib'"]),
        (dict(overrides=["hydra/sweeper=basicc"]), ["hydra/sweeper=basicc", "did you mean 'basic'"]),
        (dict(sweeper="basicc"), ["sweeper='basicc'", "did you mean 'basic'"]),
    ]
    for kw, says in api:
        with pytest.raises(ValueError) as info:
            Sq().run(x=multirun([1, 2]), working_dir=where, progress=False, **kw)
        for text in says:
            assert text in str(info.value), (kw, str(info.value))
    before = _bind_namespace(ip)
    magic = [
        ("x=1,2 --launcher jobllib", ["--launcher jobllib is not a launcher", "did you mean 'joblib'"]),
        ("x=1,2 hydra/launcher=jobllib", ["on the line: hydra/launcher=jobllib", "did you mean 'joblib'"]),
        ("x=1,2 hydra.launcher=jobllib", ["'hydra.launcher=jobllib'", "--launcher jobllib"]),
        ("x=1,2 --panel --launcher jobllib", ["--launcher jobllib is not a launcher"]),
    ]
    for line, says in magic:
        msg = _refused(ip, f"{line} -o ds2 --no-view -d {where}")
        for text in says:
            assert text in msg, msg
        assert "launcher='" not in msg and "overrides=" not in msg and "hydra/--launcher" not in msg, msg
    _same_namespace(ip, before)
    p = Sq().panel(x=[1, 2], working_dir=where, interval=None)
    assert "joblib" in p.param.launcher.objects.values()  # the menu offers the installed launchers
    assert p.start(launcher="jobllib") is None
    assert "launcher jobllib is not a launcher" in p.message and "did you mean 'joblib'" in p.message
    assert "launcher='" not in p.message and p.refusal_alert.visible
    with pytest.raises(ValueError, match="did you mean 'joblib'"):
        Sq().panel(x=[1, 2], launcher="jobllib")
    assert tree(tmp_path) == disk and not (tmp_path / "multirun").exists()


def test_the_docs_list_every_launcher_name_the_refusals_offer():
    """docs/scaling.md's launcher table has a row per entry of the launcher table, with
    its Hydra config (what Hydra lists, e.g. mushin_nb_joblib) and its aliases."""
    from pathlib import Path

    from mushin_nb._launchers import LAUNCHERS

    rows = {
        line.split("|")[1].strip().split()[0].strip("`"): line
        for line in (Path(__file__).parents[1] / "docs" / "scaling.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for info in LAUNCHERS:
        assert info.name in rows, info.name
        for name in (info.hydra, *info.internal, *(a for a in info.aliases if a)):
            assert f"`{name}`" in rows[info.name], (info.name, name)


from test_full_disk import Big  # noqa: E402  (the full-disk test's task; small_disk is in conftest)


def test_a_sweep_stopped_by_a_full_disk_is_said_with_each_surfaces_controls(ip, small_disk, monkeypatch):
    """The engine's SweepError (fix: resume to run the rest) said as the magic's options
    (shown without frames inside mushin_nb) and with the panel's controls."""
    from mushin_nb import SweepError

    monkeypatch.chdir(small_disk.parent)
    ip.user_ns["Big"] = Big
    wd = small_disk / "cell"
    res = ip.run_cell(f"%mushin_sweep --workflow Big x=range(12) -o big --no-view -d {wd}")
    err = res.error_in_exec
    assert isinstance(err, SweepError) and err.fix == "resume_rest", err
    shown = "\n".join(err._render_traceback_())  # what IPython shows for it
    assert "No space left on device" in shown and f"run the cell again with -d {wd} --resume to run" in shown
    for term in ("resume=True", "working_dir=", "Traceback", "mushin_nb/"):
        assert term not in shown, (term, shown)
    subprocess.run(["rm", "-rf", str(wd)], check=True)  # room for the panel's sweep
    p = Big().panel(x=list(range(12)), working_dir=str(small_disk / "panel"), interval=None)
    p.run_button.clicks += 1
    assert p.run is not None and p.run.join(120)
    p.view.join(30)
    p.view.tick(force=True)
    assert p.message.startswith("Stopped: The sweep of Big stopped: No space left on device"), p.message
    assert "tick resume, keep working directory" in p.message and "resume=True" not in p.message


LAB_PLUGIN = """
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LabSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lab", path="file://{conf}")
"""

LAB_RUN = """
from mushin_nb import MultiRunMetricsWorkflow, multirun
class Sq(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=x * x)
wf = Sq()
wf.run(x=multirun([1, 2]), launcher="lab_yaml", working_dir="{wd}", progress=False)
print(wf.to_xarray()["y"].values.tolist())
try:
    Sq().run(x=multirun([1, 2]), launcher="lab_yml", working_dir="{wd}2", progress=False)
except ValueError as e:
    print(e)
"""


def test_a_launcher_hydra_finds_on_its_search_path_is_taken_and_named_in_refusals(tmp_path):
    """A lab's launcher given as a YAML config on Hydra's search path (no ConfigStore
    entry) is a launcher Hydra finds: accepted by its name, and offered when a name is
    misspelled."""
    conf = tmp_path / "conf"
    (conf / "hydra" / "launcher").mkdir(parents=True)
    (conf / "hydra" / "launcher" / "lab_yaml.yaml").write_text(
        "_target_: hydra._internal.core_plugins.basic_launcher.BasicLauncher\n"
    )
    plugin = tmp_path / "site" / "hydra_plugins" / "lab_search_path"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(LAB_PLUGIN.format(conf=conf))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run(
        [sys.executable, "-c", LAB_RUN.format(wd=tmp_path / "sw")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[1, 4]", out.stdout
    assert "launcher='lab_yml' is not a launcher" in lines[1] and "did you mean 'lab_yaml'" in lines[1]
    assert "'lab_yaml'" in lines[1].partition("choose one of")[2]
    assert not (tmp_path / "sw2").exists()
