"""RobustnessCurve: a workflow over a perturbation size ``epsilon``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_zen import multirun, zen

from ._multirun import MultiRunMetricsWorkflow
from ._workflows import VERSION_BASE_DEFAULT, OverrideValue

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["RobustnessCurve"]


class RobustnessCurve(MultiRunMetricsWorkflow):
    """Abstract class for workflows that measure performance for different
    perturbation values. This workflow requires and uses parameter ``epsilon``
    as the configuration option for varying the perturbation.

    ``epsilon`` is always a dimension (also for one value) and varies fastest;
    ``to_xarray()`` is sorted by epsilon.

    Examples
    --------
    >>> import tempfile
    >>> from mushin_nb import RobustnessCurve
    >>> class Noise(RobustnessCurve):
    ...     @staticmethod
    ...     def task(epsilon: float) -> dict:
    ...         return dict(accuracy=1.0 - epsilon)
    >>> wf = Noise()
    >>> wf.run(epsilon=[0.5, 0.0, 0.25], working_dir=tempfile.mkdtemp(), progress=False)
    >>> wf.to_xarray()["accuracy"].values.tolist()
    [1.0, 0.75, 0.5]
    """

    def run(  # type: ignore[override]
        self,
        *,
        epsilon: str | Sequence[float] | float,
        task_fn_wrapper: Any = zen,
        pre_task_fn_wrapper: Any = zen,
        target_job_dirs: Sequence[str | Path] | None = None,
        version_base: Any = VERSION_BASE_DEFAULT,
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
        save: str | Path | None = None,
        verbose: bool = False,
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
            save=save,
            verbose=verbose,
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
