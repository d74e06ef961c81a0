"""BaseWorkflow, MultiRunMetricsWorkflow, RobustnessCurve: the mushin API.

Same names, arguments, defaults and attributes as ``rai_toolbox.mushin``; under
them, the engine of this package (every job's result persisted, the Dataset keyed
by parameter values, failures kept, live runs).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ._store import JobResult
from ._sweep import SweepSpec

if TYPE_CHECKING:
    from hydra_zen import hydra_list, multirun

    from ._execution import SweepRun

__all__ = ["BaseWorkflow", "OverrideValue", "zen", "is_zen"]


class _NotSet:  # rai's sentinel for "do not pass version_base"
    pass


VERSION_BASE_DEFAULT = "1.3"
"""Hydra's ``version_base`` when a run does not give one."""

OverrideValue = Union[str, int, float, bool, dict, None, "multirun", "hydra_list"]
"""The values a keyword of ``run()`` takes: one fixed value, or ``multirun`` / ``hydra_list``."""


class _Zen:
    """hydra-zen's ``zen``, imported when first called (Hydra is not imported to read a
    sweep directory: ``load_from_dir`` and ``to_xarray`` need none of it)."""

    __name__ = __qualname__ = "zen"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from hydra_zen import zen as real

        return real(*args, **kwargs)

    def __repr__(self) -> str:
        return "zen"


zen = _Zen()
"""The default ``task_fn_wrapper`` / ``pre_task_fn_wrapper``: hydra-zen's ``zen``, imported
on first use; passing ``hydra_zen.zen`` itself is the same (see :func:`is_zen`)."""


def is_zen(wrapper: Any) -> bool:
    """Whether ``wrapper`` is hydra-zen's ``zen`` (or the default that stands for it).

    Examples
    --------
    >>> import hydra_zen
    >>> is_zen(zen), is_zen(hydra_zen.zen), is_zen(None)
    (True, True, False)
    """
    if wrapper is zen:
        return True
    import sys

    mod = sys.modules.get("hydra_zen")
    return mod is not None and wrapper is getattr(mod, "zen", None)


