"""The patches of third-party internals (``mushin_nb/_compat/``): each one works,
gives what its public path gives, and its guard falls back to the public path
when the versions or the internals differ. Also: the plugins' public
replacements of former patches agree with the Hydra internals they replaced, and
the plugins reach no private name they should not. Real Hydra launches, real
files."""

import doctest
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from mushin_nb import MultiRunMetricsWorkflow, SweepError, _compat, multirun

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "hydra_plugins" / "mushin_nb_plugins"
# the plugin modules whose third-party calls go through _compat (submitit_launcher.py has its own owner)
OWN_PLUGIN_MODULES = [
    "launcher",
    "sweeper",
    "_template",
    "_job_yaml",
    "_job_logging",
    "_joblib",
    "_job_returns",
    "_quick",
    "_derive",
]


@pytest.fixture
def fresh_verdicts():
    """Guards decide again (a test changes what they look at), before and after."""
    for name in _compat.PATCHES:
        _compat._refresh(name)
    yield
    for name in _compat.PATCHES:
        _compat._refresh(name)


# ----------------------------------------------------------------------------- registry


def _tests_naming(name: str) -> list[str]:
    """The test functions under tests/ whose code names patch ``name`` (by its
    string or by the _compat constant that holds it)."""
    import ast

    consts = [k for k, v in vars(_compat).items() if k.isupper() and v == name]
    words = [f'"{name}"'] + [f"_compat.{c}" for c in consts] + [f"import {c}" for c in consts]
    found = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                src = ast.get_source_segment(text, node) or ""
                if any(w in src for w in words):
                    found.append(f"{path.name}::{node.name}")
    return found


@pytest.mark.parametrize("name", sorted(_compat.PATCHES))
def test_every_patch_has_versions_a_guard_and_tests(name):
    patch = _compat.PATCHES[name]
    assert patch.name == name
    assert re.fullmatch(r">=\d+(\.\d+)*,<\d+(\.\d+)*", patch.versions), patch.versions
    assert patch.internals and patch.public_path
    # written for what this environment has: the patched path is the one the suite runs
    assert patch.in_range(_compat.installed_version(patch.package)), (name, patch.versions)
    assert _compat.refusal(name) is None, (name, _compat.refusal(name))
    # its tests (the patched path works, the guard falls back): at least one test names it
    assert _tests_naming(name), f"no test under tests/ names the patch {name!r}"


def test_public_path_forces_and_restores(fresh_verdicts):
    with _compat.public_path(_compat.OMEGACONF_YAML_DUMPER):
        assert not _compat.usable(_compat.OMEGACONF_YAML_DUMPER)
        assert _compat.usable(_compat.HYDRA_CONFIG_ASSIGN)
        with _compat.public_path():
            assert not any(_compat.usable(n) for n in _compat.PATCHES)
        assert _compat.usable(_compat.HYDRA_CONFIG_ASSIGN)
        assert not _compat.usable(_compat.OMEGACONF_YAML_DUMPER)  # the outer block still holds
    assert all(_compat.usable(n) for n in _compat.PATCHES)
    with pytest.raises(ValueError, match="no-such-patch.*no such patch"):
        with _compat.public_path("no-such-patch"):
            pass


def test_environment_variable_forces_the_public_path(monkeypatch, fresh_verdicts):
    monkeypatch.setenv(_compat.OFF_ENV, f"{_compat.HYDRA_CONFIG_ASSIGN}, {_compat.OMEGACONF_YAML_DUMPER}")
    hydra = sorted(
        [_compat.OMEGACONF_SHARED_NODES, _compat.HYDRA_CONFIG_ASSIGN, _compat.OMEGACONF_YAML_DUMPER]
    )
    assert [_compat.usable(n) for n in hydra] == [False, True, False]
    monkeypatch.setenv(_compat.OFF_ENV, "all")
    assert "MUSHIN_NB_COMPAT_OFF" in str(_compat.refusal(_compat.OMEGACONF_SHARED_NODES))
    monkeypatch.delenv(_compat.OFF_ENV)
    assert all(_compat.usable(n) for n in _compat.PATCHES)


