"""The sweep panel (:class:`SweepPanel`): pick values, run in the background, watch,
save. See :mod:`.panel` for how to get one."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import param

from .._errors import refusal, rephrase
from .._launchers import DEFAULT_LAUNCHER, LAUNCHERS, installed_launchers, launcher_label, resolve_launcher
from . import _deps
from ._launcher_settings import check_settings, settings_text
from ._params import TaskParam, accepted_text, make_workflow, task_params
from ._picker import ValuePicker
from ._status import status_counts_html

__all__ = ["SweepPanel", "failures_html", "in_control_terms"]

# the launchers that run one job at a time (the launcher table says which)
_SERIAL = tuple(i.name for i in LAUNCHERS if i.serial)


# the engine's keyword arguments -> the panel's controls, for the engine's refusals
_CONTROL_TERMS = [
    (re.compile(r"\bresume='force'"), "resume='force' (in code only: wf.start(..., resume='force'))"),
    (re.compile(r"\bresume=True\b"), "resume (ticked)"),
    (re.compile(r"\bresume=False\b"), "resume unticked"),
    (re.compile(r"\bworking_dir="), "working directory "),
    (re.compile(r"\blauncher_settings\b=?"), "launcher settings "),
    (re.compile(r"\blauncher='([^']*)'"), r"launcher \1"),
    (re.compile(r"\blauncher="), "launcher "),
    (re.compile(r"\bjobs="), "parallel jobs "),
    (re.compile(r"\bon_error='([^']*)'"), r"on error: \1"),
    (re.compile(r"\bon_error="), "on error "),
]


def in_control_terms(message: str) -> str:
    """An engine message with its keyword arguments named as the panel's controls.

    >>> in_control_terms("jobs=2 needs a parallel launcher: launcher='joblib'")
    'parallel jobs 2 needs a parallel launcher: launcher joblib'
    """
    return rephrase(message, _CONTROL_TERMS)


def _fmt_size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1024**2 else f"{n / 1024**2:.1f} MB"


def failures_html(failures: list[Any]) -> str:
    """A table of failed jobs: parameter values, error, and the traceback behind
    a click (``<details>``)."""
    if not failures:
        return ""
    names = list(failures[0].params)
    e = html.escape
    head = "".join(f"<th>{e(n)}</th>" for n in names) + "<th>error</th><th>message / traceback</th>"
    rows = []
    for f in failures:
        cells = "".join(f"<td>{e(repr(f.params.get(n)))}</td>" for n in names)
        first = f.message.splitlines()[0] if f.message else ""
        rows.append(
            f"<tr>{cells}<td><b>{e(f.exc_type)}</b></td><td><details><summary>{e(first)}</summary>"
            f"<pre style='font-size:11px;white-space:pre-wrap'>{e(f.traceback)}</pre>"
            f"<div style='font-size:11px'>job directory: <code>{e(f.job_dir)}</code></div></details></td></tr>"
        )
    return (
        f"<b>{len(failures)} failed job{'s' if len(failures) != 1 else ''}</b> (click a message for its traceback)"
        "<table style='border-collapse:collapse' border='1' cellpadding='4'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


class SweepPanel(param.Parameterized):
    """Pick values per task parameter, run the sweep in the background, watch it
    live, see failures, save NetCDF.

    Attributes for code and tests: ``pickers`` (name -> :class:`ValuePicker`),
    ``run_button``, ``cancel_button``, ``save_path``, ``save_button``,
    ``replace_button``, ``failures_table``, ``run`` (the latest ``SweepRun``),
    ``view`` (its :class:`~mushin_nb.notebook.view.LiveView`).

    Examples
    --------
    >>> def task(x: int, k: int = 1) -> dict:
    ...     return dict(y=x * k)
    >>> p = SweepPanel(task, x=[1, 2, 3], interval=None)
    >>> p.n_jobs, p.reason, p.kwargs()["on_error"]
    (3, '', 'collect')
    >>> p.workers = 2  # parallel jobs need a parallel launcher: Run is disabled, and says why
    >>> p.run_button.disabled, "joblib" in p.reason
    (True, True)
    """

    launcher = param.Selector(
        default=DEFAULT_LAUNCHER,
        objects=[DEFAULT_LAUNCHER],
        doc="Hydra launcher (installed ones; mushin_nb = in-process, the default).",
    )
    launcher_settings = param.String(
        default="",
        doc="The launcher's settings as name=value items, e.g. partition=gpu timeout_min=60 "
        "(launcher_settings={...} in code; hydra.launcher.<name>=<value> in the magic).",
    )
    working_dir = param.String(default="", doc="Sweep directory ('' = a new one under ./multirun).")
    resume = param.Boolean(default=False, doc="Reuse results already in the working directory.")
    on_error = param.Selector(default="collect", objects=["collect", "stop", "ignore"])
    workers = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="Parallel jobs (joblib).")
    n_jobs = param.Integer(default=0, doc="Number of jobs of the grid picked now.")
    reason = param.String(default="", doc="Why Run is disabled ('' when it is enabled).")
    message = param.String(default="", doc="The last thing that happened (started, saved, an error).")
    save_message = param.String(default="", doc="What Save did (or why it did not).")

    @refusal  # a bad initial value (a misspelled launcher): IPython shows the message only
    def __init__(
        self, workflow: Any, *, interval: float | None = 0.25, metric: str | None = None, **initial: Any
    ):
        self.workflow = make_workflow(workflow)
        self.interval = interval
        self.metric = metric
        self.run: Any = None
        self.view: Any = None
        self.last_saved: Path | None = None
        self._confirm_path: Path | None = None
        params, self.var_kw = task_params(self.workflow)
        self.task_params = params
        names = {p.name for p in params}
        panel_opts = {k: initial.pop(k) for k in list(initial) if k in self.param and k not in names}
        save_path = initial.pop("save", initial.pop("save_path", ""))
        unknown = [k for k in initial if k not in names]
        if unknown and not self.var_kw:
            raise TypeError(
                f"{type(self.workflow).__name__}.task does not accept {', '.join(map(repr, unknown))}; "
                f"it accepts: {accepted_text(params)}"
            )
        super().__init__()
        self.param.launcher.objects = {launcher_label(n): n for n in installed_launchers()}
        for k, v in panel_opts.items():
            if k == "launcher":  # a name or alias of the launcher table -> its name
                v = resolve_launcher(v).name
            if k == "launcher_settings":  # a dict as in code, or the field's text
                v = settings_text(v)
            setattr(self, k, v if k != "working_dir" else str(v or ""))
        self.pickers: dict[str, ValuePicker] = {}
        for p in self._pickable(params):
            self.pickers[p.name] = ValuePicker(p, initial.get(p.name))
            self.pickers[p.name].param.watch(self._update, ["values", "error"])
        self._extra = {k: v for k, v in initial.items() if k not in self.pickers}
        self._build_run_controls()
        self._build_save_controls(str(save_path or ""))
        self.view_area = _deps.pn().Column(sizing_mode="stretch_width")
        self.param.watch(self._update, ["working_dir", "resume", "launcher", "workers", "launcher_settings"])
        self._update()

    def _build_run_controls(self) -> None:
        pn = _deps.pn()
        self.run_button = pn.widgets.Button(**_deps.label("Run"), **_deps.color("primary"), width=100)
        self.cancel_button = pn.widgets.Button(
            **_deps.label("Cancel"), **_deps.color("danger"), width=100, disabled=True
        )
        self.run_button.on_click(lambda e: self.start())
        self.cancel_button.on_click(lambda e: self.cancel())
        self.jobs_text = pn.pane.HTML("", margin=(12, 10))
        self.reason_text = pn.pane.Alert("", alert_type="warning", visible=False, margin=(0, 5))
        # why the last Run (or Refine) was refused; hidden once a run starts
        self.refusal_alert = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 5))
        self.message_text = pn.pane.HTML("", margin=(5, 10))
        self.progress = pn.indicators.Progress(value=0, max=1, width=240, visible=False, margin=(12, 10))
        self.progress_text = pn.pane.HTML("", margin=(5, 10))
        # a plain HTML table (<details> shows a traceback on demand): renders offline
        # everywhere, unlike Tabulator whose JS a notebook fetches from a CDN
        self.failures_table = pn.pane.HTML("", sizing_mode="stretch_width", visible=False)
        self.failures: list[Any] = []

    def _build_save_controls(self, save_path: str) -> None:
        pn = _deps.pn()
        self.save_path = pn.widgets.TextInput(
            **_deps.label("Save to (NetCDF)"), value=save_path, placeholder="results.nc", width=320
        )
        self.save_button = pn.widgets.Button(**_deps.label("Save"), width=80, margin=(27, 5))
        self.replace_button = pn.widgets.Button(
            **_deps.label("Replace it"), **_deps.color("warning"), width=100, visible=False, margin=(27, 5)
        )
        self.keep_button = pn.widgets.Button(
            **_deps.label("Keep it"), width=80, visible=False, margin=(27, 5)
        )
        self.save_button.on_click(lambda e: self.save())
        self.replace_button.on_click(lambda e: self.save(overwrite=True))
        self.keep_button.on_click(lambda e: self._ask_replace(None))
        self.save_text = pn.pane.HTML("", margin=(5, 10))

    # -------------------------------------------------------------- pieces for subclasses
    def _pickable(self, params: list[TaskParam]) -> list[TaskParam]:
        return params

    def _title(self) -> str:
        return f"{type(self.workflow).__name__}: sweep"

    # -------------------------------------------------------------- state
    def _update(self, *events: Any) -> None:
        n = 1
        for p in self.pickers.values():
            n *= max(len(p.values), 1)
        self.n_jobs = n if all(not p.missing for p in self.pickers.values()) else 0
        reasons = [p.error for p in self.pickers.values() if p.error]
        missing = [p.name_ for p in self.pickers.values() if p.missing and not p.error]
        if missing:
            reasons.append(
                "no value for " + ", ".join(missing) + ": pick at least one value for each parameter"
            )
        if self.resume and not self.working_dir.strip():
            reasons.append("resume needs a working directory: fill in the directory of the sweep to resume")
        if self.workers not in (None, 1) and self.launcher in _SERIAL:
            reasons.append(
                f"{self.workers} parallel jobs need a parallel launcher: choose joblib (or set workers to 1)"
            )
        if self.launcher_settings.strip():
            try:  # checked against the chosen launcher's settings before anything runs
                check_settings(self.launcher_settings, self.launcher)
            except ValueError as e:
                reasons.append(str(e))
        if self.run is not None and not self.run.done:
            reasons.append("a sweep is running: wait for it or cancel it")
        self.reason = "; ".join(reasons)
        self.run_button.disabled = bool(self.reason)
        self.reason_text.object = html.escape(self.reason)
        self.reason_text.visible = bool(self.reason)
        swept = [p.name_ for p in self.pickers.values() if p.swept]
        self.jobs_text.object = f"<b>{self.n_jobs}</b> job{'s' if self.n_jobs != 1 else ''}" + (
            f" (swept: {', '.join(swept)})" if swept else ""
        )

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the Run button passes to ``workflow.start``."""
        kw: dict[str, Any] = dict(self._extra)
        for name, p in self.pickers.items():
            if p.error or p.missing:
                raise ValueError(p.error or f"{name}: pick at least one value")
            kw[name] = p.value_for_run()
        kw["working_dir"] = self.working_dir.strip() or None
        kw["launcher"] = None if self.launcher == DEFAULT_LAUNCHER else self.launcher
        kw["resume"] = self.resume
        kw["on_error"] = self.on_error
        if self.workers is not None and self.launcher not in _SERIAL:
            kw["jobs"] = self.workers
        if self.launcher_settings.strip():
            kw["launcher_settings"] = check_settings(self.launcher_settings, self.launcher)
        return kw

    # -------------------------------------------------------------- actions
    def start(self, **overrides: Any) -> Any:
        """What Run does: ``workflow.start(**self.kwargs())`` in the background;
        returns the ``SweepRun``. A refused Run (None) changes nothing, on disk or in
        the panel: it says why in ``message`` and in an alert above the results."""
        from .._execution import SweepBusy
        from ._live import LiveView

        if self.reason:
            self._refuse(f"Cannot run: {self.reason}")
            return None
        try:
            kw = self.kwargs()
            kw.update(overrides)
            run = self.workflow.start(**kw)
        except SweepBusy:
            self._refuse(
                "Cannot run: another sweep is running in this kernel (started from a cell or another "
                "panel), and sweeps run one at a time. Wait for it to end or cancel it, then click Run "
                "again. Nothing was started or changed."
            )
            return None
        except Exception as e:  # a button has no caller to raise to: say it in the panel
            what = (
                ""
                if isinstance(e, (ValueError, TypeError, OSError, RuntimeError))
                else f"{type(e).__name__}: "
            )
            self._refuse(f"Cannot run: {what}{in_control_terms(str(e))} Nothing was started or changed.")
            return None
        self.refusal_alert.visible = False
        self.refusal_alert.object = ""
        self.run = run
        if self.view is not None:
            self.view.close()
        self.view = LiveView(  # its progress is the panel's (one progress display)
            run,
            metric=self.metric,
            interval=self.interval,
            show_cancel=False,
            show_progress=False,
            **self._view_kwargs(),
        )
        self.view.add_listener(self._on_progress)
        self.view_area.objects = [self.view.panel()]
        self.cancel_button.disabled = False
        self.progress.visible = True
        self._on_progress(run.dataset)
        skipped = f" ({run.skipped} reused from {run.sweep_dir})" if run.skipped else ""
        self._say(f"Started {run.status['total']} jobs{skipped} in {run.sweep_dir}")
        self._update()
        return run

    def _refuse(self, text: str) -> None:
        """Say why an action was refused: ``message`` and the red alert."""
        self._say(text, error=True)
        self.refusal_alert.object = html.escape(text)
        self.refusal_alert.visible = True

    def _view_kwargs(self) -> dict[str, Any]:
        return {}

    def cancel(self) -> None:
        """What Cancel does: no new job starts; finished results are kept."""
        if self.run is not None and not self.run.done:
            self.run.cancel()
            self.cancel_button.disabled = True
            self._say("Cancelling: no new job starts; finished results are kept.")

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the current run ends and the view has drawn its end;
        returns the Dataset (for code and tests)."""
        if self.run is None:
            raise RuntimeError("Nothing is running: click Run (or call .start()) first.")
        ds = self.run.wait(timeout)
        if self.view is not None:
            self.view.join(timeout if timeout is not None else 30)
            if self.view.redraws == 0 or self.view.drawn_status != self.run.status:
                self.view.tick(force=True)
        return ds

    def _on_progress(self, ds: Any) -> None:
        run = self.run
        if run is None:
            return
        view = self.view
        # the counts the view has just drawn (the same as its badges), else the latest
        drawn = view.drawn_status if view is not None and view.run is run else None
        s = drawn or run.status
        # the run may have ended after this redraw read its counts: it is finished for
        # the panel when the counts shown are the final ones (the view's last redraw)
        ended = run.done and s == run.status
        finished = s["done"] + s["failed"] + s["cancelled"]
        self.progress.max = max(s["total"], 1)
        self.progress.value = min(finished, s["total"])
        state = "finished" if ended else "running"
        self.progress_text.object = f"{state}: " + status_counts_html(s)
        fails = run.failures
        self.failures = fails
        if fails:
            self.failures_table.object = failures_html(fails)
            self.failures_table.visible = True
        if ended:
            self.cancel_button.disabled = True
            if run.error is not None:  # the sweep itself stopped (a full disk): said with the controls
                err = run.error
                self._say(
                    f"Stopped: {getattr(err, 'summary', None) or f'{type(err).__name__}: {err}'} Fix the "
                    f"cause, then tick resume, keep working directory {run.sweep_dir} and click Run to run "
                    "the rest.",
                    error=True,
                )
            elif s["failed"]:
                self._say(
                    f"Finished: {s['failed']} of {s['total']} jobs failed (see the table; click a message for "
                    f"its traceback). Fix the task and Run with resume and working directory {run.sweep_dir} "
                    "to run only those.",
                    error=True,
                )
            elif s["cancelled"]:
                self._say(
                    f"Cancelled: {s['done']} of {s['total']} jobs finished and kept in {run.sweep_dir}."
                )
            else:
                self._say(f"Finished: {s['done']} jobs in {run.sweep_dir}.")
            self._update()

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        color = "#b91c1c" if error else "#374151"
        self.message_text.object = f'<span style="color:{color}">{html.escape(text)}</span>'

    # -------------------------------------------------------------- save
    def dataset(self) -> Any:
        """The Dataset that Save writes: the latest run's (with its ``status``)."""
        if self.run is None:
            raise RuntimeError("No results yet: run a sweep first.")
        return self.run.dataset

    def _ask_replace(self, path: Path | None) -> None:
        self._confirm_path = path
        self.replace_button.visible = path is not None
        self.keep_button.visible = path is not None

    def save(self, overwrite: bool = False) -> Path | None:
        """What Save does: ``run.save(save_path)``: the Dataset written now, and kept up to
        date in the file while the sweep runs (its final Dataset when it ends). An existing
        file is replaced only after Replace is clicked (``overwrite=True``). Returns the
        path written."""
        from .._dataset import load_netcdf

        text = self.save_path.value.strip()
        if not text:
            self._said_save("Type a file name first, e.g. results.nc", error=True)
            return None
        path = Path(os.path.expanduser(text))
        if path.suffix == "":
            path = path.with_suffix(".nc")
        try:
            self.dataset()
        except RuntimeError as e:
            self._said_save(str(e), error=True)
            return None
        if path.exists() and not (overwrite and self._confirm_path == path.resolve()):
            st = path.stat()
            self._ask_replace(path.resolve())
            self._said_save(f"{path} already exists ({_fmt_size(st.st_size)}). Replace it?", error=True)
            return None
        try:
            self.run.save(path, overwrite=overwrite)
        except (OSError, TypeError, ValueError) as e:
            self._said_save(f"Could not write {path}: {e}", error=True)
            return None
        self._ask_replace(None)
        back = load_netcdf(path)
        dims = ", ".join(f"{k}: {v}" for k, v in back.sizes.items())
        self.last_saved = path
        self._said_save(
            f"Wrote {path.resolve()} ({_fmt_size(path.stat().st_size)}): dims {{{dims}}}, "
            f"variables {', '.join(map(str, back.data_vars))}"
            + ("; kept up to date while the sweep runs" if not self.run.done else "")
        )
        return path

    def _said_save(self, text: str, error: bool = False) -> None:
        self.save_message = text
        color = "#b91c1c" if error else "#166534"
        self.save_text.object = f'<span style="color:{color}">{html.escape(text)}</span>'

    # -------------------------------------------------------------- layout
    def _extra_controls(self) -> list[Any]:
        return []

    def panel(self) -> Any:
        """The Panel layout (a ``pn.Column``)."""
        if getattr(self, "_layout", None) is not None:
            return self._layout
        pn = _deps.pn()
        params_box = pn.Column(*[p.panel() for p in self.pickers.values()])
        opts = pn.Row(
            pn.widgets.Select.from_param(self.param.launcher, width=180),
            pn.widgets.TextInput.from_param(
                self.param.working_dir, **_deps.label("working directory"), width=280
            ),
            pn.widgets.IntInput.from_param(self.param.workers, **_deps.label("parallel jobs"), width=100),
            pn.widgets.Select.from_param(self.param.on_error, **_deps.label("on error"), width=110),
            pn.widgets.Checkbox.from_param(self.param.resume, margin=(30, 10)),
        )
        settings = pn.widgets.TextInput.from_param(
            self.param.launcher_settings,
            **_deps.label("launcher settings"),
            placeholder="name=value ..., e.g. partition=gpu timeout_min=60 (address=... for dask / ray)",
            sizing_mode="stretch_width",
        )
        self._layout = pn.Column(
            pn.pane.HTML(f"<h3 style='margin:4px 0'>{html.escape(self._title())}</h3>"),
            params_box,
            *self._extra_controls(),
            opts,
            settings,
            pn.Row(self.run_button, self.cancel_button, self.jobs_text, self.progress, self.progress_text),
            self.reason_text,
            self.refusal_alert,
            self.message_text,
            self.failures_table,
            pn.Row(self.save_path, self.save_button, self.replace_button, self.keep_button),
            self.save_text,
            self.view_area,
            sizing_mode="stretch_width",
        )
        return self._layout

    def __panel__(self) -> Any:
        return self.panel()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.panel()._repr_mimebundle_(include, exclude)

    def servable(self, title: str | None = None) -> Any:
        """The layout marked servable (``panel serve``), with ``title``."""
        return self.panel().servable(title=title)
