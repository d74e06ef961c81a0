"""The Ray launcher (``hydra/launcher=mushin_nb_ray``; mushin_nb's
``launcher="ray"``): each job is a Ray task, on Ray's public API only (not
hydra-ray-launcher, which pins ``cloudpickle<3``).

Settings (``hydra.launcher.<name>``):

- ``address``: the cluster: ``auto`` (the one started on this machine with
  ``ray start``), ``ray://<head>:10001`` (Ray Client) or ``<head>:6379``. Unset: the
  Ray this process is already connected to (``ray.init`` in the notebook), else
  ``ray.init()`` (``RAY_ADDRESS``, or a new local Ray);
- ``num_cpus`` / ``num_gpus``: what each job reserves (``num_cpus=1``: one job per
  CPU of the cluster);
- ``n_jobs``: at most this many jobs at once (``jobs=N``);
- ``init``: other ``ray.init`` arguments (``runtime_env``, ``namespace``, ...);
- ``remote``: other task options (``resources``, ``memory``, ``runtime_env``, ...).

Jobs are never retried by Ray (``max_retries=0``): a job whose worker or node died
is that job's failure (``WorkerCrashedError``, ``NodeDiedError``, ...) and the others
go on; ``SweepRun.cancel()`` calls ``ray.cancel(force=True)`` on every job not
finished. See ``mushin_nb._remote``.

Kept light (Hydra imports every module under ``hydra_plugins`` when it scans for
plugins): Ray is imported only when a sweep runs, and the config is registered only
where ``ray`` is installed. No ``from __future__ import annotations`` here.
"""

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)


@dataclass
class MushinRayLauncherConf:
    _target_: str = "hydra_plugins.mushin_nb_plugins.ray_launcher.MushinRayLauncher"
    # auto | ray://<head>:10001 | <head>:6379; null: the connected Ray, else ray.init()
    address: str | None = None
    # reserved by each job
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # at most this many jobs at once (jobs=N)
    n_jobs: int | None = None
    # a dict: other ray.init arguments
    init: Any = None
    # a dict: other task options (.options(...)): resources, memory, runtime_env, ...
    remote: Any = None


if importlib.util.find_spec("ray") is not None:
    ConfigStore.instance().store(
        group="hydra/launcher", name="mushin_nb_ray", node=MushinRayLauncherConf, provider="mushin_nb"
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


class MushinRayLauncher(Launcher):
    """Runs each job as a Ray task; see the module's docstring."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        n_jobs: int | None = None,
        init: Any = None,
        remote: Any = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.n_jobs = n_jobs
        self.init = init  # checked in launch(): Hydra wraps the errors of __init__
        self.remote = remote  # checked in launch(): Hydra wraps the errors of __init__
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        from mushin_nb._remote import launch
        from mushin_nb._remote_engines import RayEngine

        init = _dict_setting(self.init, "init")
        remote = _dict_setting(self.remote, "remote")

        def engine() -> RayEngine:  # connected after the sweep is known to pickle
            return RayEngine(
                address=self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus, init=init, remote=remote
            )

        return launch(self, "Ray", engine, job_overrides, initial_job_idx, self.n_jobs)


__all__ = ["MushinRayLauncher", "MushinRayLauncherConf"]
