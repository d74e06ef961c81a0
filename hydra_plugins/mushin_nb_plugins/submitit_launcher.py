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

from hydra_plugins.mushin_nb_plugins import _slurm

log = logging.getLogger(__name__)

_conf: Any = None
_base: Any = None
try:
    import hydra_plugins.hydra_submitit_launcher.config as _conf
    import hydra_plugins.hydra_submitit_launcher.submitit_launcher as _base
except ImportError:  # pragma: no cover - hydra-submitit-launcher not installed
    pass

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

    from mushin_nb._job import describe_exit

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
    if state.startswith("CANCELLED"):
        return (
            f"cancelled on the cluster, not by this sweep (SLURM state {state!r}: a scancel, "
            "or an administrator)"
        )
    if state.startswith("TIMEOUT"):
        return (
            f"stopped at its time limit (SLURM state {state!r}); give it more time with "
            "overrides=['hydra.launcher.timeout_min=<minutes>']"
        )
    if state.startswith(("NODE_FAIL", "BOOT_FAIL")):
        return f"lost with its node (SLURM state {state!r})"
    if state.startswith("PREEMPTED"):
        return f"preempted (SLURM state {state!r})"
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


def _cancel_on_signal(sweep_dir: str) -> None:
    """In the job process: a SIGTERM (SLURM's ``scancel``) or SIGINT (submitit's local
    cancel) that arrives while the sweep's cancel flag is set stops the job as
    *cancelled*: the task is interrupted and the job records itself as cancelled.
    Without the flag (a ``scancel`` from outside, a time limit) the signal keeps its
    previous handler (submitit's: log and wait for SLURM's SIGKILL), so the job ends
    as the failure it is."""
    import os
    import signal
    from pathlib import Path

    def make(sig: int, prev: Any) -> Any:
        def handler(signum: int, frame: Any) -> None:
            try:
                from mushin_nb import _store

                flagged = _store.is_cancelled(Path(sweep_dir))
            except Exception:
                flagged = False
            if flagged:
                from mushin_nb._job import JobCancelled as _JobCancelled

                raise _JobCancelled()
            if callable(prev):
                prev(signum, frame)
            elif prev == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        handler._mushin_nb = True  # type: ignore[attr-defined]
        return handler

    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if getattr(prev, "_mushin_nb", False):
            continue
        try:
            signal.signal(sig, make(sig, prev))
        except ValueError:  # pragma: no cover - not the main thread
            pass


class _Control:
    """The driver's hold on one submitted batch: cancel it (the run's cancel hook)
    or stop its queued jobs (``on_error="stop"``)."""

    def __init__(self, executor: str, jobs: list[Any]):
        self.executor = executor
        self.jobs = jobs
        self.cancelled = False  # the user cancelled the sweep: queued and running jobs stopped
        self.stopped = False  # the sweep stops (on_error="stop"): queued jobs removed

    def _slurm_ids(self) -> list[str]:
        return sorted({str(j.job_id).split("_")[0] for j in self.jobs})

    def cancel(self) -> None:
        """SweepRun.cancel's hook: stop every job of the batch, queued or running."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.executor == "slurm":
            _slurm.scancel(self._slurm_ids())
        else:
            import signal

            for j in self.jobs:
                # submitit's local controller forwards a SIGTERM to its task (its own
                # cancel() sends SIGINT, which also interrupts the controller itself)
                proc = getattr(j, "_process", None)
                try:
                    if proc is not None and proc.poll() is None and not j.paths.result_pickle.exists():
                        proc.send_signal(signal.SIGTERM)
                except Exception as e:  # pragma: no cover - defensive
                    log.warning("mushin_nb: could not cancel submitit job %s: %s", j.job_id, e)

    def stop_queued(self) -> None:
        """The sweep stops starting jobs: remove the queued ones (running ones finish)."""
        if self.stopped or self.cancelled:
            return
        self.stopped = True
        if self.executor == "slurm":
            _slurm.scancel(self._slurm_ids(), "--state=PENDING")


def _drop_stale_files(jobs: list[Any]) -> None:
    """A cluster whose job ids started again at 1 (a new SLURM state directory) reuses
    the submitit folders of an earlier sweep in the same directory: a result pickle or
    log older than the job's own submission pickle belongs to that earlier job, and
    submitit would read it as this job's result. Remove such files."""
    for j in jobs:
        try:
            sub = j.paths.submitted_pickle.stat().st_mtime
        except OSError:
            continue
        for p in (j.paths.result_pickle, j.paths.stdout, j.paths.stderr):
            try:
                if p.stat().st_mtime < sub:
                    p.unlink()
                    log.info("mushin_nb: removed %s, left by an earlier job with the same id", p)
            except OSError:
                pass