def _pretend_version(monkeypatch, package, version):
    real = _compat.installed_version
    monkeypatch.setattr(_compat, "installed_version", lambda p: version if p == package else real(p))


# ----------------------------------------------------------------------------- omegaconf-shared-nodes


def _frozen_hydra_config(tmp_path):
    """A real Hydra config (as Hydra composes it for a sweep's job), read-only."""
    from hydra_zen import launch, make_config

    (jobs,) = launch(
        make_config(x=0, s="a"),
        lambda cfg: None,
        multirun=True,
        version_base="1.3",
        overrides=[
            "hydra/hydra_logging=none",
            "hydra/job_logging=none",
            f"hydra.sweep.dir={tmp_path}",
            "x=1",
        ],
    )
    return jobs[0].hydra_cfg


def _builders(frozen):
    from hydra_plugins.mushin_nb_plugins._job_yaml import JOB_FIELDS
    from hydra_plugins.mushin_nb_plugins._template import interpolation_paths

    paths = list(JOB_FIELDS) + [p for p in interpolation_paths(frozen.hydra) if p not in JOB_FIELDS]
    shared = _compat.JobConfigBuilder(frozen, paths, shared=True)
    public = _compat.JobConfigBuilder(frozen, paths, shared=False)
    return shared, public


def test_shared_nodes_give_the_public_configs(tmp_path):
    frozen = _frozen_hydra_config(tmp_path)
    before = OmegaConf.to_yaml(frozen)
    shared, public = _builders(frozen)
    task = OmegaConf.create({"x": 5, "s": "b"})
    values = {
        ("job", "num"): 7,
        ("job", "id"): "job_7",
        ("job", "override_dirname"): "x=5",
        ("overrides", "task"): ["x=5", "s=b"],
        ("runtime", "cwd"): str(tmp_path),
    }
    a, b = shared.build(task, values), public.build(task, values)
    assert a.shared and not b.shared
    with a.held():
        from hydra.core.hydra_config import HydraConfig

        assert HydraConfig.get().job.num == 7
        a.set(("runtime", "output_dir"), str(tmp_path / "7"))
        assert HydraConfig.get().runtime.output_dir == str(tmp_path / "7")
    b.set(("runtime", "output_dir"), str(tmp_path / "7"))
    assert OmegaConf.to_yaml(a.hroot) == OmegaConf.to_yaml(b.hroot)
    for key in ("hydra.sweep.subdir", "hydra.job.num", "x", "hydra.runtime.output_dir"):
        assert OmegaConf.select(a.full, key) == OmegaConf.select(b.full, key), key
    a.release()
    assert a.hroot.hydra._get_parent() is a.hroot  # the job's hydra config stands on its own
    assert OmegaConf.is_readonly(a.hroot.hydra)
    assert OmegaConf.to_yaml(frozen) == before  # the template is never changed
    # a second job from the same template does not see the first one's values
    c = shared.build(task, {**values, ("job", "num"): 8})
    assert (c.hroot.hydra.job.num, a.hroot.hydra.job.num) == (8, 7)


def test_shared_nodes_guard_refuses_other_versions(monkeypatch, fresh_verdicts, tmp_path):
    _pretend_version(monkeypatch, "omegaconf", (2, 4, 0))
    why = _compat.refusal(_compat.OMEGACONF_SHARED_NODES)
    assert why == "omegaconf 2.4.0 is not >=2.3,<2.4"
    shared, public = _builders(_frozen_hydra_config(tmp_path))
    default = _compat.JobConfigBuilder(shared.frozen, shared.leaves)
    assert default.shared is False  # the public path
    job = default.build(OmegaConf.create({"x": 1}), {("job", "num"): 3})
    assert job.hroot.hydra.job.num == 3 and not job.shared


