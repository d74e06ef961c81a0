"""What runs on the workers of the Dask and Ray launchers (see :mod:`mushin_nb._remote`
for the driver side).

:func:`run_job` loads the pickled sweep once per worker process and runs each job with
mushin_nb's in-process launcher (kept per process, so the configuration is composed
once per worker), one job at a time per process (Hydra changes the process's working
directory while a job runs). :func:`interrupt_jobs` raises the sweep's cancellation
inside the jobs running on a worker.

The engines pickle these two functions by reference; ``mushin_nb._remote`` re-exports
them under their former names.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["run_job", "interrupt_jobs"]

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
    with _JOB_LOCK:
        where = _where(engine)
        if check and not os.path.isdir(check):
            return ("nofs", f"the {where} does not see the sweep directory {os.path.dirname(check)}")
        lost = _claim_start(os.path.join(track, f"{idx}.start"), where)
        if lost is not None:
            return ("lost", lost)
        try:
            ctx = _load(key, payload)
        except BaseException:
            return ("code", f"on the {where}:\n{traceback.format_exc()}")
        return _execute(ctx, idx, overrides, key)


def _claim_start(start: str, where: str) -> str | None:
    """Create the job's start file (which worker runs it, since when). When it exists,
    an earlier attempt started on a worker that died: why the job is lost, not run again."""
    try:
        fd = os.open(start, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            prev = json.loads(Path(start).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = {}
        return (
            f"the {prev.get('where', 'worker')} running it died while it ran (the engine then "
            f"gave it to the {where}, which did not run it again: a job that kills its worker "
            "would take down every worker in turn)"
        )
    except OSError:
        fd = -1  # no tracking (cannot happen when the sweep directory is shared)
    if fd >= 0:
        try:
            os.write(fd, json.dumps({"where": where, "pid": os.getpid(), "started": time.time()}).encode())
        finally:
            os.close(fd)
    return None


def _load(key: str, payload: bytes) -> Any:
    """The sweep of launch ``key``, unpickled once per worker process."""
    ctx = _LOADED.get(key)
    if ctx is None:
        import cloudpickle

        ctx = cloudpickle.loads(payload)
        _LOADED.clear()  # one sweep at a time per worker process
        _LOADED[key] = ctx
    return ctx


def _execute(ctx: Any, idx: int, overrides: list[str], key: str) -> tuple[str, Any]:
    """Run the loaded sweep's job ``idx`` in this thread, cancellable by
    :func:`interrupt_jobs`; a SIGTERM meanwhile ends the worker as the engine would."""
    from hydra_plugins.mushin_nb_plugins._joblib import execute_in_worker
    from mushin_nb._job import JobCancelled as _JobCancelled

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