class _Tolerant:
    """The mixin: hydra-submitit-launcher's ``launch``, collecting each job on its own,
    as it finishes, with a cancel hook for the run."""

    _EXECUTOR: str
    # the driver asks SLURM (sacct) for the state of jobs without a result every
    # _POLL_MIN s at first, then less often, at most every _POLL_MAX s
    _POLL_MIN = 1.0
    _POLL_MAX = 10.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _note_exits()
        self_: Any = self
        try:
            _cancel_on_signal(str(self_.config.hydra.sweep.dir))
        except Exception as e:  # pragma: no cover - the job runs without it
            log.debug("mushin_nb: no cancel signal handler: %s", e)
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
        _check_picklable(self_.task_function, self._EXECUTOR)  # before submitit creates anything
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
        # submitit creates a job's folder only after sbatch: hold the job until they all exist
        held = self._EXECUTOR == "slurm" and _slurm.hold_submission(params)
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
        # the change: each job is collected as it ends, a dead job is that job's failure,
        # and the run's cancel() stops the queued and running jobs
        _drop_stale_files(jobs)
        if held:
            ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
            try:
                _slurm.release(ids)
            except BaseException:  # held, they would wait forever (release cancels on its failure)
                _slurm.scancel(ids)
                raise
        return self._collect_all(sweep_dir, jobs, job_params)

    def _collect_all(self, sweep_dir: Any, jobs: list[Any], job_params: list[Any]) -> list[Any]:
        import time

        from mushin_nb._registry import live_state

        state = live_state(sweep_dir)
        ctl = _Control(self._EXECUTOR, jobs)
        hooks = getattr(state, "cancel_hooks", None)
        if state is not None and hooks is not None:
            hooks.append(ctl.cancel)
            if state.cancel.is_set():  # cancelled while the batch was being submitted
                ctl.cancel()
        out: list[Any] = [None] * len(jobs)
        pending = set(range(len(jobs)))
        ended: dict[int, float] = {}  # when the cluster first said a job without a result ended
        interval, next_poll = self._POLL_MIN, 0.0
        flags = (False, False)
        spec = getattr(getattr(state, "run", None), "spec", None)
        running: set[int] = set()
        # how long a job the cluster says ended may take to show its result file
        shared_grace = 15.0 if _on_network_fs(sweep_dir) else 2.0
        try:
            while pending:
                for i in sorted(pending):
                    if jobs[i].paths.result_pickle.exists():
                        out[i] = self._collect(jobs[i], job_params[i][0], job_params[i][2])
                        pending.discard(i)
                if not pending:
                    break
                if state is not None and state.cancel.is_set() and not ctl.cancelled:
                    ctl.stop_queued()
                if (ctl.cancelled, ctl.stopped) != flags:  # jobs end now: ask again soon
                    flags, interval, next_poll = (ctl.cancelled, ctl.stopped), self._POLL_MIN, 0.0
                now = time.time()
                if self._EXECUTOR == "slurm":
                    if now >= next_poll:
                        jobs[0].watcher.update()  # one sacct call for every job of the batch
                        next_poll, interval = now + interval, min(interval * 1.5, self._POLL_MAX)
                    states = {i: _slurm_state(jobs[i]) for i in pending}
                    finished = [i for i, st in states.items() if st.split(" ")[0] not in _UNFINISHED]
                    if spec is not None and state is not None and state.on_start is not None:  # running now
                        for i in pending - running:
                            if states[i] == "RUNNING":
                                running.add(i)
                                _mark_running(state, spec, job_params[i][0])
                else:
                    finished = [i for i in pending if jobs[i].done()]
                for i in finished:
                    job = jobs[i]
                    first = ended.setdefault(i, now)
                    never_ran = not job.paths.stdout.exists() and not job.paths.stderr.exists()
                    # a local job's result is written before its process exits; a shared
                    # file system may show a cluster job's result some seconds late
                    grace = 0.0 if never_ran else shared_grace if self._EXECUTOR == "slurm" else 1.0
                    if now - first < grace and not job.paths.result_pickle.exists():
                        continue  # a slow shared file system: the result may still arrive
                    ov, idx = job_params[i][0], job_params[i][2]
                    if job.paths.result_pickle.exists():
                        out[i] = self._collect(job, ov, idx)
                    elif ctl.cancelled or (never_ran and state is not None and state.cancel.is_set()):
                        out[i] = self._cancelled(job, ov, idx, ran=not never_ran)
                    else:
                        out[i] = self._collect(job, ov, idx)
                    pending.discard(i)
                if pending:
                    time.sleep(0.2)
        finally:
            if hooks is not None and ctl.cancel in hooks:
                hooks.remove(ctl.cancel)
        return out

    def _cancelled(self, job: Any, overrides: list[str], idx: int, *, ran: bool) -> Any:
        """The JobReturn of a job the sweep's cancel stopped before it recorded itself.
        One that had started (its start marker is there) is recorded as cancelled."""
        from hydra.core.utils import JobReturn, JobStatus

        from hydra_plugins.mushin_nb_plugins._job_returns import job_config, job_return
        from mushin_nb._job import JobOutcome

        value = JobOutcome("cancelled")
        if not ran:  # never started: nothing of it is on disk; the run marks its cell cancelled
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = value
            return ret
        self_: Any = self
        try:
            cfg = job_config(self_.hydra_context, self_.config, overrides, idx, str(job.job_id))
        except Exception:
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = value
            return ret
        _record_cancelled(cfg)
        return job_return(cfg, overrides, JobStatus.COMPLETED, value)

    def _collect(self, job: Any, overrides: list[str], idx: int) -> Any:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from hydra_plugins.mushin_nb_plugins._job_returns import lost_job_return

        # the collection loop waited for the result (and gave a shared file system its
        # time): do not wait again
        job._results_timeout_s = 0
        try:
            return job.results()[0]
        except UncompletedJobError as e:  # FailedJobError included
            self_: Any = self
            text = str(e)
            try:
                stderr = job.stderr() or ""
            except Exception:
                stderr = ""
            state = str(getattr(job, "state", "UNKNOWN"))
            if isinstance(e, FailedJobError):
                why = (
                    f"the submitit job {job.job_id} failed outside the task with {_raised(text)}; "
                    f"see {getattr(job.paths, 'stderr', 'its stderr')}"
                )
            else:
                how = _how_it_ended(text + "\n" + stderr, state)
                if self._EXECUTOR == "slurm" and how.startswith("exit code/signal unknown"):
                    code = _slurm.exit_status(str(job.job_id))
                    how = f"{code} (state {state})" if code else how
                tail = _tail(stderr) if stderr.strip() else "(empty)"
                if (
                    self._EXECUTOR == "slurm"
                    and not job.paths.stdout.exists()
                    and not job.paths.stderr.exists()
                ):
                    tail += (
                        f"\n(it wrote no output file: SLURM could not start it in {job.paths.folder}; on a "
                        "cluster the sweep directory must be on a file system the nodes share)"
                    )
                why = (
                    f"the submitit job {job.job_id} running it ended without a result: {how}. "
                    f"Its stderr ends with:\n{tail}\n(submitit: {text.splitlines()[0] if text else ''})"
                )
            return lost_job_return(self_.hydra_context, self_.config, overrides, idx, str(job.job_id), why)


