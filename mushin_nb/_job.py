"""One job: the function Hydra runs for each job, and recording a job that died.

:class:`JobRunner` is what every launcher runs (in this process, in joblib
workers, on SLURM, Dask or Ray nodes): it finds the job's grid cell, honours a
cancel, runs ``pre_task`` and ``task``, checks and persists the result (or the
failure) and never raises into Hydra. :func:`record_lost_job` records, from the
driver, a job whose process died.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _store
from ._registry import LiveState, live_state
from ._store import JobResult

if TYPE_CHECKING:
    from ._sweep import SweepSpec

log = logging.getLogger("mushin_nb")

__all__ = [
    "JobRunner",
    "JobOutcome",
    "JobCancelled",
    "task_hash",
    "cell_of",
    "match_cell",
    "describe_exit",
    "record_lost_job",
    "record_unfinished",
]


class JobCancelled(BaseException):
    """Raised inside an in-process job by ``SweepRun.interrupt()`` (a BaseException,
    so a task's ``except Exception`` does not swallow it)."""


class JobOutcome:
    """What the job wrapper returns to Hydra for a job that did not produce a
    metrics dict (failed or cancelled); Hydra never sees the exception, so it
    never aborts the batch."""

    def __init__(self, status: str, error: dict[str, str] | None = None):
        self.status = status
        self.error = error

    def __repr__(self) -> str:
        return f"JobOutcome({self.status!r})"


def task_hash(*fns: Any) -> str:
    """A short hash of the source of ``fns`` (the task and pre_task): a resume refuses
    to mix results of two versions of a task."""
    h = hashlib.sha256()
    for fn in fns:
        fn = inspect.unwrap(fn) if callable(fn) else fn
        try:
            src = inspect.getsource(fn)
            h.update(src.encode())
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            if code is not None:
                h.update(code.co_code)
                h.update(repr(code.co_consts).encode())
            else:
                h.update(repr(fn).encode())
    return h.hexdigest()[:16]


class JobRunner:
    """The function Hydra runs for each job (picklable: it travels to joblib,
    submitit and Ray workers).

    It finds the job's grid cell from its overrides, honours a cancel, runs
    ``pre_task`` then ``task``, persists the return value (or the failure) in the
    job directory and the sweep index, and never raises into Hydra.
    """

    def __init__(
        self,
        *,
        task: Callable[[Any], Any],
        pre_task: Callable[[Any], Any] | None,
        sweep_dir: str,
        run_id: str,
        lookup: dict[str, dict[str, int]],
        params: list[tuple[str, list[Any]]],
        on_error: str,
        workflow: str,
        task_hash: str,
        require_dict: bool = True,
        reserved: Iterable[str] = (),
    ):
        self.task = task
        self.pre_task = pre_task
        self.sweep_dir = sweep_dir
        self.run_id = run_id
        self.lookup = lookup
        self.params = params
        self.on_error = on_error
        self.workflow = workflow
        self.task_hash = task_hash
        self.require_dict = require_dict
        # names no metric may have (see _sweep.reserved_metric_names)
        self.reserved = frozenset(reserved)

    def __getstate__(self) -> dict[str, Any]:
        # what _job keeps of this process's file system does not travel to a worker
        state = dict(self.__dict__)
        state.pop("_here", None)
        return state

    def _index(self, overrides: list[str]) -> tuple[int, ...] | None:
        return match_cell(overrides, self.lookup, self.params)

    def _label(self, idx: tuple[int, ...] | None) -> str:
        if idx is None:
            return "(unknown cell)"
        return ", ".join(f"{n}={vals[i]!r}" for (n, vals), i in zip(self.params, idx))

    def _job(self) -> _Job:
        fast = sys.modules.get("hydra_plugins.mushin_nb_plugins._template")
        running = fast.running_job() if fast is not None else None
        if running is not None:  # the in-process launcher's job: what HydraConfig holds
            job_dir, overrides, job_num = Path(running[0]), list(running[1]), int(running[2])
        else:
            from hydra.core.hydra_config import HydraConfig

            hc = HydraConfig.get()
            job_dir = Path(hc.runtime.output_dir)
            overrides = list(hc.overrides.task)
            job_num = int(hc.job.num)
        idx = self._index(overrides)
        if idx is None:
            raise RuntimeError(
                f"mushin_nb: job {job_num} has overrides {overrides} that match no cell of "
                "the sweep; was the sweep changed by a sweeper plugin?"
            )
        # the sweep directory as a Path, its text and its real path: made once per process
        here = self.__dict__.get("_here")
        if here is None:
            sweep_path = Path(self.sweep_dir)
            here = self._here = (sweep_path, str(sweep_path) + os.sep, os.path.realpath(sweep_path))
        sweep_dir, prefix, real = here
        text = os.fspath(job_dir)
        if text.startswith(prefix) and os.sep == "/":  # what relative_to answers, without it
            subdir = text[len(prefix) :]
        else:
            try:
                subdir = job_dir.relative_to(sweep_dir).as_posix()
            except ValueError:
                subdir = str(job_dir)
        state = live_state(real, run_id=self.run_id, real=True)
        base = dict(index=idx, subdir=subdir, job_num=job_num, task_hash=self.task_hash, run_id=self.run_id)
        return _Job(sweep_dir, job_dir, idx, subdir, state, base, self._label(idx))

    def __call__(self, cfg: Any) -> Any:
        job = self._job()
        state = job.state
        if (state is not None and state.cancel.is_set()) or _store.is_cancelled(job.sweep_dir):
            job.persist(JobResult(status="cancelled", **job.base))
            return JobOutcome("cancelled")
        if state is not None:
            state.job_thread = threading.current_thread()
            if state.on_start is not None:
                state.on_start(job.idx, job.subdir)
        _mark_started(
            job.job_dir, job.base
        )  # a process that dies in the job leaves it: reload sees the death
        t0 = time.perf_counter()
        try:
            return self._run_task(cfg, job, t0)
        except JobCancelled:
            job.persist(JobResult(status="cancelled", duration=time.perf_counter() - t0, **job.base))
            return JobOutcome("cancelled")
        except (Exception, SystemExit) as e:  # sys.exit() in a task ends that job, not the sweep
            return self._failed(job, e, time.perf_counter() - t0)
        finally:
            if state is not None:
                state.job_thread = None
            _store.clear_job_started(job.job_dir)

    def _run_task(self, cfg: Any, job: _Job, t0: float) -> Any:
        if self.pre_task is not None:
            _call(self.pre_task, cfg)
        out = _call(self.task, cfg)
        if out is not None and not isinstance(out, Mapping):
            raise TypeError(
                f"{self.workflow}.task must return a dict of metrics (or None), but the job "
                f"with {job.label} returned a {type(out).__name__}: {out!r:.200}. "
                "Return e.g. dict(accuracy=acc)."
            )
        metrics = None
        if out is not None:  # checked here: a value or name the Dataset cannot hold fails this job
            metrics = _store.convert_metrics(
                out, reserved=self.reserved, swept=[n for n, _ in self.params], where=job.label
            )
        # inside the job's try: a result that cannot be written (a value without a stored
        # form, a full disk) becomes this job's recorded failure
        job.persist(
            JobResult(
                status="done",
                metrics=metrics,
                returned_none=out is None,
                duration=time.perf_counter() - t0,
                **job.base,
            )
        )
        return out

    def _failed(self, job: _Job, e: BaseException, duration: float) -> JobOutcome:
        tb = traceback.format_exc()
        err = {"type": type(e).__name__, "message": _exit_message(e), "traceback": tb}
        try:
            (job.job_dir / _store.ERROR_TXT).write_text(tb, encoding="utf-8")
        except OSError:
            pass
        if self.on_error == "stop":
            _store.set_cancel(job.sweep_dir, f"stopped after a failure in {job.subdir}")
            if job.state is not None:
                job.state.cancel.set()
        job.persist(JobResult(status="failed", duration=duration, error=err, **job.base))
        return JobOutcome("failed", err)


@dataclass
class _Job:
    """One job's place: its directories, grid cell, the driver's live state (None in
    a worker process) and the fields every record of it carries."""

    sweep_dir: Path
    job_dir: Path
    idx: tuple[int, ...]
    subdir: str
    state: LiveState | None
    base: dict[str, Any]
    label: str

    def persist(self, result: JobResult) -> None:
        """Write ``result`` (job directory and index) and hand it to the live run. A
        "done" record that cannot be written raises (the job's failure); a failure
        record that cannot be written is logged, never raised into Hydra."""
        result.finished = time.time()
        # this process wrote the job's start marker: it becomes the result file
        if result.status == "done":
            _store.write_job_result(self.sweep_dir, self.job_dir, result, from_marker=True)
        else:
            try:
                _store.write_job_result(self.sweep_dir, self.job_dir, result, from_marker=True)
            except Exception as e:
                log.error(
                    "mushin_nb: could not write the %s record of the job with %s in %s (%s: %s); "
                    "this cell will show as missing when the sweep is reloaded",
                    result.status,
                    self.label,
                    self.job_dir,
                    type(e).__name__,
                    e,
                )
        if self.state is not None and self.state.on_record is not None:
            self.state.on_record(result)


def _call(fn: Callable[[Any], Any], cfg: Any) -> Any:
    """``fn(cfg)``; a hydra-zen ``zen`` wrapper without its per-call OmegaConf exception
    (the ``omegaconf-args-attribute`` compat patch)."""
    zen_type = getattr(sys.modules.get("hydra_zen.wrapper"), "Zen", None)
    if zen_type is not None and isinstance(fn, zen_type):
        from ._compat.zen_args import call_without_args_lookup

        return call_without_args_lookup(fn, cfg)
    return fn(cfg)


def _mark_started(job_dir: Path, base: Mapping[str, Any]) -> None:
    try:
        _store.mark_job_started(job_dir, **base)
    except OSError as e:  # the job still runs; only a death in it would go unnoticed on reload
        log.warning("mushin_nb: could not write the start marker in %s: %s", job_dir, e)


def _exit_message(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        call = "sys.exit()" if e.code is None else f"sys.exit({e.code!r})"
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        return (
            f"the task called {call} (exit code {code}); a job ends by returning its metrics or "
            "raising an exception, and sys.exit() in a job ends only that job"
        )
    return str(e)


def cell_of(overrides: list[str], spec: SweepSpec) -> tuple[int, ...] | None:
    """The grid cell of ``spec`` a job's task overrides describe, or None."""
    return match_cell(overrides, spec.lookup(), [(p.name, list(p.values)) for p in spec.swept])


def match_cell(
    overrides: list[str], lookup: Mapping[str, Mapping[str, int]], params: list[tuple[str, list[Any]]]
) -> tuple[int, ...] | None:
    """A job's task overrides -> its grid index: by the element strings the sweep
    recorded (fast), else by parsed values (another sweeper may write values
    differently); None if they match no cell."""
    from ._overrides import override_name, parse_overrides, unquote
    from ._sweep import parse_job_overrides

    idx = parse_job_overrides(overrides, lookup)
    if idx is not None:
        return idx
    found: dict[str, int] = {}
    values = dict(params)
    try:
        parsed = parse_overrides(list(overrides))
    except ValueError:
        return None
    for o in parsed:
        name = override_name(o)
        if name in values and not o.is_sweep_override():
            v = unquote(o.value())
            for i, c in enumerate(values[name]):
                if type(c) is type(v) and c == v:
                    found[name] = i
                    break
    if len(found) != len(lookup):
        return None
    return tuple(found[k] for k in lookup)


_SIGNAL_NOTES = {
    "SIGKILL": "out of memory?",
    "SIGSEGV": "segmentation fault",
    "SIGBUS": "bus error",
    "SIGABRT": "aborted",
    "SIGFPE": "floating-point exception",
    "SIGILL": "illegal instruction",
    "SIGTERM": "terminated",
}


def describe_exit(code: int | None) -> str:
    """A process exit status as words: ``"exited with code 3"``, ``"killed by
    signal 9 (SIGKILL: out of memory?)"`` (negative codes are signals, as in
    ``subprocess``)."""
    import signal as _signal

    if code is None:
        return "exit code/signal unknown"
    if code < 0:
        try:
            name = _signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        note = _SIGNAL_NOTES.get(name)
        return f"killed by signal {-code} ({name}{': ' + note if note else ''})"
    return f"exited with code {code}"


def record_lost_job(
    sweep_dir: str | Path,
    job_overrides: list[str],
    job_num: int,
    job_subdir: str | None,
    reason: str,
) -> JobResult | None:
    """Record, from the driver, the failure of a job whose process died (a worker
    killed by a signal, an ``os._exit``): a failed result in its job directory and
    the sweep index, exactly like a job's own failure, so the live view, reload and
    ``resume=True`` see it.

    The cell is found from the job's overrides in the grid of the sweep's last run
    (``.mushin/manifest.json``). A result the job wrote itself is never replaced.
    Returns the record (the job's own if it wrote one), or None when ``sweep_dir``
    holds no mushin_nb sweep or the overrides match no cell of it.
    """
    from ._sweep import SweepSpec

    sweep_dir = Path(sweep_dir)
    try:
        manifest = _store.read_manifest(sweep_dir)
    except Exception:
        manifest = None
    if not manifest or not manifest.get("runs"):
        return None
    run_id = manifest["runs"][-1]
    spec = SweepSpec.from_json(manifest.get("run_specs", {}).get(run_id, manifest["spec"]))
    idx = cell_of(list(job_overrides), spec)
    if idx is None:
        return None
    job_dir = sweep_dir / job_subdir if job_subdir else sweep_dir / str(job_num)
    try:
        sub = job_dir.relative_to(sweep_dir).as_posix()
    except ValueError:
        sub = str(job_dir)
    own = _store.read_job_marker(job_dir) or {}
    if _store.has_result_of(job_dir, {"run_id": run_id, "job_num": job_num}):
        try:
            import json

            d = json.loads((job_dir / _store.RESULT_JSON).read_text(encoding="utf-8"))
            return JobResult.from_json(d, job_dir)
        except Exception:
            pass
    label = ", ".join(f"{n}={v!r}" for n, v in spec.cell_params(idx).items())
    logs = sorted(job_dir.glob("*.log")) if job_dir.is_dir() else []
    see = f"; see {logs[0]}" if logs else f"; see {job_dir}"
    msg = f"the job with {label} did not finish: {reason}{see}. resume=True runs it again."
    started = float(own.get("started", 0.0) or 0.0)
    r = JobResult(
        index=idx,
        status="failed",
        subdir=sub,
        job_num=int(job_num),
        duration=time.time() - started if started else float("nan"),
        error={"type": "ProcessDied", "message": msg, "traceback": ""},
        task_hash=str(manifest.get("task_hash", "")),
        finished=time.time(),
        run_id=run_id,
    )
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / _store.ERROR_TXT).write_text(msg + "\n", encoding="utf-8")
    except OSError:
        pass
    _store.write_job_result(sweep_dir, job_dir, r)
    _store.clear_job_started(job_dir)
    return r


def record_unfinished(run: Any, cells: list[tuple[int, ...]]) -> list[JobResult]:
    """The failure records of ``cells`` a finished run (a ``SweepRun``) has no result for:
    each says where its job ran (the launcher's job return, else its start marker) and is
    written to its job directory and the index, so a reload agrees with the live view."""
    from hydra.core.utils import JobStatus

    spec = run.spec
    # where each cell's job ran: the launcher's job returns, else its start marker
    where: dict[tuple[int, ...], tuple[Path, int, str]] = {}
    for j in run.jobs:
        try:
            idx = cell_of(list(j.overrides or []), spec)
            h = j.hydra_cfg.hydra
            job_dir, num = Path(str(h.runtime.output_dir)), int(h.job.num)
        except Exception:
            continue
        note = ""
        if j.status == JobStatus.FAILED:
            e = getattr(j, "_return_value", None)
            note = f"; the job ended with {type(e).__name__}: {e}"
        if idx is not None:
            where[idx] = (job_dir, num, note)
    if any(c not in where for c in cells):
        for _sub, d in _store.marker_dirs(run.sweep_dir, set()):
            m = _store.read_job_marker(d)
            if m and m.get("run_id") == run.run_id and "index" in m:
                where.setdefault(tuple(m["index"]), (d, int(m.get("job_num", -1)), ""))
    out: list[JobResult] = []
    thash = str((getattr(run, "manifest", None) or {}).get("task_hash", ""))
    for r in run.results:
        thash = thash or r.task_hash
    for k, idx in enumerate(cells):
        label = ", ".join(f"{n}={v!r}" for n, v in spec.cell_params(idx).items())
        if idx in where:
            job_dir, num, note = where[idx]
            logs = sorted(job_dir.glob("*.log"))
            see = f"{logs[0]} and {job_dir}" if logs else str(job_dir)
            msg = (
                f"no result was recorded for the job with {label}: it ended without writing "
                f"one{note}; see {see}. resume=True runs it again."
            )
        else:
            job_dir, num = run.sweep_dir / _store.META_DIR / "unlaunched" / f"{run.run_id}-{k}", -1
            msg = (
                f"no result was recorded for the job with {label}: the launcher ran no job for "
                f"this cell; see the launcher's output and {run.sweep_dir / 'multirun.yaml'}. "
                "resume=True runs it again."
            )
        try:
            sub = job_dir.relative_to(run.sweep_dir).as_posix()
        except ValueError:
            sub = str(job_dir)
        r = JobResult(
            index=idx,
            status="failed",
            subdir=sub,
            job_num=num,
            error={"type": "NoResult", "message": msg, "traceback": ""},
            task_hash=thash,
            finished=time.time(),
            run_id=run.run_id,
        )
        try:
            _store.write_job_result(run.sweep_dir, job_dir, r)
            _store.clear_job_started(job_dir)
        except OSError as e:
            log.warning("mushin_nb: could not record the failure of the job with %s: %s", label, e)
        out.append(r)
    return out
