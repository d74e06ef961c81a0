"""Running a sweep's jobs on a Dask or a Ray cluster (the ``dask`` and ``ray``
launchers, ``hydra/launcher=mushin_nb_dask`` / ``mushin_nb_ray``).

Driver side (:func:`launch`, in the notebook's process): the sweep's task, Hydra
context and configuration are pickled once with cloudpickle (functions and classes
defined in the notebook or ``__main__`` travel by value); each job is submitted as
one task of the engine (:class:`DaskEngine`: ``client.submit``; :class:`RayEngine`:
a ``ray.remote`` function) and collected as soon as it finishes. Every job persists
its own result in the sweep directory, as with every other launcher, so the live
Dataset fills in as jobs finish; the workers must see the sweep directory (a shared
file system), which each job checks first.

A job whose worker died (a Dask worker killed, a Ray worker or node gone) is that
job's failure, recorded with the reason (:func:`mushin_nb._job.record_lost_job`);
the other jobs go on. ``SweepRun.cancel()`` stops queued jobs and running ones: Dask
cancels the futures and raises the cancellation inside the running jobs (as
``interrupt()`` does in-process); Ray cancels the tasks with ``force=True`` (the
running ones' worker processes are killed), and their cells are recorded as
cancelled by the driver.

Worker side (:func:`run_job`, in :mod:`mushin_nb._remote_worker`): loads the pickled
sweep once per worker process and runs each job with mushin_nb's in-process launcher
(kept per process, so the configuration is composed once per worker), one job at a
time per process (Hydra changes the process's working directory while a job runs).
The engines are in :mod:`mushin_nb._remote_engines`; this module re-exports
:func:`run_job` and :func:`interrupt_jobs` under their former module path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._remote_engines import DASK_CLIENTS, ClusterConnectionError, DaskEngine, Engine, RayEngine
from ._remote_worker import interrupt_jobs, run_job

log = logging.getLogger("mushin_nb")

__all__ = ["launch", "run_job", "interrupt_jobs", "DaskEngine", "RayEngine", "ClusterConnectionError"]

_TRACK = "launch"  # <sweep dir>/.mushin/launch/<key>/<job num>.start: which jobs started
_DASK = DASK_CLIENTS  # the Dask clients this process keeps (tests and benches close them)


class SweepCodeError(RuntimeError):
    """The sweep's code or configuration cannot reach, or be loaded on, the workers."""


def _payload(launcher: Any, engine: str) -> bytes:
    import cloudpickle
    from hydra.core.singleton import Singleton

    try:
        return cloudpickle.dumps(
            (launcher.hydra_context, launcher.config, launcher.task_function, Singleton.get_state())
        )
    except Exception as e:
        culprits: list[tuple[str, Any]] = []
        try:  # the notebook globals the task reads that cannot be pickled (the SLURM launcher's finder)
            from hydra_plugins.mushin_nb_plugins.submitit_launcher import unpicklable_globals

            culprits = unpicklable_globals(launcher.task_function)
        except Exception:
            pass
        what = ", ".join(f"{n} (a {type(v).__name__})" for n, v in culprits) or "something it refers to"
        raise SweepCodeError(
            f"launcher={engine.lower()!r} sends the task and its configuration to the {engine} workers "
            f"with cloudpickle, and they cannot be pickled: the task uses {what} ({type(e).__name__}: {e}). "
            "Create such objects (an open file, a lock, a network client, a live model) inside the task "
            "(or in pre_task), or move that code into a module the workers can import. Nothing was "
            "submitted."
        ) from e