_UNFINISHED = ("READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", "")


def _slurm_state(job: Any) -> str:
    """A SLURM job's state from the last sacct call (no new call). An array task that
    never started has no line of its own once the array's queued rest is cancelled
    (``scancel --state=PENDING``): sacct then reports the rest under the array's id."""
    w = job.watcher
    st = str(w.get_info(job.job_id, mode="cache").get("State") or "")
    if not st and "_" in str(job.job_id):
        st = str(getattr(w, "_info_dict", {}).get(str(job.job_id).split("_")[0], {}).get("State") or "")
    return st or "UNKNOWN"


def _check_picklable(task_function: Any, executor: str) -> None:
    """submitit sends the task to each job with cloudpickle (what the notebook defines
    travels by value). Something it cannot pickle is refused before anything is
    submitted, naming the notebook globals at fault."""
    import cloudpickle

    try:
        cloudpickle.dumps(task_function)
    except Exception as e:
        culprits = unpicklable_globals(task_function)
        what = ", ".join(f"{n} (a {type(v).__name__})" for n, v in culprits) or "something it uses"
        launcher = "slurm" if executor == "slurm" else "submitit_local"
        raise TypeError(
            f"launcher={launcher!r} sends the task to its jobs with cloudpickle, and the task cannot "
            f"be pickled: it uses {what} ({type(e).__name__}: {e}). Create such objects inside the "
            "task (or in pre_task), or move that code into a module the jobs can import. Nothing "
            "was submitted."
        ) from e


