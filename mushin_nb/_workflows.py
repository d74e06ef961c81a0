"""BaseWorkflow, MultiRunMetricsWorkflow, RobustnessCurve: the mushin API.

Same names, arguments, defaults and attributes as ``rai_toolbox.mushin``; under
them, the engine of this package (every job's result persisted, the Dataset keyed
by parameter values, failures kept, live runs).
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from hydra_zen import hydra_list, load_from_yaml, make_config, multirun, zen

import hydra_plugins.mushin_nb_plugins.sweeper  # noqa: F401  (registers hydra/sweeper=mushin_nb)

from . import _store
from ._execution import (
    SweepRun,
)
from ._store import JobResult
from ._sweep import SweepSpec, build_spec

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["BaseWorkflow", "MultiRunMetricsWorkflow", "RobustnessCurve"]


class _NotSet:  # rai's sentinel for "do not pass version_base"
    pass


_VERSION_BASE_DEFAULT = "1.3"

OverrideValue = Union[str, int, float, bool, dict, None, multirun, hydra_list]


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
    """

    _REQUIRED_STATIC_METHODS = ("task", "pre_task")

    def __init__(self, eval_task_cfg: Any = None) -> None:
        self.eval_task_cfg = eval_task_cfg if eval_task_cfg is not None else make_config()
        self._reset()
        self._working_dir: Path | None = None

    def _reset(self) -> None:
        self.cfgs_: list[Any] | None = []
        self.metrics: dict[str, list[Any]] = {}
        self.workflow_overrides: dict[str, Any] = {}
        self.jobs: Any = []
        self._spec: SweepSpec | None = None
        self._results: list[JobResult] = []
        self._manifest: dict[str, Any] | None = None
        self.last_run: SweepRun | None = None

    # ------------------------------------------------------------ rai attributes
    @property
    def working_dir(self) -> Path:
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
        if self.cfgs_ is None:  # loaded from disk lazily: YAML is slow at scale
            cfgs = []
            for d in self._job_dirs():
                f = d / ".hydra" / "config.yaml"
                cfgs.append(load_from_yaml(f) if f.exists() else None)
            self.cfgs_ = cfgs
        return self.cfgs_

    @cfgs.setter
    def cfgs(self, value: list[Any]) -> None:
        self.cfgs_ = value

    def _job_dirs(self) -> list[Path]:
        if self._working_dir is None:
            return []
        return [self._working_dir / r.subdir for r in sorted(self._results, key=lambda r: r.job_num)]

    @property
    def multirun_task_overrides(self) -> dict[str, Any]:
        """Swept parameters as ``multirun([...values])``, fixed ones as their
        values (a ``hydra_list`` comes back as a list), in the order Hydra got them."""
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
        version_base: str | type[_NotSet] | None = _VERSION_BASE_DEFAULT,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        progress: bool = True,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
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
        version_base: str | type[_NotSet] | None = _VERSION_BASE_DEFAULT,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
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
        from ._launch import plan_sweep, start_sweep

        self._check_static()
        launch_kwargs: dict[str, Any] = dict(
            to_dictconfig=to_dictconfig,
            config_name=config_name,
            job_name=job_name,
            with_log_configuration=with_log_configuration,
        )
        if version_base is not _NotSet:
            launch_kwargs["version_base"] = version_base
        # every check first: a refused call changes nothing, on disk or in this object
        plan = plan_sweep(
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
            workflow_overrides=self._workflow_overrides(workflow_overrides),
            raw_string_keys=self._raw_string_keys(),
            launch_kwargs=launch_kwargs,
            signature=self._signature_fns(task_fn_wrapper, pre_task_fn_wrapper),
        )

        def bind(sweep: SweepRun) -> None:
            # a second run never reuses stale metadata
            self._reset()
            self._spec = plan.spec
            self._working_dir = sweep.sweep_dir
            self._manifest = sweep.manifest
            self.last_run = sweep

            def collect(run: SweepRun) -> None:
                if self.last_run is run:  # not replaced by a later start()
                    self.collect(run)

            sweep.on_finish(collect)

        return start_sweep(plan, bind=bind)

    def _workflow_overrides(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        return dict(kw)

    def _signature_fns(self, task_wrapper: Any, pre_task_wrapper: Any) -> tuple[Callable[..., Any], ...]:
        """The functions whose signatures a sweep is checked against: those that
        hydra-zen's ``zen`` calls with config fields (a custom wrapper is not checked)."""
        if task_wrapper is not zen:
            return ()
        fns: list[Callable[..., Any]] = [self.task]
        own_pre = inspect.getattr_static(type(self), "pre_task") is not inspect.getattr_static(
            BaseWorkflow, "pre_task"
        )
        if own_pre and pre_task_wrapper is zen:
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
        by_num = {int(j.hydra_cfg.hydra.job.num): j for j in self.jobs if j.hydra_cfg is not None}
        if all(r.job_num in by_num for r in self._results):
            self.cfgs_ = [by_num[r.job_num].cfg for r in sorted(self._results, key=lambda r: r.job_num)]
        else:
            self.cfgs_ = None
        self.jobs_post_process()

    def jobs_post_process(self) -> None:
        raise NotImplementedError()

    def plot(self, **kwargs: Any) -> Any:
        raise NotImplementedError()

    def to_xarray(self) -> Any:
        raise NotImplementedError()


def _wrap(wrapper: Any, fn: Callable[..., Any]) -> Callable[[Any], Any]:
    if wrapper is None:
        return fn
    if wrapper is zen:
        # zen's default resolves the config in place and then reads it again, which
        # resolves an escaped "${...}" in a string value a second time; a lazy single
        # resolution gives the task exactly the value it was given.
        return zen(fn, resolve_pre_call=False)
    return wrapper(fn)


def manifest_results(
    manifest: Mapping[str, Any],
    records: Sequence[JobResult],
    target: SweepSpec,
    damage: list[_store.Damage] | None = None,
) -> list[JobResult]:
    """Records of a sweep directory -> cells of ``target``: each record's index is
    relative to the grid of the run that wrote it (grids grow when a resume adds
    values), so it is mapped by parameter values.

    A damaged cell (a failed record of error type ``DamagedResult``) that another
    job finished since (resume=True re-ran it) is damaged no more: its stand-in is
    dropped, and so is its entry in ``damage`` (as read by ``_store.read_records``);
    the other entries of cells get the job's parameters."""
    specs = manifest.get("run_specs", {})
    by_run: dict[str, list[JobResult]] = {}
    for r in records:
        if not r.index and not r.run_id and _store.is_damaged(r):
            continue  # a damaged result whose cell is unknown
        by_run.setdefault(r.run_id, []).append(r)
    out: list[JobResult] = []
    for run_id, recs in by_run.items():
        try:
            spec = SweepSpec.from_json(specs.get(run_id, manifest["spec"]))
        except Exception as e:  # a damaged grid: that run's results cannot be placed
            lost = _store.Damage(
                Path(_store.META_DIR) / _store.MANIFEST,
                f"holds a grid of run {run_id} that cannot be read ({type(e).__name__}: {e})",
                fix="that run's results are left out; resume=True re-runs their cells",
            )
            if damage is None:
                warnings.warn(f"mushin_nb: {lost.describe()}", RuntimeWarning, stacklevel=2)
            else:
                damage.append(lost)
            continue
        out.extend(remap_results(recs, spec, target))
    done = {r.index for r in out if r.status == "done"}
    out = [r for r in out if not (_store.is_damaged(r) and r.index in done)]
    out.sort(key=lambda r: r.job_num)
    if damage is not None:
        placed = {r.error["message"]: r for r in out if _store.is_damaged(r)}  # type: ignore[index]
        kept = []
        for d in damage:
            if d.marker is not None and d.marker.index:
                r = placed.get((d.marker.error or {}).get("message", ""))
                if r is None:
                    continue  # re-run since, or not a cell of this grid
                d.cell = ", ".join(f"{k}={v!r}" for k, v in target.cell_params(r.index).items())
            kept.append(d)
        damage[:] = kept
    return out


def remap_results(records: Sequence[JobResult], old: SweepSpec, new: SweepSpec) -> list[JobResult]:
    """Results of ``old`` sweep -> the cells of ``new`` with the same parameter
    values (fixed values must match too); others are dropped."""
    from dataclasses import replace

    if old.fixed_values() != new.fixed_values() and _canon(old.fixed_values()) != _canon(new.fixed_values()):
        return []
    if [p.name for p in old.swept] != [p.name for p in new.swept]:
        return []
    tables = []
    for po, pn in zip(old.swept, new.swept):
        pos = {_canon(v): i for i, v in enumerate(pn.values)}
        tables.append([pos.get(_canon(v)) for v in po.values])
    out = []
    for r in records:
        if len(r.index) != len(tables):
            continue
        idx = tuple(t[i] if i < len(t) else None for t, i in zip(tables, r.index))
        if any(i is None for i in idx):
            continue
        out.append(replace(r, index=idx))  # type: ignore[arg-type]
    return out


def _canon(v: Any) -> str:
    import json

    def tag(x: Any) -> Any:
        if isinstance(x, bool):
            return ["b", x]
        if isinstance(x, int):
            return ["i", x]
        if isinstance(x, float):
            return ["f", repr(x)]
        if isinstance(x, str):
            return ["s", x]
        if x is None:
            return ["n"]
        if isinstance(x, Mapping):
            return ["d", sorted([str(k), tag(y)] for k, y in x.items())]
        if isinstance(x, (list, tuple)):
            return ["l", [tag(y) for y in x]]
        return ["o", repr(x)]

    return json.dumps(tag(v))


def _safe_torch_load(path: Path) -> Any:
    import numpy as np
    import torch

    allowed: list[Any] = [np.ndarray, np.dtype]
    core = getattr(np, "_core", None) or np.core  # type: ignore[attr-defined]
    allowed += [core.multiarray._reconstruct, core.multiarray.scalar]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True, map_location="cpu")