class BaseWorkflow:
    """Base class of mushin workflows: a static ``task`` run over a Hydra multirun.

    Parameters
    ----------
    eval_task_cfg : dataclass, DictConfig or dict, optional
        The base configuration of every job (default: an empty config). Keyword
        values given to :meth:`run` override or extend it.

    Attributes (after :meth:`run`)
    ------------------------------
    cfgs : list
        Each job's configuration, in job order.
    metrics : dict
        ``{metric name: [value per job]}`` (jobs that returned a dict).
    jobs : list
        Hydra ``JobReturn`` objects of this run, sorted by job number.
    working_dir : Path
        The sweep directory.
    multirun_task_overrides : dict
        The swept parameters as ``multirun`` of their values and the fixed ones
        as their typed values.

    Examples
    --------
    A subclass gives the static ``task`` (see :class:`MultiRunMetricsWorkflow` for the
    metrics workflow most sweeps use):

    >>> import tempfile
    >>> from mushin_nb import BaseWorkflow, multirun
    >>> class Echo(BaseWorkflow):
    ...     @staticmethod
    ...     def task(x: int) -> dict:
    ...         return dict(x2=2 * x)
    ...     def jobs_post_process(self) -> None:  # what to gather once the jobs ended
    ...         self.n_jobs = len(self.jobs)
    >>> wf = Echo()
    >>> run = wf.start(x=multirun([1, 2]), working_dir=tempfile.mkdtemp())
    >>> run.wait()["x2"].values.tolist(), wf.n_jobs
    ([2, 4], 2)
    """

    _REQUIRED_STATIC_METHODS = ("task", "pre_task")

    def __init__(self, eval_task_cfg: Any = None) -> None:
        self._eval_task_cfg = eval_task_cfg
        self._reset()
        self._working_dir: Path | None = None

    def _reset(self) -> None:
        self.cfgs_: list[Any] | None = []
        self._cfgs_of: tuple[list[Any], list[JobResult]] | None = None  # (jobs, results): cfgs on demand
        self.metrics: dict[str, list[Any]] = {}
        self.workflow_overrides: dict[str, Any] = {}
        self.jobs: Any = []
        self._spec: SweepSpec | None = None
        self._results: list[JobResult] = []
        self._manifest: dict[str, Any] | None = None
        self.last_run: SweepRun | None = None

    # ------------------------------------------------------------ rai attributes
    @property
    def eval_task_cfg(self) -> Any:
        """The base configuration of every job (default: hydra-zen's empty
        ``make_config()``, made on first use)."""
        if self._eval_task_cfg is None:
            from hydra_zen import make_config

            self._eval_task_cfg = make_config()
        return self._eval_task_cfg

    @eval_task_cfg.setter
    def eval_task_cfg(self, value: Any) -> None:
        self._eval_task_cfg = value

    @property
    def working_dir(self) -> Path:
        """The sweep directory of the last run (or of :meth:`load_from_dir`)."""
        if self._working_dir is None:
            raise ValueError("`self.working_dir` must be set.")
        return self._working_dir

    @working_dir.setter
    def working_dir(self, value: str | Path) -> None:
        p = Path(value).resolve()
        if not p.is_dir():
            raise FileNotFoundError(f"`working_dir` {p} is not an existing directory")
        self._working_dir = p

    @property
    def cfgs(self) -> list[Any]:
        """Each job's configuration, in job order (read from the job directories on
        first use after a reload)."""
        if self.cfgs_ is None and self._cfgs_of is not None:  # a run's: its jobs' configs
            self.cfgs_ = _cfgs_in_job_order(*self._cfgs_of)
            self._cfgs_of = None
        if self.cfgs_ is None:  # loaded from disk lazily: YAML is slow at scale
            from hydra_zen import load_from_yaml

            cfgs = []
            for d in self._job_dirs():
                f = d / ".hydra" / "config.yaml"
                cfgs.append(load_from_yaml(f) if f.exists() else None)
            self.cfgs_ = cfgs
        return self.cfgs_

    @cfgs.setter
    def cfgs(self, value: list[Any]) -> None:
        self.cfgs_ = value
        self._cfgs_of = None

    def _job_dirs(self) -> list[Path]:
        if self._working_dir is None:
            return []
        return [self._working_dir / r.subdir for r in sorted(self._results, key=lambda r: r.job_num)]

    @property
    def multirun_task_overrides(self) -> dict[str, Any]:
        """Swept parameters as ``multirun([...values])``, fixed ones as their
        values (a ``hydra_list`` comes back as a list), in the order Hydra got them."""
        from hydra_zen import multirun

        spec = self._require_spec()
        out: dict[str, Any] = {}
        for p in spec.params:
            out[p.name] = multirun(list(p.values)) if p.swept else p.value
        return out

    def _require_spec(self) -> SweepSpec:
        if self._spec is None:
            raise ValueError(
                f"{type(self).__name__} has no sweep yet: call .run(...) or .load_from_dir(dir) first."
            )
        return self._spec

    # ------------------------------------------------------------ task
    @staticmethod
    def pre_task(*args: Any, **kwargs: Any) -> None:
        """Runs in each job before ``task``'s own config fields are instantiated
        (e.g. to seed random number generators). Must be a static method."""

    @staticmethod
    def task(*args: Any, **kwargs: Any) -> Any:
        """The work of one job; must be a static method returning a dict of
        metrics (or None)."""
        raise NotImplementedError()

    def validate(self, include_pre_task: bool = True) -> None:
        """Check that the base config provides every required parameter of
        ``task`` (and ``pre_task``); raises hydra-zen's ``HydraZenValidationError``."""
        if include_pre_task:
            zen(self.pre_task).validate(self.eval_task_cfg)
        zen(self.task).validate(self.eval_task_cfg)

    def _check_static(self) -> None:
        for name in self._REQUIRED_STATIC_METHODS:
            attr = inspect.getattr_static(self, name)
            if not isinstance(attr, staticmethod):
                raise TypeError(f"{type(self).__name__}.{name} must be a static method")

    # ------------------------------------------------------------ run
    def run(
        self,
        *,
        working_dir: str | None = None,
        sweeper: str | None = None,
        launcher: str | None = None,
        overrides: list[str] | None = None,
        task_fn_wrapper: Callable[[Callable[..., Any]], Callable[[Any], Any]] | None = zen,
        pre_task_fn_wrapper: Callable[[Callable[..., Any]], Callable[[Any], Any]] | None = zen,
        version_base: str | type[_NotSet] | None = VERSION_BASE_DEFAULT,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        progress: bool = True,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
        save: str | Path | None = None,
        verbose: bool = False,
        **workflow_overrides: OverrideValue,
    ) -> None:
        """Run ``task`` over the grid of the ``multirun(...)`` keyword values and
        wait for it.

        Keyword values are task parameters: ``multirun([...])`` values are swept
        (one job per value, dimensions of the Dataset), every other value is one
        fixed value of its own type. ``overrides`` takes Hydra's grammar (sweeps
        and ``hydra.*`` settings included) and is not mutated.

        Parameters beyond rai mushin's:

        on_error : {"collect", "stop", "ignore"}
            "collect" runs every job and raises :class:`SweepError` at the end if
            any failed (with the partial Dataset at ``err.dataset``); "stop"
            starts no new job after the first failure, then raises the same way;
            "ignore" records failures, warns once and does not raise.
        resume : bool or "force"
            With ``working_dir``, skip every cell that already has a result there
            for the same parameter values. If the task's source changed since, it
            refuses unless ``resume="force"``.
        progress : bool
            Show a progress bar (``tqdm.auto``).
        jobs : int, optional
            Number of parallel workers for the ``joblib`` / submitit launchers.
        launcher_settings : dict, optional
            The launcher's own settings, e.g. ``{"partition": "gpu", "timeout_min": 60}``
            for ``launcher="slurm"`` (the same as
            ``overrides=["hydra.launcher.partition=gpu", ...]``); a name the launcher
            does not have is refused before anything is submitted.
        save : path, optional
            A NetCDF file written while the sweep runs (the whole grid at once, each
            finished cell in place within a second, the final Dataset at the end; readable
            at any moment, also after a crash). An existing file is refused, except by a
            resume, which continues it. See ``SweepRun.save``.
        verbose : bool
            False (the default): Hydra's lines and the task's log records go to each
            job's log file only, nothing to the console or the cell. True: Hydra's
            launch lines and the task's records (INFO and up) are shown on stderr
            too, as rai mushin's console did.
        """
        sweep = self.start(
            working_dir=working_dir,
            sweeper=sweeper,
            launcher=launcher,
            overrides=overrides,
            task_fn_wrapper=task_fn_wrapper,
            pre_task_fn_wrapper=pre_task_fn_wrapper,
            version_base=version_base,
            to_dictconfig=to_dictconfig,
            config_name=config_name,
            job_name=job_name,
            with_log_configuration=with_log_configuration,
            on_error=on_error,
            resume=resume,
            jobs=jobs,
            launcher_settings=launcher_settings,
            save=save,
            verbose=verbose,
            **workflow_overrides,
        )
        self.wait(sweep, progress=progress)

    def wait(self, sweep: SweepRun, *, progress: bool = True) -> None:
        """Block until ``sweep`` (a run of this workflow) ends, then raise a
        :class:`SweepError` if jobs failed (per its ``on_error``). Ctrl-C cancels the
        sweep, keeps every finished result (``wf.to_xarray()`` has them) and re-raises."""
        try:
            sweep.wait(progress=progress)
        except KeyboardInterrupt:
            if not sweep.done:
                self.collect(sweep)  # the partial grid now; again when the sweep ends
            s = sweep.status
            print(
                f"mushin_nb: interrupted; kept {s['done']} finished of {s['total']} cells "
                f"({s['cancelled']} cancelled) in {sweep.sweep_dir}; wf.to_xarray() has them, "
                "and run(..., resume=True) goes on.",
                file=sys.stderr,
            )
            raise
        sweep.raise_for_failures(label=type(self).__name__)

    def start(
        self,
        *,
        working_dir: str | None = None,
        sweeper: str | None = None,
        launcher: str | None = None,
        overrides: list[str] | None = None,
        task_fn_wrapper: Callable[[Callable[..., Any]], Callable[[Any], Any]] | None = zen,
        pre_task_fn_wrapper: Callable[[Callable[..., Any]], Callable[[Any], Any]] | None = zen,
        version_base: str | type[_NotSet] | None = VERSION_BASE_DEFAULT,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
        save: str | Path | None = None,
        verbose: bool = False,
        **workflow_overrides: OverrideValue,
    ) -> SweepRun:
        """Start the same sweep as :meth:`run` in a background thread and return
        its :class:`SweepRun` at once (the kernel stays free).

        Examples
        --------
        >>> from mushin_nb import MultiRunMetricsWorkflow, multirun
        >>> class Sq(MultiRunMetricsWorkflow):
        ...     @staticmethod
        ...     def task(x: int) -> dict:
        ...         return dict(y=x * x)
        >>> import tempfile
        >>> wf = Sq()
        >>> run = wf.start(x=multirun([1, 2]), working_dir=tempfile.mkdtemp())
        >>> run.wait()["y"].values.tolist()
        [1, 4]
        """
        import hydra_plugins.mushin_nb_plugins.sweeper  # noqa: F401  (registers hydra/sweeper=mushin_nb)

        from ._adaptive import adaptive_params
        from ._launch import SweepPlan, plan_sweep, start_sweep
        from ._live_netcdf import check_save_path

        self._check_static()
        save_path = check_save_path(save, resume=resume, adaptive=adaptive_params(workflow_overrides))
        launch_kwargs: dict[str, Any] = dict(
            to_dictconfig=to_dictconfig,
            config_name=config_name,
            job_name=job_name,
            with_log_configuration=with_log_configuration,
        )
        if version_base is not _NotSet:
            launch_kwargs["version_base"] = version_base

        def make_plan(
            kw: Mapping[str, Any], working_dir: Any = working_dir, resume: Any = resume
        ) -> SweepPlan:
            return plan_sweep(
                self,
                working_dir=working_dir,
                sweeper=sweeper,
                launcher=launcher,
                overrides=overrides,
                task=_wrap(task_fn_wrapper, self.task),
                pre_task=_wrap(pre_task_fn_wrapper, self.pre_task),
                on_error=on_error,
                resume=resume,
                jobs=jobs,
                launcher_settings=launcher_settings,
                workflow_overrides=self._workflow_overrides(kw),
                raw_string_keys=self._raw_string_keys(),
                launch_kwargs=launch_kwargs,
                signature=self._signature_fns(task_fn_wrapper, pre_task_fn_wrapper),
                verbose=verbose,
            )

        def bind(sweep: SweepRun) -> None:
            # a second run never reuses stale metadata
            self._reset()
            self._spec = sweep.spec
            self._working_dir = sweep.sweep_dir
            self._manifest = sweep.manifest
            self.last_run = sweep
            if save_path is not None:  # the whole grid in the file now (a resume continues it)
                sweep.save(save_path, overwrite=True)

            def collect(run: SweepRun) -> None:
                if self.last_run is run:  # not replaced by a later start()
                    self.collect(run)

            sweep.on_finish(collect)

        if adaptive_params(workflow_overrides):  # an adaptive_range(...) value: rounds of sweeps
            from ._adaptive_run import start_adaptive

            return start_adaptive(  # type: ignore[return-value]  (an AdaptiveRun: SweepRun's API)
                self, workflow_overrides, make_plan=make_plan, bind=bind, resume=resume, jobs=jobs
            )
        # every check first: a refused call changes nothing, on disk or in this object
        return start_sweep(make_plan(workflow_overrides), bind=bind)

    def _workflow_overrides(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        return dict(kw)

    def _signature_fns(self, task_wrapper: Any, pre_task_wrapper: Any) -> tuple[Callable[..., Any], ...]:
        """The functions whose signatures a sweep is checked against: those that
        hydra-zen's ``zen`` calls with config fields (a custom wrapper is not checked)."""
        if not is_zen(task_wrapper):
            return ()
        fns: list[Callable[..., Any]] = [self.task]
        own_pre = inspect.getattr_static(type(self), "pre_task") is not inspect.getattr_static(
            BaseWorkflow, "pre_task"
        )
        if own_pre and is_zen(pre_task_wrapper):
            fns.append(self.pre_task)
        return tuple(fns)

    def _raw_string_keys(self) -> Iterable[str]:
        return ()

    # ------------------------------------------------------------ results
    def collect(self, sweep: SweepRun) -> None:
        """Fill this workflow's attributes (``jobs``, ``cfgs``, ``metrics``, the
        Dataset) from a run of it, finished or not."""
        self.jobs = list(sweep.jobs)
        self._results = sweep.results
        self.cfgs_ = None  # made from the jobs on first use of cfgs (a job's number costs ~30 us)
        self._cfgs_of = (self.jobs, self._results)
        self.jobs_post_process()

    def jobs_post_process(self) -> None:
        """Gather what the jobs produced into this workflow's attributes; a subclass
        implements it (``MultiRunMetricsWorkflow`` fills ``metrics``)."""
        raise NotImplementedError()

    def plot(self, **kwargs: Any) -> Any:
        """Plot the results; a subclass implements it (``RobustnessCurve.plot``)."""
        raise NotImplementedError()

    def to_xarray(self) -> Any:
        """The results as an ``xarray.Dataset``; a subclass implements it."""
        raise NotImplementedError()


def _wrap(wrapper: Any, fn: Callable[..., Any]) -> Callable[[Any], Any]:
    if wrapper is None:
        return fn
    if is_zen(wrapper):
        # zen's default resolves the config in place and then reads it again, which
        # resolves an escaped "${...}" in a string value a second time; a lazy single
        # resolution gives the task exactly the value it was given.
        return zen(fn, resolve_pre_call=False)
    return wrapper(fn)


def _cfgs_in_job_order(jobs: list[Any], results: list[JobResult]) -> list[Any] | None:
    """The task configs of ``jobs`` in the job order of ``results``; None when a result
    has no job here (its config is then read from its job directory)."""
    from hydra_plugins.mushin_nb_plugins._lazy_return import job_num

    by_num = {n: j for j in jobs if (n := job_num(j)) is not None}
    if not all(r.job_num in by_num for r in results):
        return None
    return [by_num[r.job_num].cfg for r in sorted(results, key=lambda r: r.job_num)]