def _code_error(engine: str, text: str) -> SweepCodeError:
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or [text]
    mod = ""
    import re

    m = re.search(r"No module named '([\w.]+)'", text)
    if m:
        mod = m.group(1)
    if mod:
        hint = f"The module {mod!r} is not importable there. "
    elif "Can't get attribute" in text:
        hint = (
            "A module on the workers differs from this process's (another version of mushin-nb or of "
            "your code): install the same versions on the workers. "
        )
    else:
        hint = "Something the job refers to by import path is missing there. "
    return SweepCodeError(
        f"The {engine} workers cannot load the sweep's code: {last[0].strip()}. {hint}"
        "Functions and classes defined in the notebook (or the script run as __main__) travel to the "
        "workers by value; code imported from your own modules travels by reference and must be "
        "importable on every worker: install it there (pip install -e . on the workers' environment), "
        "put its directory on the workers' PYTHONPATH, or call "
        "cloudpickle.register_pickle_by_value(<module>) in the notebook before the sweep. "
        "mushin-nb itself must be installed on the workers.\n" + text.strip()
    )


def _cancelled_return(overrides: list[str]) -> Any:
    """What the launcher returns for a job that the sweep's cancel kept from running
    or stopped (its cell is marked cancelled by the run)."""
    from hydra.core.utils import JobReturn, JobStatus

    from mushin_nb._job import JobOutcome

    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = JobOutcome("cancelled")
    return ret


def launch(
    launcher: Any,
    name: str,
    make_engine: Callable[[], Engine],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    n_jobs: Any,
) -> list[Any]:
    """Run ``job_overrides`` on the engine ``make_engine()`` connects to (``name``:
    ``"Dask"`` or ``"Ray"``); the JobReturns in job order. The sweep is pickled
    before connecting: what cannot be sent is refused before anything happens."""
    from hydra.core.utils import configure_log, setup_globals

    from hydra_plugins.mushin_nb_plugins._job_returns import shown_overrides

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    cap = int(n_jobs) if n_jobs not in (None, -1, 0) else None
    if cap is not None and cap < 1:
        raise ValueError(
            f"launcher_settings={{'n_jobs': {n_jobs!r}}} (jobs=): give a number of jobs at once >= 1, or leave it out"
        )
    raw = _payload(launcher, name)
    log.debug("mushin_nb: the sweep pickles to %d bytes", len(raw))
    engine = make_engine()
    log.info(f"{engine.name} is launching {len(jobs)} jobs ({engine.where})")
    for idx, ov in jobs:
        log.info(f"\t#{idx} : {' '.join(shown_overrides(ov))}")
    return _RemoteRun(launcher, engine, sweep_dir, jobs, cap, raw).run()


