"""The Dask launcher (``hydra/launcher=mushin_nb_dask``; mushin_nb's
``launcher="dask"``): each job is a task on a Dask distributed cluster.

Settings (``hydra.launcher.<name>``):

- ``address``: the scheduler, e.g. ``tcp://10.0.0.5:8786``. Unset: the
  ``distributed.Client`` this process already has (made in the notebook), else
  Dask's configured ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``), else a
  ``LocalCluster`` of worker processes on this machine, started once per process;
- ``n_jobs``: at most this many jobs at once (``jobs=N``); a LocalCluster started
  here gets that many workers (one thread each);
- ``resources``: Dask worker resources each job needs, e.g. ``{GPU: 1}``;
- ``timeout``: seconds to wait for the scheduler when connecting;
- ``local_cluster``: other ``LocalCluster`` arguments (``memory_limit``, ...).

Jobs are submitted with ``client.submit(..., pure=False)`` and collected as they
finish; a job whose worker died is that job's failure and the others go on;
``SweepRun.cancel()`` cancels the queued futures and stops the running jobs. See
``mushin_nb._remote``.

Kept light (Hydra imports every module under ``hydra_plugins`` when it scans for
plugins): Dask is imported only when a sweep runs, and the config is registered
only where ``distributed`` is installed. No ``from __future__ import annotations``
here (see the sweeper module).
"""

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)


@dataclass
class MushinDaskLauncherConf:
    _target_: str = "hydra_plugins.mushin_nb_plugins.dask_launcher.MushinDaskLauncher"
    # the scheduler (tcp://host:8786); null: this process's Client, else a LocalCluster
    address: str | None = None
    # at most this many jobs at once (jobs=N); a LocalCluster started here gets N workers
    n_jobs: int | None = None
    # a dict: Dask worker resources per job, e.g. {GPU: 1}
    resources: Any = None
    # seconds to wait for the scheduler
    timeout: float = 30.0
    # a dict: other LocalCluster arguments when one is started here
    local_cluster: Any = None


if importlib.util.find_spec("distributed") is not None:
    ConfigStore.instance().store(
        group="hydra/launcher", name="mushin_nb_dask", node=MushinDaskLauncherConf, provider="mushin_nb"
    )


def _dict_setting(x: Any, name: str) -> dict:
    """A dict setting (``hydra.launcher.<name>``) as a plain dict; a clear error if it is not one."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(x, (DictConfig, ListConfig)):
        x = OmegaConf.to_container(x, resolve=True)
    if x is None:
        return {}
    if not isinstance(x, dict):
        raise TypeError(
            f"launcher_settings={{{name!r}: {x!r}}} (hydra.launcher.{name}): give a dict, e.g. "
            f"launcher_settings={{{name!r}: {{...}}}}"
        )
    return dict(x)


class MushinDaskLauncher(Launcher):
    """Runs each job as a Dask task; see the module's docstring."""

    def __init__(
        self,
        address: str | None = None,
        n_jobs: int | None = None,
        resources: Any = None,
        timeout: float = 30.0,
        local_cluster: Any = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.n_jobs = n_jobs
        self.resources = resources  # checked in launch(): Hydra wraps the errors of __init__
        self.timeout = float(timeout)
        self.local_cluster = local_cluster  # checked in launch(): Hydra wraps the errors of __init__
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        from mushin_nb._remote import launch
        from mushin_nb._remote_engines import DaskEngine

        resources = _dict_setting(self.resources, "resources")
        local_cluster = _dict_setting(self.local_cluster, "local_cluster")

        def engine() -> DaskEngine:  # connected after the sweep is known to pickle
            return DaskEngine(
                address=self.address,
                n_jobs=self.n_jobs,
                resources=resources,
                timeout=self.timeout,
                local_cluster=local_cluster,
            )

        return launch(self, "Dask", engine, job_overrides, initial_job_idx, self.n_jobs)


__all__ = ["MushinDaskLauncher", "MushinDaskLauncherConf"]
