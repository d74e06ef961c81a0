"""A widget panel to pick sweep values, run in the background, watch and save.

``SomeWorkflow().panel(**initial)`` and ``mushin_nb.sweep_panel(task_or_workflow,
**initial)`` return a :class:`SweepPanel` (a :class:`RobustnessPanel` for a
``RobustnessCurve``). It renders in JupyterLab, Notebook 7 and VS Code (see
:mod:`mushin_nb.notebook.view` for what each needs) and can be served
(``mushin-nb serve module:Class``).

UI state lives in ``param.Parameterized`` objects, so code (and tests) can drive
the panel without a browser: set a widget's ``value`` and click a button with
``button.clicks += 1``.

Examples
--------
>>> from mushin_nb import MultiRunMetricsWorkflow
>>> class Sq(MultiRunMetricsWorkflow):
...     @staticmethod
...     def task(x: float, n: int = 2) -> dict:
...         return dict(y=x ** n)
>>> p = Sq().panel(x=[1.0, 2.0, 3.0])             # doctest: +SKIP
>>> p.n_jobs, p.pickers["x"].swept, p.pickers["n"].swept  # doctest: +SKIP
(3, True, False)
"""

from __future__ import annotations

import html
import inspect
import os
import re
from pathlib import Path
from typing import Any

import param

from mushin_nb._launchers import DEFAULT_LAUNCHER, LAUNCHERS, installed_launchers, launcher_label

from . import _deps
from ._params import TaskParam, coerce, format_values, parse_values, task_params

__all__ = ["sweep_panel", "SweepPanel", "ValuePicker", "installed_launchers", "launcher_label"]


# --------------------------------------------------------------------------- helpers


_ALIASES = {
    None: DEFAULT_LAUNCHER,
    "": DEFAULT_LAUNCHER,
    "fast": DEFAULT_LAUNCHER,
    "mushin_nb_joblib": "joblib",
}
_SERIAL = tuple(i.name for i in LAUNCHERS if i.serial)


def make_workflow(obj: Any) -> Any:
    """A workflow instance from a workflow class, instance or a plain task
    function (wrapped in a ``MultiRunMetricsWorkflow`` subclass named after it)."""
    from mushin_nb import BaseWorkflow, MultiRunMetricsWorkflow

    if isinstance(obj, BaseWorkflow):
        return obj
    if inspect.isclass(obj) and issubclass(obj, BaseWorkflow):
        return obj()
    if callable(obj):
        cls = type(
            getattr(obj, "__name__", "task"),
            (MultiRunMetricsWorkflow,),
            {
                "task": staticmethod(obj),
                "__module__": getattr(obj, "__module__", __name__),
                "_mushin_label": f"{getattr(obj, '__name__', 'task')}()",
            },
        )
        return cls()
    raise TypeError(
        f"sweep_panel needs a task function or a workflow (class or instance); got {type(obj).__name__}"
    )