class _RemoteRun:
    """One :func:`launch`: submits the jobs (at most ``cap`` at once), collects them as
    they finish, stops them on the sweep's cancel, and cleans its tracking up."""

    def __init__(
        self,
        launcher: Any,
        engine: Engine,
        sweep_dir: Path,
        jobs: list[tuple[int, list[str]]],
        cap: int | None,
        raw: bytes,
    ) -> None:
        from . import _store
        from ._registry import live_state

        self.launcher, self.engine, self.sweep_dir, self.jobs, self.cap = (
            launcher,
            engine,
            sweep_dir,
            jobs,
            cap,
        )
        self.meta = sweep_dir / _store.META_DIR
        self.had_meta = self.meta.is_dir()
        # a mushin_nb sweep: workers must see its directory (a plain Hydra sweep is not checked)
        self.check = str(self.meta) if (self.meta / _store.MANIFEST).is_file() else ""
        self.key = uuid.uuid4().hex
        self.track = self.meta / _TRACK / self.key
        self.track.mkdir(parents=True, exist_ok=True)
        self.payload = engine.put(raw)
        engine.check()
        self.state = live_state(sweep_dir)
        self.lock = threading.Lock()
        self.pending = deque(jobs)
        self.live: dict[int, tuple[Any, int, list[str]]] = {}  # id(handle) -> (handle, job num, overrides)
        self.results: dict[int, Any] = {}
        self.started_cancelled: set[int] = set()
        self.user_cancel = threading.Event()
        self.stopping = threading.Event()
        self.by_num = dict(jobs)
        self.seen_started: set[str] = set()
        self.fatal: BaseException | None = None
        self.hooks: list[Any] | None = None

    def stop(self, running: bool) -> None:
        """Submit nothing more; cancel the queued jobs (and the running ones)."""
        self.stopping.set()
        with self.lock:
            self.pending.clear()
            items = list(self.live.values())
        if not running:
            items = [it for it in items if not (self.track / f"{it[1]}.start").exists()]
        handles = [h for h, _, _ in items]
        if handles:
            self.engine.cancel(handles, running=running)
        if running:
            self.engine.interrupt(self.key)

    def on_cancel(self) -> None:
        """The sweep's cancel (a hook of its live state): stop every job."""
        self.user_cancel.set()
        self.stop(running=True)

    def cancel_requested(self) -> bool:
        """Whether the sweep was cancelled (live, or by its directory's cancel flag)."""
        from . import _store

        if self.state is not None and self.state.cancel.is_set():
            return True
        return bool(self.check) and _store.is_cancelled(self.sweep_dir)

    def mark_running(self) -> None:
        """Show the cells of jobs that started (their start files) as running."""
        state = self.state
        run = getattr(state, "run", None) if state is not None else None
        on_start = state.on_start if state is not None else None
        if run is None or on_start is None:
            return
        try:
            names = [n for n in os.listdir(self.track) if n.endswith(".start") and n not in self.seen_started]
        except OSError:
            return
        for n in names:
            self.seen_started.add(n)
            try:
                from ._job import cell_of

                cell = cell_of(self.by_num[int(n[: -len(".start")])], run.spec)
                if cell is not None:
                    on_start(cell, "")
            except Exception as e:  # pragma: no cover - progress only
                log.debug("mushin_nb: could not mark a running cell: %s", e)

    def run(self) -> list[Any]:
        """Run every job; the JobReturns in job order (raises a fatal error of the sweep)."""
        state = self.state
        if state is not None:
            self.hooks = state.cancel_hooks
            self.hooks.append(self.on_cancel)
            if getattr(state.run, "_cancel_requested", False):
                self.on_cancel()  # cancelled before the launcher got here
        try:
            self.loop()
        except BaseException:
            try:
                self.stop(running=True)
            except Exception as e:  # pragma: no cover - defensive
                log.warning("mushin_nb: could not cancel the %s jobs: %s", self.engine.name, e)
            raise
        finally:
            self.clean_up()
        if self.fatal is not None:
            raise self.fatal
        return [self.results[idx] if idx in self.results else _cancelled_return(ov) for idx, ov in self.jobs]

    def loop(self) -> None:
        """Submit and collect until no job is queued or running."""
        engine = self.engine
        while True:
            self.mark_running()
            if not self.stopping.is_set() and self.cancel_requested():
                self.stop(running=self.user_cancel.is_set())  # on_error="stop": running jobs finish
            with self.lock:
                while (
                    self.pending
                    and not self.stopping.is_set()
                    and (self.cap is None or len(self.live) < self.cap)
                ):
                    idx, ov = self.pending.popleft()
                    args = (idx, ov, self.key, str(self.track), self.check, engine.kind)
                    h = engine.submit(self.payload, args, idx, self.key)
                    self.live[id(h)] = (h, idx, ov)
                handles = [h for h, _, _ in self.live.values()]
            if not handles:
                break
            for h in engine.wait(handles, 0.2):
                with self.lock:
                    _, idx, ov = self.live.pop(id(h))
                try:
                    kind, value = engine.result(h)
                except BaseException as e:  # the engine's error: cancelled, lost, code
                    kind, value = engine.classify(e)
                self.collect(idx, ov, kind, value)

    def collect(self, idx: int, ov: list[str], kind: str, value: Any) -> None:
        """Keep what job ``idx`` came back with (see :func:`run_job`)."""
        from hydra_plugins.mushin_nb_plugins._job_returns import lost_job_return

        hydra_context, config = self.launcher.hydra_context, self.launcher.config
        if kind == "ok":
            self.results[idx] = value
        elif kind == "cancelled":
            self.results[idx] = _cancelled_return(ov)
            if (self.track / f"{idx}.start").exists():
                self.started_cancelled.add(idx)
        elif kind == "lost":
            value = _with_where(str(value), self.track / f"{idx}.start")
            if self.user_cancel.is_set() or (self.stopping.is_set() and self.cancel_requested()):
                # stopped by the cancel (e.g. its worker killed by it)
                self.results[idx] = _cancelled_return(ov)
                self.started_cancelled.add(idx)
            else:
                self.results[idx] = lost_job_return(hydra_context, config, ov, idx, None, value)
        elif kind in ("code", "nofs"):
            if self.fatal is None:
                self.fatal = self.fatal_error(kind, str(value))
                log.error("mushin_nb: %s", self.fatal)
                self.stop(running=True)
            self.results[idx] = _cancelled_return(ov)
        else:  # pragma: no cover - defensive
            self.results[idx] = lost_job_return(hydra_context, config, ov, idx, None, str(value))

    def fatal_error(self, kind: str, value: str) -> SweepCodeError:
        """The sweep's error for a job whose worker cannot load its code or see its directory."""
        name = self.engine.name
        if kind == "code":
            return _code_error(name, value)
        return SweepCodeError(
            f"{value[0].upper()}{value[1:]}: the workers write each job's "
            "result there and the notebook reads it, so they must share its file "
            "system. Give working_dir= a directory on a file system that every "
            f"{name} worker mounts at the same path (a cluster's shared file "
            "system), or run the workers on this machine."
        )

    def clean_up(self) -> None:
        """Drop the cancel hook, record the jobs a cancel stopped, remove the tracking."""
        import shutil

        if self.hooks is not None:
            try:
                self.hooks.remove(self.on_cancel)
            except ValueError:
                pass
        if self.started_cancelled and self.state is not None:
            _record_cancelled(self.sweep_dir, self.state.run_id, self.started_cancelled)
        shutil.rmtree(self.track, ignore_errors=True)
        meta = self.meta
        for d in (meta / _TRACK, meta):
            if d == meta and self.had_meta:
                break
            try:
                d.rmdir()
            except OSError:
                break