def default_metric_load_fn(file_path: Path) -> Mapping[str, Any]:
    """Load a metrics file without executing pickled code.

    ``.pt`` / ``.pth``: ``torch.load(weights_only=True)`` with numpy arrays allowed;
    ``.npz``: its arrays; ``.npy``: one array named after the file; ``.json``: its
    object. Any other suffix: a ``ValueError`` saying to override ``metric_load_fn``.
    """
    import json

    import numpy as np

    file_path = Path(file_path)
    suffix = file_path.suffix.lower()
    if suffix in (".pt", ".pth"):
        out = _safe_torch_load(file_path)
    elif suffix == ".npz":
        with np.load(file_path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    elif suffix == ".npy":
        out = {file_path.stem: np.load(file_path, allow_pickle=False)}
    elif suffix == ".json":
        out = json.loads(file_path.read_text(encoding="utf-8"))
    else:
        raise ValueError(
            f"Cannot load metrics from {file_path}: the default loader reads .pt/.pth, .npz, .npy "
            "and .json files. Override `metric_load_fn(file_path)` in your workflow to read this format."
        )
    if not isinstance(out, Mapping):
        raise TypeError(f"The metrics file {file_path} holds a {type(out).__name__}, not a dict of metrics.")
    return out


class MultiRunMetricsWorkflow(BaseWorkflow):
    """A workflow whose ``task`` returns a dict of metrics, gathered by
    :meth:`to_xarray` into a Dataset with one dimension per swept parameter.

    Parameters
    ----------
    eval_task_cfg : optional
        The base configuration of every job.
    working_dir : path, optional
        Load that earlier sweep (as :meth:`load_from_dir`).

    Examples
    --------
    >>> import tempfile
    >>> from mushin_nb import MultiRunMetricsWorkflow, multirun
    >>> class LRSweep(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(lr: float, seed: int) -> dict:
    ...         return dict(score=lr * 10 + seed)
    >>> wf = LRSweep()
    >>> wf.run(lr=multirun([0.1, 1.0]), seed=multirun([0, 1, 2]), working_dir=tempfile.mkdtemp(),
    ...        progress=False)
    >>> ds = wf.to_xarray()
    >>> dict(ds.sizes)
    {'lr': 2, 'seed': 3}
    >>> ds["score"].sel(lr=1.0).values.tolist()
    [10.0, 11.0, 12.0]
    """

    _JOBDIR_NAME: str = "job_dir"

    def __init__(self, eval_task_cfg: Any = None, working_dir: str | Path | None = None) -> None:
        super().__init__(eval_task_cfg)
        self.output_subdir: str | None = None
        self.multirun_working_dirs: list[Path] | None = None
        self._target_dir_multirun_overrides: dict[str, list[Any]] | None = None
        if working_dir is not None:
            self.load_from_dir(working_dir, metrics_filename=None)

    def _reset(self) -> None:
        super()._reset()
        self.output_subdir = None
        self.multirun_working_dirs = None
        self._target_dir_multirun_overrides = None

    @staticmethod
    def task(*args: Any, **kwargs: Any) -> Mapping[str, Any]:
        """Must be a static method returning a dict of metrics (or None)."""
        raise NotImplementedError()

    @staticmethod
    def metric_load_fn(file_path: Path) -> Mapping[str, Any]:
        """Load one metrics file written by a task (see
        :func:`default_metric_load_fn`); override it, as a static or plain method,
        for other formats."""
        return default_metric_load_fn(file_path)

    def run(  # type: ignore[override]
        self,
        *,
        working_dir: str | None = None,
        sweeper: str | None = None,
        launcher: str | None = None,
        overrides: list[str] | None = None,
        task_fn_wrapper: Any = zen,
        pre_task_fn_wrapper: Any = zen,
        version_base: Any = _VERSION_BASE_DEFAULT,
        target_job_dirs: Sequence[str | Path] | None = None,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        progress: bool = True,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
        **workflow_overrides: OverrideValue,
    ) -> None:
        """Run the sweep and wait (see :meth:`BaseWorkflow.run`).

        ``target_job_dirs`` runs the task once per directory of an earlier sweep
        (the task gets ``job_dir``); the Dataset then has a ``job_dir`` dimension,
        with the upstream parameters that vary as coordinates along it.
        """
        if target_job_dirs is not None:
            workflow_overrides["target_job_dirs"] = target_job_dirs  # type: ignore[assignment]
        super().run(
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
            progress=progress,
            jobs=jobs,
            launcher_settings=launcher_settings,
            **workflow_overrides,
        )

    def _workflow_overrides(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        kw = dict(kw)
        targets = kw.pop("target_job_dirs", None)
        if targets is not None:
            if isinstance(targets, (str, Path)):
                raise TypeError("target_job_dirs must be a list of directories, not one path")
            dirs = []
            for d in targets:
                p = Path(d)
                if not p.is_dir():
                    raise FileNotFoundError(f"target_job_dirs: {p} is not an existing directory")
                dirs.append(str(p.resolve()))
            kw[self._JOBDIR_NAME] = multirun(dirs)
        return kw

    def jobs_post_process(self) -> None:
        results = sorted(self._results, key=lambda r: r.job_num)
        self.multirun_working_dirs = [self.working_dir / r.subdir for r in results]
        self.output_subdir = ".hydra"
        metrics: dict[str, list[Any]] = {}
        for r in results:
            if r.status == "done" and r.metrics:
                for k, v in r.metrics.items():
                    metrics.setdefault(k, []).append(v)
        self.metrics = metrics

    # ------------------------------------------------------------ loading
    def load_from_dir(
        self, working_dir: str | Path, metrics_filename: str | Sequence[str] | None = None
    ) -> MultiRunMetricsWorkflow:
        """Load a sweep directory: its parameters, and every job's stored result.

        No metrics file is needed (each job's return value was stored); with
        ``metrics_filename`` the metrics are read from those files instead.
        Directories made by rai mushin or plain Hydra (no mushin_nb manifest) are
        read from Hydra's own files. Returns ``self``.

        Damage stays local: a missing or corrupt result file, a damaged index line or
        manifest costs only the cells involved. Those cells are failed results whose
        error type is ``"DamagedResult"`` (``resume=True`` re-runs exactly them), and
        one RuntimeWarning names the damaged files (``mushin-nb check DIR`` reports,
        ``--repair`` rebuilds what can be rebuilt).
        """
        wd = Path(working_dir).resolve()
        if not wd.is_dir():
            self.working_dir = working_dir  # raises, naming the directory
        damage: list[_store.Damage] = []
        manifest = _store.read_manifest(wd, damage=damage)
        if manifest is not None:
            spec = SweepSpec.from_json(manifest["spec"])
            records = _store.read_records(wd, run_ids=manifest.get("runs"), damage=damage)
            results = manifest_results(manifest, records, spec, damage=damage)
        else:
            fatal = [d for d in damage if d.fatal]
            if fatal:
                raise ValueError(f"Cannot load the sweep in {wd}: {fatal[0].describe(wd)}.")
            spec, results = _load_plain_hydra(wd)
        self._reset()
        self.working_dir = wd
        self._manifest = manifest
        self._spec, self._results = spec, results
        _store.warn_damage(wd, damage, stacklevel=2)
        self.cfgs_ = None
        self.jobs = []
        self.jobs_post_process()
        if metrics_filename is not None:
            self.load_metrics(metrics_filename)
        return self

    def load_metrics(self, metrics_filename: str | Sequence[str]) -> dict[str, list[Any]]:
        """Read metrics files (names or glob patterns) from every job directory;
        several files per job are merged (later ones win)."""
        from dataclasses import replace

        from ._store import to_numpy_or_scalar

        patterns = [metrics_filename] if isinstance(metrics_filename, str) else list(metrics_filename)
        new = []
        for r in sorted(self._results, key=lambda r: r.job_num):
            d = self.working_dir / r.subdir
            merged: dict[str, Any] = {}
            for pat in patterns:
                files = sorted(d.glob(pat))
                if not files:
                    raise FileNotFoundError(f"No files with the path/pattern {pat!r} in {d}")
                for f in files:
                    merged.update(self.metric_load_fn(f))
            metrics = {str(k): to_numpy_or_scalar(v, name=str(k)) for k, v in merged.items()}
            new.append(replace(r, metrics=metrics, status="done"))
        self._results = new
        self.jobs_post_process()
        return self.metrics

    @property
    def target_dir_multirun_overrides(self) -> dict[str, list[Any]]:
        """For a run over ``target_job_dirs``: ``{upstream parameter: [value per
        target directory]}``; ``{}`` otherwise."""
        if self._target_dir_multirun_overrides is None:
            out: dict[str, list[Any]] = {}
            spec = self._spec
            p = None if spec is None else next((q for q in spec.swept if q.name == self._JOBDIR_NAME), None)
            if p is not None:
                rows = [_job_params(Path(d)) for d in p.values]
                names: list[str] = []
                for row in rows:
                    for k in row:
                        if k not in names:
                            names.append(k)
                out = {k: [row.get(k) for row in rows] for k in names}
            self._target_dir_multirun_overrides = out
        return self._target_dir_multirun_overrides

    # ------------------------------------------------------------ Dataset
    def to_xarray(
        self,
        include_working_subdirs_as_data_var: bool = False,
        coord_from_metrics: str | None = None,
        non_multirun_params_as_singleton_dims: bool = False,
        metrics_filename: str | Sequence[str] | None = None,
    ) -> xr.Dataset:
        """The results as an ``xarray.Dataset``: one dimension per swept parameter
        (in the order given, coordinates in the order given), one variable per
        metric, non-swept parameters as attributes. Cells are placed by their
        parameter values; a cell with no result is NaN."""
        from ._dataset import build_dataset
        from ._sweep import sanitize_coord_values

        if metrics_filename is not None:
            if self._spec is None:
                self.load_from_dir(self.working_dir, metrics_filename)
            else:
                self.load_metrics(metrics_filename)
        spec = self._require_spec()
        ds = build_dataset(
            spec,
            self._results,
            sweep_dir=self._working_dir,
            include_working_subdirs_as_data_var=include_working_subdirs_as_data_var,
            coord_from_metrics=coord_from_metrics,
            non_multirun_params_as_singleton_dims=non_multirun_params_as_singleton_dims,
        )
        if self._JOBDIR_NAME in ds.dims:
            for k, vals in self.target_dir_multirun_overrides.items():
                if k in ds.coords:
                    continue
                svals = sanitize_coord_values(list(vals))
                varies = len({_canon(v) for v in vals}) > 1
                if varies or non_multirun_params_as_singleton_dims:
                    ds = ds.assign_coords({k: (self._JOBDIR_NAME, svals)})
        return ds

    def to_netcdf(self, path: str | Path, overwrite: bool = False, **to_xarray_kwargs: Any) -> Path:
        """Save :meth:`to_xarray` to NetCDF (see :func:`mushin_nb.save_netcdf`)."""
        from ._dataset import save_netcdf

        return save_netcdf(self.to_xarray(**to_xarray_kwargs), path, overwrite=overwrite)

    def panel(self, **initial: Any) -> Any:
        """A widget panel to pick sweep values, run, watch and save (needs the
        notebook stack: panel, hvplot)."""
        from . import _hooks

        return _hooks.call("panel", self, **initial)


def _job_params(job_dir: Path) -> dict[str, Any]:
    """The parameter values of one job of an earlier sweep (mushin_nb result
    file and manifest; else Hydra's overrides.yaml)."""
    import json

    rec_file = job_dir / _store.RESULT_JSON
    for parent in [job_dir, *job_dir.parents][1:4]:
        manifest = _store.read_manifest(parent)
        if manifest is not None and rec_file.exists():
            rec = json.loads(rec_file.read_text(encoding="utf-8"))
            spec = SweepSpec.from_json(manifest.get("run_specs", {}).get(rec.get("run_id"), manifest["spec"]))
            params = {}
            it = iter(rec["index"])
            for p in spec.params:
                params[p.name] = p.values[next(it)] if p.swept else p.value
            return params
    from ._overrides import override_name, parse_overrides, unquote

    ov = load_from_yaml(job_dir / ".hydra" / "overrides.yaml")
    out = {}
    for o in parse_overrides([str(x) for x in ov]):
        out[override_name(o)] = unquote(o.value())
    return out


def _load_plain_hydra(wd: Path) -> tuple[SweepSpec, list[JobResult]]:
    """A sweep directory written by rai mushin or plain Hydra: parameters from
    multirun.yaml, each job's cell from its overrides.yaml."""
    from ._sweep import parse_job_overrides

    mr = wd / "multirun.yaml"
    if not mr.exists():
        raise FileNotFoundError(
            f"{wd} is not a sweep directory: it has neither .mushin/manifest.json nor multirun.yaml"
        )
    cfg = load_from_yaml(mr)
    task_ovs = [str(o) for o in cfg.hydra.overrides.task]
    spec = build_spec(base_cfg=None, overrides=task_ovs, workflow_overrides={})
    lookup = spec.lookup()
    results = []
    for hydra_dir in wd.glob(f"**/{cfg.hydra.output_subdir or '.hydra'}"):
        d = hydra_dir.parent
        if d == wd:
            continue
        hy = load_from_yaml(hydra_dir / "hydra.yaml")
        ovs = [str(o) for o in load_from_yaml(hydra_dir / "overrides.yaml")]
        idx = parse_job_overrides(ovs, lookup)
        if idx is None:
            continue
        results.append(
            JobResult(
                index=idx, status="done", subdir=d.relative_to(wd).as_posix(), job_num=int(hy.hydra.job.num)
            )
        )
    results.sort(key=lambda r: r.job_num)
    return spec, results


class RobustnessCurve(MultiRunMetricsWorkflow):
    """Abstract class for workflows that measure performance for different
    perturbation values. This workflow requires and uses parameter ``epsilon``
    as the configuration option for varying the perturbation.

    ``epsilon`` is always a dimension (also for one value) and varies fastest;
    ``to_xarray()`` is sorted by epsilon.
    """

    def run(  # type: ignore[override]
        self,
        *,
        epsilon: str | Sequence[float] | float,
        task_fn_wrapper: Any = zen,
        pre_task_fn_wrapper: Any = zen,
        target_job_dirs: Sequence[str | Path] | None = None,
        version_base: Any = _VERSION_BASE_DEFAULT,
        working_dir: str | None = None,
        sweeper: str | None = None,
        launcher: str | None = None,
        overrides: list[str] | None = None,
        to_dictconfig: bool = False,
        config_name: str = "rai_workflow",
        job_name: str = "rai_workflow",
        with_log_configuration: bool = True,
        on_error: str = "collect",
        resume: bool | str = False,
        progress: bool = True,
        jobs: int | None = None,
        launcher_settings: Mapping[str, Any] | None = None,
        **workflow_overrides: OverrideValue,
    ) -> None:
        """Run the task for each ``epsilon`` (a list, a scalar, or a Hydra sweep
        string such as ``"0,1,2"`` or ``"range(0,1,0.25)"``)."""
        super().run(
            task_fn_wrapper=task_fn_wrapper,
            pre_task_fn_wrapper=pre_task_fn_wrapper,
            target_job_dirs=target_job_dirs,
            version_base=version_base,
            working_dir=working_dir,
            sweeper=sweeper,
            launcher=launcher,
            overrides=overrides,
            to_dictconfig=to_dictconfig,
            config_name=config_name,
            job_name=job_name,
            with_log_configuration=with_log_configuration,
            on_error=on_error,
            resume=resume,
            progress=progress,
            jobs=jobs,
            launcher_settings=launcher_settings,
            **workflow_overrides,
            epsilon=epsilon,  # type: ignore[arg-type]
        )

    def _workflow_overrides(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        kw = dict(kw)
        if "epsilon" in kw:
            eps = kw.pop("epsilon")
            if not isinstance(eps, (str, multirun)):
                if hasattr(eps, "tolist"):
                    eps = eps.tolist()
                eps = multirun(list(eps) if isinstance(eps, (list, tuple, range)) else [eps])
            kw["epsilon"] = eps  # after the other parameters: epsilon varies fastest
        targets = kw.pop("target_job_dirs", None)
        if targets is not None:
            kw["target_job_dirs"] = targets
        return super()._workflow_overrides(kw)

    def _raw_string_keys(self) -> Iterable[str]:
        return ("epsilon",)

    def to_xarray(
        self,
        include_working_subdirs_as_data_var: bool = False,
        coord_from_metrics: str | None = None,
        non_multirun_params_as_singleton_dims: bool = False,
        metrics_filename: str | Sequence[str] | None = None,
    ) -> xr.Dataset:
        """As :meth:`MultiRunMetricsWorkflow.to_xarray`, sorted by epsilon."""
        return (
            super()
            .to_xarray(
                include_working_subdirs_as_data_var=include_working_subdirs_as_data_var,
                coord_from_metrics=coord_from_metrics,
                non_multirun_params_as_singleton_dims=non_multirun_params_as_singleton_dims,
                metrics_filename=metrics_filename,
            )
            .sortby("epsilon")
        )

    def plot(  # type: ignore[override]
        self,
        metric: str,
        ax: Any = None,
        group: str | None = None,
        save_filename: str | None = None,
        non_multirun_params_as_singleton_dims: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Plot ``metric`` against epsilon with matplotlib (one line per value of
        another swept parameter, or per ``group``)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        xdata = self.to_xarray(non_multirun_params_as_singleton_dims=non_multirun_params_as_singleton_dims)
        if group is None:
            out = xdata[metric].plot.line(x="epsilon", ax=ax, **kwargs)
        else:
            out = [
                grp[metric].squeeze(drop=True).plot.line(x="epsilon", label=str(name), ax=ax, **kwargs)
                for name, grp in xdata.groupby(group)
            ]
        if save_filename is not None:
            plt.savefig(save_filename)
        return out