def test_shared_nodes_guard_refuses_changed_internals(monkeypatch, fresh_verdicts):
    from mushin_nb._compat import shared_nodes

    # an OmegaConf that keeps a container's children elsewhere than in _content
    monkeypatch.setattr(shared_nodes, "_oc_child", lambda node, key: node.__dict__["_children"][key])
    why = _compat.refusal(_compat.OMEGACONF_SHARED_NODES)
    assert why is not None and "internals differ" in why and "_children" in why
    # an OmegaConf whose _set_value no longer sets a detached node: caught by the comparison
    monkeypatch.undo()
    _compat._refresh(_compat.OMEGACONF_SHARED_NODES)
    monkeypatch.setattr(shared_nodes, "_oc_set_detached", lambda leaf, value: None)
    why = _compat.refusal(_compat.OMEGACONF_SHARED_NODES)
    assert why is not None and "internals differ" in why
    # a list of strings (hydra.overrides.task) whose element nodes come out wrong
    monkeypatch.undo()
    _compat._refresh(_compat.OMEGACONF_SHARED_NODES)
    real = shared_nodes._oc_set_strings
    monkeypatch.setattr(shared_nodes, "_oc_set_strings", lambda leaf, items: real(leaf, items[:1]))
    why = _compat.refusal(_compat.OMEGACONF_SHARED_NODES)
    assert why is not None and "internals differ" in why


def test_a_jobs_overrides_list_is_made_as_omegaconf_makes_it(tmp_path, fresh_verdicts, monkeypatch):
    """hydra.overrides.task, made from copies of the template's element nodes, is what
    ListConfig._set_value makes: the same values, node types, keys, parents, and a
    refused value (not a string) takes OmegaConf's own path."""
    from mushin_nb._compat import shared_nodes

    taken: list[bool] = []
    real = shared_nodes._oc_set_strings
    monkeypatch.setattr(shared_nodes, "_oc_set_strings", lambda *a: taken.append(real(*a)) or taken[-1])
    frozen = _frozen_hydra_config(tmp_path)
    paths = [("overrides", "task"), ("job", "num")]
    shared = _compat.JobConfigBuilder(frozen, paths, shared=True)
    public = _compat.JobConfigBuilder(frozen, paths, shared=False)
    values = {("overrides", "task"): ["+x=1", "y='a b'", "z=${w}"], ("job", "num"): 4}
    a, b = shared.build(OmegaConf.create({}), values), public.build(OmegaConf.create({}), values)
    la, lb = a.hroot.hydra.overrides.task, b.hroot.hydra.overrides.task
    assert OmegaConf.to_container(la) == OmegaConf.to_container(lb) == values[("overrides", "task")]
    for i in range(3):
        na, nb = la._get_node(i), lb._get_node(i)
        assert type(na) is type(nb) and na._key() == nb._key() == i and na._get_parent() is la
        assert na._is_interpolation() == nb._is_interpolation()
    assert OmegaConf.to_yaml(a.hroot) == OmegaConf.to_yaml(b.hroot)
    assert frozen.hydra.overrides.task != la  # the template is untouched
    odd = shared.build(OmegaConf.create({}), {("overrides", "task"): [1, "a"], ("job", "num"): 5})
    assert OmegaConf.to_container(odd.hroot.hydra.overrides.task) == ["1", "a"]
    assert taken == [
        True,
        False,
        False,
        False,
    ]  # per build: the list (fast, then not: an int), job.num (a value node)
    a.release(), b.release(), odd.release()


# ----------------------------------------------------------------------------- hydra-config-assign


def test_hydra_config_assign_and_restore(tmp_path, fresh_verdicts):
    from hydra.core.hydra_config import HydraConfig

    frozen = _frozen_hydra_config(tmp_path)
    full = OmegaConf.merge({"x": 1}, frozen)
    previous = HydraConfig.instance().cfg
    with _compat.hydra_config(full, frozen) as held:
        assert held is frozen and HydraConfig.get() is frozen.hydra  # no copy
    assert HydraConfig.instance().cfg is previous
    with _compat.public_path(_compat.HYDRA_CONFIG_ASSIGN):
        with _compat.hydra_config(full, frozen) as held:
            assert held is not frozen  # HydraConfig.set_config's copy
            assert OmegaConf.to_yaml(held) == OmegaConf.to_yaml(frozen)
            assert HydraConfig.get().job.num == frozen.hydra.job.num
        if previous is not None:
            assert OmegaConf.to_yaml(HydraConfig.instance().cfg) == OmegaConf.to_yaml(previous)


