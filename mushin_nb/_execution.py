"""Running a sweep: the job wrapper, the live run handle, failure policy, cancel.

Every job persists its own result (see ``_store``); a watcher turns what jobs
persist into events, so results stream in with any Hydra launcher whose jobs
share the file system (in-process, joblib, submitit, Ray). Jobs that run in this
process also hand their result over directly (the fast path).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _store
from ._errors import SweepError
from ._job import JobCancelled, record_unfinished
from ._live_netcdf import Savers
from ._livedata import LiveDataset, StatusCells
from ._registry import LiveState, register, unregister
from ._store import JobResult

if TYPE_CHECKING:
    import xarray as xr

    from ._sweep import SweepSpec

log = logging.getLogger("mushin_nb")

__all__ = ["SweepRun", "SweepError", "JobFailure", "SweepEvent"]

ON_ERROR = ("collect", "stop", "ignore")


# --------------------------------------------------------------------------- records


@dataclass
class JobFailure:
    """One failed job: its parameter values, the exception and where it ran.

    Examples
    --------
    >>> f = JobFailure({"lr": 0.1}, "ValueError", "diverged\\nat step 3", "", "/tmp/sweep/0")
    >>> f.line()
    '[lr=0.1] ValueError: diverged'
    """

    params: dict[str, Any]
    exc_type: str
    message: str
    traceback: str
    job_dir: str

    def line(self) -> str:
        """One line: ``[params] ExceptionType: first line of the message``."""
        p = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"[{p}] {self.exc_type}: {self.message.splitlines()[0] if self.message else ''}"


@dataclass
class SweepEvent:
    """Sent to ``SweepRun.subscribe`` callbacks once per finished job.

    Examples
    --------
    >>> from mushin_nb import MultiRunMetricsWorkflow, multirun
    >>> class Sq(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(x: int) -> dict:
    ...         return dict(y=x * x)
    >>> import tempfile
    >>> events = []
    >>> run = Sq().start(x=multirun([2]), working_dir=tempfile.mkdtemp())
    >>> _ = run.subscribe(events.append)
    >>> _ = run.wait()
    >>> [(e.params, e.metrics, e.status) for e in events] in ([], [({'x': 2}, {'y': 4}, 'done')])
    True
    """

    params: dict[str, Any]
    metrics: dict[str, Any] | None
    status: str
    duration: float
    index: tuple[int, ...]
    job_dir: str
    error: dict[str, str] | None = None


# --------------------------------------------------------------------------- registry

_sweep_lock = threading.Lock()
_active: dict[str, Any] = {}


class SweepBusy(RuntimeError):
    """Another sweep is running in this kernel (Hydra's state is process-wide)."""

    is_refusal = True  # shown without the frames inside mushin_nb (see _errors.refusal)


def claim_sweep_slot() -> None:
    """Take this process's one sweep slot, or raise :class:`SweepBusy` (touching
    nothing) if another sweep holds it. Released when that sweep ends."""
    if not _sweep_lock.acquire(blocking=False):
        other = _active.get("run")
        raise SweepBusy(
            "Another sweep is running in this kernel"
            + (f" ({other!r})" if other is not None else "")
            + ": Hydra holds process-wide state while it runs, so sweeps run one at a time. "
            "Wait for it (run.wait()) or cancel it (run.cancel()) and start this one again."
        )


def release_sweep_slot() -> None:
    """Give back the slot taken by :func:`claim_sweep_slot` (for a start refused after it)."""
    _active.pop("run", None)
    if _sweep_lock.locked():
        _sweep_lock.release()


# --------------------------------------------------------------------------- the run handle


class SweepRun:
    """A sweep that is running or finished: a live Dataset, status, events, cancel.

    Returned at once by ``Workflow.start(...)``; ``Workflow.run(...)`` waits on
    one. The Dataset holds the whole grid from the start; each cell is filled as
    soon as its job finishes, and a ``status`` variable tells pending, running,
    done, failed and cancelled cells apart.

    Examples
    --------
    >>> from mushin_nb import MultiRunMetricsWorkflow, multirun
    >>> class Sq(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(x: int) -> dict:
    ...         return dict(y=x * x)
    >>> import tempfile
    >>> run = Sq().start(x=multirun([1, 2, 3]), working_dir=tempfile.mkdtemp())
    >>> ds = run.wait()
    >>> ds["y"].values.tolist(), run.status["done"]
    ([1, 4, 9], 3)
    """

    def __init__(
        self,
        *,
        spec: SweepSpec,
        sweep_dir: Path,
        run_id: str,
        on_error: str,
        workflow_name: str,
        previous: list[JobResult] | None = None,
        start_num: int = 0,
        poll_interval: float = 0.1,
    ):
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.run_id = run_id
        self.on_error = on_error
        self.workflow_name = workflow_name
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._results: dict[tuple[int, ...], JobResult] = {}
        # the Dataset, kept in place as records arrive (O(1) each); its status array is
        # read and written through self._status
        self._live = LiveDataset(spec, sweep_dir=self.sweep_dir, results=lambda: list(self._results.values()))
        self._savers = Savers(self._live, base=Path.cwd())  # files written live (run.save)
        self._subscribers: list[Callable[[SweepEvent], Any]] = []
        self._callback_errors: list[BaseException] = []
        self._seen: set[tuple[str, str]] = set()
        self._offset = 0
        self._version = 0
        self._finished = threading.Event()
        self._cancel_requested = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._started = time.time()
        self._ended: float | None = None
        self.jobs: list[Any] = []
        self.skipped = 0
        self._on_finish: list[Callable[[SweepRun], Any]] = []
        self._finish_lock = threading.Lock()  # guards _on_finish and _callbacks_over
        self._callbacks_over = False  # the end's callbacks have all been called
        self.manifest: dict[str, Any] | None = None
        for r in previous or []:
            self._results[r.index] = r
            self.skipped += 1
        for r in self._results.values():  # in the results' order (a cell's latest record)
            self._live.add(r)
        self.state = LiveState(
            run_id=run_id,
            run=self,
            lookup=spec.lookup(),
            skip=set(self._results),
            start_num=start_num,
        )
        self.state.on_record = self._ingest
        self.state.on_start = self._mark_running

    # ------------------------------------------------------------ ingest
    @property
    def _status(self) -> StatusCells:
        """The cells' states (read and written like the array it wraps; writes go
        through the live Dataset, which counts them)."""
        return StatusCells(self._live)

    def _mark_running(self, idx: tuple[int, ...], subdir: str) -> None:
        with self._lock:
            if self._status[idx] == "pending":
                self._live.set_status(idx, "running")
                self._version += 1

    def _ingest(self, r: JobResult) -> None:
        key = (r.subdir, r.status)
        if len(r.index) != self._status.ndim or any(
            not 0 <= i < n for i, n in zip(r.index, self._status.shape)
        ):
            log.warning("mushin_nb: ignored a record of %s with no cell in this grid: %s", r.subdir, r.index)
            return
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            if r.index in self.state.skip and r.run_id != self.run_id:
                return
            replaces = r.index in self._results
            self._results[r.index] = r
            self._live.add(r, replaces=replaces)
            self._version += 1
            subscribers = list(self._subscribers)
        if r.status == "failed" and self.on_error == "stop":
            self.state.cancel.set()
        ev = SweepEvent(
            params=self.spec.cell_params(r.index),
            metrics=r.metrics,
            status=r.status,
            duration=r.duration,
            index=r.index,
            job_dir=str(self.sweep_dir / r.subdir),
            error=r.error,
        )
        for cb in subscribers:
            try:
                cb(ev)
            except Exception as e:  # a view must never stop a sweep
                self._callback_errors.append(e)
                warnings.warn(
                    f"mushin_nb: the subscriber {getattr(cb, '__name__', cb)!r} raised "
                    f"{type(e).__name__}: {e} (the sweep goes on)",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def poll(self) -> int:
        """Read what jobs appended to the sweep index since the last poll (how
        results from other processes arrive). Returns the number of new records."""
        # the records this run already has (its in-process jobs hand theirs over) are skipped
        raw, self._offset = _store.read_index_raw(self.sweep_dir, self._offset, known=self._seen)
        n = 0
        for d in raw:
            if d.get("run_id") != self.run_id:
                continue
            key = (d.get("subdir", ""), d.get("status", ""))
            if key in self._seen:
                continue
            try:
                r = JobResult.from_json(d, self.sweep_dir / d.get("subdir", ""))
            except (OSError, ValueError):
                continue  # the array file is not there yet; next poll
            self._ingest(r)
            n += 1
        return n

    def _watch(self) -> None:
        while not self._finished.wait(self.poll_interval):
            try:
                self.poll()
            except Exception as e:  # pragma: no cover - defensive
                log.debug("poll failed: %s", e)
            self._savers.flush_due()

    # ------------------------------------------------------------ public
    @property
    def done(self) -> bool:
        """True once the sweep has ended (finished, failed or cancelled)."""
        return self._finished.is_set()

    @property
    def status(self) -> dict[str, int]:
        """Counts of cells per state, plus ``total`` (kept as cells change: O(1))."""
        with self._lock:
            counts = dict(self._live.counts)
        out = {s: 0 for s in _store.STATES}
        out.update(counts)
        out["total"] = self._live.size
        return out

    @property
    def results(self) -> list[JobResult]:
        """Every cell's latest record (done, failed, cancelled), in job order."""
        with self._lock:
            return sorted(self._results.values(), key=lambda r: r.job_num)

    @property
    def failures(self) -> list[JobFailure]:
        """One record per failed job, in job order."""
        out = []
        for r in self.results:
            if r.status == "failed":
                e = r.error or {}
                out.append(
                    JobFailure(
                        params=self.spec.cell_params(r.index),
                        exc_type=e.get("type", ""),
                        message=e.get("message", ""),
                        traceback=e.get("traceback", ""),
                        job_dir=str(self.sweep_dir / r.subdir),
                    )
                )
        return out

    @property
    def callback_errors(self) -> list[BaseException]:
        """Exceptions raised by ``subscribe`` callbacks (each was also warned once)."""
        return list(self._callback_errors)

    @property
    def elapsed(self) -> float:
        """Seconds since the sweep started (until it ended, once it has)."""
        return (self._ended or time.time()) - self._started

    @property
    def dataset(self) -> xr.Dataset:
        """The whole grid now: metrics filled where jobs finished, NaN elsewhere,
        and a ``status`` variable over the swept dimensions. Safe to read from
        any thread while the sweep runs, and cheap (the same at 100 cells as at
        100,000): each read is a new Dataset over read-only views of arrays kept up
        to date in place. A Dataset read once never changes, and cannot be edited
        in place (``ds.copy(deep=True)`` gives one that can)."""
        with self._lock:
            return self._live.snapshot(stacklevel=3)

    def save(self, path: str | Path, *, overwrite: bool = False, every: float | None = None) -> Path:
        """Write the Dataset to the NetCDF file ``path`` now, each changed cell in place
        within ``every`` seconds (default 1) while the sweep runs, and at the end what
        :func:`mushin_nb.save_netcdf` writes of the final Dataset; :func:`load_netcdf`
        reads it at any moment, also after a crash. An existing file is replaced only with
        ``overwrite=True``; a relative ``path`` starts in the sweep's starting directory.

        Examples
        --------
        >>> from mushin_nb import MultiRunMetricsWorkflow, multirun, load_netcdf
        >>> class Sq(MultiRunMetricsWorkflow):
        ...     @staticmethod
        ...     def task(x: int) -> dict:
        ...         return dict(y=x * x)
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> run = Sq().start(x=multirun([1, 2, 3]), working_dir=d)
        >>> p = run.save(os.path.join(d, "live.nc"))
        >>> _ = run.wait()
        >>> load_netcdf(p)["y"].values.tolist()
        [1, 4, 9]
        """
        return self._savers.save(path, overwrite=overwrite, every=every, ended=self.done)

    def subscribe(self, callback: Callable[[SweepEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` once per job that finishes from now on.

        Returns a function that unsubscribes. An exception in a callback is
        reported as a warning (and kept in ``callback_errors``) and never stops
        the sweep."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def cancel(self) -> None:
        """No new job starts; cells that never ran are marked cancelled; finished
        results are kept (and stay on disk for ``resume``)."""
        self._cancel_requested = True
        self.state.cancel.set()
        if not self.done:
            _store.set_cancel(self.sweep_dir, "cancelled by the user")
            # launchers that can stop their queued and running jobs (scancel, ...) registered
            # a hook in state.cancel_hooks; each is called once per cancel(), after the flag
            for hook in list(self.state.cancel_hooks):
                try:
                    hook()
                except Exception as e:  # a hook must never stop cancel()
                    log.warning("mushin_nb: a launcher's cancel hook failed: %s: %s", type(e).__name__, e)

    def interrupt(self) -> None:
        """Cancel, and stop the job running in this process now (raises inside
        it at its next Python instruction)."""
        self.cancel()
        t = self.state.job_thread
        if t is not None and t.ident is not None:
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(t.ident), ctypes.py_object(JobCancelled)
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the sweep ends or ``timeout`` seconds pass, without raising;
        returns :attr:`done`."""
        return self._finished.wait(timeout)

    def wait(
        self, timeout: float | None = None, *, progress: bool = False, raise_failures: bool = False
    ) -> xr.Dataset:
        """Block until the sweep ends (or ``timeout`` seconds pass) and return the
        Dataset. Raises the error that stopped the sweep itself, if any; with
        ``raise_failures`` also a :class:`SweepError` for failed jobs (per
        ``on_error``). ``progress`` shows a ``tqdm`` bar; Ctrl-C cancels the run,
        keeps what finished and re-raises.

        Examples
        --------
        >>> from mushin_nb import MultiRunMetricsWorkflow, multirun
        >>> class Sq(MultiRunMetricsWorkflow):
        ...     @staticmethod
        ...     def task(x: int) -> dict:
        ...         if x == 2:
        ...             raise ValueError("two")
        ...         return dict(y=x * x)
        >>> import tempfile
        >>> run = Sq().start(x=multirun([1, 2]), working_dir=tempfile.mkdtemp())
        >>> run.wait(raise_failures=True)
        Traceback (most recent call last):
        ...
        mushin_nb._errors.SweepError: 1 of 2 jobs of Sq failed:
        ...
        >>> run.error is None, run.wait()["y"].values.tolist()
        (True, [1.0, nan])
        """
        from ._waiting import wait_for

        if timeout is None and self._thread is not None:
            wait_for(self, progress=progress)  # Ctrl-C: cancel, keep what finished, re-raise
        elif self._thread is not None:
            self._finished.wait(timeout)
        if self.done and self._error is not None:
            raise self._error
        if raise_failures and self.done:
            self.raise_for_failures()
        return self.dataset

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the sweep itself (not a job's failure), or None."""
        return self._error

    def raise_for_failures(self, *, label: str | None = None, advice: str | None = None) -> None:
        """Raise a :class:`SweepError` listing the failed jobs (``on_error="collect"``
        or ``"stop"``); with ``on_error="ignore"`` warn once instead; nothing if no
        job failed. ``advice`` replaces the API's own advice text."""
        from ._waiting import api_advice, failures_summary

        summary = failures_summary(self, label=label or self.workflow_name)
        if summary is not None:
            advice = api_advice("rerun_failed", self.sweep_dir) if advice is None else advice
            raise SweepError(
                f"{summary}\n{advice}",
                dataset=self.dataset,
                failures=self.failures,
                summary=summary,
                sweep_dir=self.sweep_dir,
                fix="rerun_failed",
            )

    def on_finish(self, callback: Callable[[SweepRun], Any]) -> None:
        """Call ``callback(run)`` once when the sweep ends (at once if it has ended)."""
        with self._finish_lock:
            if not self._callbacks_over:  # the end's loop calls it (even if it is running now)
                self._on_finish.append(callback)
                return
        callback(self)

    def on_finish_first(self, callback: Callable[[SweepRun], Any]) -> None:
        """As :meth:`on_finish`, called before the callbacks registered so far (the
        engine releases the sweep directory's lock this way, before results are read)."""
        with self._finish_lock:
            if not self._callbacks_over:
                self._on_finish.insert(0, callback)
                return
        callback(self)

    def leave_out(self, cells: Iterable[tuple[int, ...]], *, results: Iterable[JobResult] = ()) -> None:
        """Before the run begins: cells of its grid that it does not launch (an adaptive
        sweep's round runs only the points its learners asked for). Each of ``results``
        (e.g. a failure of an earlier round) is shown as it is; the other ``cells`` are
        ``cancelled``, no job runs for them and nothing is written for them."""
        with self._lock:
            for r in results:
                replaces = r.index in self._results
                self._results[r.index] = r
                self._live.add(r, replaces=replaces)
                self.state.skip.add(r.index)
            for idx in cells:
                if idx not in self._results:
                    self._status[idx] = "cancelled"
                    self.state.skip.add(idx)
            self._version += 1

    def view(self, metric: str | None = None, **kwargs: Any) -> Any:
        """A live plot of this run (needs the notebook extras: panel, hvplot)."""
        from . import _hooks

        return _hooks.call("view", self, metric=metric, **kwargs)

    def _repr_html_(self) -> str:
        s = self.status
        head = (
            f"<b>SweepRun</b> {self.workflow_name} in <code>{self.sweep_dir}</code>: "
            f"{s['done']} done, {s['failed']} failed, {s['running']} running, "
            f"{s['pending']} pending, {s['cancelled']} cancelled of {s['total']}"
        )
        return head + self.dataset._repr_html_()

    def __repr__(self) -> str:
        s = self.status
        state = "finished" if self.done else "running"
        return (
            f"<SweepRun {self.workflow_name} {state}: {s['done']}/{s['total']} done, "
            f"{s['failed']} failed, {s['cancelled']} cancelled; dir={self.sweep_dir}>"
        )

    # ------------------------------------------------------------ driver
    def begin(self, launch: Callable[[], Any], *, slot_claimed: bool = False) -> None:
        """Run ``launch()`` (the Hydra launch of this sweep) in a background thread,
        with the watcher that turns what jobs persist into events. Engine use:
        :func:`mushin_nb._launch.start_sweep` calls it once everything is checked."""
        if not slot_claimed:
            claim_sweep_slot()
        _active["run"] = self
        register(self.sweep_dir, self.state)
        self._started = time.time()

        def body() -> None:
            watcher = threading.Thread(target=self._watch, name="mushin-watch", daemon=True)
            watcher.start()
            try:
                self.jobs = _flatten_jobs(launch())
            except BaseException as e:
                self._error = e
            finally:
                try:
                    self.poll()
                except Exception:
                    pass
                self._settle_unrecorded()  # no cell stays pending or running
                if isinstance(self._error, OSError):
                    from ._waiting import stopped_by

                    self._error = stopped_by(self, self._error)
                _store.clear_cancel(self.sweep_dir)
                unregister(self.sweep_dir, self.state)
                _active.pop("run", None)
                self._savers.close()  # files written live: final before wait() returns
                _store.save_columns(self.sweep_dir, list(self._results.values()))  # fast reloads
                self._ended = time.time()
                _sweep_lock.release()
                self._call_finish_callbacks()
                self._finished.set()

        self._thread = threading.Thread(target=body, name="mushin-sweep", daemon=True)
        self._thread.start()

    def _call_finish_callbacks(self) -> None:
        """Each on_finish callback once, in order, including one registered while
        they run (none is dropped between the last call and ``done``)."""
        n = 0
        while True:
            with self._finish_lock:
                if n == len(self._on_finish):
                    self._callbacks_over = True
                    return
                fn = self._on_finish[n]
            n += 1
            try:
                fn(self)
            except Exception as e:  # pragma: no cover - defensive
                log.warning("mushin_nb: collecting the results failed: %s", e)

    def _settle_unrecorded(self) -> None:
        """After the sweep: cells still pending or running become ``cancelled``
        when the sweep was cancelled or stopped by an error, else ``failed``, with
        that failure written (job directory and index) so a reload agrees."""
        with self._lock:
            open_cells = (self._status == "pending") | (self._status == "running")
            if self.state.cancel.is_set() or self._error is not None or not open_cells.any():
                self._status[open_cells] = "cancelled"
                self._version += 1
                return
            cells = [tuple(int(i) for i in ix) for ix in np.argwhere(open_cells)]
        try:
            for r in record_unfinished(self, cells):
                self._ingest(r)
        except Exception as e:  # pragma: no cover - defensive: never leave a cell open
            log.warning("mushin_nb: recording the jobs without a result failed: %s", e)
        with self._lock:
            open_cells = (self._status == "pending") | (self._status == "running")
            self._status[open_cells] = "failed"
            self._version += 1


def _flatten_jobs(ret: Any) -> list[Any]:
    from hydra.core.utils import JobReturn

    from hydra_plugins.mushin_nb_plugins._lazy_return import job_num

    out: list[Any] = []

    def walk(x: Any) -> None:
        if isinstance(x, JobReturn):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)

    walk(ret)
    out.sort(key=lambda j: job_num(j) or 0)  # without making a LazyJobReturn's config
    return out
