"""The engines of the Dask and Ray launchers: how :func:`mushin_nb._remote.launch`
connects to a cluster, submits a job (:func:`mushin_nb._remote_worker.run_job`), waits
for jobs, cancels them and tells a lost job from a cancelled one or from code the
workers cannot load.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from typing import Any

from ._remote_worker import interrupt_jobs, run_job

log = logging.getLogger("mushin_nb")

__all__ = ["Engine", "DaskEngine", "RayEngine", "ClusterConnectionError", "dask_client", "ray_connect"]


class ClusterConnectionError(RuntimeError):
    """No cluster answered at the address a sweep was given (not an ``OSError``: the
    run reports those as a file-system problem of the sweep directory)."""


class Engine:
    """What :func:`mushin_nb._remote.launch` needs of an engine: :meth:`put` the pickled
    sweep once, :meth:`submit` a job, :meth:`wait` for some to finish, read their
    :meth:`result`, :meth:`cancel` and :meth:`interrupt` them, :meth:`classify` an
    engine error as ``("cancelled" | "lost" | "code", why)``."""

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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- Dask

DASK_CLIENTS: dict[Any, Any] = {}
"""The Dask clients (and local clusters) this process made, kept for the next sweep."""


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
        c = DASK_CLIENTS.get(("address", address))
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
        DASK_CLIENTS[("address", address)] = c
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
    c = DASK_CLIENTS.get(cache_key)
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
    DASK_CLIENTS[cache_key] = c
    return c


class DaskEngine(Engine):
    """Jobs as Dask tasks (``client.submit`` of :func:`~mushin_nb._remote_worker.run_job`,
    no retries) on the client :func:`dask_client` gives for ``address``; finished jobs
    come from one ``as_completed``. Cancel cancels the futures and raises the
    cancellation inside the running jobs of every worker (:meth:`interrupt`); a
    ``KilledWorker`` is the job's loss."""

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


class RayEngine(Engine):
    """Jobs as Ray tasks (``ray.remote`` of :func:`~mushin_nb._remote_worker.run_job`,
    ``num_cpus``/``num_gpus`` and the ``remote`` options, no retries) on the Ray
    :func:`ray_connect` connects to; the pickled sweep is ``ray.put`` once. Cancel is
    ``ray.cancel`` (``force=True`` for running jobs: their worker processes are killed);
    a dead worker, node or raylet is the job's loss."""

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