# the engine's keyword arguments -> the panel's controls, for the engine's refusals
_CONTROL_TERMS = [
    (re.compile(r"\bresume='force'"), "resume='force' (in code only: wf.start(..., resume='force'))"),
    (re.compile(r"\bresume=True\b"), "resume (ticked)"),
    (re.compile(r"\bresume=False\b"), "resume unticked"),
    (re.compile(r"\bworking_dir="), "working directory "),
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
    for pat, repl in _CONTROL_TERMS:
        message = pat.sub(repl, message)
    return message


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


# --------------------------------------------------------------------------- one parameter


class ValuePicker(param.Parameterized):
    """The values of one task parameter: one value is fixed, several are swept.

    Numbers (``float``/``int``): an editable list in Hydra's grammar
    (``0.01, 0.1, 1`` or ``range(0, 10, 2)``) and a range builder (start, stop,
    count, linear or log). ``bool``: checkboxes. ``Literal``/``Enum``: a
    multi-select. Strings and untyped: a list (shown as tags).
    """

    values = param.List(default=[], doc="The values picked (typed).")
    error = param.String(default="", doc="Why the text cannot be read ('' if it can).")

    def __init__(self, tp: TaskParam, initial: Any = None, **params: Any) -> None:
        super().__init__(**params)
        pn = _deps.pn()
        self.tp = tp
        self.name_ = tp.name
        label = tp.describe() + ("  (required)" if tp.required else "")
        self.range_start = self.range_stop = self.range_count = self.range_scale = self.fill_button = None
        self.range_builder = None
        if initial is None:
            init = [] if tp.required else [tp.default]
        elif isinstance(initial, (list, tuple, range)) or type(initial).__name__ == "multirun":
            init = list(initial)
        else:
            init = [initial]
        if tp.kind == "bool":
            self.input = pn.widgets.CheckBoxGroup(
                **_deps.label(label),
                options={"True": True, "False": False},
                value=[bool(v) for v in init],
                inline=True,
            )
        elif tp.kind == "choice":
            self.input = pn.widgets.MultiChoice(
                **_deps.label(label), options=list(tp.choices), value=[coerce(v, tp) for v in init], width=300
            )
        else:
            self.input = pn.widgets.TextInput(
                **_deps.label(label),
                value=format_values(init) if init else "",
                placeholder="e.g. 0.01, 0.1, 1  or  range(0, 10, 2)"
                if tp.kind in ("float", "int")
                else "e.g. a, b, 'c,d'",
                width=300,
            )
        if tp.kind in ("float", "int"):
            num = pn.widgets.IntInput if tp.kind == "int" else pn.widgets.FloatInput
            self.range_start = num(**_deps.label("start"), value=0 if tp.kind == "int" else 0.001, width=90)
            self.range_stop = num(**_deps.label("stop"), value=10 if tp.kind == "int" else 1.0, width=90)
            self.range_count = pn.widgets.IntInput(**_deps.label("count"), value=5, start=1, width=70)
            self.range_scale = pn.widgets.RadioButtonGroup(
                options=["linear", "log"], value="log" if tp.kind == "float" else "linear", margin=(27, 5)
            )
            self.fill_button = pn.widgets.Button(**_deps.label("Fill"), width=60, margin=(27, 5))
            self.fill_button.on_click(lambda e: self.fill_range())
            self.range_builder = pn.Card(
                pn.Row(
                    self.range_start, self.range_stop, self.range_count, self.range_scale, self.fill_button
                ),
                title="range builder",
                collapsed=True,
                margin=(0, 5),
            )
        self.badge = pn.pane.HTML("", margin=(25, 5), width=170)
        self.tags = pn.pane.HTML("", margin=(0, 10), visible=tp.kind in ("str", "any"))
        self.input.param.watch(self._read, "value")
        self._read()

    # -------------------------------------------------------------- state
    @property
    def swept(self) -> bool:
        return len(self.values) > 1

    @property
    def missing(self) -> bool:
        return not self.values

    def _read(self, *events: Any) -> None:
        raw = self.input.value
        try:
            if isinstance(raw, str):
                vals = [coerce(v, self.tp) for v in parse_values(raw, name=self.tp.name)]
            else:
                vals = [coerce(v, self.tp) for v in raw]
            seen: list[Any] = []
            for v in vals:
                if any(type(v) is type(s) and v == s for s in seen):
                    raise ValueError(f"{self.tp.name}: {v!r} is given twice; give each value once.")
                seen.append(v)
            self.error = ""
            self.values = seen
        except ValueError as e:
            self.error = str(e)
            self.values = []
        self._show()

    def _show(self) -> None:
        if self.error:
            text, color = "cannot read", "#dc2626"
        elif self.missing:
            text, color = ("required: no value" if self.tp.required else "no value"), "#dc2626"
        elif self.swept:
            text, color = f"swept &middot; {len(self.values)} values", "#2563eb"
        else:
            text, color = "fixed", "#6b7280"
        self.badge.object = (
            f'<span style="background:{color};color:white;border-radius:4px;padding:2px 8px">{text}</span>'
        )
        if self.tags.visible:
            self.tags.object = "".join(
                '<span style="border:1px solid #999;border-radius:10px;padding:0 6px;margin-right:3px">'
                f"{html.escape(repr(v))}</span>"
                for v in self.values
            )

    def set_values(self, values: Any) -> None:
        """Set the picked values from code (a list sweeps, a scalar fixes)."""
        vals = list(values) if isinstance(values, (list, tuple, range)) else [values]
        if isinstance(self.input.value, str):
            self.input.value = format_values(vals)
        else:
            self.input.value = [coerce(v, self.tp) for v in vals]

    def fill_range(self) -> None:
        """Fill the list from the range builder (start, stop, count, linear/log)."""
        import numpy as np

        a, b, n = self.range_start.value, self.range_stop.value, int(self.range_count.value or 1)
        if self.range_scale.value == "log":
            if a is None or b is None or a <= 0 or b <= 0:
                self.error = f"{self.tp.name}: a log range needs start > 0 and stop > 0."
                self._show()
                return
            vals = np.geomspace(a, b, n)
        else:
            vals = np.linspace(a, b, n)
        if self.tp.kind == "int":
            out: list[Any] = sorted({int(round(v)) for v in vals})
        else:
            out = [float(f"{v:.6g}") for v in vals]
        self.set_values(out)

    def value_for_run(self) -> Any:
        from hydra_zen import multirun

        return multirun(list(self.values)) if self.swept else self.values[0]

    def panel(self) -> Any:
        pn = _deps.pn()
        row = pn.Row(self.input, self.badge)
        items: list[Any] = [row]
        if self.tags.visible:
            items.append(self.tags)
        if self.range_builder is not None:
            items.append(self.range_builder)
        return pn.Column(*items, margin=(0, 0, 8, 0))


# --------------------------------------------------------------------------- the panel


class SweepPanel(param.Parameterized):
    """Pick values per task parameter, run the sweep in the background, watch it
    live, see failures, save NetCDF.

    Attributes for code and tests: ``pickers`` (name -> :class:`ValuePicker`),
    ``run_button``, ``cancel_button``, ``save_path``, ``save_button``,
    ``replace_button``, ``failures_table``, ``run`` (the latest ``SweepRun``),
    ``view`` (its :class:`~mushin_nb.notebook.view.LiveView`).
    """

    launcher = param.Selector(
        default=DEFAULT_LAUNCHER,
        objects=[DEFAULT_LAUNCHER],
        doc="Hydra launcher (installed ones; mushin_nb = in-process, the default).",
    )
    working_dir = param.String(default="", doc="Sweep directory ('' = a new one under ./multirun).")
    resume = param.Boolean(default=False, doc="Reuse results already in the working directory.")
    on_error = param.Selector(default="collect", objects=["collect", "stop", "ignore"])
    workers = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="Parallel jobs (joblib).")
    n_jobs = param.Integer(default=0, doc="Number of jobs of the grid picked now.")
    reason = param.String(default="", doc="Why Run is disabled ('' when it is enabled).")
    message = param.String(default="", doc="The last thing that happened (started, saved, an error).")
    save_message = param.String(default="", doc="What Save did (or why it did not).")

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
            from ._params import accepted_text

            raise TypeError(
                f"{type(self.workflow).__name__}.task does not accept {', '.join(map(repr, unknown))}; "
                f"it accepts: {accepted_text(params)}"
            )
        super().__init__()
        self.param.launcher.objects = {launcher_label(n): n for n in installed_launchers()}
        for k, v in panel_opts.items():
            if k == "launcher":
                v = _ALIASES.get(v, v)
            setattr(self, k, v if k != "working_dir" else str(v or ""))
        pn = _deps.pn()
        self.pickers: dict[str, ValuePicker] = {}
        for p in self._pickable(params):
            self.pickers[p.name] = ValuePicker(p, initial.get(p.name))
            self.pickers[p.name].param.watch(self._update, ["values", "error"])
        self._extra = {k: v for k, v in initial.items() if k not in self.pickers}

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
        self.save_path = pn.widgets.TextInput(
            **_deps.label("Save to (NetCDF)"), value=str(save_path or ""), placeholder="results.nc", width=320
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
        self.view_area = pn.Column(sizing_mode="stretch_width")
        self.param.watch(self._update, ["working_dir", "resume", "launcher", "workers"])
        self._update()

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
        return kw

    # -------------------------------------------------------------- actions
    def start(self, **overrides: Any) -> Any:
        """What Run does: ``workflow.start(**self.kwargs())`` in the background;
        returns the ``SweepRun``. A refused Run (None) changes nothing, on disk or in
        the panel: it says why in ``message`` and in an alert above the results."""
        from mushin_nb._execution import SweepBusy

        from .view import LiveView

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
        self.view = LiveView(
            run, metric=self.metric, interval=self.interval, show_cancel=False, **self._view_kwargs()
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
            if self.view.redraws == 0 or self.view._last_status != self.run.status:
                self.view.tick(force=True)
        return ds

    def _on_progress(self, ds: Any) -> None:
        from .view import status_counts_html

        run = self.run
        if run is None:
            return
        view = self.view
        # the counts the view has just drawn (the same as its badges), else the latest
        drawn = view._last_status if view is not None and view.run is run else None
        s = drawn or run.status
        finished = s["done"] + s["failed"] + s["cancelled"]
        self.progress.max = max(s["total"], 1)
        self.progress.value = min(finished, s["total"])
        state = "finished" if run.done else "running"
        self.progress_text.object = f"{state}: " + status_counts_html(s)
        fails = run.failures
        self.failures = fails
        if fails:
            self.failures_table.object = failures_html(fails)
            self.failures_table.visible = True
        if run.done:
            self.cancel_button.disabled = True
            if s["failed"]:
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
        """What Save does: write the Dataset to ``save_path`` with
        :func:`mushin_nb.save_netcdf`. An existing file is replaced only after
        Replace is clicked (``overwrite=True``). Returns the path written."""
        from mushin_nb._dataset import load_netcdf, save_netcdf

        text = self.save_path.value.strip()
        if not text:
            self._said_save("Type a file name first, e.g. results.nc", error=True)
            return None
        path = Path(os.path.expanduser(text))
        if path.suffix == "":
            path = path.with_suffix(".nc")
        try:
            ds = self.dataset()
        except RuntimeError as e:
            self._said_save(str(e), error=True)
            return None
        if path.exists() and not (overwrite and self._confirm_path == path.resolve()):
            st = path.stat()
            self._ask_replace(path.resolve())
            self._said_save(f"{path} already exists ({_fmt_size(st.st_size)}). Replace it?", error=True)
            return None
        try:
            save_netcdf(ds, path, overwrite=overwrite)
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
        self._layout = pn.Column(
            pn.pane.HTML(f"<h3 style='margin:4px 0'>{html.escape(self._title())}</h3>"),
            params_box,
            *self._extra_controls(),
            opts,
            pn.Row(self.run_button, self.cancel_button, self.jobs_text, self.progress),
            self.reason_text,
            self.refusal_alert,
            self.message_text,
            self.progress_text,
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
        return self.panel().servable(title=title)


def sweep_panel(task_or_workflow: Any, **initial: Any) -> SweepPanel:
    """A :class:`SweepPanel` for a task function or a workflow (class or
    instance); a ``RobustnessCurve`` gets a :class:`RobustnessPanel`.

    ``initial`` pre-fills it: task parameters (a list sweeps, a scalar fixes),
    and ``launcher``, ``working_dir``, ``resume``, ``workers``, ``on_error``,
    ``save_path``, ``metric``, ``interval`` (seconds between redraws).
    """
    from mushin_nb import RobustnessCurve

    wf = make_workflow(task_or_workflow)
    if isinstance(wf, RobustnessCurve):
        from .robustness import RobustnessPanel

        return RobustnessPanel(wf, **initial)
    return SweepPanel(wf, **initial)