def test_hydra_config_guard_refuses_other_versions_and_internals(monkeypatch, fresh_verdicts):
    from hydra.core.hydra_config import HydraConfig

    _pretend_version(monkeypatch, "hydra-core", (1, 4, 0))
    assert _compat.refusal(_compat.HYDRA_CONFIG_ASSIGN) == "hydra-core 1.4.0 is not >=1.3,<1.4"
    monkeypatch.undo()
    _compat._refresh(_compat.HYDRA_CONFIG_ASSIGN)
    # a HydraConfig that no longer reads its config from .cfg
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: None))
    why = _compat.refusal(_compat.HYDRA_CONFIG_ASSIGN)
    assert why is not None and "internals differ" in why


# ----------------------------------------------------------------------------- omegaconf-yaml-dumper

TRICKY = {
    "task": ["x=1", "name=it's ü", "flag=true", "n=null", "t=1e3", "e=", "y: z", "s=" + "x" * 90],
    "num": 3,
    "id": "3",
    "empty": [],
    "none": None,
}


def test_yaml_dump_is_omegaconf_text(fresh_verdicts):
    for obj in (TRICKY, TRICKY["task"], {"a": {"b": TRICKY}}):
        want = OmegaConf.to_yaml(obj)
        assert _compat.yaml_dump(obj) == want
        with _compat.public_path(_compat.OMEGACONF_YAML_DUMPER):
            assert _compat.yaml_dump(obj) == want


def test_yaml_dumper_guard_refuses_changed_internals(monkeypatch, fresh_verdicts):
    import omegaconf._utils

    # a dumper that quotes differently from OmegaConf.to_yaml
    monkeypatch.setattr(omegaconf._utils, "get_omega_conf_dumper", lambda: yaml.Dumper)
    why = _compat.refusal(_compat.OMEGACONF_YAML_DUMPER)
    assert why is not None and "internals differ" in why
    assert _compat.yaml_dump(TRICKY) == OmegaConf.to_yaml(TRICKY)  # the public path
    # an OmegaConf without the function at all
    monkeypatch.delattr(omegaconf._utils, "get_omega_conf_dumper")
    _compat._refresh(_compat.OMEGACONF_YAML_DUMPER)
    why = _compat.refusal(_compat.OMEGACONF_YAML_DUMPER)
    assert why is not None and "ImportError" in why
    assert _compat.yaml_dump(TRICKY) == OmegaConf.to_yaml(TRICKY)


def test_yaml_dumper_guard_refuses_other_versions(monkeypatch, fresh_verdicts):
    _pretend_version(monkeypatch, "omegaconf", (2, 2, 3))
    assert _compat.refusal(_compat.OMEGACONF_YAML_DUMPER) == "omegaconf 2.2.3 is not >=2.3,<2.4"
    assert _compat.yaml_dump(TRICKY) == OmegaConf.to_yaml(TRICKY)


# ----------------------------------------------------------------------------- a real sweep, both paths


class Probe(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, name: str) -> dict:
        from hydra.core.hydra_config import HydraConfig

        logging.getLogger("probe").info(f"job x={x} name={name}")
        if x == 3:
            raise ValueError("x=3 is broken")
        return dict(y=x * 2, num=HydraConfig.get().job.num, here=os.path.basename(os.getcwd()))


def _sweep(d: Path):
    wf = Probe()
    with pytest.raises(SweepError):
        wf.run(
            x=multirun([1, 2, 3]),
            name=multirun(["a b", "it's ü"]),
            working_dir=str(d),
            progress=False,
            overrides=["hydra.sweep.subdir=x_${x}_${hydra.job.num}", "hydra.job.chdir=True"],
        )
    return wf


