"""hydra-submitit-launcher, with a job that dies being that job's failure
(``hydra/launcher=mushin_nb_submitit_local`` / ``mushin_nb_submitit_slurm``: the
launchers mushin_nb's ``launcher="submitit_local"`` / ``"submitit_slurm"`` pick).

hydra-submitit-launcher's ``launch`` collects ``job.results()`` in a list: the
first job that died (``os._exit``, a signal, the OOM killer, a SLURM node failure)
raises submitit's ``UncompletedJobError`` / ``FailedJobError`` out of the sweep and
the other jobs' returns are lost. These launchers take the same settings (their
configs subclass the submitit ones), submit the same jobs, and collect each job's
result on its own: a job that died becomes that cell's recorded failure with
submitit's message, the tail of its stderr and, when it is known, its exit code or
signal; the other jobs are returned as usual.

In the job process, ``faulthandler`` is enabled (a fatal signal prints "Fatal
Python error: Segmentation fault" to the job's stderr) and a call of ``os._exit``
by the job's own process is noted on its stderr first, so the driver can say how
the job ended. A SIGKILL (e.g. the out-of-memory killer) leaves no note: the
failure then says the exit code is unknown, with SLURM's job state.

Kept light (Hydra imports every module under ``hydra_plugins`` when it scans for
plugins): submitit is imported lazily. No ``from __future__ import annotations``
here (see the sweeper module).
"""

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)

try:
    import hydra_plugins.hydra_submitit_launcher.config as _conf
    import hydra_plugins.hydra_submitit_launcher.submitit_launcher as _base
except ImportError:  # pragma: no cover - hydra-submitit-launcher not installed
    _conf = None  # type: ignore[assignment]
    _base = None  # type: ignore[assignment]

_NOTE = "mushin_nb: the job's process called os._exit({})"


def _note_exits() -> None:
    """In the job process: make a death explain itself on stderr."""
    import faulthandler
    import os
    import sys

    if not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except Exception:  # pragma: no cover - no usable stderr
            pass
    real = os._exit
    if getattr(real, "_mushin_nb", False):
        return
    pid = os.getpid()

    def _exit(code: int) -> None:
        if os.getpid() == pid:  # not forked children (e.g. DataLoader workers)
            try:
                sys.stdout.flush()
                sys.stderr.write("\n" + _NOTE.format(code) + "\n")
                sys.stderr.flush()
            except Exception:
                pass
        real(code)

    _exit._mushin_nb = True  # type: ignore[attr-defined]
    os._exit = _exit  # type: ignore[assignment]


def _how_it_ended(text: str, state: str) -> str:
    """How a job ended, from its stderr (the notes above) and its state."""
    import re
    import signal

    from mushin_nb._execution import describe_exit

    m = re.findall(r"called os\._exit\((-?\d+)\)", text)
    if m:
        return f"{describe_exit(int(m[-1]))} (os._exit)"
    names = {
        "Segmentation fault": signal.SIGSEGV,
        "Bus error": signal.SIGBUS,
        "Aborted": signal.SIGABRT,
        "Floating-point exception": signal.SIGFPE,
        "Floating point exception": signal.SIGFPE,
        "Illegal instruction": signal.SIGILL,
    }
    for words, sig in names.items():
        if f"Fatal Python error: {words}" in text:
            return describe_exit(-int(sig))
    if "OUT_OF_MEMORY" in state:
        return f"killed for using too much memory (state {state})"
    return (
        f"exit code/signal unknown (state {state}; a SIGKILL, e.g. by the out-of-memory killer, "
        "leaves no trace)"
    )


def _raised(text: str) -> str:
    """The exception line of the traceback in submitit's FailedJobError message."""
    last = ""
    for line in text.splitlines():
        if line.startswith("You can check full logs"):
            break
        if line.strip() and not line.startswith("---") and not line.startswith(" "):
            last = line.strip()
    return last or "an error"


def _tail(text: str, n: int = 15) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


