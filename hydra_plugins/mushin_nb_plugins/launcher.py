"""The mushin_nb in-process launcher (``hydra/launcher=mushin_nb``, the default of
mushin_nb for in-process sweeps).

Hydra's ``BasicLauncher`` composes the whole configuration again for every job
(``config_loader.load_sweep_config``: 80-110 ms). This launcher composes it once
per *shape* of job overrides (the same keys with the same override types) with
Hydra itself, then, for each job, applies the job's values to a copy of the task
part of that configuration and builds the job's Hydra config by copying only the
nodes that differ between jobs (``hydra.job.num``, ``id``, ``override_dirname``,
``hydra.overrides.task``, ``hydra.runtime.output_dir`` / ``cwd``, and every
interpolation). It writes the same files as Hydra's ``run_job``
(``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``, the job log file)
with the same content; ``hydra.yaml`` is rendered from a template text with the
per-job fields substituted (checked against ``OmegaConf.to_yaml`` on the first
job of every template).

It falls back to Hydra's own per-job composition (exactly what ``BasicLauncher``
does) for any job with an override it does not apply itself: config-group
choices, ``+``/``~`` on groups, deletions, ``hydra.*`` overrides, dict values,
package overrides, and when Hydra callbacks are configured. ``fast=false``
(``hydra.launcher.fast=false``) always falls back.

Kept import-light: Hydra imports (and re-executes) every module under
``hydra_plugins`` when it scans for plugins, so all work is imported lazily and
no state lives at module level.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

# fields of the Hydra config that differ between the jobs of one sweep
_JOB_FIELDS: tuple[tuple[str, ...], ...] = (
    ("job", "override_dirname"),
    ("job", "id"),
    ("job", "num"),
    ("overrides", "task"),
    ("runtime", "cwd"),
    ("runtime", "output_dir"),
)
_SENTINEL = "MUSHINNBFIELD{}X"


@dataclass
class MushinLauncherConf:
    _target_: str = "hydra_plugins.mushin_nb_plugins.launcher.MushinLauncher"
    # False: compose every job with Hydra (the BasicLauncher's way, 80-110 ms a job)
    fast: bool = True


ConfigStore.instance().store(
    group="hydra/launcher", name="mushin_nb", node=MushinLauncherConf, provider="mushin_nb"
)


class MushinLauncher(Launcher):
    """In-process launcher: Hydra's ``BasicLauncher`` semantics and files, with
    the configuration composed once instead of once per job."""

    def __init__(self, fast: bool = True, job_id: str = "num", quiet: bool = False) -> None:
        super().__init__()
        self.fast = bool(fast)
        self.job_id = job_id  # "num": id = num (BasicLauncher); "name_num": joblib's "<job name>_<num>"
        self.quiet = quiet
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None
        self._templates: dict[Any, Any] = {}
        self._parsed: dict[str, Any] = {}
        self._group_keys: dict[str, bool] = {}
        self._parser: Any = None
        self._has_callbacks = False
        self._env_copy: list[str] = []

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # ------------------------------------------------------------------ launch
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from pathlib import Path

        from hydra.core.utils import configure_log, setup_globals

        setup_globals()
        assert self.hydra_context is not None
        assert self.config is not None
        assert self.task_function is not None

        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = self.config.hydra.sweep.dir
        Path(str(sweep_dir)).mkdir(parents=True, exist_ok=True)
        if not self.quiet:
            log.info(f"Launching {len(job_overrides)} jobs locally")
        self._has_callbacks = bool(self.config.hydra.callbacks)
        self._env_copy = list(self.config.hydra.job.env_copy or [])
        runs: list[Any] = []
        job_logging_on = False
        try:
            for i, overrides in enumerate(job_overrides):
                idx = initial_job_idx + i
                overrides = list(overrides)
                if job_logging_on or self.quiet:
                    log.debug(f"\t#{idx} : {' '.join(_filter(overrides))}")
                else:
                    log.info(f"\t#{idx} : {' '.join(_filter(overrides))}")
                tmpl = self._template_for(overrides) if self.fast else None
                if tmpl is None:
                    if job_logging_on:
                        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                        job_logging_on = False
                    runs.append(self._run_composed(overrides, idx))
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                else:
                    try:
                        runs.append(tmpl.run(overrides, idx, self._parsed_list(overrides)))
                        job_logging_on = True
                    except _Compose:
                        runs.append(self._run_composed(overrides, idx))
                        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                        job_logging_on = False
        finally:
            if job_logging_on:
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

    def _run_composed(self, overrides: list[str], idx: int) -> Any:
        """Exactly what Hydra's BasicLauncher does for one job."""
        from hydra.core.utils import run_job
        from omegaconf import open_dict

        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = (
                idx if self.job_id == "num" else f"{sweep_config.hydra.job.name}_{idx}"
            )
            sweep_config.hydra.job.num = idx
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    # ------------------------------------------------------------------ fast path
    def _parse(self, text: str) -> Any:
        o = self._parsed.get(text)
        if o is None:
            if self._parser is None:
                from hydra.core.override_parser.overrides_parser import OverridesParser

                self._parser = OverridesParser.create()
            o = self._parser.parse_override(text)
            if len(self._parsed) < 100_000:
                self._parsed[text] = o
        return o

    def _parsed_list(self, overrides: list[str]) -> list[Any]:
        return [self._parse(t) for t in overrides]

    def _is_group(self, key: str) -> bool:
        g = self._group_keys.get(key)
        if g is None:
            try:
                repo = self.hydra_context.config_loader.repository
                g = bool(repo.group_exists(key))
            except Exception:
                g = True  # cannot tell: let Hydra compose
            self._group_keys[key] = g
        return g

    def _signature(self, overrides: list[str]) -> tuple[Any, ...] | None:
        """The shape of a job's overrides, or None if one needs Hydra's composition."""
        import os

        sig: list[Any] = []
        for text in overrides:
            try:
                o = self._parse(text)
            except Exception:
                return None
            if o.is_sweep_override() or o.is_delete() or o.is_hydra_override() or o.package is not None:
                return None
            key = o.key_or_group
            if not key or self._is_group(key):
                return None
            if not _plain_value(o.value()):
                return None
            sig.append((key, o.type))
        env_copy = self._env_copy
        env = tuple((k, os.environ.get(k)) for k in env_copy) if env_copy else ()
        return (tuple(sig), env)

    def _template_for(self, overrides: list[str]) -> Any:
        if self._has_callbacks:
            return None  # callbacks get the full per-job config: compose it
        sig = self._signature(overrides)
        if sig is None:
            return None
        tmpl = self._templates.get(sig)
        if tmpl is None:
            if len(self._templates) >= 16:
                return None
            tmpl = _Template(self, overrides)
            self._templates[sig] = tmpl
        return tmpl


