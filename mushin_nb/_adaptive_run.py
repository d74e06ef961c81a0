"""Running an adaptive sweep: rounds of sweeps into one directory, and the run's handle.

:func:`start_adaptive` checks the sweep (a refused call changes nothing), starts its
first round in the caller's thread, and returns an :class:`AdaptiveRun` whose thread runs
the next rounds. A round is one sweep of the workflow (``mushin_nb._launch``), planned
and bound by the workflow itself: the grid of the adaptive parameter(s) grows by the
round's new points, every cell that has a result is reused (``resume=True``), the cells
that no learner asked for are left out (:meth:`SweepRun.leave_out`), and a failure of an
earlier round is kept as it is, not run again (``resume=True`` after the run does).
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._adaptive import AdaptiveRange, Sampler, adaptive_params, settings_of

if TYPE_CHECKING:
    import xarray as xr

    from ._execution import JobFailure, SweepEvent, SweepRun
    from ._launch import SweepPlan
    from ._store import JobResult
    from ._sweep import SweepSpec

__all__ = ["AdaptiveRun", "start_adaptive"]


def start_adaptive(
    workflow: Any,
    overrides: Mapping[str, Any],
    *,
    make_plan: Callable[..., SweepPlan],
    bind: Callable[[SweepRun], None],
    resume: bool | str,
    jobs: int | None,
) -> AdaptiveRun:
    """Start an adaptive sweep of ``workflow`` (``overrides``: the keyword values of its
    ``start`` call, with one or two :func:`~mushin_nb.adaptive_range` values).

    ``make_plan(values, working_dir=..., resume=...)`` plans one round (the workflow's
    own checks: ``plan_sweep``), ``bind(sweep)`` binds each round's sweep to the
    workflow. Everything is checked, and the first round started, before this returns.
    """
    ranges = adaptive_params(overrides)
    settings = settings_of(ranges, jobs=jobs)
    trial = make_plan({k: _multirun([v.low]) if k in ranges else v for k, v in overrides.items()})
    if trial.sweeper not in (None, "mushin_nb") or any(
        o.startswith("hydra/sweeper=") for o in trial.hydra_overrides
    ):
        raise ValueError(
            f"adaptive_range(...) runs its rounds with mushin_nb's own sweeper (it grows the grid and "
            f"reuses the cells that have a result); drop sweeper={trial.sweeper!r} / hydra/sweeper=."
        )
    others = [p for p in trial.spec.swept if p.name not in ranges]
    import itertools

    sampler = Sampler(
        ranges,
        others=[p.name for p in others],
        combos=list(itertools.product(*(p.values for p in others))),
        settings=settings,
    )
    run = AdaptiveRun(
        workflow_name=trial.workflow_name,
        on_error=trial.on_error,
        sampler=sampler,
        settings=settings,
        values=overrides,
        make_plan=make_plan,
        bind=bind,
        working_dir=trial.sweep_dir,
        resume=resume,
        workflow=workflow,
    )
    if resume and trial.sweep_dir is not None:
        run.seed(trial.sweep_dir)
    new = run.next_points() if run.stop_reason is None else []
    run.start_round(new, first=True)  # raises (changing nothing) if the sweep is refused
    run.begin()
    return run


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _multirun(values: list[Any]) -> Any:
    from hydra_zen import multirun

    return multirun(list(values))


@contextmanager
def _without_resume_line() -> Iterator[None]:
    """Each round is a resume of the same directory: its "resume: N of M cells already
    done" line (counting every round's cells) is the engine's, not this run's news."""
    real = sys.stderr

    class Filter:
        dropped = False

        def write(self, s: str) -> int:
            if s.startswith("mushin_nb: resume:") or (s == "\n" and Filter.dropped):
                Filter.dropped = not Filter.dropped if s == "\n" else True
                return len(s)
            return real.write(s)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    sys.stderr = cast(Any, Filter())
    try:
        yield
    finally:
        if isinstance(sys.stderr, Filter):
            sys.stderr = real