def _files(d: Path, run_id: str) -> dict:
    out = {}
    for p in sorted(d.glob("*/.hydra/*.yaml")) + sorted(d.glob("*/*.log")):
        text = p.read_text().replace(str(d), "<SWEEP>").replace(run_id, "<RUN>")
        text = re.sub(r"^\[[-\d :,]+\]", "[<TIME>]", text, flags=re.M)  # log lines' time stamps
        out[p.relative_to(d).as_posix()] = text
    return out


def test_a_sweep_writes_the_same_with_every_public_path(tmp_path, fresh_verdicts):
    patched = _sweep(tmp_path / "patched")
    with _compat.public_path():
        public = _sweep(tmp_path / "public")
    assert patched.last_run is not None and public.last_run is not None
    fa = _files(tmp_path / "patched", patched.last_run.run_id)
    fb = _files(tmp_path / "public", public.last_run.run_id)
    assert len(fa) == 6 * 4 and fa.keys() == fb.keys()  # config, hydra, overrides .yaml + the job log
    for k in fa:
        assert fa[k] == fb[k], k
    assert fa["x_1_0/rai_workflow.log"] == "[<TIME>][probe][INFO] - job x=1 name=a b\n"  # the job's log file
    assert patched.to_xarray().drop_vars("here").equals(public.to_xarray().drop_vars("here"))
    ds = public.to_xarray()
    assert sorted(ds["num"].values.ravel().tolist())[:4] == [0, 1, 2, 3]  # HydraConfig.get() in the job
    for ja, jb in zip(patched.jobs, public.jobs):
        assert OmegaConf.to_container(ja.cfg) == OmegaConf.to_container(jb.cfg)
        assert ja.hydra_cfg.hydra.job.num == jb.hydra_cfg.hydra.job.num
        assert OmegaConf.is_readonly(jb.hydra_cfg.hydra)


# ----------------------------------------------------------------------------- public replacements


def test_overrides_dirname_is_hydras():
    hydra_impl = pytest.importorskip("hydra._internal.config_loader_impl")
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.mushin_nb_plugins._template import overrides_dirname

    parsed = OverridesParser.create().parse_overrides(["b=2", "a='x=y'", "seed=0", "c=[1,2]", "+d=1"])
    for exclude, item_sep, kv_sep in [([], ",", "="), (["seed"], "__", ":"), (["a", "b"], "=", "-")]:
        want = hydra_impl.get_overrides_dirname(parsed, exclude, item_sep, kv_sep)
        assert overrides_dirname(parsed, exclude, item_sep, kv_sep) == want


def test_grid_jobs_is_the_basic_sweepers():
    basic = pytest.importorskip("hydra._internal.core_plugins.basic_sweeper")
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from hydra_plugins.mushin_nb_plugins.sweeper import grid_jobs

    parser = OverridesParser.create()
    for args in (["a=1,2", "b=x", "c=range(3)", "a=5,6"], ["+n=choice(1,2)", "s='p,q',r"], []):
        parsed = parser.parse_overrides(args)
        assert [grid_jobs(parsed)] == basic.BasicSweeper.split_arguments(parsed, None)
    with pytest.raises(HydraException, match="does not support sweep type"):
        grid_jobs(parser.parse_overrides(["x=interval(0,1)"]))


def test_joblib_settings_as_hydra_joblib_launcher():
    core = pytest.importorskip("hydra_plugins.hydra_joblib_launcher._core")
    from hydra_plugins.mushin_nb_plugins._joblib import process_joblib_cfg

    for cfg in ({"pre_dispatch": "2*n_jobs", "batch_size": "auto", "max_nbytes": "1M"}, {"batch_size": "8"}):
        a, b = dict(cfg), dict(cfg)
        process_joblib_cfg(a)
        core.process_joblib_cfg(b)
        assert a == b