def unpicklable_globals(task_function: Any) -> list[tuple[str, Any]]:
    """The globals the task's functions read that cloudpickle cannot pickle, as
    ``(name, value)`` pairs: the notebook objects a launcher that pickles the task (the
    SLURM/submitit, Dask and Ray launchers) names when the task cannot be sent. Follows
    the task's ``task``/``pre_task``/``func``/``__func__``/``__wrapped__`` attributes."""
    import inspect

    import cloudpickle

    todo, seen, out = [task_function], set(), []
    while todo:
        f = todo.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        for attr in ("task", "pre_task", "func", "__func__", "__wrapped__"):
            todo.append(getattr(f, attr, None))
        code, glb = getattr(f, "__code__", None), getattr(f, "__globals__", None)
        if code is None or glb is None:
            continue
        for name in inspect.getclosurevars(f).globals if callable(f) else ():
            try:
                cloudpickle.dumps(glb[name])
            except Exception:
                out.append((name, glb[name]))
    return out


def _mark_running(state: Any, spec: Any, overrides: list[str]) -> None:
    """Show the job's cell as running in the live Dataset (the cluster started it)."""
    try:
        from mushin_nb._job import cell_of

        idx = cell_of(list(overrides), spec)
        if idx is not None:
            state.on_start(idx, "")
    except Exception as e:  # pragma: no cover - progress only
        log.debug("mushin_nb: could not mark a running cell: %s", e)


_NETWORK_FS = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "fuse.",
    "panfs",
    "wekafs",
)


def _on_network_fs(path: Any) -> bool:
    """Whether ``path`` is on a network file system (by /proc/mounts), where a job's
    result file can show up seconds after the job ended. Unknown: True."""
    import os

    try:
        target = os.path.realpath(str(path))
        best, fstype = "", ""
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        return True
    return not fstype or fstype.startswith(_NETWORK_FS)


def _record_cancelled(cfg: Any) -> None:
    """A job that started (its start marker is in its directory) and was stopped by the
    sweep's cancel before it wrote a record: record it as cancelled, as it would have."""
    import time
    from pathlib import Path

    from mushin_nb import _store
    from mushin_nb._store import JobResult

    job_dir = Path(str(cfg.hydra.runtime.output_dir))
    sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()
    m = _store.read_job_marker(job_dir)
    if not m or "index" not in m or _store.has_result_of(job_dir, m):
        return
    started = float(m.get("started", 0.0) or 0.0)
    r = JobResult(
        index=tuple(int(i) for i in m["index"]),
        status="cancelled",
        subdir=str(m.get("subdir", "")),
        job_num=int(m.get("job_num", -1)),
        duration=time.time() - started if started else float("nan"),
        task_hash=str(m.get("task_hash", "")),
        finished=time.time(),
        run_id=str(m.get("run_id", "")),
    )
    try:
        _store.write_job_result(sweep_dir, job_dir, r)
        _store.clear_job_started(job_dir)
    except OSError as e:
        log.warning("mushin_nb: could not record the cancelled job in %s: %s", job_dir, e)


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