@dataclass
class MushinJoblibLauncherConf:
    """hydra-joblib-launcher's settings (``hydra.launcher.n_jobs`` ...), with each
    worker process running its jobs the fast way (one composition per worker)."""

    _target_: str = "hydra_plugins.mushin_nb_plugins.launcher.MushinJoblibLauncher"
    n_jobs: int = -1
    backend: str | None = None
    prefer: str = "processes"
    require: str | None = None
    verbose: int = 0
    timeout: float | None = None
    pre_dispatch: str = "2*n_jobs"
    batch_size: str = "auto"
    temp_folder: str | None = None
    max_nbytes: str | None = None
    mmap_mode: str = "r"


ConfigStore.instance().store(
    group="hydra/launcher", name="mushin_nb_joblib", node=MushinJoblibLauncherConf, provider="mushin_nb"
)


class MushinJoblibLauncher(Launcher):
    """hydra-joblib-launcher (joblib's loky processes, the same settings, job ids
    and files) whose workers compose the configuration once per sweep instead of
    once per job (``MushinLauncher`` runs inside each worker).

    A worker that dies (``os._exit``, a segfault, the OOM killer) fails only the job
    it was running, recorded as that cell's failure with the exit code or signal;
    the other jobs run on fresh workers (see ``_run_surviving_deaths``)."""

    def __init__(self, **kwargs: Any) -> None:
        import uuid

        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None
        self.joblib = kwargs
        self.key = uuid.uuid4().hex

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        import shutil
        import tempfile
        from pathlib import Path

        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, setup_globals
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
        from joblib import Parallel, delayed

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        joblib_cfg = dict(self.joblib)
        joblib_cfg["backend"] = "loky"  # as hydra-joblib-launcher: threads are incompatible with Hydra
        process_joblib_cfg(joblib_cfg)
        log.info(
            "Joblib.Parallel({}) is launching {} jobs".format(
                ",".join(f"{k}={v}" for k, v in joblib_cfg.items()), len(job_overrides)
            )
        )
        log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#{} : {}".format(initial_job_idx + idx, " ".join(_filter(overrides))))
        singleton_state = Singleton.get_state()

        def run_batch(batch: list[tuple[int, list[str]]]) -> Any:
            return Parallel(**joblib_cfg, return_as="generator_unordered")(
                delayed(_execute_in_worker)(
                    idx,
                    overrides,
                    self.hydra_context,
                    self.config,
                    self.task_function,
                    singleton_state,
                    self.key,
                    track,
                )
                for idx, overrides in batch
            )

        track = tempfile.mkdtemp(prefix="mushin-joblib-")
        try:
            runs = _run_surviving_deaths(
                [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)],
                run_batch,
                Path(track),
                lost=lambda idx, ov, why: _lost_job_return(
                    self.hydra_context, self.config, ov, idx, None, why
                ),
                from_disk=lambda idx, ov: _job_return_from_disk(
                    self.hydra_context, self.config, ov, idx, None
                ),
            )
        finally:
            shutil.rmtree(track, ignore_errors=True)
        return [runs[initial_job_idx + i] for i in range(len(job_overrides))]