def test_plugin_names_and_targets_keep_working():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.utils import get_class

    import hydra_plugins.mushin_nb_plugins.launcher  # noqa: F401
    import hydra_plugins.mushin_nb_plugins.sweeper  # noqa: F401

    cs = ConfigStore.instance()
    assert {"mushin_nb.yaml", "mushin_nb_joblib.yaml"} <= set(cs.list("hydra/launcher"))
    assert "mushin_nb.yaml" in cs.list("hydra/sweeper")
    plugins = Plugins.instance()
    for target in (
        "hydra_plugins.mushin_nb_plugins.launcher.MushinLauncher",
        "hydra_plugins.mushin_nb_plugins.launcher.MushinJoblibLauncher",
        "hydra_plugins.mushin_nb_plugins.sweeper.MushinSweeper",
    ):
        assert get_class(target).__name__ == target.rsplit(".", 1)[1]
        assert target in plugins.class_name_to_class  # how Hydra instantiates a plugin


# ----------------------------------------------------------------------------- the plugins' code

PRIVATE_THIRD_PARTY = [
    r"hydra\._internal",
    r"omegaconf\._utils",
    r"hydra_joblib_launcher\._core",
    r"_flush_loggers",
    r"logging\._handlers",
    r"__dict__\[",
    r"\._(set_value|invalidate_flags_cache|is_interpolation|is_missing|value|get_node|set_parent)\(",
    r"\.repository\b",
    r"\bhc\.cfg\s*=[^=]|HydraConfig\.instance\(\)\.cfg\s*=[^=]",
]


@pytest.mark.parametrize("module", OWN_PLUGIN_MODULES)
def test_plugin_module_has_no_third_party_patch(module):
    text = (PLUGINS / f"{module}.py").read_text()
    for pattern in PRIVATE_THIRD_PARTY:
        assert not re.search(pattern, text), f"{module}.py: {pattern} (patches live in mushin_nb/_compat/)"
    # Hydra's plugin scanner (see sweeper.py)
    assert not re.search(r"^from __future__ import annotations", text, re.M)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package
        return False


def test_is_module_tells_modules_from_names():
    assert _is_module("mushin_nb._store") and _is_module("mushin_nb._compat")
    assert not _is_module("mushin_nb._compat._oc_share") and not _is_module("mushin_nb._nothing")