def _with_where(why: str, start: Path) -> str:
    """``why`` a job was lost, with the worker it ran on (from its start file) when the
    engine's reason does not name it."""
    try:
        where = str(json.loads(start.read_text(encoding="utf-8")).get("where", ""))
    except (OSError, ValueError, AttributeError):
        return why
    if not where or where in why:
        return why
    return f"{why}; it ran on the {where}"


def _record_cancelled(sweep_dir: Path, run_id: str, nums: set[int]) -> None:
    """Cells of jobs that a cancel stopped while they ran without letting them write
    their own record (a Ray worker killed): recorded as cancelled, their start marker
    removed, so a reload agrees with the live run."""
    from . import _store
    from ._store import JobResult

    for sub, d in _store.marker_dirs(sweep_dir, set()):
        m = _store.read_job_marker(d)
        if not m or m.get("run_id") != run_id or int(m.get("job_num", -1)) not in nums or "index" not in m:
            continue
        if _store.has_result_of(d, m):
            continue
        started = float(m.get("started", 0.0) or 0.0)
        r = JobResult(
            index=tuple(int(i) for i in m["index"]),
            status="cancelled",
            subdir=sub,
            job_num=int(m["job_num"]),
            duration=time.time() - started if started else float("nan"),
            task_hash=str(m.get("task_hash", "")),
            finished=time.time(),
            run_id=run_id,
        )
        try:
            _store.write_job_result(sweep_dir, d, r)
            _store.clear_job_started(d)
        except OSError as e:
            log.warning("mushin_nb: could not record the cancelled job in %s: %s", d, e)
