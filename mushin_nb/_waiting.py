"""Waiting for a sweep: with or without a progress bar, Ctrl-C as a cancel that
keeps what finished, and the failures raised as one :class:`SweepError`.

The engine's side of a blocking ``run()``; each surface (the API, the magic, the
panel) only phrases what happened in its own terms.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._execution import SweepRun

__all__ = ["ProgressBar", "wait_for", "failures_message"]


class ProgressBar:
    """``tqdm.auto`` progress of a run: a widget in notebooks, text in a terminal,
    with done and failed counts."""

    def __init__(self, run: SweepRun):
        from tqdm.auto import tqdm

        self.run = run
        s = run.status
        self.bar = tqdm(total=s["total"], initial=run.skipped, desc=run.workflow_name, unit="job")
        self.n = run.skipped

    def update(self) -> None:
        s = self.run.status
        finished = s["done"] + s["failed"] + s["cancelled"]
        if finished > self.n:
            self.bar.update(finished - self.n)
            self.n = finished
        self.bar.set_postfix(done=s["done"], failed=s["failed"], refresh=False)

    def close(self) -> None:
        self.update()
        self.bar.close()


def wait_for(run: SweepRun, *, progress: bool, poll: float = 0.1) -> None:
    """Block until ``run`` ends. Ctrl-C (``KeyboardInterrupt``) cancels the run, stops
    the job running in this process, waits briefly for the sweep to settle and
    re-raises; every finished result stays in the run and on disk."""
    bar = ProgressBar(run) if progress else None
    try:
        while not run.join(poll):
            if bar is not None:
                bar.update()
    except KeyboardInterrupt:
        run.interrupt()
        try:
            run.join(30)
        except KeyboardInterrupt:
            pass
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()


def failures_message(run: SweepRun, *, label: str, advice: str | None = None) -> str | None:
    """The text of the :class:`~mushin_nb.SweepError` for a run's failed jobs (``None``
    when none failed, or with ``on_error="ignore"``, which warns once instead).
    ``advice`` replaces the API's own advice (the magic and the panel give theirs)."""
    from ._store import ERROR_TXT

    fails = run.failures
    if not fails:
        return None
    total = run.status["total"]
    if run.on_error == "ignore":
        warnings.warn(
            f"{len(fails)} of {total} jobs failed (on_error='ignore'); "
            f"first: {fails[0].line()}. See run.failures and {run.sweep_dir}.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    lines = "\n".join("  " + f.line() for f in fails[:20])
    more = f"\n  ... and {len(fails) - 20} more" if len(fails) > 20 else ""
    stopped = " (on_error='stop': no job started after the first failure)" if run.on_error == "stop" else ""
    if advice is None:
        advice = (
            f"Every finished result is kept: err.dataset, wf.to_xarray(); tracebacks in each job's "
            f"{ERROR_TXT} under {run.sweep_dir}. To run only the failed cells: "
            f"run(..., working_dir='{run.sweep_dir}', resume=True) if the failure was outside "
            "the task (data, resources), or resume='force' after fixing the task's code (resume=True "
            "refuses to mix results of two versions of a task)."
        )
    return f"{len(fails)} of {total} jobs of {label} failed{stopped}:\n{lines}{more}\n{advice}"
