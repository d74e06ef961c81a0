"""The mushin_nb in-process launcher (``hydra/launcher=mushin_nb``, the default of
mushin_nb for in-process sweeps).

Hydra's ``BasicLauncher`` composes the whole configuration again for every job
(``config_loader.load_sweep_config``: 80-110 ms). This launcher makes it once
per *shape* of job overrides (the same keys with the same override types): from
the sweep's master config when the job overrides only set values (``_derive``),
else with Hydra itself; then makes each job's configuration and files from that template
(``_template.JobTemplate``): the same files with the same content as Hydra's
``run_job`` (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``, the
job log file).

It falls back to Hydra's own per-job composition (exactly what ``BasicLauncher``
does) for any job with an override it does not apply itself: config-group
choices, ``+``/``~`` on groups, deletions, ``hydra.*`` overrides, dict values,
package overrides, and when Hydra callbacks are configured. ``fast=false``
(``hydra.launcher.fast=false``) always falls back.

The per-job work relies on three patches of Hydra / OmegaConf internals, each
with a guard that falls back to the public API (``mushin_nb._compat``).

``hydra/launcher=mushin_nb_joblib`` (:class:`MushinJoblibLauncher`, what
mushin_nb's ``launcher="joblib"`` runs) is hydra-joblib-launcher whose workers
each run a ``MushinLauncher``.

Module map: ``launcher.py`` (both launchers and their configs), ``_template.py``
(the per-template fast path), ``_derive.py`` (a template's config made from the
master config, without a second composition), ``_quick.py`` (the usual overrides
parsed and their values written without ANTLR / PyYAML), ``_job_yaml.py``
(``hydra.yaml`` and ``config.yaml`` as text templates), ``_job_logging.py`` (per-job logging), ``_joblib.py`` (the joblib
workers and surviving their deaths), ``_job_returns.py`` (returns of jobs whose
process died, for every multi-process launcher), ``sweeper.py`` (the grid
sweeper); ``mushin_nb/_compat/`` (the patches of third-party internals).

Kept import-light: Hydra imports (and re-executes) every module under
``hydra_plugins`` when it scans for plugins, so all work is imported lazily and
no state lives at module level. No ``from __future__ import annotations`` (see
``sweeper.py``).

Examples
--------
>>> import tempfile
>>> from hydra_zen import launch, make_config
>>> d = tempfile.mkdtemp()
>>> (jobs,) = launch(make_config(x=0), lambda cfg: cfg.x * 10, multirun=True, version_base="1.3",
...     overrides=["hydra/launcher=mushin_nb", "hydra/hydra_logging=none", "hydra/job_logging=none",
...                f"hydra.sweep.dir={d}", "x=1,2"])
>>> [(j.hydra_cfg.hydra.job.num, j.return_value) for j in jobs]
[(0, 10), (1, 20)]
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

__all__ = ["MushinJoblibLauncher", "MushinJoblibLauncherConf", "MushinLauncher", "MushinLauncherConf"]


@dataclass
class MushinLauncherConf:
    """``hydra/launcher=mushin_nb``'s settings."""

    _target_: str = "hydra_plugins.mushin_nb_plugins.launcher.MushinLauncher"
    # False: compose every job with Hydra (the BasicLauncher's way, 80-110 ms a job)
    fast: bool = True


ConfigStore.instance().store(
    group="hydra/launcher", name="mushin_nb", node=MushinLauncherConf, provider="mushin_nb"
)