class _Tolerant:
    """The mixin: hydra-submitit-launcher's ``launch``, collecting each job on its own."""

    _EXECUTOR: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _note_exits()
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        # hydra-submitit-launcher 1.2's BaseSubmititLauncher.launch, up to its last line
        import os
        from pathlib import Path

        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from omegaconf import OmegaConf

        self_: Any = self
        assert self_.config is not None
        num_jobs = len(job_overrides)
        assert num_jobs > 0
        params = self_.params
        init_params = {"folder": self_.params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(
            **{f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys}
        )
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(_conf.BaseQueueConf).keys())
        params = {
            x if x in baseparams else f"{self._EXECUTOR}_{x}": y
            for x, y in params.items()
            if x not in init_keys
        }
        executor.update_parameters(**params)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self_.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self_.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self_.config.hydra.sweep:
            mode = int(str(self_.config.hydra.sweep.mode), 8)
            os.chmod(sweep_dir, mode=mode)
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            lst = " ".join(filter_overrides(overrides))
            log.info(f"\t#{idx} : {lst}")
            job_params.append(
                (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
            )
        jobs = executor.map_array(self, *zip(*job_params))
        # the change: one dead job is that job's failure, the others are collected
        return [self._collect(job, p[0], p[2]) for job, p in zip(jobs, job_params)]

    def _collect(self, job: Any, overrides: list[str], idx: int) -> Any:
        import submitit

        from hydra_plugins.mushin_nb_plugins.launcher import _lost_job_return

        if self._EXECUTOR == "local" and hasattr(job, "_results_timeout_s"):
            # a local job's result file is written before its process exits: no need to
            # wait 15 s for a slow network file system when there is none
            job._results_timeout_s = min(job._results_timeout_s, 1)
        try:
            return job.results()[0]
        except submitit.core.utils.UncompletedJobError as e:  # FailedJobError included
            self_: Any = self
            text = str(e)
            try:
                stderr = job.stderr() or ""
            except Exception:
                stderr = ""
            state = str(getattr(job, "state", "UNKNOWN"))
            if isinstance(e, submitit.core.utils.FailedJobError):
                why = (
                    f"the submitit job {job.job_id} failed outside the task with {_raised(text)}; "
                    f"see {getattr(job.paths, 'stderr', 'its stderr')}"
                )
            else:
                how = _how_it_ended(text + "\n" + stderr, state)
                tail = _tail(stderr) if stderr.strip() else "(empty)"
                why = (
                    f"the submitit job {job.job_id} running it ended without a result: {how}. "
                    f"Its stderr ends with:\n{tail}\n(submitit: {text.splitlines()[0] if text else ''})"
                )
            return _lost_job_return(self_.hydra_context, self_.config, overrides, idx, str(job.job_id), why)


if _base is not None:

    @dataclass
    class MushinSubmititLocalConf(_conf.LocalQueueConf):
        _target_: str = "hydra_plugins.mushin_nb_plugins.submitit_launcher.MushinSubmititLocalLauncher"

    @dataclass
    class MushinSubmititSlurmConf(_conf.SlurmQueueConf):
        _target_: str = "hydra_plugins.mushin_nb_plugins.submitit_launcher.MushinSubmititSlurmLauncher"

    class MushinSubmititLocalLauncher(_Tolerant, _base.LocalLauncher):
        """hydra-submitit-launcher's ``submitit_local``; a dead job is its cell's failure."""

    class MushinSubmititSlurmLauncher(_Tolerant, _base.SlurmLauncher):
        """hydra-submitit-launcher's ``submitit_slurm``; a dead job is its cell's failure."""

    ConfigStore.instance().store(
        group="hydra/launcher",
        name="mushin_nb_submitit_local",
        node=MushinSubmititLocalConf(),
        provider="mushin_nb",
    )
    ConfigStore.instance().store(
        group="hydra/launcher",
        name="mushin_nb_submitit_slurm",
        node=MushinSubmititSlurmConf(),
        provider="mushin_nb",
    )

    __all__ = [
        "MushinSubmititLocalConf",
        "MushinSubmititLocalLauncher",
        "MushinSubmititSlurmConf",
        "MushinSubmititSlurmLauncher",
    ]
