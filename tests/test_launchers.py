"""Launchers: the fast in-process launcher (default) behaves as Hydra's basic
launcher; joblib and submitit_local stream results, capture failures, resume
and cancel. Real Hydra launchers, real processes, real files."""

import importlib.util
import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from hydra_zen import launch, make_config
from omegaconf import OmegaConf

from mushin_nb import MultiRunMetricsWorkflow, SweepError, multirun

try:  # tasks of this module travel to worker processes by value
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
except Exception:  # pragma: no cover
    pass
try:
    from joblib.externals import cloudpickle as _jl_cloudpickle

    _jl_cloudpickle.register_pickle_by_value(sys.modules[__name__])
except Exception:  # pragma: no cover
    pass

LAUNCHERS = ["basic", None]  # None: the default (mushin_nb's fast launcher)


class Probe(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, name: str, scale: float) -> dict:
        logging.getLogger("probe").info(f"job x={x} name={name}")
        if x == 3:
            raise ValueError("x=3 is broken")
        return dict(y=x * scale, cwd=os.getcwd(), n=len(name))


def _run(tmp: Path, launcher, **kw):
    wf = Probe()
    try:
        wf.run(
            x=multirun([1, 2, 3]),
            name=multirun(["a b", "1", "it's ü", "x" * 30 + " " + "y" * 70]),
            scale=0.5,
            working_dir=str(tmp),
            launcher=launcher,
            progress=False,
            overrides=["hydra.sweep.subdir=x_${x}_${hydra.job.num}"],
            **kw,
        )
    except SweepError as e:
        return wf, e
    raise AssertionError("expected a SweepError for x=3")


def _normalized(text: str, sweep: Path, run_id: str | None) -> dict:
    text = text.replace(str(sweep), "<SWEEP>")
    if run_id:
        text = text.replace(run_id, "<RUN>")
    d = yaml.safe_load(text)
    if isinstance(d, dict) and "hydra" in d:
        h = d["hydra"]
        h.pop("launcher", None)
        h["runtime"]["choices"].pop("hydra/launcher", None)
        h["overrides"]["hydra"] = [o for o in h["overrides"]["hydra"] if not o.startswith("hydra/launcher=")]
    return d


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = {}
    for launcher in LAUNCHERS:
        d = tmp_path_factory.mktemp(f"sweep_{launcher}")
        out[launcher] = (d, *_run(d, launcher))
    return out


def test_same_job_dirs_and_files_as_basic(both):
    (da, wfa, _), (db, wfb, _) = both["basic"], both[None]
    ra, rb = wfa.last_run.run_id, wfb.last_run.run_id
    dirs_a = sorted(p.parent.relative_to(da).as_posix() for p in da.glob("*/.hydra"))
    dirs_b = sorted(p.parent.relative_to(db).as_posix() for p in db.glob("*/.hydra"))
    assert dirs_a == dirs_b and len(dirs_a) == 12
    assert "x_1_0" in dirs_a  # hydra.sweep.subdir interpolating a task key and the job number
    for sub in dirs_a:
        for f in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            ta = (da / sub / ".hydra" / f).read_text()
            tb = (db / sub / ".hydra" / f).read_text()
            assert _normalized(ta, da, ra) == _normalized(tb, db, rb), (sub, f)
    assert (da / "multirun.yaml").exists() and (db / "multirun.yaml").exists()


def test_fast_hydra_yaml_is_omegaconf_text(both):
    d, wf, _ = both[None]
    assert len(wf.jobs) == 12
    for jr in wf.jobs:
        hydra_dir = Path(jr.hydra_cfg.hydra.runtime.output_dir) / ".hydra"
        assert (hydra_dir / "hydra.yaml").read_text() == OmegaConf.to_yaml(jr.hydra_cfg)
        assert (hydra_dir / "overrides.yaml").read_text() == OmegaConf.to_yaml(
            OmegaConf.create(list(jr.overrides))
        )
        assert (hydra_dir / "config.yaml").read_text() == OmegaConf.to_yaml(jr.cfg)
        assert OmegaConf.is_readonly(jr.hydra_cfg.hydra)