class AdaptiveRun:
    """An adaptive sweep that is running or finished: the API of a
    :class:`~mushin_nb.SweepRun` (live ``dataset``, ``status``, ``subscribe``, ``cancel``,
    ``interrupt``, ``wait``, ``on_finish``, ``view``), over rounds of sweeps.

    Returned by ``Workflow.start(...)`` when a value is an
    :func:`~mushin_nb.adaptive_range`. The Dataset grows by each round's points (its
    coordinate: the sampled values, sorted); ``cancel()`` starts no new job or round and
    keeps every finished point. Also: ``rounds``, ``npoints``, ``loss``, ``stop_reason``,
    ``learners`` (one ``adaptive`` learner per combination of the other swept values).

    Examples
    --------
    >>> import tempfile
    >>> from mushin_nb import MultiRunMetricsWorkflow, adaptive_range, multirun
    >>> class Curve(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(x: float, k: int) -> dict:
    ...         return dict(y=x**k)
    >>> run = Curve().start(x=adaptive_range(0.0, 1.0, npoints_goal=6, batch_size=3),
    ...                     k=multirun([1, 2]), working_dir=tempfile.mkdtemp())
    >>> ds = run.wait()
    >>> dict(ds.sizes), run.rounds, run.status["done"], run.stop_reason
    ({'x': 6, 'k': 2}, 2, 12, 'npoints_goal=6 reached')
    """

    def __init__(
        self,
        *,
        workflow_name: str,
        on_error: str,
        sampler: Sampler,
        settings: AdaptiveRange,
        values: Mapping[str, Any],
        make_plan: Callable[..., SweepPlan],
        bind: Callable[[SweepRun], None],
        working_dir: Path | None,
        resume: bool | str,
        workflow: Any,
    ) -> None:
        self.workflow_name = workflow_name
        self.on_error = on_error
        self.sampler = sampler
        self.settings = settings
        self.sweep_dir: Path | None = working_dir
        self.rounds = 0
        self.stop_reason: str | None = None
        self.jobs: list[Any] = []
        self._values = dict(values)
        self._make_plan = make_plan
        self._bind = bind
        self._resume = resume
        self._workflow = workflow
        self._task_hash: str | None = None
        self._saving: tuple[Path, float | None] | None = None
        self._lock = threading.RLock()
        self._inner: SweepRun | None = None
        self._subscribers: list[Callable[[SweepEvent], Any]] = []
        self._callback_errors: list[BaseException] = []
        self._on_finish: list[Callable[[AdaptiveRun], Any]] = []
        self._finished = threading.Event()
        self._cancelled = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._started = time.time()
        self._ended: float | None = None

    # ------------------------------------------------------------ rounds
    def seed(self, sweep_dir: Path) -> None:
        """Before the first round of ``resume=True``: tell the learners the finished
        points of ``sweep_dir`` (within the bounds, for these combinations); its points
        without a result are run again in the first round, and its points outside the
        bounds stay in the grid (the learners sample inside, the Dataset keeps them)."""
        from . import _store
        from ._reload import manifest_results
        from ._sweep import SweepSpec

        old = _store.read_manifest(sweep_dir, damage=[])
        if old is None:
            return  # the first round refuses: no sweep to resume there
        old_spec = SweepSpec.from_json(old["spec"])
        swept = {p.name: p.values for p in old_spec.swept}
        if not all(n in swept for n in self.sampler.names):
            return
        axes = [[v for v in swept[n] if _is_number(v)] for n in self.sampler.names]
        if not all(axes):
            return
        plan = self._plan(axes)
        records = _store.read_records(sweep_dir, run_ids=old.get("runs"), damage=[])
        results = manifest_results(old, records, plan.spec, damage=[])
        # the points that ran there (a record of any state): a failed or cancelled one runs again
        seen = {self.sampler.point_of(plan.spec.cell_params(r.index), bounded=False) for r in results}
        points = sorted({w[1] for w in seen if w is not None})
        told = self.sampler.tell(plan.spec, results)
        self.sampler.add(points)
        print(
            f"mushin_nb: adaptive resume: {told} finished results of {len(points)} points in {sweep_dir} "
            "told to the learners; the cells without a result run again.",
            file=sys.stderr,
        )
        self.stop_reason = self._goal_reached()

    def _plan(self, axes: list[list[Any]]) -> SweepPlan:
        values = dict(self._values)
        for name, vals in zip(self.sampler.names, axes):
            values[name] = _multirun(vals)
        plan = self._make_plan(values, working_dir=self.sweep_dir, resume=self._round_resume())
        if self._task_hash is None:
            self._task_hash = plan.task_hash
        # the task as the run started: its source file edited meanwhile is not a new task
        # for the next round (this process still runs the code it loaded)
        return replace(plan, task_hash=self._task_hash)

    def _round_resume(self) -> bool | str:
        if self.rounds == 0:
            return self._resume
        return "force" if self._resume == "force" else True

    def next_points(self) -> list[Any]:
        """Ask the learners for the next round's points (at most what the goal needs)."""
        n = self.settings.batch_size or 1
        if self.settings.npoints_goal is not None:
            n = min(n, self.settings.npoints_goal - self.sampler.npoints)
        return self.sampler.ask(n) if n > 0 else []

    def start_round(self, new: list[Any], *, first: bool = False) -> bool:
        """Plan and start the round that runs ``new`` (and every point of the sweep
        without a result yet); False if the run was cancelled meanwhile."""
        from ._execution import SweepBusy
        from ._launch import start_sweep
        from ._reload import remap_results

        plan = self._plan(self.sampler.axes())
        cells = self.sampler.cells(plan.spec)
        prev = self._inner
        kept: list[JobResult] = []
        if prev is not None:  # failures of this run: kept, not run again in each round
            fails = [r for r in prev.results if r.status == "failed"]
            kept = remap_results(fails, prev.spec, plan.spec)
        leave = [idx for idx in np.ndindex(*plan.spec.shape) if idx not in cells]

        def bind(inner: SweepRun) -> None:
            inner.state.record_unstarted = True  # a cancelled point is found again on resume
            inner.leave_out(leave, results=kept)
            self._bind(inner)
            inner.subscribe(self._forward)
            with self._lock:
                self._inner = inner
                self.sweep_dir = inner.sweep_dir
                self.rounds += 1
                saving = self._saving
            if saving is not None:  # the file takes this round's grid (every point so far)
                inner.save(saving[0], overwrite=True, every=saving[1])

        while True:
            with self._lock:
                if self._cancelled and not first:
                    return False
            try:
                with _without_resume_line():
                    start_sweep(plan, bind=bind)
                return True
            except SweepBusy:  # another sweep of this kernel slipped in between two rounds
                if first:
                    raise
                time.sleep(0.2)

    def begin(self) -> None:
        """Run the rounds after the first in a background thread (engine use)."""
        self._thread = threading.Thread(target=self._drive, name="mushin-adaptive", daemon=True)
        self._thread.start()

    def _drive(self) -> None:
        try:
            while True:
                inner = self._inner
                assert inner is not None
                inner.join()
                self.jobs.extend(inner.jobs)
                if inner.error is not None:
                    raise inner.error
                self.sampler.tell(inner.spec, inner.results)
                self.stop_reason = self._why_stop(inner)
                if self.stop_reason is not None:
                    break
                new = self.next_points()
                if not new:
                    self.stop_reason = "the learners asked for no new point"
                    break
                if not self.start_round(new):
                    self.stop_reason = "cancelled"
                    break
        except BaseException as e:
            self._error = e
            self.stop_reason = f"stopped by {type(e).__name__}"
        finally:
            self._finish()

    def _why_stop(self, inner: SweepRun) -> str | None:
        if self._cancelled:
            return "cancelled"
        if self.on_error == "stop" and any(r.status == "failed" for r in inner.results):
            return "a job failed (on_error='stop')"
        return self._goal_reached()

    def _goal_reached(self) -> str | None:
        s = self.settings
        if s.npoints_goal is not None and self.sampler.npoints >= s.npoints_goal:
            return f"npoints_goal={s.npoints_goal} reached"
        if s.loss_goal is not None and self.sampler.loss() <= s.loss_goal:
            return f"loss_goal={s.loss_goal} reached (loss {self.sampler.loss():.3g})"
        if s.duration_goal is not None and self.elapsed >= s.duration_goal:
            return f"duration_goal={s.duration_goal:g} s reached"
        return None

    def _finish(self) -> None:
        self._ended = time.time()
        wf = self._workflow
        if wf is not None and self._inner is not None and wf.last_run is self._inner:
            try:
                wf.collect(cast(Any, self))  # every round's jobs
                wf.last_run = self
            except Exception as e:  # pragma: no cover - defensive
                warnings.warn(
                    f"mushin_nb: collecting the adaptive run failed: {e}", RuntimeWarning, stacklevel=2
                )
        for fn in self._on_finish:
            try:
                fn(self)
            except Exception as e:  # pragma: no cover - defensive
                warnings.warn(f"mushin_nb: an on_finish callback failed: {e}", RuntimeWarning, stacklevel=2)
        self._finished.set()

    def _forward(self, ev: SweepEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
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

    # ------------------------------------------------------------ SweepRun's API
    def _current(self) -> SweepRun:
        with self._lock:
            assert self._inner is not None
            return self._inner

    @property
    def spec(self) -> SweepSpec:
        """The grid now (it grows by each round's points)."""
        return self._current().spec

    @property
    def run_id(self) -> str:
        """The run id of the current round's sweep."""
        return self._current().run_id

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The sweep directory's manifest as the current round wrote it."""
        return self._current().manifest

    @property
    def skipped(self) -> int:
        """Cells of the first round that already had a result (a resume)."""
        return 0

    @property
    def done(self) -> bool:
        """True once the last round has ended (goal reached, cancelled or stopped)."""
        return self._finished.is_set()

    @property
    def status(self) -> dict[str, int]:
        """Counts of cells per state over the grid now, plus ``total``."""
        return self._current().status

    @property
    def results(self) -> list[JobResult]:
        """Every result of the sweep (cells of the grid now), in job order."""
        return self._current().results

    @property
    def failures(self) -> list[JobFailure]:
        """One record per failed job, in job order."""
        return self._current().failures

    @property
    def callback_errors(self) -> list[BaseException]:
        """Exceptions raised by ``subscribe`` callbacks (each also warned)."""
        return list(self._callback_errors)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it ended)."""
        return (self._ended or time.time()) - self._started

    @property
    def dataset(self) -> xr.Dataset:
        """The grid now: every sampled value, sorted; metrics where jobs finished, and a
        ``status`` variable. Safe to read from any thread while the run goes on."""
        return self._current().dataset

    @property
    def npoints(self) -> int:
        """Points of the sweep so far (values of the adaptive parameter, or pairs)."""
        return self.sampler.npoints

    @property
    def loss(self) -> float:
        """The learners' loss now (``adaptive``'s; smaller is a better sampled curve)."""
        return self.sampler.loss()

    @property
    def learners(self) -> dict[tuple[Any, ...], Any]:
        """The ``adaptive`` learner of each combination of the other swept values."""
        return dict(zip(self.sampler.combos, self.sampler.learners))

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the run itself (not a job's failure), or None."""
        return self._error

    def save(self, path: str | Path, *, overwrite: bool = False, every: float | None = None) -> Path:
        """Write the Dataset to the NetCDF file ``path`` now and keep it up to date, as
        :meth:`SweepRun.save` does: each round rewrites it with its grid (every point so
        far) and updates it in place as that round's jobs finish; at the end it is what
        :func:`mushin_nb.save_netcdf` writes of the final Dataset. Returns the path."""
        path = Path(path).expanduser().absolute()  # an in-process job changes the directory
        with self._lock:
            inner = self._current()
            out = inner.save(path, overwrite=overwrite, every=every)
            if not self.done:
                self._saving = (path, every)
        return out

    def subscribe(self, callback: Callable[[SweepEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` once per job that finishes from now on (any round);
        returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def cancel(self) -> None:
        """No new job or round starts; every finished point is kept (on disk too:
        ``resume=True`` goes on from them)."""
        with self._lock:
            self._cancelled = True
            inner = self._inner
        if inner is not None:
            inner.cancel()

    def interrupt(self) -> None:
        """Cancel, and stop the job running in this process now."""
        self.cancel()
        inner = self._inner
        if inner is not None:
            inner.interrupt()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the run ends or ``timeout`` seconds pass; returns :attr:`done`."""
        return self._finished.wait(timeout)

    def wait(
        self, timeout: float | None = None, *, progress: bool = False, raise_failures: bool = False
    ) -> xr.Dataset:
        """Block until the run ends (or ``timeout`` seconds pass) and return the Dataset,
        as :meth:`SweepRun.wait` does (``progress``: a bar whose total grows by round;
        Ctrl-C cancels, keeps every finished point and re-raises)."""
        if timeout is None:
            self._wait_blocking(progress)
        else:
            self._finished.wait(timeout)
        if self.done and self._error is not None:
            raise self._error
        if raise_failures and self.done:
            self.raise_for_failures()
        return self.dataset

    def _wait_blocking(self, progress: bool) -> None:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.status["total"], desc=f"{self.workflow_name} (adaptive)", unit="job")
        try:
            while not self.join(0.1):
                if bar is not None:
                    _update_bar(bar, self.status)
        except KeyboardInterrupt:
            self.interrupt()
            try:
                self.join(30)
            except KeyboardInterrupt:
                pass
            raise
        finally:
            if bar is not None:
                _update_bar(bar, self.status)
                bar.close()

    def raise_for_failures(self, *, label: str | None = None, advice: str | None = None) -> None:
        """Raise a :class:`~mushin_nb.SweepError` listing the failed jobs (as
        :meth:`SweepRun.raise_for_failures`)."""
        self._current().raise_for_failures(label=label or self.workflow_name, advice=advice)

    def on_finish(self, callback: Callable[[AdaptiveRun], Any]) -> None:
        """Call ``callback(run)`` once when the run ends (at once if it has ended)."""
        if self.done:
            callback(self)
        else:
            self._on_finish.append(callback)

    def on_finish_first(self, callback: Callable[[AdaptiveRun], Any]) -> None:
        """As :meth:`on_finish`, before the callbacks registered so far."""
        self._on_finish.insert(0, callback)

    def view(self, metric: str | None = None, **kwargs: Any) -> Any:
        """A live plot of this run (needs the notebook extras: panel, hvplot)."""
        from . import _hooks

        return _hooks.call("view", self, metric=metric, **kwargs)

    def _repr_html_(self) -> str:
        return f"<b>AdaptiveRun</b> {self._summary()}" + self.dataset._repr_html_()

    def _summary(self) -> str:
        s = self.status
        state = "finished" if self.done else "running"
        why = f" ({self.stop_reason})" if self.done and self.stop_reason else ""
        return (
            f"{self.workflow_name} {state}{why}: {self.npoints} points in {self.rounds} rounds, "
            f"{s['done']}/{s['total']} done, {s['failed']} failed, {s['cancelled']} cancelled; "
            f"dir={self.sweep_dir}"
        )

    def __repr__(self) -> str:
        return f"<AdaptiveRun {self._summary()}>"


def _update_bar(bar: Any, status: Mapping[str, int]) -> None:
    finished = status["done"] + status["failed"] + status["cancelled"]
    if bar.total != status["total"]:
        bar.total = status["total"]
    if finished != bar.n:
        bar.update(finished - bar.n)
    bar.set_postfix(done=status["done"], failed=status["failed"], refresh=False)
