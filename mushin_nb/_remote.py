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

Worker side (:func:`run_job`): loads the pickled sweep once per worker process and
runs each job with mushin_nb's in-process launcher (kept per process, so the
configuration is composed once per worker), one job at a time per process (Hydra
changes the process's working directory while a job runs).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("mushin_nb")

__all__ = ["launch", "run_job", "interrupt_jobs", "DaskEngine", "RayEngine"]

_TRACK = "launch"  # <sweep dir>/.mushin/launch/<key>/<job num>.start: which jobs started

# ----------------------------------------------------------------------------- worker side

_JOB_LOCK = threading.Lock()  # one job at a time per process: Hydra chdirs while a job runs
_RUN_LOCK = threading.Lock()  # guards _RUNNING and the delivery of cancellations
_RUNNING: dict[str, set[int]] = {}  # launch key -> idents of the threads running its jobs
_LOADED: dict[str, Any] = {}  # launch key -> (hydra_context, config, task_function, singleton state)


def _where(engine: str) -> str:
    """This worker, in its engine's terms."""
    import socket

    host = socket.gethostname()
    pid = os.getpid()
    try:
        if engine == "dask":
            from distributed import get_worker

            return f"Dask worker {get_worker().address} (pid {pid} on {host})"
        if engine == "ray":
            import ray

            node = ray.get_runtime_context().get_node_id()
            ip = ray.util.get_node_ip_address()
            return f"Ray worker pid {pid} on node {ip} ({node[:12]}, host {host})"
    except Exception:
        pass
    return f"{engine} worker pid {pid} on {host}"


def _clear_pending_cancel(ident: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


def run_job(
    payload: bytes,
    idx: int,
    overrides: list[str],
    key: str,
    track: str,
    check: str,
    engine: str,
) -> tuple[str, Any]:
    """One job, on a worker. Returns ``(kind, value)``: ``("ok", JobReturn)``,
    ``("cancelled", None)``, ``("lost", why)`` (an earlier attempt of this job started
    on a worker that died: it is not run again), ``("nofs", why)`` (this worker does
    not see the sweep directory) or ``("code", traceback)`` (the sweep's code cannot be
    loaded here)."""
    from mushin_nb._job import JobCancelled as _JobCancelled

    with _JOB_LOCK:
        where = _where(engine)
        if check and not os.path.isdir(check):
            return ("nofs", f"the {where} does not see the sweep directory {os.path.dirname(check)}")
        start = os.path.join(track, f"{idx}.start")
        try:
            fd = os.open(start, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                prev = json.loads(Path(start).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                prev = {}
            return (
                "lost",
                f"the {prev.get('where', 'worker')} running it died while it ran (the engine then "
                f"gave it to the {where}, which did not run it again: a job that kills its worker "
                "would take down every worker in turn)",
            )
        except OSError:
            fd = -1  # no tracking (cannot happen when the sweep directory is shared)
        if fd >= 0:
            try:
                os.write(
                    fd, json.dumps({"where": where, "pid": os.getpid(), "started": time.time()}).encode()
                )
            finally:
                os.close(fd)
        try:
            ctx = _LOADED.get(key)
            if ctx is None:
                import cloudpickle

                ctx = cloudpickle.loads(payload)
                _LOADED.clear()  # one sweep at a time per worker process
                _LOADED[key] = ctx
        except BaseException:
            return ("code", f"on the {where}:\n{traceback.format_exc()}")
        from hydra_plugins.mushin_nb_plugins._joblib import execute_in_worker

        ident = threading.get_ident()
        cancelled = False
        terminated: _Terminated | None = None
        ret: Any = None
        caught, prev_term = _catch_sigterm()
        try:
            with _RUN_LOCK:
                _RUNNING.setdefault(key, set()).add(ident)
            hydra_context, config, task_function, singleton_state = ctx
            _, ret = execute_in_worker(
                idx, list(overrides), hydra_context, config, task_function, singleton_state, key, None
            )
        except (_JobCancelled, KeyboardInterrupt):
            cancelled = True
        except _Terminated as t:
            terminated = t
        finally:
            if caught:
                signal.signal(signal.SIGTERM, prev_term if prev_term is not None else signal.SIG_DFL)
            # no cancellation may reach this thread once the job is over: unregister, then
            # drop one that was sent but not yet delivered (a late one is caught here too)
            while True:
                try:
                    with _RUN_LOCK:
                        _RUNNING.get(key, set()).discard(ident)
                        _clear_pending_cancel(ident)
                    break
                except _JobCancelled:
                    cancelled = True
        if terminated is not None:  # end as the engine's own handler would have
            if callable(prev_term):
                prev_term(signal.SIGTERM, None)
            raise SystemExit(128 + signal.SIGTERM)
        if cancelled:
            return ("cancelled", None)
        return ("ok", ret)


class _Terminated(BaseException):
    """SIGTERM reached the worker while a job ran (its node or the engine stopping it).
    Not an ``Exception`` nor a ``SystemExit``: the job's failure handler lets it through,
    so the driver records the death with the engine's reason, not as the job's own
    ``sys.exit``."""


def _catch_sigterm() -> tuple[bool, Any]:
    """While a job runs in the worker's main thread (Ray's), SIGTERM raises
    :class:`_Terminated`. Returns (installed, the handler to restore)."""
    if threading.current_thread() is not threading.main_thread():
        return False, None

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    try:
        return True, signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):  # pragma: no cover - not allowed here
        return False, None


def interrupt_jobs(key: str) -> int:
    """On a worker: raise the sweep's cancellation inside its running jobs (at their
    next Python instruction; JobRunner records them as cancelled). Returns how many."""
    from mushin_nb._job import JobCancelled as _JobCancelled

    n = 0
    with _RUN_LOCK:
        for ident in _RUNNING.get(key, ()):
            n += ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(_JobCancelled)
            )
    return n


# ----------------------------------------------------------------------------- driver side


class SweepCodeError(RuntimeError):
    """The sweep's code or configuration cannot reach, or be loaded on, the workers."""


class ClusterConnectionError(RuntimeError):
    """No cluster answered at the address a sweep was given (not an ``OSError``: the
    run reports those as a file-system problem of the sweep directory)."""


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
            from hydra_plugins.mushin_nb_plugins.submitit_launcher import _unpicklable_globals

            culprits = _unpicklable_globals(launcher.task_function)
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


class _Engine:
    """What :func:`launch` needs of an engine."""

    name = "?"
    kind = "?"
    where = ""  # what the log says the jobs run on

    def put(self, payload: bytes) -> Any:
        return payload

    def submit(self, payload: Any, args: tuple[Any, ...], idx: int, key: str) -> Any:
        raise NotImplementedError

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def cancel(self, handles: list[Any], *, running: bool) -> None:
        raise NotImplementedError

    def interrupt(self, key: str) -> None:
        pass

    def classify(self, e: BaseException) -> tuple[str, str]:
        raise NotImplementedError

    def check(self) -> None:
        pass


def launch(
    launcher: Any,
    name: str,
    make_engine: Callable[[], _Engine],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    n_jobs: Any,
) -> list[Any]:
    """Run ``job_overrides`` on the engine ``make_engine()`` connects to (``name``:
    ``"Dask"`` or ``"Ray"``); the JobReturns in job order. The sweep is pickled
    before connecting: what cannot be sent is refused before anything happens."""
    import shutil

    from hydra.core.utils import configure_log, setup_globals

    from hydra_plugins.mushin_nb_plugins._job_returns import lost_job_return, shown_overrides

    from . import _store
    from ._registry import live_state

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
    meta = sweep_dir / _store.META_DIR
    had_meta = meta.is_dir()
    # a mushin_nb sweep: workers must see its directory (a plain Hydra sweep is not checked)
    check = str(meta) if (meta / _store.MANIFEST).is_file() else ""
    key = uuid.uuid4().hex
    track = meta / _TRACK / key
    track.mkdir(parents=True, exist_ok=True)
    payload = engine.put(raw)
    engine.check()
    state = live_state(sweep_dir)

    lock = threading.Lock()
    pending = deque(jobs)
    live: dict[int, tuple[Any, int, list[str]]] = {}  # id(handle) -> (handle, job num, overrides)
    results: dict[int, Any] = {}
    started_cancelled: set[int] = set()
    user_cancel = threading.Event()
    stopping = threading.Event()

    def stop(running: bool) -> None:
        """Submit nothing more; cancel the queued jobs (and the running ones)."""
        stopping.set()
        with lock:
            pending.clear()
            items = list(live.values())
        if not running:
            items = [it for it in items if not (track / f"{it[1]}.start").exists()]
        handles = [h for h, _, _ in items]
        if handles:
            engine.cancel(handles, running=running)
        if running:
            engine.interrupt(key)

    def on_cancel() -> None:
        user_cancel.set()
        stop(running=True)

    hooks: list[Any] | None = None
    if state is not None:
        hooks = state.cancel_hooks
        hooks.append(on_cancel)
        if getattr(state.run, "_cancel_requested", False):
            on_cancel()  # cancelled before the launcher got here

    def cancel_requested() -> bool:
        if state is not None and state.cancel.is_set():
            return True
        return bool(check) and _store.is_cancelled(sweep_dir)

    by_num = dict(jobs)
    seen_started: set[str] = set()

    def mark_running() -> None:
        """Show the cells of jobs that started (their start files) as running."""
        run = getattr(state, "run", None) if state is not None else None
        on_start = state.on_start if state is not None else None
        if run is None or on_start is None:
            return
        try:
            names = [n for n in os.listdir(track) if n.endswith(".start") and n not in seen_started]
        except OSError:
            return
        for n in names:
            seen_started.add(n)
            try:
                from ._job import cell_of

                cell = cell_of(by_num[int(n[: -len(".start")])], run.spec)
                if cell is not None:
                    on_start(cell, "")
            except Exception as e:  # pragma: no cover - progress only
                log.debug("mushin_nb: could not mark a running cell: %s", e)

    fatal: BaseException | None = None
    try:
        while True:
            mark_running()
            if not stopping.is_set() and cancel_requested():
                stop(running=user_cancel.is_set())  # on_error="stop": running jobs finish
            with lock:
                while pending and not stopping.is_set() and (cap is None or len(live) < cap):
                    idx, ov = pending.popleft()
                    h = engine.submit(payload, (idx, ov, key, str(track), check, engine.kind), idx, key)
                    live[id(h)] = (h, idx, ov)
                handles = [h for h, _, _ in live.values()]
            if not handles:
                break
            for h in engine.wait(handles, 0.2):
                with lock:
                    _, idx, ov = live.pop(id(h))
                try:
                    kind, value = engine.result(h)
                except BaseException as e:  # the engine's error: cancelled, lost, code
                    kind, value = engine.classify(e)
                if kind == "ok":
                    results[idx] = value
                elif kind == "cancelled":
                    results[idx] = _cancelled_return(ov)
                    if (track / f"{idx}.start").exists():
                        started_cancelled.add(idx)
                elif kind == "lost":
                    value = _with_where(str(value), track / f"{idx}.start")
                    if user_cancel.is_set() or (stopping.is_set() and cancel_requested()):
                        # stopped by the cancel (e.g. its worker killed by it)
                        results[idx] = _cancelled_return(ov)
                        started_cancelled.add(idx)
                    else:
                        results[idx] = lost_job_return(launcher.hydra_context, config, ov, idx, None, value)
                elif kind in ("code", "nofs"):
                    if fatal is None:
                        if kind == "code":
                            fatal = _code_error(engine.name, str(value))
                        else:
                            fatal = SweepCodeError(
                                f"{str(value)[0].upper()}{str(value)[1:]}: the workers write each job's "
                                "result there and the notebook reads it, so they must share its file "
                                "system. Give working_dir= a directory on a file system that every "
                                f"{engine.name} worker mounts at the same path (a cluster's shared file "
                                "system), or run the workers on this machine."
                            )
                        log.error("mushin_nb: %s", fatal)
                        stop(running=True)
                    results[idx] = _cancelled_return(ov)
                else:  # pragma: no cover - defensive
                    results[idx] = lost_job_return(launcher.hydra_context, config, ov, idx, None, str(value))
    except BaseException:
        try:
            stop(running=True)
        except Exception as e:  # pragma: no cover - defensive
            log.warning("mushin_nb: could not cancel the %s jobs: %s", engine.name, e)
        raise
    finally:
        if hooks is not None:
            try:
                hooks.remove(on_cancel)
            except ValueError:
                pass
        if started_cancelled and state is not None:
            _record_cancelled(sweep_dir, state.run_id, started_cancelled)
        shutil.rmtree(track, ignore_errors=True)
        for d in (meta / _TRACK, meta):
            if d == meta and had_meta:
                break
            try:
                d.rmdir()
            except OSError:
                break
    if fatal is not None:
        raise fatal
    return [results[idx] if idx in results else _cancelled_return(ov) for idx, ov in jobs]


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- Dask

_DASK: dict[Any, Any] = {}  # clients and local clusters this process made, kept for the next sweep


def dask_client(
    address: str | None, n_jobs: int | None, timeout: float, local_cluster: dict[str, Any]
) -> Any:
    """The Dask client of a sweep: ``address`` (a scheduler, e.g. ``tcp://10.0.0.5:8786``),
    else the client this process already has (``distributed.Client(...)`` in the
    notebook), else the scheduler of Dask's config (``DASK_SCHEDULER_ADDRESS``), else a
    LocalCluster of worker processes started once for this process."""
    import dask.config
    from distributed import Client, default_client

    def usable(c: Any) -> bool:
        return c is not None and getattr(c, "status", "") == "running"

    if not address:
        try:
            c = default_client()
        except ValueError:
            c = None
        if usable(c):
            return c
        address = dask.config.get("scheduler-address", None) or None
    if address:
        c = _DASK.get(("address", address))
        if usable(c):
            return c
        try:
            c = Client(address, timeout=timeout, set_as_default=False)
        except OSError as e:
            raise ClusterConnectionError(
                f"launcher_settings={{'address': {address!r}}}: no Dask scheduler answered there within {timeout:g} s "
                f"({e}). Start the cluster (dask scheduler; dask worker {address}), check the address "
                "(the scheduler prints it), give a longer 'timeout', or leave 'address' out to start a local cluster."
            ) from e
        _DASK[("address", address)] = c
        return c
    kw = {
        "n_workers": n_jobs or None,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }
    kw.update(local_cluster)
    if kw["n_workers"] is None:
        kw.pop("n_workers")
    cache_key = ("local", json.dumps(kw, sort_keys=True, default=str))
    c = _DASK.get(cache_key)
    if usable(c):
        return c
    from distributed import LocalCluster

    try:
        cluster = LocalCluster(**kw)
    except TypeError as e:
        raise TypeError(
            f"launcher_settings={{'local_cluster': {local_cluster!r}}}: LocalCluster refused it: {e}"
        ) from e
    c = Client(cluster, set_as_default=False)
    _DASK[cache_key] = c
    return c


class DaskEngine(_Engine):
    name = "Dask"
    kind = "dask"

    def __init__(
        self,
        *,
        address: str | None,
        n_jobs: int | None,
        resources: dict[str, float],
        timeout: float,
        local_cluster: dict[str, Any],
    ) -> None:
        self.client = dask_client(address, n_jobs, timeout, local_cluster)
        self.resources = dict(resources) or None
        self.where = f"scheduler {self.client.scheduler.address}"
        from distributed import as_completed

        self.done = as_completed(loop=self.client.loop)  # jobs are added as they are submitted

    def check(self) -> None:
        try:
            n = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover - defensive
            return
        if n == 0:
            log.warning(
                "mushin_nb: the Dask cluster at %s has no worker yet; the jobs wait for one",
                self.client.scheduler.address,
            )

    def submit(self, payload: Any, args: tuple[Any, ...], idx: int, key: str) -> Any:
        fut = self.client.submit(
            run_job,
            payload,
            *args,
            key=f"mushin-nb-job-{idx}-{key[:8]}",
            pure=False,
            retries=0,
            resources=self.resources,
        )
        self.done.add(fut)
        return fut

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        """The jobs that finished (as_completed's batch), waiting up to ``timeout`` for one."""
        ac = self.done
        if not ac.has_ready():
            with ac.thread_condition:
                ac.thread_condition.wait(timeout=timeout)
        return list(ac.next_batch(block=False)) if ac.has_ready() else []

    def result(self, handle: Any) -> Any:
        import concurrent.futures

        if handle.cancelled():  # (distributed's result() of a future cancelled meanwhile can fail oddly)
            raise concurrent.futures.CancelledError(handle.key)
        try:
            return handle.result()
        except Exception:
            if handle.cancelled():
                raise concurrent.futures.CancelledError(handle.key) from None
            raise

    def cancel(self, handles: list[Any], *, running: bool) -> None:
        self.client.cancel(handles, reason="mushin-nb: the sweep was cancelled")

    def interrupt(self, key: str) -> None:
        """Raise the cancellation in the running jobs of every worker; waits at most 10 s
        for the workers to answer (a cancel never hangs on an unresponsive worker)."""

        def run() -> None:
            try:
                self.client.run(interrupt_jobs, key, on_error="ignore")
            except Exception as e:  # a worker gone meanwhile, a closed client
                log.warning("mushin_nb: could not stop the running Dask jobs: %s", e)

        t = threading.Thread(target=run, name="mushin-dask-interrupt", daemon=True)
        t.start()
        t.join(10)

    def classify(self, e: BaseException) -> tuple[str, str]:
        import asyncio
        import concurrent.futures

        from distributed.scheduler import KilledWorker

        if isinstance(e, (concurrent.futures.CancelledError, asyncio.CancelledError)):
            return ("cancelled", "")
        if isinstance(e, KilledWorker):
            return ("lost", f"the Dask worker running it died ({_first_line(e)})")
        if isinstance(e, (ImportError, AttributeError)):
            return ("code", "".join(traceback.format_exception(e)))
        return ("lost", f"Dask could not run it: {_first_line(e)}")


# ----------------------------------------------------------------------------- Ray


def ray_connect(address: str | None, init: dict[str, Any]) -> str:
    """Connect this process to Ray (once): the Ray it is already connected to, else
    ``ray.init(address=address, **init)`` (``None``: a new local Ray, or
    ``RAY_ADDRESS``). Returns a description."""
    import ray

    if ray.is_initialized():
        return "the Ray this process is connected to"
    kw = {"ignore_reinit_error": True, **init}
    try:
        ray.init(address=address or None, **kw)
    except TypeError as e:
        raise TypeError(f"launcher_settings={{'init': {init!r}}}: ray.init() refused it: {e}") from e
    except ConnectionError as e:
        raise ClusterConnectionError(
            f"launcher_settings={{'address': {address!r}}}: could not connect to a Ray cluster there ({e}). Start it "
            "(ray start --head), check the address ('auto', 'ray://<head>:10001' or '<head>:6379'), or "
            "leave 'address' out to start a local Ray. A cluster with token authentication "
            "(RAY_AUTH_MODE=token) also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN_PATH or "
            "RAY_AUTH_TOKEN) in this process's environment before Ray is imported."
        ) from e
    return f"Ray at {address}" if address else "a local Ray"


class RayEngine(_Engine):
    name = "Ray"
    kind = "ray"

    def __init__(
        self,
        *,
        address: str | None,
        num_cpus: float,
        num_gpus: float,
        init: dict[str, Any],
        remote: dict[str, Any],
    ) -> None:
        import ray

        self.where = ray_connect(address, init)
        opts: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 0, "retry_exceptions": False}
        if num_gpus:
            opts["num_gpus"] = num_gpus
        opts.update(remote)
        try:
            self.fn = ray.remote(run_job).options(**opts)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"launcher_settings={{'remote': {remote!r}}}: Ray refused these task options: {e}"
            ) from e

    def put(self, payload: bytes) -> Any:
        import ray

        return ray.put(payload)

    def submit(self, payload: Any, args: tuple[Any, ...], idx: int, key: str) -> Any:
        return self.fn.remote(payload, *args)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        import ray

        ready, rest = ray.wait(handles, num_returns=1, timeout=timeout, fetch_local=False)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
            ready = ready + more
        return list(ready)

    def result(self, handle: Any) -> Any:
        import ray

        return ray.get(handle)

    def cancel(self, handles: list[Any], *, running: bool) -> None:
        import ray

        for h in handles:
            try:
                ray.cancel(h, force=running, recursive=True)
            except Exception as e:  # already finished, or its worker gone
                log.debug("ray.cancel: %s", e)

    def classify(self, e: BaseException) -> tuple[str, str]:
        from ray import exceptions as rx

        if isinstance(e, rx.TaskCancelledError):
            return ("cancelled", "")
        if isinstance(e, rx.RayTaskError):
            cause = getattr(e, "cause", None)
            if isinstance(cause, (ImportError, AttributeError)):
                return ("code", str(e))
            return ("lost", f"Ray could not run it: {_first_line(cause or e)}")
        died = tuple(
            getattr(rx, n)
            for n in (
                "WorkerCrashedError",
                "NodeDiedError",
                "LocalRayletDiedError",
                "OutOfMemoryError",
                "ObjectLostError",
                "OwnerDiedError",
            )
            if hasattr(rx, n)
        )
        if isinstance(e, died):
            return ("lost", f"the Ray worker running it died ({_first_line(e)})")
        if isinstance(e, rx.RaySystemError) and ("No module named" in str(e) or "ImportError" in str(e)):
            return ("code", str(e))
        return ("lost", f"Ray could not run it: {_first_line(e)}")