def test_job_returns_match_basic(both):
    (da, wfa, _), (db, wfb, _) = both["basic"], both[None]
    ra, rb = wfa.last_run.run_id, wfb.last_run.run_id
    assert len(wfa.jobs) == len(wfb.jobs)
    for ja, jb in zip(wfa.jobs, wfb.jobs):
        assert ja.overrides == jb.overrides
        assert ja.status == jb.status
        assert ja.task_name == jb.task_name
        assert OmegaConf.to_container(ja.cfg) == OmegaConf.to_container(jb.cfg)
        assert _normalized(OmegaConf.to_yaml(ja.hydra_cfg), da, ra) == _normalized(
            OmegaConf.to_yaml(jb.hydra_cfg), db, rb
        )
        assert ja.hydra_cfg.hydra.job.num == jb.hydra_cfg.hydra.job.num
        assert ja.hydra_cfg.hydra.job.override_dirname == jb.hydra_cfg.hydra.job.override_dirname
        assert Path(ja.working_dir).relative_to(da) == Path(jb.working_dir).relative_to(db)


def test_fast_job_returns_make_their_hydra_config_when_first_read(tmp_path):
    import copy

    from hydra.core.utils import JobReturn

    from hydra_plugins.mushin_nb_plugins._lazy_return import LazyJobReturn, job_num

    wf, _ = _run(tmp_path, None)
    _ = wf.cfgs, wf.to_xarray()  # the run's own uses read job numbers, not configs
    assert len(wf.jobs) == 12
    assert all(type(j) is LazyJobReturn and j.__dict__["_make"] is not None for j in wf.jobs)
    assert [job_num(j) for j in wf.jobs] == list(range(12))
    for j in wf.jobs:  # made on first read: the config the job wrote, kept
        h = j.hydra_cfg
        assert j.__dict__["_make"] is None and j.hydra_cfg is h
        assert int(h.hydra.job.num) == j.job_num and OmegaConf.is_readonly(h.hydra)
        hydra_dir = Path(h.hydra.runtime.output_dir) / ".hydra"
        assert (hydra_dir / "hydra.yaml").read_text() == OmegaConf.to_yaml(h)
    j = wf.jobs[0]
    back = copy.copy(j)  # a plain JobReturn with the same fields (a pickle too: see the doctest)
    assert type(back) is JobReturn and job_num(back) == 0
    assert OmegaConf.to_yaml(back.hydra_cfg) == OmegaConf.to_yaml(j.hydra_cfg)
    assert (back.overrides, back.working_dir, back.status, back.return_value) == (
        j.overrides,
        j.working_dir,
        j.status,
        j.return_value,
    )
    j.hydra_cfg = None  # assigning replaces it
    assert j.hydra_cfg is None and job_num(j) == 0


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_results_chdir_logfile_failures(both, launcher):
    d, wf, err = both[launcher]
    ds = err.dataset
    assert ds["y"].sel(x=2).values.tolist() == [1.0] * 4
    assert ds["status"].sel(x=3).values.tolist() == ["failed"] * 4
    assert [f.params["x"] for f in err.failures] == [3] * 4
    assert all("x=3 is broken" in f.message for f in err.failures)
    for sub in d.glob("x_*"):
        x = int(sub.name.split("_")[1])
        logtext = (sub / "rai_workflow.log").read_text()
        assert f"job x={x} " in logtext
        assert logtext.count("job x=") == 1  # nothing of other jobs in this job's log
        if x != 3:
            assert (sub / "mushin_result.json").exists()
    cwd = ds["cwd"].sel(x=1, name="a b").item()
    assert Path(cwd).parent == d and Path(cwd).name.startswith("x_1_")
    assert ds.equals(both["basic"][2].dataset.drop_vars("cwd").assign(cwd=ds["cwd"])) or launcher == "basic"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_cancel_stops_new_jobs(tmp_path, launcher):
    class Slow(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            time.sleep(0.15)
            return dict(y=x)

    wf = Slow()
    run = wf.start(x=multirun(list(range(30))), working_dir=str(tmp_path), launcher=launcher)
    first = threading.Event()
    run.subscribe(lambda ev: first.set())
    assert first.wait(30)
    run.cancel()
    ds = run.wait(60)
    s = run.status
    assert s["cancelled"] > 0 and 1 <= s["done"] < 30
    assert s["done"] + s["cancelled"] == 30
    assert (ds["status"] == "done").sum() == s["done"]


def test_run_twice_and_start_blocks_a_second_sweep(tmp_path):
    class Sq(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            time.sleep(0.05)
            return dict(y=x * x)

    wf = Sq()
    run = wf.start(x=multirun([1, 2, 3]), working_dir=str(tmp_path / "a"))
    with pytest.raises(RuntimeError, match="Another sweep"):
        Sq().start(x=multirun([1]), working_dir=str(tmp_path / "b"))
    assert run.wait(30)["y"].values.tolist() == [1, 4, 9]
    wf.run(x=multirun([4, 5]), working_dir=str(tmp_path / "c"), progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [16, 25]


# --------------------------------------------------------------------- as a plain Hydra plugin


def _plain_task(cfg):
    from hydra.core.hydra_config import HydraConfig

    logging.getLogger("plain").info(f"plain job {HydraConfig.get().job.num}")
    return dict(cfg=OmegaConf.to_container(cfg), num=HydraConfig.get().job.num, cwd=os.getcwd())


def _plain_sweep(tmp: Path, launcher: str, extra: list[str]):
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="plain_opt", name="sgd", node={"lr": 0.1, "kind": "sgd"})
    cs.store(group="plain_opt", name="adam", node={"lr": 0.001, "kind": "adam"})
    cfg = make_config(a=1, b=dict(c="q"), lst=[1, 2])
    jobs = launch(
        cfg,
        _plain_task,
        overrides=[
            f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={tmp}",
            "hydra.job.chdir=True",
            *extra,
        ],
        multirun=True,
        version_base="1.3",
        to_dictconfig=True,
    )
    return [j for batch in jobs for j in batch]


@pytest.mark.parametrize(
    "extra",
    [
        ["a=1,2", "+z=x,y"],  # values: the fast path
        ["+plain_opt=sgd,adam", "a=5,6"],  # config-group choices: Hydra composes each job
        ["~lst", "a=7,8"],  # deletion: composed
        ["b={c:1},{c:2}"],  # dict values merge: composed
        ["lst=[3,4],[5]", "hydra.launcher.fast=false"],  # fast off
    ],
    ids=["values", "groups", "delete", "dicts", "fast-off"],
)
def test_plain_hydra_plugin_equals_basic(tmp_path, extra):
    fast = [e for e in extra if not e.startswith("hydra.launcher.")]
    ja = _plain_sweep(tmp_path / "a", "basic", fast)
    jb = _plain_sweep(tmp_path / "b", "mushin_nb", extra)
    assert len(ja) == len(jb) >= 2
    for a, b in zip(ja, jb):
        assert a.return_value["cfg"] == b.return_value["cfg"]
        assert a.return_value["num"] == b.return_value["num"]
        assert Path(b.return_value["cwd"]).parent == tmp_path / "b"
        assert OmegaConf.to_container(a.cfg) == OmegaConf.to_container(b.cfg)
        for f in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            ta = (Path(a.working_dir) / ".hydra" / f).read_text().replace(str(tmp_path / "a"), "<D>")
            tb = (Path(b.working_dir) / ".hydra" / f).read_text().replace(str(tmp_path / "b"), "<D>")
            pa, pb = _normalized(ta, tmp_path, None), _normalized(tb, tmp_path, None)
            if f == "hydra.yaml":
                pb["hydra"]["overrides"]["hydra"] = [
                    o for o in pb["hydra"]["overrides"]["hydra"] if not o.startswith("hydra.launcher.")
                ]
            assert pa == pb, f
        log_b = (Path(b.working_dir) / "zen_launch.log").read_text()
        assert f"plain job {b.return_value['num']}" in log_b


def test_a_value_a_typed_node_refuses_fails_like_basic(tmp_path):
    from dataclasses import dataclass

    from hydra.errors import ConfigCompositionException

    @dataclass
    class Typed:
        a: int = 1

    errors = []
    for launcher in ("basic", "mushin_nb"):
        with pytest.raises(ConfigCompositionException) as ei:
            launch(
                Typed,
                _plain_task,
                overrides=[f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / launcher}", "a=2,abc"],
                multirun=True,
                version_base="1.3",
            )
        errors.append(str(ei.value))
    assert errors[0] == errors[1]


def test_plugin_is_registered_and_module_is_light():
    import subprocess

    code = (
        "import sys, hydra_plugins.mushin_nb_plugins.launcher as m;"
        "from hydra.core.config_store import ConfigStore;"
        "assert 'mushin_nb.yaml' in ConfigStore.instance().list('hydra/launcher');"
        "bad=[k for k in ('mushin_nb','xarray','numpy') if k in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --------------------------------------------------------------------- parallel: joblib, submitit


class SleepSq(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, delay: float, fail_file: str) -> dict:
        time.sleep(delay)
        if fail_file and x == 2 and os.path.exists(fail_file):
            raise RuntimeError("x=2 fails while the flag file exists")
        return dict(y=x * x, pid=os.getpid())


def _watch(run, every=0.05):
    """Record (done, total) of run.dataset until the run ends."""
    seen = []
    while not run.done:
        ds = run.dataset
        seen.append(int((ds["status"] == "done").sum()))
        time.sleep(every)
    return seen


@pytest.mark.parametrize(
    "launcher,kw",
    [
        ("joblib", dict(jobs=2)),
        ("joblib", dict(overrides=["hydra.launcher.n_jobs=2"])),
        (None, dict(jobs=2, overrides=["hydra/launcher=joblib"])),  # hydra-joblib-launcher as it is
        ("submitit_local", dict(jobs=2, overrides=["hydra.launcher.timeout_min=5"], to_dictconfig=True)),
    ],
    ids=["joblib-jobs", "joblib-override", "hydra-joblib", "submitit_local"],
)
def test_parallel_live_results_failures_resume(tmp_path, monkeypatch, launcher, kw):
    # worker processes unpickle Hydra's plugin registry: they need the test plugins too
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([plugins, os.environ.get("PYTHONPATH", "")]))
    flag = tmp_path / "FAIL"
    flag.write_text("1")
    n = 4
    delay = 0.6 if launcher == "joblib" else 0.3
    wf = SleepSq(make_config(delay=delay, fail_file=str(flag)))
    run = wf.start(x=multirun(list(range(n))), working_dir=str(tmp_path / "s"), launcher=launcher, **kw)
    events = []
    run.subscribe(events.append)
    seen = _watch(run)
    ds = run.wait(300)
    # one event per job, coming from what the jobs persisted (other processes)
    assert sorted(ev.params["x"] for ev in events) == list(range(n))
    assert {ev.status for ev in events if ev.params["x"] == 2} == {"failed"}
    assert any(0 < k < n - 1 for k in seen), seen  # cells filled one by one, not all at the end
    assert ds["y"].sel(x=3).item() == 9 and ds["status"].sel(x=2).item() == "failed"
    pids = {int(p) for p in ds["pid"].values[~ds["pid"].isnull().values]}
    assert os.getpid() not in pids  # ran in other processes
    assert run.failures and run.failures[0].params == {"x": 2}
    # the blocking run raises with the partial Dataset
    with pytest.raises(SweepError) as ei:
        wf.run(
            x=multirun(list(range(n))),
            working_dir=str(tmp_path / "s"),
            launcher=launcher,
            resume=True,
            progress=False,
            **kw,
        )
    assert ei.value.dataset["status"].sel(x=2).item() == "failed"
    assert wf.last_run.skipped == n - 1
    # fixed: resume runs only the failed cell
    flag.unlink()
    wf.run(
        x=multirun(list(range(n))),
        working_dir=str(tmp_path / "s"),
        launcher=launcher,
        resume=True,
        progress=False,
        **kw,
    )
    assert wf.last_run.skipped == n - 1
    assert wf.to_xarray()["y"].values.tolist() == [0, 1, 4, 9]


def test_joblib_writes_what_hydra_joblib_launcher_writes(tmp_path, monkeypatch):
    plugins = str(Path(__file__).parent / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([plugins, os.environ.get("PYTHONPATH", "")]))
    out = {}
    for name, kw in [("fast", dict(launcher="joblib")), ("hydra", dict(overrides=["hydra/launcher=joblib"]))]:
        wf = Probe()
        d = tmp_path / name
        with pytest.raises(SweepError) as ei:
            wf.run(
                x=multirun([1, 3]),
                name=multirun(["a b", "c"]),
                scale=2.0,
                working_dir=str(d),
                jobs=2,
                progress=False,
                **kw,
            )
        out[name] = (d, wf.last_run.run_id, ei.value)
    (da, ra, ea), (db, rb, eb) = out["hydra"], out["fast"]
    assert ea.dataset["y"].equals(eb.dataset["y"])
    assert [f.params for f in ea.failures] == [f.params for f in eb.failures]
    subs = sorted(p.parent.name for p in da.glob("*/.hydra"))
    assert subs == sorted(p.parent.name for p in db.glob("*/.hydra")) and len(subs) == 4
    for sub in subs:
        for f in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            ta = _normalized((da / sub / ".hydra" / f).read_text(), da, ra)
            tb = _normalized((db / sub / ".hydra" / f).read_text(), db, rb)
            assert ta == tb, (sub, f)
        hy = yaml.safe_load((db / sub / ".hydra" / "hydra.yaml").read_text())
        assert hy["hydra"]["job"]["id"] == f"rai_workflow_{sub}"  # joblib's job ids
        assert "job x=" in (db / sub / "rai_workflow.log").read_text()


def test_joblib_cancel_stops_new_jobs(tmp_path):
    wf = SleepSq(make_config(delay=0.5, fail_file=""))
    run = wf.start(x=multirun(list(range(10))), working_dir=str(tmp_path), launcher="joblib", jobs=2)
    first = threading.Event()
    run.subscribe(lambda ev: first.set())
    assert first.wait(120)
    run.cancel()
    run.wait(120)
    s = run.status
    assert s["cancelled"] >= 4 and s["done"] < 10, s
    assert s["done"] + s["cancelled"] == 10


def test_jobs_needs_a_parallel_launcher(tmp_path):
    with pytest.raises(ValueError, match="parallel launcher"):
        SleepSq(make_config(delay=0, fail_file="")).start(
            x=multirun([1, 2]), working_dir=str(tmp_path), jobs=2
        )


def test_submitit_slurm_settings_compose(tmp_path):
    """The SLURM launcher is selected and configured (no cluster here: only the
    composed config is checked, with Hydra's --cfg-like compose)."""
    from hydra import compose, initialize

    with initialize(version_base="1.3", config_path=None):
        cfg = compose(
            overrides=[
                "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.timeout_min=60",
                "hydra.launcher.gpus_per_node=1",
                "hydra.launcher.array_parallelism=8",
            ],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


def _docs_settings(section: str, launcher: str) -> dict:
    """The ``launcher_settings={...}`` of the first example of a section of
    docs/scaling.md, as written."""
    import ast
    import re

    text = (Path(__file__).parents[1] / "docs" / "scaling.md").read_text()
    part = text[text.index(f"\n## {section}\n") :]
    block = re.search(r"```python\n(.*?)```", part, re.S).group(1)
    call = next(
        n
        for n in ast.walk(ast.parse(block))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "start"
    )
    kw = {k.arg: k.value for k in call.keywords}
    assert ast.literal_eval(kw["launcher"]) == launcher
    return eval(compile(ast.Expression(kw["launcher_settings"]), "docs/scaling.md", "eval"), {})


@pytest.mark.parametrize(
    "section,launcher,dict_setting",
    [("SLURM", "slurm", "additional_parameters"), ("Ray", "ray", "remote"), ("Ray", "ray", "init")],
)
def test_the_docs_launcher_settings_compose(section, launcher, dict_setting):
    """Every setting of docs/scaling.md's SLURM and Ray examples reaches the composed
    launcher config with its value, the dict ones (sbatch's additional_parameters, Ray's
    task options) included."""
    from hydra import compose, initialize

    from mushin_nb._launchers import resolve_launcher, settings_overrides

    if launcher == "ray" and importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'mushin-nb[ray]')")
    settings = _docs_settings(section, launcher)
    assert isinstance(settings[dict_setting], dict) and settings[dict_setting]
    info = resolve_launcher(launcher)
    overrides = settings_overrides(info, settings)
    with initialize(version_base="1.3", config_path=None):
        cfg = compose(overrides=[f"hydra/launcher={info.hydra}", *overrides], return_hydra_config=True)
    got = OmegaConf.to_container(cfg.hydra.launcher)
    assert {k: got[k] for k in settings} == settings
