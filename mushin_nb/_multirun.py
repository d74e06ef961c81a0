"""MultiRunMetricsWorkflow: a task returning a dict of metrics, gathered into a
Dataset with one dimension per swept parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _store
from ._reload import (
    canonical,
    default_metric_load_fn,
    job_params,
    load_plain_hydra,
    manifest_results,
    rebuild_from_job_dirs,
)
from ._sweep import SweepSpec
from ._workflows import VERSION_BASE_DEFAULT, BaseWorkflow, zen

if TYPE_CHECKING:
    import xarray as xr

    from ._workflows import OverrideValue

__all__ = ["MultiRunMetricsWorkflow"]


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
        self.multirun_working_dirs = None
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
        version_base: Any = VERSION_BASE_DEFAULT,
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
        save: str | Path | None = None,
        verbose: bool = False,
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
            save=save,
            verbose=verbose,
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
            from hydra_zen import multirun

            kw[self._JOBDIR_NAME] = multirun(dirs)
        return kw

    @property
    def multirun_working_dirs(self) -> list[Path] | None:
        """Each job's directory, in job order (made when first read: a Path per job is
        slow at 100k jobs)."""
        if self._dirs is None and self._subdirs is not None:
            base = self.working_dir
            self._dirs, self._subdirs = [base / s for s in self._subdirs], None
        return self._dirs

    @multirun_working_dirs.setter
    def multirun_working_dirs(self, value: list[Path] | None) -> None:
        self._dirs, self._subdirs = value, None

    def jobs_post_process(self) -> None:
        """Fill ``metrics`` (``{name: [value per job]}``) and ``multirun_working_dirs``
        from the jobs' stored results."""
        results = sorted(self._results, key=lambda r: r.job_num)
        self.multirun_working_dirs = None
        self._subdirs = [r.subdir for r in results]
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
        elif (wd / _store.META_DIR).is_dir() and (wd / "multirun.yaml").is_file():
            # the manifest and its per-run copies are lost: each job's own files still say
            # where it belongs; reading goes on, a resume cannot (start_sweep says so)
            lost = [d for d in damage if d.fatal]
            damage[:] = [d for d in damage if not d.fatal]
            damage.append(
                _store.Damage(
                    wd / _store.META_DIR / _store.MANIFEST,
                    lost[0].problem if lost else "and its per-run copies are missing",
                    fix="the grid was rebuilt from multirun.yaml and each job's .hydra/overrides.yaml, so "
                    "every stored result is read; resume=True cannot continue this sweep (start a new one "
                    "in another working_dir)",
                )
            )
            spec, results = rebuild_from_job_dirs(wd, damage)
        else:
            fatal = [d for d in damage if d.fatal]
            if fatal:
                raise ValueError(f"Cannot load the sweep in {wd}: {fatal[0].describe(wd)}.")
            spec, results = load_plain_hydra(wd, damage)
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
                rows = [job_params(Path(d)) for d in p.values]
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
                varies = len({canonical(v) for v in vals}) > 1
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