# a job whose worker dies before it starts (e.g. its arguments fail to unpickle) is tried this often
_MAX_TRIES = 3


def _run_surviving_deaths(
    todo: list[tuple[int, list[str]]],
    run_batch: Any,
    track: Any,
    *,
    lost: Any,
    from_disk: Any,
) -> dict[int, Any]:
    """Run the jobs ``todo`` ((job num, overrides)) with ``run_batch`` (joblib's
    Parallel, yielding (job num, JobReturn) as jobs finish), surviving the death of
    a worker process (``os._exit``, a segfault, the OOM killer).

    loky kills every worker of a pool when one dies, so after a death: jobs that
    finished keep their results; jobs that had not started run again on a fresh
    pool; of the jobs that had started (each worker writes ``<track>/<num>.start``
    first), a lone one is the job that died and becomes that job's failure (``lost``),
    with the worker's exit code or signal; several are run again one at a time, so
    the one that dies again is known.
    """
    import re
    from concurrent.futures.process import BrokenProcessPool

    runs: dict[int, Any] = {}
    tries: dict[int, int] = {}
    alone: list[tuple[int, list[str]]] = []
    while todo or alone:
        if alone:  # a suspect of an earlier death, alone in the pool
            batch = [alone.pop(0)]
        else:
            batch, todo = todo, []
        try:
            for idx, ret in run_batch(batch):
                runs[idx] = ret
        except BrokenProcessPool as e:
            text = str(e)
            codes = [
                int(c) for c in re.findall(r"\((-?\d+)\)", text.partition("exit codes of the workers")[2])
            ]
            started = []
            for idx, ov in batch:
                if idx in runs:
                    continue
                if (track / f"{idx}.end").exists():  # finished, its result lost with the pool
                    runs[idx] = from_disk(idx, ov)
                elif (track / f"{idx}.start").exists():
                    started.append((idx, ov))
                else:
                    tries[idx] = tries.get(idx, 0) + 1
                    if tries[idx] >= _MAX_TRIES:
                        runs[idx] = lost(
                            idx,
                            ov,
                            f"the worker pool broke {tries[idx]} times before it could start ({text})",
                        )
                    else:
                        todo.append((idx, ov))
            if len(started) == 1:
                idx, ov = started[0]
                pid = _read_text(track / f"{idx}.start")
                if len(codes) == 1:
                    how = _describe_exit(codes[0])
                elif codes:
                    how = "one of: " + "; ".join(_describe_exit(c) for c in codes)
                else:
                    how = _describe_exit(None)
                runs[idx] = lost(idx, ov, f"the joblib worker process running it (pid {pid}) died: {how}")
            elif started:
                for idx, _ in started:
                    (track / f"{idx}.start").unlink()
                log.warning(
                    "mushin_nb: a joblib worker died while jobs %s ran; running them again one at a "
                    "time to find the one that died (%s)",
                    [i for i, _ in started],
                    text.splitlines()[0] if text else type(e).__name__,
                )
                alone.extend(started)
    return runs


def _describe_exit(code: int | None) -> str:
    from mushin_nb._execution import describe_exit

    return describe_exit(code)


def _read_text(path: Any) -> str:
    try:
        return str(path.read_text(encoding="utf-8")).strip()
    except OSError:
        return "?"


