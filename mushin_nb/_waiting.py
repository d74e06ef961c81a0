"""Waiting for a sweep: with or without a progress bar, Ctrl-C as a cancel that
keeps what finished, and the failures raised as one :class:`SweepError`.

The engine's side of a blocking ``run()``; each surface (the API, the magic, the
panel) only phrases what happened in its own terms.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import SweepError
    from ._execution import SweepRun

__all__ = ["ProgressBar", "wait_for", "failures_message", "failures_summary", "api_advice", "stopped_by"]


class ProgressBar:
    """``tqdm.auto`` progress of a run: a widget in notebooks, text in a terminal,
    with done and failed counts."""

    def __init__(self, run: SweepRun):
        from tqdm.auto import tqdm

        self.run = run
        s = run.status
        kwargs: dict[str, Any] = dict(
            total=s["total"], initial=run.skipped, desc=run.workflow_name, unit="job"
        )
        self._shown: Any = None
        self.bar: Any
        notebook = sys.modules.get("tqdm.notebook")
        if notebook is not None and issubclass(tqdm, notebook.tqdm_notebook):
            # the widget, shown here with a display id: close() shows it again, so the
            # output's text (what a saved notebook, nbconvert or GitHub shows without
            # the widget's state) ends with the final count, not the first one
            from IPython.display import display

            self.bar = tqdm(display=False, **kwargs)
            self._shown = display(self.bar.container, display_id=True)
        else:
            self.bar = tqdm(**kwargs)
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
        if self._shown is not None:
            self._shown.update(self.bar.container)


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
    summary = failures_summary(run, label=label)
    if summary is None:
        return None
    return f"{summary}\n{api_advice('rerun_failed', run.sweep_dir) if advice is None else advice}"


def failures_summary(run: SweepRun, *, label: str) -> str | None:
    """What failed, without advice: the count and one line per failed job (its
    parameters, exception and message); ``None`` as :func:`failures_message`."""
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
    return f"{len(fails)} of {total} jobs of {label} failed{stopped}:\n{lines}{more}"


def api_advice(fix: str, sweep_dir: object) -> str:
    """A :class:`~mushin_nb.SweepError`'s fix in the API's terms (keyword arguments).
    ``fix``: ``"rerun_failed"`` (jobs failed) or ``"resume_rest"`` (the sweep stopped).

    >>> api_advice("resume_rest", "/tmp/s")  # doctest: +ELLIPSIS
    "Fix the cause (e.g. free disk space), then run the same sweep with working_dir='/tmp/s' and resume=True..."
    """
    from ._store import ERROR_TXT

    if fix == "resume_rest":
        return (
            f"Fix the cause (e.g. free disk space), then run the same sweep with working_dir='{sweep_dir}' "
            "and resume=True to run the rest."
        )
    return (
        f"Every finished result is kept: err.dataset, wf.to_xarray(); tracebacks in each job's "
        f"{ERROR_TXT} under {sweep_dir}. To run only the failed cells: "
        f"run(..., working_dir='{sweep_dir}', resume=True) if the failure was outside "
        "the task (data, resources), or resume='force' after fixing the task's code (resume=True "
        "refuses to mix results of two versions of a task)."
    )


def stopped_by(run: SweepRun, e: OSError) -> SweepError:
    """A file-system error that stopped the whole sweep (a full disk, a lost mount)
    as a :class:`~mushin_nb.SweepError` that says what was kept and how to go on."""
    from ._errors import SweepError

    s = run.status
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    summary = (
        f"The sweep of {run.workflow_name} stopped: {e.strerror or e}{where}. "
        f"{s['done']} finished results of {s['total']} are kept in {run.sweep_dir} "
        f"({s['failed']} failed, {s['cancelled']} not run)."
    )
    err = SweepError(
        f"{summary} {api_advice('resume_rest', run.sweep_dir)}",
        dataset=run.dataset,
        failures=run.failures,
        summary=summary,
        sweep_dir=run.sweep_dir,
        fix="resume_rest",
    )
    err.__cause__ = e
    return err