def test_plugins_reach_no_private_engine_name():
    import ast

    bad = []
    for path in sorted(PLUGINS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mushin_nb"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    # a leading-underscore *module* is fine, a leading-underscore name in one is not
                    if a.name.startswith("_") and not _is_module(full):
                        bad.append(f"{path.name}: {full}")
    assert bad == []


def test_compat_imports_nothing_of_ours():
    """The compat package imports only itself (its sections share the registry)."""
    own = {p.stem for p in (ROOT / "mushin_nb" / "_compat").glob("*.py")} - {"__init__"}
    for path in sorted((ROOT / "mushin_nb" / "_compat").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) mushin_nb", text, re.M), path.name
        for m in re.finditer(r"^\s*from (\.+)(\w*)", text, re.M):
            assert m.group(1) == "." and m.group(2) in ("", *own), f"{path.name}: {m.group(0)}"


@pytest.mark.parametrize("module", OWN_PLUGIN_MODULES)
def test_plugin_doctests(module):
    mod = importlib.import_module(f"hydra_plugins.mushin_nb_plugins.{module}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0


def test_no_long_functions_or_modules():
    import ast

    files = [PLUGINS / f"{m}.py" for m in OWN_PLUGIN_MODULES]
    files += sorted((ROOT / "mushin_nb" / "_compat").glob("*.py"))  # a package: one module per section
    for path in files:
        text = path.read_text()
        assert text.count("\n") <= 600, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                assert n <= 80, f"{path.name}: {node.name} has {n} lines"


def test_importing_the_plugins_stays_light():
    import subprocess

    code = (
        "import sys, hydra_plugins.mushin_nb_plugins.launcher, hydra_plugins.mushin_nb_plugins.sweeper;"
        "print(sorted(k for k in ('mushin_nb', 'joblib', 'xarray', 'numpy') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ----------------------------------------------------------------------------- Hydra's search path


def test_hydra_config_search_path_reads_yaml_configs_and_falls_back_to_the_config_store(
    tmp_path, fresh_verdicts
):
    """hydra-config-search-path: a launcher given only as a YAML file on Hydra's search
    path is found while the guard allows the patch; forced off, only the ConfigStore's
    names are offered (and the YAML-only one is not)."""
    from hydra.core.config_store import ConfigStore

    from mushin_nb._compat.hydra_search import search_path_options
    from mushin_nb._launchers import hydra_group_options

    assert _compat.usable(_compat.HYDRA_CONFIG_SEARCH_PATH)
    opts = search_path_options("hydra/launcher")
    assert opts is not None and "basic" in opts
    # a search path with one more launcher config (as a lab's search-path plugin adds)
    conf = tmp_path / "conf" / "hydra" / "launcher"
    conf.mkdir(parents=True)
    (conf / "lab_yaml_only.yaml").write_text(
        "_target_: hydra._internal.core_plugins.basic_launcher.BasicLauncher\n"
    )
    code = (
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.search_path_plugin import SearchPathPlugin\n"
        "class P(SearchPathPlugin):\n"
        "    def manipulate_search_path(self, sp):\n"
        f"        sp.append('lab', 'file://{tmp_path / 'conf'}')\n"
    )
    site = tmp_path / "site" / "hydra_plugins" / "lab_sp"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(code)
    script = (
        "from mushin_nb._launchers import hydra_group_options\n"
        "print('lab_yaml_only' in hydra_group_options('hydra/launcher'))\n"
    )
    for off, expected in (("", "True"), (_compat.HYDRA_CONFIG_SEARCH_PATH, "False")):
        env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), **{_compat.OFF_ENV: off})
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected, (off, out.stdout, out.stderr)
    with _compat.public_path(_compat.HYDRA_CONFIG_SEARCH_PATH):
        assert search_path_options("hydra/launcher") is None
        names = hydra_group_options("hydra/launcher")
        store = {k.removesuffix(".yaml") for k in ConfigStore.instance().list("hydra/launcher")}
        assert set(names) == store and "mushin_nb" in names


# ----------------------------------------------------------------------------- omegaconf-args-attribute


def test_zen_calls_skip_the_args_lookup_exception_and_change_nothing_else(tmp_path, fresh_verdicts):
    import xarray as xr
    from hydra_zen import zen

    from mushin_nb._compat.zen_args import call_without_args_lookup

    def f(*args, a, b=2):
        return (args, a, b)

    seen = []
    cfg = OmegaConf.create({"a": 1})
    z = zen(f, pre_call=lambda c: seen.append(getattr(c, "_args_", "raised")))
    assert call_without_args_lookup(z, cfg) == ((), 1, 2) and seen == [()]
    assert "_args_" not in vars(cfg) and "_args_" not in cfg
    with_args = OmegaConf.create({"a": 1, "_args_": [7, 8]})  # zen's positional arguments: left alone
    assert call_without_args_lookup(z, with_args) == ((7, 8), 1, 2)
    with _compat.public_path(_compat.OMEGACONF_ARGS_ATTRIBUTE):
        assert call_without_args_lookup(z, cfg) == ((), 1, 2) and seen[-1] == "raised"

    class W(MultiRunMetricsWorkflow):
        @staticmethod
        def pre_task(seed: int) -> None:
            W.pre = seed

        @staticmethod
        def task(x: int, seed: int) -> dict:
            return dict(y=x * 10 + seed + W.pre)

    def run(where):
        wf = W()
        wf.run(x=multirun([1, 2]), seed=3, working_dir=str(tmp_path / where), progress=False)
        return wf.to_xarray()

    patched = run("patched")
    with _compat.public_path(_compat.OMEGACONF_ARGS_ATTRIBUTE):
        public = run("public")
    xr.testing.assert_identical(patched, public)
    assert patched["y"].values.tolist() == [16, 26]
