"""``JobReturn`` objects for jobs whose process died, for the launchers that run
jobs in other processes (joblib, submitit, Dask, Ray).

A job whose worker process died (``os._exit``, a signal, the OOM killer) returns
nothing to the launcher. :func:`lost_job_return` records that death as the
job's failure in its mushin_nb sweep (``mushin_nb._job.record_lost_job``)
and gives Hydra the job's ``JobReturn``; :func:`job_return_from_disk` rebuilds
the return of a job that finished but whose return was lost with its worker.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``); mushin_nb and Hydra are imported lazily.
"""

import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["job_config", "job_return", "lost_job_return", "job_return_from_disk", "shown_overrides"]

log = logging.getLogger("hydra_plugins.mushin_nb_plugins.launcher")


def shown_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides a log line shows (not the ``hydra.*`` ones).

    Examples
    --------
    >>> shown_overrides(["x=1", "hydra.job.chdir=True"])
    ['x=1']
    """
    return [x for x in overrides if not x.startswith("hydra.")]


def job_config(hydra_context: Any, config: Any, overrides: list[str], idx: int, job_id: str | None) -> Any:
    """The job's full config as Hydra composes it (``load_sweep_config``), with
    ``hydra.job.num`` / ``id`` and ``hydra.runtime.output_dir`` set (as ``run_job``).
    ``job_id`` None: ``<job name>_<idx>`` (hydra-joblib-launcher's ids)."""
    import os

    from omegaconf import OmegaConf, open_dict, read_write

    from mushin_nb._compat import hydra_config

    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = job_id if job_id is not None else f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
    with hydra_config(cfg):
        out = os.path.join(
            str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        )
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(out)
    return cfg


def job_return(cfg: Any, overrides: list[str], status: Any, value: Any) -> Any:
    """The ``JobReturn`` of a job with full config ``cfg``, as ``run_job`` fills it."""
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


def lost_job_return(
    hydra_context: Any,
    config: Any,
    overrides: list[str],
    idx: int,
    job_id: str | None,
    why: str,
) -> Any:
    """The ``JobReturn`` of job ``idx`` whose process died (``why`` says how).

    The death is recorded as that cell's failure when the job belongs to a
    mushin_nb sweep (then Hydra gets a completed job, as for any failure mushin_nb
    records), else the job is a failed job whose return value is a
    ``RuntimeError`` saying ``why``.
    """
    from pathlib import Path

    from hydra.core.utils import JobReturn, JobStatus

    log.error("mushin_nb: job #%s (%s) did not finish: %s", idx, " ".join(shown_overrides(overrides)), why)
    try:
        cfg = job_config(hydra_context, config, overrides, idx, job_id)
    except Exception as e:  # cannot compose: report the death anyway
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
        from mushin_nb._job import record_lost_job

        rec = record_lost_job(sweep_dir, list(overrides), idx, sub, why)
    except Exception as e:
        log.error("mushin_nb: could not record the failure of job #%s: %s", idx, e)
    if rec is None:
        exc = RuntimeError(f"job #{idx} ({' '.join(overrides)}) did not finish: {why}")
        return job_return(cfg, overrides, JobStatus.FAILED, exc)
    return job_return(cfg, overrides, JobStatus.COMPLETED, _record_value(rec))


def _record_value(rec: Any) -> Any:
    """What JobRunner returned for a job, from its stored record."""
    from mushin_nb._job import JobOutcome

    if rec.status == "done":
        return rec.metrics
    return JobOutcome(rec.status, rec.error)


def job_return_from_disk(
    hydra_context: Any, config: Any, overrides: list[str], idx: int, job_id: str | None
) -> Any:
    """The ``JobReturn`` of a job that finished but whose return was lost with a
    broken pool: rebuilt from its job directory (mushin_nb's stored result)."""
    import json
    from pathlib import Path

    from hydra.core.utils import JobStatus

    cfg = job_config(hydra_context, config, overrides, idx, job_id)
    job_dir = Path(str(cfg.hydra.runtime.output_dir))
    try:
        from mushin_nb._store import RESULT_JSON, JobResult

        rec = JobResult.from_json(json.loads((job_dir / RESULT_JSON).read_text(encoding="utf-8")), job_dir)
    except Exception:
        log.warning("mushin_nb: job #%s finished but its return value was lost with its worker", idx)
        return job_return(cfg, overrides, JobStatus.UNKNOWN, None)
    return job_return(cfg, overrides, JobStatus.COMPLETED, _record_value(rec))