class MushinLauncher(Launcher):
    """In-process launcher: Hydra's ``BasicLauncher`` semantics and files, with
    the configuration composed once per shape of job overrides instead of once
    per job.

    Parameters
    ----------
    fast : bool
        False: compose every job with Hydra (as ``BasicLauncher``).
    job_id : str
        ``"num"``: ``hydra.job.id`` is the job number (``BasicLauncher``);
        ``"name_num"``: ``<job name>_<num>`` (hydra-joblib-launcher's ids).
    quiet : bool
        Log the launched jobs at DEBUG instead of INFO.
    """

    def __init__(self, fast: bool = True, job_id: str = "num", quiet: bool = False) -> None:
        super().__init__()
        self.fast = bool(fast)
        self.job_id = job_id
        self.quiet = quiet
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None
        self._templates: dict[Any, Any] = {}
        self._parsed: dict[str, Any] = {}
        self._group_keys: dict[str, bool] = {}
        self._parser: Any = None
        self._quick: Any = None
        self._has_callbacks = False
        self._env_copy: list[str] = []

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """Hydra's ``Launcher.setup``: keep the context, task and sweep config."""
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # ------------------------------------------------------------------ launch
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """Run the jobs one after the other in this process; returns their JobReturns."""
        from pathlib import Path

        from hydra.core.utils import setup_globals

        from hydra_plugins.mushin_nb_plugins._job_returns import shown_overrides

        setup_globals()
        assert self.hydra_context is not None
        assert self.config is not None
        assert self.task_function is not None

        self._hydra_logging()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        if not self.quiet:
            log.info(f"Launching {len(job_overrides)} jobs locally")
        self._has_callbacks = bool(self.config.hydra.callbacks)
        if self._quick is None and self.fast:
            from hydra_plugins.mushin_nb_plugins._quick import QuickParser

            self._quick = QuickParser(self._hydra_parse)
        self._env_copy = list(self.config.hydra.job.env_copy or [])
        runs: list[Any] = []
        job_logging_on = False  # a fast job set the job logging: put Hydra's back at the end
        from mushin_nb._registry import live_state

        state = live_state(str(self.config.hydra.sweep.dir))
        try:
            for i, overrides in enumerate(job_overrides):
                if state is not None and state.cancel.is_set() and not state.record_unstarted:
                    # the run's cancel (or on_error="stop"): the jobs not started are its
                    # cancelled cells, with nothing written for them (a 100k-cell sweep
                    # cancelled early stops at once instead of recording every cell)
                    break
                idx = initial_job_idx + i
                overrides = list(overrides)
                line = f"\t#{idx} : {' '.join(shown_overrides(overrides))}"
                (log.debug if job_logging_on or self.quiet else log.info)(line)
                ret, job_logging_on = self._launch_one(overrides, idx, job_logging_on)
                runs.append(ret)
        finally:
            if job_logging_on:
                self._hydra_logging()
        return runs

    def _hydra_logging(self) -> None:
        from hydra.core.utils import configure_log

        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

    def _launch_one(self, overrides: list[str], idx: int, job_logging_on: bool) -> tuple[Any, bool]:
        """Run one job, the fast way when it can; returns its JobReturn and whether
        the job's logging is still on."""
        from hydra_plugins.mushin_nb_plugins._template import NeedsComposition

        tmpl = self._template_for(overrides) if self.fast else None
        if tmpl is not None:
            try:
                return tmpl.run(overrides, idx, self._parsed_list(overrides)), True
            except NeedsComposition:
                pass
        elif job_logging_on:
            self._hydra_logging()
        ret = self._run_composed(overrides, idx)
        self._hydra_logging()
        return ret, False

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
            o = self._quick.parse(text) if self._quick is not None else None
            if o is None:
                o = self._hydra_parse(text)
            if len(self._parsed) < 100_000:
                self._parsed[text] = o
        return o

    def _hydra_parse(self, text: str) -> Any:
        if self._parser is None:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            self._parser = OverridesParser.create()
        return self._parser.parse_override(text)

    def _parsed_list(self, overrides: list[str]) -> list[Any]:
        return [self._parse(t) for t in overrides]

    def _is_group(self, key: str) -> bool:
        g = self._group_keys.get(key)
        if g is None:
            try:
                sources = self.hydra_context.config_loader.get_sources()
                g = any(s.is_group(key) for s in sources)
            except Exception:
                g = True  # cannot tell: let Hydra compose
            self._group_keys[key] = g
        return g

    def _signature(self, overrides: list[str]) -> tuple[Any, ...] | None:
        """The shape of a job's overrides, or None if one needs Hydra's composition."""
        import os

        from hydra_plugins.mushin_nb_plugins._template import plain_value

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
            if not plain_value(o.value()):
                return None
            sig.append((key, o.type))
        env_copy = self._env_copy
        env = tuple((k, os.environ.get(k)) for k in env_copy) if env_copy else ()
        return (tuple(sig), env)

    def _template_for(self, overrides: list[str]) -> Any:
        from hydra_plugins.mushin_nb_plugins._template import JobTemplate

        if self._has_callbacks:
            return None  # callbacks get the full per-job config: compose it
        sig = self._signature(overrides)
        if sig is None:
            return None
        tmpl = self._templates.get(sig)
        if tmpl is None:
            if len(self._templates) >= 16:
                return None
            tmpl = JobTemplate(self, overrides, self._parsed_list(overrides))
            self._templates[sig] = tmpl
        return tmpl if tmpl.usable else None


# ---------------------------------------------------------------------- joblib
# (Hydra instantiates a plugin by the module that defines its class: the
# joblib launcher's _target_ names this module, so the class lives here.)


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
    once per job.

    Parameters
    ----------
    **kwargs
        ``joblib.Parallel``'s settings (:class:`MushinJoblibLauncherConf`).
    """

    def __init__(self, **kwargs: Any) -> None:
        import uuid

        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None
        self.joblib = kwargs
        self.key = uuid.uuid4().hex

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """Hydra's ``Launcher.setup``: keep the context, task and sweep config."""
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """Run the jobs on joblib's loky workers; returns their JobReturns in job order."""
        import shutil
        import tempfile
        from pathlib import Path

        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, setup_globals
        from joblib import Parallel, delayed

        from hydra_plugins.mushin_nb_plugins._job_returns import (
            job_return_from_disk,
            lost_job_return,
            shown_overrides,
        )
        from hydra_plugins.mushin_nb_plugins._joblib import (
            execute_in_worker,
            process_joblib_cfg,
            run_surviving_deaths,
        )

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
            log.info("\t#{} : {}".format(initial_job_idx + idx, " ".join(shown_overrides(overrides))))
        singleton_state = Singleton.get_state()
        track = tempfile.mkdtemp(prefix="mushin-joblib-")
        args = (self.hydra_context, self.config, self.task_function, singleton_state, self.key, track)

        def run_batch(batch: list[tuple[int, list[str]]]) -> Any:
            return Parallel(**joblib_cfg, return_as="generator_unordered")(
                delayed(execute_in_worker)(idx, overrides, *args) for idx, overrides in batch
            )

        try:
            runs = run_surviving_deaths(
                [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)],
                run_batch,
                Path(track),
                lost=lambda idx, ov, why: lost_job_return(
                    self.hydra_context, self.config, ov, idx, None, why
                ),
                from_disk=lambda idx, ov: job_return_from_disk(
                    self.hydra_context, self.config, ov, idx, None
                ),
            )
        finally:
            shutil.rmtree(track, ignore_errors=True)
        return [runs[initial_job_idx + i] for i in range(len(job_overrides))]