def _job_config(hydra_context: Any, config: Any, overrides: list[str], idx: int, job_id: str | None) -> Any:
    """The job's full config as Hydra composes it (``load_sweep_config``), with
    ``hydra.job.num``/``id`` and ``hydra.runtime.output_dir`` set (as ``run_job``)."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = job_id if job_id is not None else f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
    hc = HydraConfig.instance()
    old = hc.cfg
    try:
        hc.set_config(cfg)
        out = os.path.join(
            str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        )
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(out)
    finally:
        hc.cfg = old
    return cfg


def _job_return(cfg: Any, overrides: list[str], status: Any, value: Any) -> Any:
    import copy

    from hydra.core.utils import JobReturn
    from omegaconf import OmegaConf, open_dict, read_write

    ret = JobReturn()
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    ret.cfg = task_cfg
    ret.hydra_cfg = OmegaConf.masked_copy(cfg, "hydra")
    ret.overrides = list(overrides)
    ret.working_dir = str(cfg.hydra.runtime.output_dir)
    ret.task_name = str(cfg.hydra.job.name)
    ret.status = status
    ret.return_value = value
    return ret


def _lost_job_return(
    hydra_context: Any,
    config: Any,
    overrides: list[str],
    idx: int,
    job_id: str | None,
    why: str,
) -> Any:
    """The JobReturn of a job whose process died; the death is recorded as that
    cell's failure when the job belongs to a mushin_nb sweep (then Hydra gets a
    completed job, as for any failure mushin_nb records), else a failed job."""
    from pathlib import Path

    from hydra.core.utils import JobStatus

    log.error("mushin_nb: job #%s (%s) did not finish: %s", idx, " ".join(_filter(overrides)), why)
    try:
        cfg = _job_config(hydra_context, config, overrides, idx, job_id)
    except Exception as e:  # cannot compose: report the death anyway
        from hydra.core.utils import JobReturn

        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = RuntimeError(f"job #{idx} ({' '.join(overrides)}) did not finish: {why} ({e})")
        return ret
    sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()
    job_dir = Path(str(cfg.hydra.runtime.output_dir))
    try:
        sub = job_dir.relative_to(sweep_dir).as_posix()
    except ValueError:
        sub = str(job_dir)
    rec = None
    try:
        from mushin_nb._execution import record_lost_job

        rec = record_lost_job(sweep_dir, list(overrides), idx, sub, why)
    except Exception as e:
        log.error("mushin_nb: could not record the failure of job #%s: %s", idx, e)
    if rec is None:
        exc = RuntimeError(f"job #{idx} ({' '.join(overrides)}) did not finish: {why}")
        return _job_return(cfg, overrides, JobStatus.FAILED, exc)
    return _job_return(cfg, overrides, JobStatus.COMPLETED, _record_value(rec))


def _record_value(rec: Any) -> Any:
    """What JobRunner returned for a job, from its stored record."""
    from mushin_nb._execution import JobOutcome

    if rec.status == "done":
        return rec.metrics
    return JobOutcome(rec.status, rec.error)


def _job_return_from_disk(
    hydra_context: Any, config: Any, overrides: list[str], idx: int, job_id: str | None
) -> Any:
    """The JobReturn of a job that finished but whose return was lost with a
    broken pool: rebuilt from its job directory (mushin_nb's stored result)."""
    import json
    from pathlib import Path

    from hydra.core.utils import JobStatus

    cfg = _job_config(hydra_context, config, overrides, idx, job_id)
    job_dir = Path(str(cfg.hydra.runtime.output_dir))
    try:
        from mushin_nb._store import RESULT_JSON, JobResult

        rec = JobResult.from_json(json.loads((job_dir / RESULT_JSON).read_text(encoding="utf-8")), job_dir)
    except Exception:
        log.warning("mushin_nb: job #%s finished but its return value was lost with its worker", idx)
        return _job_return(cfg, overrides, JobStatus.UNKNOWN, None)
    return _job_return(cfg, overrides, JobStatus.COMPLETED, _record_value(rec))


def _execute_in_worker(
    idx: int,
    overrides: list[str],
    hydra_context: Any,
    config: Any,
    task_function: Any,
    singleton_state: dict[Any, Any],
    key: str,
    track: str | None = None,
) -> Any:
    """One job in a joblib worker; the worker keeps its MushinLauncher (and so
    its composed templates) for the rest of the sweep. Returns (idx, JobReturn).
    ``<track>/<idx>.start`` / ``.end`` tell the driver that the job started /
    finished in case the worker dies."""
    import os

    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    if track is not None:
        _write(os.path.join(track, f"{idx}.start"), str(os.getpid()))
    setup_globals()
    Singleton.set_state(singleton_state)
    cache = _worker_cache()
    launcher = cache.get(key)
    if launcher is None:
        cache.clear()
        launcher = MushinLauncher(job_id="name_num", quiet=True)
        launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        cache[key] = launcher
    ret = launcher.launch([overrides], idx)[0]
    if track is not None:
        _write(os.path.join(track, f"{idx}.end"), "")
    return idx, ret


def _worker_cache() -> dict[str, Any]:
    # kept across Hydra's re-execution of this module by its plugin scanner
    g = globals()
    if "_WORKER_CACHE" not in g:
        g["_WORKER_CACHE"] = {}
    return g["_WORKER_CACHE"]  # type: ignore[no-any-return]


class _Compose(Exception):
    """This job needs Hydra's own composition."""


def _filter(overrides: Sequence[str]) -> list[str]:
    return [x for x in overrides if not x.startswith("hydra.")]


def _plain_value(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_plain_value(x) for x in v)
    return False  # dicts merge into the node they override: compose


# ---------------------------------------------------------------------- omegaconf helpers


def _shell(node: Any) -> Any:
    """A new container with the same metadata whose children are the same node
    objects (not re-parented)."""
    import copy
    from collections import defaultdict

    res = object.__new__(type(node))
    md = copy.copy(node.__dict__["_metadata"])
    if md.flags is not None:
        md.flags = dict(md.flags)
    md.resolver_cache = defaultdict(dict)
    res.__dict__["_metadata"] = md
    res.__dict__["_flags_cache"] = None
    content = node.__dict__["_content"]
    if isinstance(content, dict):
        content = dict(content)
    elif isinstance(content, list):
        content = list(content)
    res.__dict__["_content"] = content
    res.__dict__["_parent"] = None
    return res


def _copy_leaf(node: Any) -> Any:
    """A copy of a value node (or a small container) with no parent."""
    import copy

    if "_content" in node.__dict__:  # a container (e.g. hydra.overrides.task)
        parent = node.__dict__["_parent"]
        try:
            node.__dict__["_parent"] = None
            res = copy.deepcopy(node)
        finally:
            node.__dict__["_parent"] = parent
    else:
        res = object.__new__(type(node))
        res.__dict__.update(node.__dict__)
        md = copy.copy(node.__dict__["_metadata"])
        if md.flags is not None:
            md.flags = dict(md.flags)
        res.__dict__["_metadata"] = md
        res.__dict__["_flags_cache"] = None
    res.__dict__["_parent"] = None
    return res


_MISS = object()


def _scalar_of(node: Any) -> Any:
    """The value of a plain scalar node (no interpolation), else _MISS."""
    if node is None or "_content" in node.__dict__:
        return _MISS
    try:
        if node._is_interpolation() or node._is_missing():
            return _MISS
        v = node._value()
    except Exception:
        return _MISS
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return _MISS


def _node_at(root: Any, keys: Sequence[Any]) -> Any:
    node = root
    for k in keys:
        content = node.__dict__.get("_content") if node is not None else None
        if not isinstance(content, dict) or k not in content:
            return None
        node = content[k]
    return node


def _child(node: Any, key: Any) -> Any:
    return node.__dict__["_content"][key]


def _walk_interpolations(node: Any, path: tuple[Any, ...], out: list[tuple[Any, ...]]) -> None:
    from omegaconf import DictConfig, ListConfig

    content = node.__dict__.get("_content")
    if isinstance(node, DictConfig) and isinstance(content, dict):
        for k, v in content.items():
            _walk_interpolations(v, path + (k,), out)
    elif isinstance(node, ListConfig) and isinstance(content, list):
        for i, v in enumerate(content):
            _walk_interpolations(v, path + (i,), out)
    elif node._is_interpolation():
        out.append(path)


class _Template:
    """The composed configuration of one shape of job overrides, and what is
    needed to make each job's configuration and files from it."""

    def __init__(self, launcher: MushinLauncher, overrides: list[str]) -> None:
        import copy

        from omegaconf import OmegaConf, open_dict, read_write

        self.launcher = launcher
        hc = launcher.hydra_context
        # composed by Hydra, exactly as BasicLauncher does it
        cfg = hc.config_loader.load_sweep_config(launcher.config, list(overrides))
        task = copy.deepcopy(cfg)
        with read_write(task):
            with open_dict(task):
                del task["hydra"]
        self.task = task
        self.task_keys = list(task.keys())
        # the frozen Hydra config every job's Hydra config shares nodes with
        with open_dict(cfg):
            cfg.hydra.job.id = 0
            cfg.hydra.job.num = 0
        with read_write(cfg.hydra.runtime):
            with open_dict(cfg.hydra.runtime):
                cfg.hydra.runtime.output_dir = "/"
        hydra_root = OmegaConf.masked_copy(cfg, "hydra")
        OmegaConf.set_readonly(hydra_root.hydra, True)
        self.frozen = copy.deepcopy(hydra_root)
        h = self.frozen.hydra
        # paths (under hydra) of nodes copied per job: per-job fields + interpolations
        interp: list[tuple[Any, ...]] = []
        _walk_interpolations(h, (), interp)
        self.interp = [p for p in interp if p not in _JOB_FIELDS]
        leaves = list(_JOB_FIELDS) + self.interp
        spine = set()
        for p in leaves:
            for n in range(1, len(p)):
                spine.add(p[:n])
        self.spine = sorted(spine, key=len)
        self.leaves = leaves
        # constants of run_job
        from hydra import version

        chdir = h.job.chdir
        if chdir is None and version.base_at_least("1.2"):
            chdir = False
        self.chdir = chdir
        self.output_subdir = h.output_subdir
        self.env_set = OmegaConf.to_container(h.job.env_set, resolve=True) if h.job.env_set else {}
        self.kv_sep = h.job.config.override_dirname.kv_sep
        self.item_sep = h.job.config.override_dirname.item_sep
        self.exclude_keys = list(h.job.config.override_dirname.exclude_keys)
        self.job_name = h.job.name
        self.hydra_logging = h.hydra_logging
        self.verbose = h.verbose
        self._const: dict[tuple[str, ...], Any] = {}
        self.fast_interp = True
        self.checking = True  # the first job: compare the fast paths with OmegaConf
        sweep = _child(h, "sweep")
        self.sweep_dir_raw = _child(sweep, "dir")
        self.sweep_subdir_raw = _child(sweep, "subdir")
        # job logging: a plain dict; per job only its interpolations are resolved
        jl = h.job_logging
        self.logging_plain = OmegaConf.to_container(jl, resolve=False) if jl is not None else None
        self.logging_interp = [p[1:] for p in self.interp if p and p[0] == "job_logging"]
        self._last_logging: dict[Any, Any] | None = None
        self._file_handlers: dict[str, Any] = {}
        self._root_handlers: list[Any] = []
        # hydra.yaml as a text template
        self.yaml_ok = True
        self._make_yaml_template()
        from hydra.core.utils import JobRuntime

        self.task_name = JobRuntime.instance().get("name")

    # ------------------------------------------------------------ interpolations
    def _ref(self, path: str, values: dict[tuple[str, ...], Any], task_cfg: Any) -> Any:
        keys = tuple(path.split("."))
        if keys[0] == "hydra":
            rel = keys[1:]
            if rel in values:
                return values[rel]
            if any(rel[: len(f)] == f or f[: len(rel)] == rel for f in _JOB_FIELDS):
                return _MISS
            v = self._const.get(rel, None)
            if v is None and rel not in self._const:
                v = self._const[rel] = _scalar_of(_node_at(_child(self.frozen, "hydra"), rel))
            return v
        return _scalar_of(_node_at(task_cfg, keys))

    def _resolve(self, node: Any, values: dict[tuple[str, ...], Any], task_cfg: Any) -> Any:
        """``str`` of a string node's value with ``${a.b}`` references resolved
        without OmegaConf's grammar parser; _MISS when it is not that simple."""
        import re

        if self.fast_interp is False:
            return _MISS
        raw = node._value() if "_content" not in node.__dict__ else None
        if not isinstance(raw, str):
            return _MISS
        if "${" not in raw:
            return raw
        if "\\" in raw:
            return _MISS
        parts = re.split(r"\$\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}", raw)
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                if "${" in part:
                    return _MISS
                out.append(part)
            else:
                v = self._ref(part, values, task_cfg)
                if v is _MISS:
                    return _MISS
                out.append(str(v))
        return "".join(out)

    def _select(
        self, full: Any, key: str, node: Any, values: dict[tuple[str, ...], Any], task_cfg: Any
    ) -> str:
        from omegaconf import OmegaConf

        v = self._resolve(node, values, task_cfg)
        if v is not _MISS and not self.checking:
            return str(v)
        ref = str(OmegaConf.select(full, key))
        if v is not _MISS and ref != v:  # checked on the first job of the template
            self.fast_interp = False
        return ref

    # ------------------------------------------------------------ hydra.yaml
    def _make_yaml_template(self) -> None:
        import copy

        from omegaconf import OmegaConf

        cont = OmegaConf.to_container(self.frozen, resolve=False, enum_to_str=True)
        cont = copy.deepcopy(cont)
        for i, p in enumerate(_JOB_FIELDS):
            d = cont["hydra"]
            for k in p[:-1]:
                d = d[k]
            d[p[-1]] = _SENTINEL.format(i)
        text = _dump(cont)
        lines = text.split("\n")
        pieces: list[Any] = []
        cur: list[str] = []
        found = 0
        for line in lines:
            hit = None
            for i in range(len(_JOB_FIELDS)):
                if line.endswith(": " + _SENTINEL.format(i)):
                    hit = i
                    break
            if hit is None:
                cur.append(line)
            else:
                pieces.append("\n".join(cur) + ("\n" if cur else ""))
                pieces.append(hit)
                cur = []
                found += 1
        pieces.append("\n".join(cur))
        self.yaml_pieces = pieces if found == len(_JOB_FIELDS) else None

    def _render_hydra_yaml(self, values: dict[tuple[str, ...], Any]) -> tuple[str | None, dict[Any, str]]:
        if self.yaml_pieces is None:
            return None, {}
        # one dump of the per-job fields in their nesting: cut it into the field texts
        tree: dict[str, Any] = {}
        for p in _JOB_FIELDS:
            tree.setdefault(p[0], {})[p[1]] = values[p]
        text = _dump({"hydra": tree})
        lines = text.split("\n")
        starts = {}
        for p in _JOB_FIELDS:
            head = "    " + p[1] + ":"
            for j, line in enumerate(lines):
                if line.startswith(head) and (len(line) == len(head) or line[len(head)] == " "):
                    if j not in starts.values():
                        starts[p] = j
                        break
        order = sorted(starts.items(), key=lambda kv: kv[1])
        chunks: dict[tuple[str, ...], str] = {}
        for n, (p, j) in enumerate(order):
            end = order[n + 1][1] if n + 1 < len(order) else len(lines)
            block = lines[j:end]
            # drop the section header lines ("  job:") that precede the next field
            while block and not block[-1].startswith("   "):
                block.pop()
            chunks[p] = "\n".join(block) + "\n"
        out = []
        for piece in self.yaml_pieces:
            out.append(chunks[_JOB_FIELDS[piece]] if isinstance(piece, int) else piece)
        return "".join(out), chunks

    # ------------------------------------------------------------ per job
    def _hydra_cfg(self, values: dict[tuple[str, ...], Any]) -> Any:
        """The job's ``{hydra: ...}`` config: new nodes along the per-job paths,
        the frozen template's nodes everywhere else."""
        root = _shell(self.frozen)
        made: dict[tuple[Any, ...], Any] = {(): _child(root, "hydra")}
        h = _shell(made[()])
        h.__dict__["_parent"] = root
        root.__dict__["_content"]["hydra"] = h
        made[()] = h
        for p in self.spine:
            parent = made[p[:-1]]
            node = _shell(_child(parent, p[-1]))
            node.__dict__["_parent"] = parent
            parent.__dict__["_content"][p[-1]] = node
            made[p] = node
        for p in self.leaves:
            parent = made[p[:-1]]
            leaf = _copy_leaf(_child(parent, p[-1]))
            if p in values:
                leaf._set_value(values[p])
            leaf.__dict__["_parent"] = parent
            parent.__dict__["_content"][p[-1]] = leaf
        return root

    def run(self, overrides: list[str], idx: int, parsed: list[Any]) -> Any:
        import copy
        import os

        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobReturn, JobStatus, _flush_loggers, env_override
        from omegaconf import OmegaConf

        launcher = self.launcher
        # the task config: the template's, with this job's values
        task_cfg = copy.deepcopy(self.task)
        try:
            for o in parsed:
                OmegaConf.update(
                    task_cfg, o.key_or_group, o.value(), merge=True, force_add=o.is_add() or o.is_force_add()
                )
        except Exception:
            raise _Compose() from None  # e.g. a value its typed node refuses: Hydra raises its own error
        from hydra._internal.config_loader_impl import get_overrides_dirname

        app = list(parsed)
        values: dict[tuple[str, ...], Any] = {
            ("job", "override_dirname"): get_overrides_dirname(
                overrides=app, kv_sep=self.kv_sep, item_sep=self.item_sep, exclude_keys=self.exclude_keys
            ),
            ("job", "id"): idx if launcher.job_id == "num" else f"{self.job_name}_{idx}",
            ("job", "num"): idx,
            ("overrides", "task"): list(overrides),
            ("runtime", "cwd"): os.getcwd(),
            ("runtime", "output_dir"): "/",
        }
        hroot = self._hydra_cfg(values)
        hnode = _child(hroot, "hydra")
        # the job's full config: the task config's nodes + the hydra node
        full = _shell(task_cfg)
        full.__dict__["_content"]["hydra"] = hnode
        # resolver cache (e.g. ${now:...}) as Hydra's load_sweep_config copies it
        OmegaConf.copy_cache(from_config=launcher.config, to_config=full)
        hnode.__dict__["_parent"] = full
        hnode._invalidate_flags_cache()
        hc = HydraConfig.instance()
        orig_hydra_cfg = hc.cfg
        old_cwd = os.getcwd()
        hc.cfg = hroot
        output_dir = self._select(full, "hydra.sweep.dir", self.sweep_dir_raw, values, task_cfg)
        subdir = self._select(full, "hydra.sweep.subdir", self.sweep_subdir_raw, values, task_cfg)
        output_dir = os.path.join(output_dir, subdir)
        output_dir_abs = os.path.abspath(output_dir)
        values[("runtime", "output_dir")] = output_dir_abs
        rt = _child(hnode, "runtime")
        od = _child(rt, "output_dir")
        od.__dict__["_parent"] = None
        od._set_value(output_dir_abs)
        od.__dict__["_parent"] = rt
        _chdir = self.chdir
        try:
            ret = JobReturn()
            ret.cfg = task_cfg
            ret.hydra_cfg = hroot
            ret.overrides = list(overrides)
            os.makedirs(output_dir, exist_ok=True)
            if _chdir is None:  # version_base < 1.2: Hydra 1.1 behaviour
                _chdir = True
            if _chdir:
                os.chdir(output_dir)
                ret.working_dir = output_dir
            else:
                ret.working_dir = os.getcwd()
            self._configure_job_logging(full, values, task_cfg)
            if self.output_subdir is not None:
                self._write_files(output_dir_abs, task_cfg, hroot, values, overrides)
            with env_override(self.env_set):
                launcher.hydra_context.callbacks.on_job_start(
                    config=full, task_function=launcher.task_function
                )
                try:
                    ret.return_value = launcher.task_function(task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = self.task_name
            _flush_loggers()
            launcher.hydra_context.callbacks.on_job_end(config=full, job_return=ret)
            return ret
        finally:
            self.checking = False
            hc.cfg = orig_hydra_cfg
            hnode.__dict__["_parent"] = hroot
            hnode._invalidate_flags_cache()
            if _chdir:
                os.chdir(old_cwd)

    def _write_files(
        self,
        output_dir: str,
        task_cfg: Any,
        hroot: Any,
        values: dict[tuple[str, ...], Any],
        overrides: list[str],
    ) -> None:
        import os

        from omegaconf import OmegaConf

        d = os.path.join(output_dir, str(self.output_subdir))
        os.makedirs(d, exist_ok=True)
        _write(os.path.join(d, "config.yaml"), OmegaConf.to_yaml(task_cfg))
        text = None
        chunks: dict[Any, str] = {}
        if self.yaml_ok:
            vals = dict(values)
            vals[("job", "id")] = str(values[("job", "id")])
            text, chunks = self._render_hydra_yaml(vals)
            if self.checking:  # first job of this template: check against OmegaConf
                ref = OmegaConf.to_yaml(hroot)
                self.yaml_ok = text == ref
                if not self.yaml_ok:
                    log.debug("mushin_nb launcher: hydra.yaml template differs from OmegaConf; not used")
                text = ref
        if text is None:
            text = OmegaConf.to_yaml(hroot)
        _write(os.path.join(d, "hydra.yaml"), text)
        ov_text = _overrides_from_chunk(chunks.get(("overrides", "task")))
        if ov_text is None or self.checking:
            ref = _dump(list(overrides))
            if ov_text is not None and ov_text != ref:
                self.yaml_ok = False
            ov_text = ref
        _write(os.path.join(d, "overrides.yaml"), ov_text)

    def _configure_job_logging(self, full: Any, values: dict[tuple[str, ...], Any], task_cfg: Any) -> None:
        """Hydra's ``configure_log(hydra.job_logging, hydra.verbose)``; when only
        file handlers' file names changed since the previous job, only those
        handlers are replaced (``logging.config`` is slow)."""
        import logging as _logging

        from hydra.core.utils import configure_log

        if self.logging_plain is None:
            configure_log(None, self.verbose)  # type: ignore[arg-type]
            self._last_logging = None
            return
        resolved = {}
        jl = _node_at(_child(full, "hydra"), ("job_logging",))
        for p in self.logging_interp:
            key = "hydra.job_logging." + ".".join(str(k) for k in p)
            resolved[p] = self._select(full, key, _node_at(jl, p), values, task_cfg)
        last = self._last_logging
        root = _logging.getLogger()
        swap: list[tuple[str, str]] | None = None
        if last is not None and list(root.handlers) == self._root_handlers:
            swap = []
            for p, v in resolved.items():
                if last.get(p) == v:
                    continue
                hconf = self.logging_plain.get("handlers", {}).get(p[1]) if len(p) == 3 else None
                if (
                    len(p) == 3
                    and p[0] == "handlers"
                    and p[2] == "filename"
                    and isinstance(hconf, dict)
                    and hconf.get("class") == "logging.FileHandler"
                    and p[1] in self._file_handlers
                ):
                    swap.append((p[1], str(v)))
                else:
                    swap = None
                    break
        if swap is None:
            configure_log(_child(full, "hydra").job_logging, self.verbose)
            self._file_handlers = {}
            for name, hconf in (self.logging_plain.get("handlers") or {}).items():
                hobj = _logging._handlers.get(name)  # type: ignore[attr-defined]
                if (
                    isinstance(hconf, dict)
                    and hconf.get("class") == "logging.FileHandler"
                    and hobj is not None
                ):
                    self._file_handlers[name] = hobj
            self._root_handlers = list(root.handlers)
        else:
            for name, filename in swap:
                old = self._file_handlers[name]
                hconf = self.logging_plain["handlers"][name]
                new = _logging.FileHandler(
                    filename,
                    mode=hconf.get("mode", "a"),
                    encoding=hconf.get("encoding"),
                    delay=bool(hconf.get("delay", False)),
                    errors=hconf.get("errors"),
                )
                new.setLevel(old.level)
                new.setFormatter(old.formatter)
                for f in old.filters:
                    new.addFilter(f)
                new.set_name(name)
                loggers = [root] + [
                    lg
                    for lg in _logging.Logger.manager.loggerDict.values()
                    if isinstance(lg, _logging.Logger)
                ]
                for lg in loggers:
                    hs = lg.handlers
                    for k, hh in enumerate(hs):
                        if hh is old:
                            hs[k] = new
                old.close()
                self._file_handlers[name] = new
            self._root_handlers = list(root.handlers)
        self._last_logging = resolved


def _overrides_from_chunk(chunk: str | None) -> str | None:
    """overrides.yaml from the ``    task:`` block of hydra.yaml, when every item
    is one short line (then its rendering does not depend on the indent)."""
    if not chunk:
        return None
    lines = chunk.rstrip("\n").split("\n")
    if len(lines) == 1:
        return "[]\n" if lines[0] == "    task: []" else None
    if lines[0] != "    task:":
        return None
    out = []
    for line in lines[1:]:
        if not line.startswith("    - ") or len(line) > 70:
            return None
        out.append(line[4:])
    return "\n".join(out) + "\n"


def _dump(obj: Any) -> str:
    """``OmegaConf.to_yaml``'s yaml.dump of a plain container."""
    import yaml
    from omegaconf._utils import get_omega_conf_dumper

    return yaml.dump(  # type: ignore[no-any-return]
        obj, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=get_omega_conf_dumper()
    )


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


__all__ = ["MushinJoblibLauncher", "MushinJoblibLauncherConf", "MushinLauncher", "MushinLauncherConf"]
